-- Rows concord could not apply: kept with the whole event so an operator can see and replay them.
CREATE TABLE failed_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source_file TEXT    NOT NULL,
    source_pos  BIGINT  NOT NULL,
    row_index   INTEGER NOT NULL,
    db          TEXT    NOT NULL,
    tbl         TEXT    NOT NULL,
    op          TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    error       TEXT    NOT NULL,
    event       TEXT    NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'open',
    occurrences INTEGER NOT NULL DEFAULT 1,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL,
    UNIQUE (source_file, source_pos, row_index)
);
CREATE INDEX failed_events_table ON failed_events (db, tbl, status);
