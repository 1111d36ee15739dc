-- The recovery lifecycle (docs/RECOVERY.md). A mismatch record moves
-- detected -> rechecking -> resolved | repaired | needs_manual | ignored; a failed event
-- open -> retried | repaired | ignored. Every move is a row of recovery_history.
--
-- row_key: a digest of table + key, kept after the record closes, so that a row found
-- different again opens a new record linked to the last one (previous_id). Every record
-- before this migration is open (nothing closed records yet), so its open_key is its row_key.
ALTER TABLE mismatches ADD COLUMN row_key TEXT;
ALTER TABLE mismatches ADD COLUMN previous_id BIGINT;
-- What the change said the target must hold, and both rows as last observed (JSON lists of
-- [column, value] in the table's column order; NULL: the row was absent, or the record
-- predates this migration and its rows are read at its recheck).
ALTER TABLE mismatches ADD COLUMN expected TEXT;
ALTER TABLE mismatches ADD COLUMN source_row TEXT;
ALTER TABLE mismatches ADD COLUMN target_row TEXT;
ALTER TABLE mismatches ADD COLUMN state_ms BIGINT;
ALTER TABLE mismatches ADD COLUMN note TEXT;
ALTER TABLE mismatches ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
UPDATE mismatches SET row_key = open_key, state_ms = last_seen_ms;
CREATE INDEX mismatches_due ON mismatches (state, first_seen_ms);
CREATE INDEX mismatches_row ON mismatches (row_key);
CREATE INDEX mismatches_seen ON mismatches (last_seen_ms, id);

ALTER TABLE failed_events ADD COLUMN state_ms BIGINT;
ALTER TABLE failed_events ADD COLUMN note TEXT;
UPDATE failed_events SET state_ms = last_seen_ms;

-- Every state change of a mismatch or failed event: who (a user name or 'system'), when,
-- why, the rows before and after, and the exact SQL that ran (with its values).
CREATE TABLE recovery_history (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    subject      TEXT    NOT NULL,
    subject_id   BIGINT  NOT NULL,
    at_ms        BIGINT  NOT NULL,
    actor        TEXT    NOT NULL,
    from_state   TEXT    NOT NULL,
    to_state     TEXT    NOT NULL,
    mode         TEXT,
    reason       TEXT    NOT NULL,
    before_image TEXT,
    after_image  TEXT,
    statement    TEXT
);
CREATE INDEX recovery_history_subject ON recovery_history (subject, subject_id, id);

-- Switches of the recovery worker that an operator must see and set: the auto-repair
-- circuit ('circuit': 'open' or 'closed').
CREATE TABLE recovery_settings (
    name       TEXT   NOT NULL PRIMARY KEY,
    value      TEXT   NOT NULL,
    reason     TEXT   NOT NULL,
    actor      TEXT   NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- `concord recovery batch` runs: resumable after the last finished chunk.
CREATE TABLE batch_jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    db          TEXT    NOT NULL,
    tbl         TEXT    NOT NULL,
    pk_from     TEXT,
    pk_to       TEXT,
    since_ms    BIGINT,
    until_ms    BIGINT,
    dry_run     INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    last_key    TEXT,
    checked     BIGINT  NOT NULL DEFAULT 0,
    differing   BIGINT  NOT NULL DEFAULT 0,
    repaired    BIGINT  NOT NULL DEFAULT 0,
    superseded  BIGINT  NOT NULL DEFAULT 0,
    failed      BIGINT  NOT NULL DEFAULT 0,
    actor       TEXT    NOT NULL,
    error       TEXT,
    started_ms  BIGINT  NOT NULL,
    updated_ms  BIGINT  NOT NULL
);
CREATE INDEX batch_jobs_table ON batch_jobs (db, tbl, state);
