//! The replicator's position, stored on the target.
//!
//! Invariant: the position is written in the same target transaction as the rows it
//! covers, so after a crash the target's rows and its checkpoint always agree — nothing is
//! lost and nothing is applied twice.

use concord_change::Position;
use concord_schema_cache::quote_ident;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

#[derive(Clone, Debug)]
pub struct Checkpoints {
    schema: String,
    table: String,
    name: String,
}

impl Checkpoints {
    pub fn new(schema: &str, name: &str) -> Self {
        Self {
            schema: quote_ident(schema),
            table: format!("{}.{}", quote_ident(schema), quote_ident("checkpoints")),
            name: name.to_owned(),
        }
    }

    /// Creates the checkpoint schema and table when they do not exist yet.
    pub async fn ensure(&self, conn: &mut Conn) -> Result<(), mysql_async::Error> {
        conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {}", self.schema))
            .await?;
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {} (\
               replicator VARCHAR(191) NOT NULL PRIMARY KEY, \
               binlog_file VARCHAR(255) NOT NULL, \
               binlog_pos BIGINT UNSIGNED NOT NULL, \
               source_ts BIGINT NOT NULL, \
               updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) \
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            self.table
        ))
        .await
    }

    pub async fn load(&self, conn: &mut Conn) -> Result<Option<Position>, mysql_async::Error> {
        let row: Option<(String, u64)> = conn
            .exec_first(
                format!(
                    "SELECT binlog_file, binlog_pos FROM {} WHERE replicator = ?",
                    self.table
                ),
                (&self.name,),
            )
            .await?;
        Ok(row.map(|(file, pos)| Position::new(file, pos)))
    }

    /// Writes `position` on `conn`, which must be inside the batch's transaction.
    pub async fn save(
        &self,
        conn: &mut Conn,
        position: &Position,
        source_ts: u32,
    ) -> Result<(), mysql_async::Error> {
        conn.exec_drop(
            format!(
                "INSERT INTO {} (replicator, binlog_file, binlog_pos, source_ts, updated_at) \
                 VALUES (?, ?, ?, ?, NOW(6)) ON DUPLICATE KEY UPDATE binlog_file = VALUES(binlog_file), \
                 binlog_pos = VALUES(binlog_pos), source_ts = VALUES(source_ts), updated_at = VALUES(updated_at)",
                self.table
            ),
            (&self.name, &*position.file, position.pos, source_ts),
        )
        .await
    }
}
