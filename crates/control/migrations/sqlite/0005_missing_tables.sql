-- Rows of replicated tables the target did not have: one record per table and episode, with
-- the count and the source position range, so the table can be re-synced once it exists.
-- `*_key` is `file:position` with the position zero-padded, so keys sort as positions do.
CREATE TABLE missing_tables (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    db          TEXT    NOT NULL,
    tbl         TEXT    NOT NULL,
    target_db   TEXT    NOT NULL,
    target_tbl  TEXT    NOT NULL,
    first_file  TEXT    NOT NULL,
    first_pos   BIGINT  NOT NULL,
    first_key   TEXT    NOT NULL,
    last_file   TEXT    NOT NULL,
    last_pos    BIGINT  NOT NULL,
    last_key    TEXT    NOT NULL,
    row_count   BIGINT  NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'open',
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL,
    UNIQUE (db, tbl)
);
