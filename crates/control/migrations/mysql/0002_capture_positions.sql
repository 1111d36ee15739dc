-- Where each capture process may resume: the end of the last source transaction all of
-- whose messages the broker acknowledged.
CREATE TABLE capture_positions (
    name        VARCHAR(191) NOT NULL PRIMARY KEY,
    binlog_file VARCHAR(255) NOT NULL,
    binlog_pos  BIGINT       NOT NULL,
    updated_ms  BIGINT       NOT NULL
) DEFAULT CHARSET = utf8mb4;
