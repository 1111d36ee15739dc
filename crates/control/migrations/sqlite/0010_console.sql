-- The web console (docs/CONSOLE.md). Sessions live here so that console replicas behind
-- one Service share them; only a digest of each session's token is kept.
CREATE TABLE console_sessions (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    user_name  TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    csrf       TEXT    NOT NULL,
    created_ms BIGINT  NOT NULL,
    seen_ms    BIGINT  NOT NULL
);
CREATE INDEX console_sessions_seen ON console_sessions (seen_ms);

-- Bulk actions over a selection or a filter: their progress, so a large one can be watched
-- (and survives a page reload). Each record's move is in recovery_history, and the bulk
-- action itself is one more history row (subject 'bulk', subject_id = id).
CREATE TABLE console_bulk_jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    selection   TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    total       BIGINT  NOT NULL,
    done        BIGINT  NOT NULL DEFAULT 0,
    succeeded   BIGINT  NOT NULL DEFAULT 0,
    failed      BIGINT  NOT NULL DEFAULT 0,
    state       TEXT    NOT NULL,
    error       TEXT,
    started_ms  BIGINT  NOT NULL,
    updated_ms  BIGINT  NOT NULL
);

-- The console's list: keyset pages of one state, newest first, and the audit log's filters.
CREATE INDEX mismatches_state_id ON mismatches (state, id);
CREATE INDEX mismatches_state_seen ON mismatches (state, last_seen_ms, id);
CREATE INDEX recovery_history_at ON recovery_history (at_ms, id);
CREATE INDEX recovery_history_actor ON recovery_history (actor, id);

-- Roles that keep nothing else in the control store say here that they are alive (the
-- recovery worker, the console); the others' positions carry their own times.
CREATE TABLE role_heartbeats (
    role   TEXT   NOT NULL,
    name   TEXT   NOT NULL,
    at_ms  BIGINT NOT NULL,
    detail TEXT   NOT NULL,
    PRIMARY KEY (role, name)
);
