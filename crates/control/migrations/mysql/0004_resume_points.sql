-- Where reading must start again when it is before the saved position: the start of the
-- oldest XA transaction that was prepared before the position and is not yet committed or
-- rolled back (its rows are replicated at its commit). NULL: at the position.
ALTER TABLE capture_positions ADD COLUMN resume_file VARCHAR(255) NULL;
ALTER TABLE capture_positions ADD COLUMN resume_pos BIGINT NULL;
ALTER TABLE verifier_positions ADD COLUMN resume_file VARCHAR(255) NULL;
ALTER TABLE verifier_positions ADD COLUMN resume_pos BIGINT NULL;
