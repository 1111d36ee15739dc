-- Where each verifier may resume: a binlog position (direct mode, stream 'binlog') or the
-- next offset of each partition of its topic (kafka mode, stream = topic).
CREATE TABLE verifier_positions (
    name        VARCHAR(191) NOT NULL,
    stream      VARCHAR(255) NOT NULL,
    part        INT          NOT NULL,
    binlog_file VARCHAR(255) NOT NULL,
    position    BIGINT       NOT NULL,
    updated_ms  BIGINT       NOT NULL,
    PRIMARY KEY (name, stream(191), part)
) DEFAULT CHARSET = utf8mb4;

-- Rows where the target differs from the source. A row has at most one open record:
-- open_key (a digest of table + key) is set while the record is open and cleared when it
-- is closed, and it is unique, so a row that keeps differing updates its record.
CREATE TABLE mismatches (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    db            VARCHAR(64)  NOT NULL,
    tbl           VARCHAR(64)  NOT NULL,
    pk            TEXT         NOT NULL,
    kind          VARCHAR(16)  NOT NULL,
    columns       LONGTEXT     NOT NULL,
    source_file   VARCHAR(255) NOT NULL,
    source_pos    BIGINT       NOT NULL,
    detected_by   VARCHAR(16)  NOT NULL,
    state         VARCHAR(32)  NOT NULL DEFAULT 'detected',
    occurrences   INT          NOT NULL DEFAULT 1,
    first_seen_ms BIGINT       NOT NULL,
    last_seen_ms  BIGINT       NOT NULL,
    open_key      CHAR(64)     NULL,
    UNIQUE KEY mismatches_open (open_key),
    KEY mismatches_table (db, tbl, state)
) DEFAULT CHARSET = utf8mb4;

-- Progress of `concord checksum` per table, so an interrupted run resumes after its last
-- finished chunk.
CREATE TABLE checksum_runs (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    db             VARCHAR(64)  NOT NULL,
    tbl            VARCHAR(64)  NOT NULL,
    state          VARCHAR(16)  NOT NULL,
    last_key       LONGTEXT     NULL,
    chunks         BIGINT       NOT NULL DEFAULT 0,
    rows_checked   BIGINT       NOT NULL DEFAULT 0,
    chunks_differ  BIGINT       NOT NULL DEFAULT 0,
    mismatches     BIGINT       NOT NULL DEFAULT 0,
    started_ms     BIGINT       NOT NULL,
    updated_ms     BIGINT       NOT NULL,
    KEY checksum_runs_table (db, tbl, state)
) DEFAULT CHARSET = utf8mb4;
