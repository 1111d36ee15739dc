-- Where each verifier may resume: a binlog position (direct mode, stream 'binlog') or the
-- next offset of each partition of its topic (kafka mode, stream = topic).
CREATE TABLE verifier_positions (
    name        TEXT    NOT NULL,
    stream      TEXT    NOT NULL,
    part        INTEGER NOT NULL,
    binlog_file TEXT    NOT NULL,
    position    BIGINT  NOT NULL,
    updated_ms  BIGINT  NOT NULL,
    PRIMARY KEY (name, stream, part)
);

-- Rows where the target differs from the source. A row has at most one open record:
-- open_key (a digest of table + key) is set while the record is open and cleared when it
-- is closed, and it is unique, so a row that keeps differing updates its record.
CREATE TABLE mismatches (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    db            TEXT    NOT NULL,
    tbl           TEXT    NOT NULL,
    pk            TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    columns       TEXT    NOT NULL,
    source_file   TEXT    NOT NULL,
    source_pos    BIGINT  NOT NULL,
    detected_by   TEXT    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'detected',
    occurrences   INTEGER NOT NULL DEFAULT 1,
    first_seen_ms BIGINT  NOT NULL,
    last_seen_ms  BIGINT  NOT NULL,
    open_key      TEXT    UNIQUE
);
CREATE INDEX mismatches_table ON mismatches (db, tbl, state);

-- Progress of `concord checksum` per table, so an interrupted run resumes after its last
-- finished chunk.
CREATE TABLE checksum_runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    db             TEXT    NOT NULL,
    tbl            TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    last_key       TEXT,
    chunks         BIGINT  NOT NULL DEFAULT 0,
    rows_checked   BIGINT  NOT NULL DEFAULT 0,
    chunks_differ  BIGINT  NOT NULL DEFAULT 0,
    mismatches     BIGINT  NOT NULL DEFAULT 0,
    started_ms     BIGINT  NOT NULL,
    updated_ms     BIGINT  NOT NULL
);
CREATE INDEX checksum_runs_table ON checksum_runs (db, tbl, state);
