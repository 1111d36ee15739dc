-- The batch recovery job whose check confirmed a record (found again or first), so the job
-- repairs exactly the rows it confirmed — also those another detector recorded first.
ALTER TABLE mismatches ADD COLUMN batch_job BIGINT NULL;
CREATE INDEX mismatches_batch_job ON mismatches (batch_job);
