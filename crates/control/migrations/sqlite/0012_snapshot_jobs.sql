-- Snapshot jobs (docs/SNAPSHOT.md): one table's rows — all of them, a key range, or listed
-- keys — copied by the stream owner (`stream`: 'replicator:<name>' or 'capture:<name>') in
-- key-ordered chunks. `after_key` (JSON of key values) is the key up to which every chunk
-- is written: a killed run resumes after it. State: queued, running, done, failed,
-- cancelled; 'streamed' marks a table a deployment streamed before it knew snapshots.
CREATE TABLE snapshot_jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    stream        TEXT    NOT NULL,
    db            TEXT    NOT NULL,
    tbl           TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    pk_from       TEXT,
    pk_to         TEXT,
    keys_json     TEXT,
    state         TEXT    NOT NULL,
    after_key     TEXT,
    rows_copied   BIGINT  NOT NULL DEFAULT 0,
    rows_deleted  BIGINT  NOT NULL DEFAULT 0,
    rows_estimate BIGINT  NOT NULL DEFAULT 0,
    chunks        BIGINT  NOT NULL DEFAULT 0,
    actor         TEXT    NOT NULL,
    error         TEXT,
    created_ms    BIGINT  NOT NULL,
    updated_ms    BIGINT  NOT NULL,
    finished_ms   BIGINT
);
CREATE INDEX snapshot_jobs_stream ON snapshot_jobs (stream, state, id);
CREATE INDEX snapshot_jobs_table ON snapshot_jobs (db, tbl, kind);
