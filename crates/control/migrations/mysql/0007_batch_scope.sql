-- A checksum run belongs to a scope: '' for `concord checksum` of a whole table, or
-- 'batch:<job id>' for the range of a `concord recovery batch` job, so the two resume
-- independently.
ALTER TABLE checksum_runs ADD COLUMN scope VARCHAR(64) NOT NULL DEFAULT '';
