-- A batch recovery job may cover the rows changed in a time window instead of a key range:
-- the times as given, so a job asked for again the same way resumes (the window as resolved
-- when it started is in since_ms and until_ms, so a relative "2h" keeps meaning it).
ALTER TABLE batch_jobs ADD COLUMN since_text TEXT NULL;
ALTER TABLE batch_jobs ADD COLUMN until_text TEXT NULL;
