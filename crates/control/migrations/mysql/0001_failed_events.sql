-- Rows concord could not apply: kept with the whole event so an operator can see and replay them.
CREATE TABLE failed_events (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    source_file VARCHAR(255) NOT NULL,
    source_pos  BIGINT       NOT NULL,
    row_index   INT          NOT NULL,
    db          VARCHAR(64)  NOT NULL,
    tbl         VARCHAR(64)  NOT NULL,
    op          VARCHAR(16)  NOT NULL,
    reason      VARCHAR(64)  NOT NULL,
    error       TEXT         NOT NULL,
    event       LONGTEXT     NOT NULL,
    status      VARCHAR(16)  NOT NULL DEFAULT 'open',
    occurrences INT          NOT NULL DEFAULT 1,
    first_seen_ms BIGINT     NOT NULL,
    last_seen_ms  BIGINT     NOT NULL,
    UNIQUE KEY failed_events_origin (source_file(191), source_pos, row_index),
    KEY failed_events_table (db, tbl, status)
) DEFAULT CHARSET = utf8mb4;
