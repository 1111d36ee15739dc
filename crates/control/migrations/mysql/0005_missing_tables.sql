-- Rows of replicated tables the target did not have: one record per table and episode, with
-- the count and the source position range, so the table can be re-synced once it exists.
-- `*_key` is `file:position` with the position zero-padded, so keys sort as positions do.
CREATE TABLE missing_tables (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    db          VARCHAR(64)  NOT NULL,
    tbl         VARCHAR(64)  NOT NULL,
    target_db   VARCHAR(64)  NOT NULL,
    target_tbl  VARCHAR(64)  NOT NULL,
    first_file  VARCHAR(255) NOT NULL,
    first_pos   BIGINT       NOT NULL,
    first_key   VARCHAR(300) NOT NULL,
    last_file   VARCHAR(255) NOT NULL,
    last_pos    BIGINT       NOT NULL,
    last_key    VARCHAR(300) NOT NULL,
    row_count   BIGINT       NOT NULL,
    status      VARCHAR(16)  NOT NULL DEFAULT 'open',
    first_seen_ms BIGINT     NOT NULL,
    last_seen_ms  BIGINT     NOT NULL,
    UNIQUE KEY missing_tables_table (db, tbl)
) DEFAULT CHARSET = utf8mb4 COLLATE utf8mb4_bin;
