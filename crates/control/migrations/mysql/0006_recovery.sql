-- The recovery lifecycle (docs/RECOVERY.md). A mismatch record moves
-- detected -> rechecking -> resolved | repaired | needs_manual | ignored; a failed event
-- open -> retried | repaired | ignored. Every move is a row of recovery_history.
--
-- row_key: a digest of table + key, kept after the record closes, so that a row found
-- different again opens a new record linked to the last one (previous_id). Every record
-- before this migration is open (nothing closed records yet), so its open_key is its row_key.
ALTER TABLE mismatches ADD COLUMN row_key CHAR(64) NULL;
ALTER TABLE mismatches ADD COLUMN previous_id BIGINT NULL;
-- What the change said the target must hold, and both rows as last observed (JSON lists of
-- [column, value] in the table's column order; NULL: the row was absent, or the record
-- predates this migration and its rows are read at its recheck).
ALTER TABLE mismatches ADD COLUMN expected LONGTEXT NULL;
ALTER TABLE mismatches ADD COLUMN source_row LONGTEXT NULL;
ALTER TABLE mismatches ADD COLUMN target_row LONGTEXT NULL;
ALTER TABLE mismatches ADD COLUMN state_ms BIGINT NULL;
ALTER TABLE mismatches ADD COLUMN note TEXT NULL;
ALTER TABLE mismatches ADD COLUMN attempts INT NOT NULL DEFAULT 0;
UPDATE mismatches SET row_key = open_key, state_ms = last_seen_ms;
CREATE INDEX mismatches_due ON mismatches (state, first_seen_ms);
CREATE INDEX mismatches_row ON mismatches (row_key);
CREATE INDEX mismatches_seen ON mismatches (last_seen_ms, id);

ALTER TABLE failed_events ADD COLUMN state_ms BIGINT NULL;
ALTER TABLE failed_events ADD COLUMN note TEXT NULL;
UPDATE failed_events SET state_ms = last_seen_ms;

-- Every state change of a mismatch or failed event: who (a user name or 'system'), when,
-- why, the rows before and after, and the exact SQL that ran (with its values).
CREATE TABLE recovery_history (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    subject      VARCHAR(16)  NOT NULL,
    subject_id   BIGINT       NOT NULL,
    at_ms        BIGINT       NOT NULL,
    actor        VARCHAR(191) NOT NULL,
    from_state   VARCHAR(32)  NOT NULL,
    to_state     VARCHAR(32)  NOT NULL,
    mode         VARCHAR(16)  NULL,
    reason       TEXT         NOT NULL,
    before_image LONGTEXT     NULL,
    after_image  LONGTEXT     NULL,
    statement    LONGTEXT     NULL,
    KEY recovery_history_subject (subject, subject_id, id)
) DEFAULT CHARSET = utf8mb4;

-- Switches of the recovery worker that an operator must see and set: the auto-repair
-- circuit ('circuit': 'open' or 'closed').
CREATE TABLE recovery_settings (
    name       VARCHAR(64)  NOT NULL PRIMARY KEY,
    value      VARCHAR(64)  NOT NULL,
    reason     TEXT         NOT NULL,
    actor      VARCHAR(191) NOT NULL,
    updated_ms BIGINT       NOT NULL
) DEFAULT CHARSET = utf8mb4;

-- `concord recovery batch` runs: resumable after the last finished chunk.
CREATE TABLE batch_jobs (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    db          VARCHAR(64)  NOT NULL,
    tbl         VARCHAR(64)  NOT NULL,
    pk_from     LONGTEXT     NULL,
    pk_to       LONGTEXT     NULL,
    since_ms    BIGINT       NULL,
    until_ms    BIGINT       NULL,
    dry_run     INT          NOT NULL,
    state       VARCHAR(16)  NOT NULL,
    last_key    LONGTEXT     NULL,
    checked     BIGINT  NOT NULL DEFAULT 0,
    differing   BIGINT  NOT NULL DEFAULT 0,
    repaired    BIGINT  NOT NULL DEFAULT 0,
    superseded  BIGINT  NOT NULL DEFAULT 0,
    failed      BIGINT  NOT NULL DEFAULT 0,
    actor       VARCHAR(191) NOT NULL,
    error       TEXT         NULL,
    started_ms  BIGINT       NOT NULL,
    updated_ms  BIGINT       NOT NULL,
    KEY batch_jobs_table (db, tbl, state)
) DEFAULT CHARSET = utf8mb4;
