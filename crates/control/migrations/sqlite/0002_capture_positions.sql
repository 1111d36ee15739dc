-- Where each capture process may resume: the end of the last source transaction all of
-- whose messages the broker acknowledged.
CREATE TABLE capture_positions (
    name        TEXT   NOT NULL PRIMARY KEY,
    binlog_file TEXT   NOT NULL,
    binlog_pos  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);
