-- Snapshot jobs (docs/SNAPSHOT.md): one table's rows — all of them, a key range, or listed
-- keys — copied by the stream owner (`stream`: 'replicator:<name>' or 'capture:<name>') in
-- key-ordered chunks. `after_key` (JSON of key values) is the key up to which every chunk
-- is written: a killed run resumes after it. State: queued, running, done, failed,
-- cancelled; 'streamed' marks a table a deployment streamed before it knew snapshots.
CREATE TABLE snapshot_jobs (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    stream        VARCHAR(191) NOT NULL,
    db            VARCHAR(64)  NOT NULL,
    tbl           VARCHAR(64)  NOT NULL,
    kind          VARCHAR(16)  NOT NULL,
    pk_from       TEXT         NULL,
    pk_to         TEXT         NULL,
    keys_json     LONGTEXT     NULL,
    state         VARCHAR(16)  NOT NULL,
    after_key     TEXT         NULL,
    rows_copied   BIGINT       NOT NULL DEFAULT 0,
    rows_deleted  BIGINT       NOT NULL DEFAULT 0,
    rows_estimate BIGINT       NOT NULL DEFAULT 0,
    chunks        BIGINT       NOT NULL DEFAULT 0,
    actor         VARCHAR(191) NOT NULL,
    error         TEXT         NULL,
    created_ms    BIGINT       NOT NULL,
    updated_ms    BIGINT       NOT NULL,
    finished_ms   BIGINT       NULL,
    KEY snapshot_jobs_stream (stream, state, id),
    KEY snapshot_jobs_table (db, tbl, kind)
) DEFAULT CHARSET = utf8mb4;
