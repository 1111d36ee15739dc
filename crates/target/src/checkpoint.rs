//! The replicator's position, stored on the target.
//!
//! Invariant: the position is written in the same target transaction as the rows it
//! covers, so after a crash the target's rows and its checkpoint always agree — nothing is
//! lost and nothing is applied twice. Beside it, the resume point (when an XA transaction
//! prepared before the position is still pending, reading starts at its prepare).

use concord_binlog::Resume;
use concord_change::Position;
use concord_schema_cache::quote_ident;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

#[derive(Clone, Debug)]
pub struct Checkpoints {
    schema_name: String,
    schema: String,
    table: String,
    name: String,
}

impl Checkpoints {
    pub fn new(schema: &str, name: &str) -> Self {
        Self {
            schema_name: schema.to_owned(),
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
               updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
               resume_file VARCHAR(255) NULL, \
               resume_pos BIGINT UNSIGNED NULL \
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            self.table
        ))
        .await?;
        // Tables made by earlier versions lack the resume point.
        let has_resume: Option<String> = conn
            .exec_first(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
                 AND TABLE_NAME = 'checkpoints' AND COLUMN_NAME = 'resume_file'",
                (&self.schema_name,),
            )
            .await?;
        if has_resume.is_none() {
            conn.query_drop(format!(
                "ALTER TABLE {} ADD COLUMN resume_file VARCHAR(255) NULL, \
                 ADD COLUMN resume_pos BIGINT UNSIGNED NULL",
                self.table
            ))
            .await?;
        }
        Ok(())
    }

    /// Where the replicator resumes: its position and, while an XA transaction is pending,
    /// the earlier point reading starts from.
    pub async fn resume(&self, conn: &mut Conn) -> Result<Option<Resume>, mysql_async::Error> {
        let row: Option<(String, u64, Option<String>, Option<u64>)> = conn
            .exec_first(
                format!(
                    "SELECT binlog_file, binlog_pos, resume_file, resume_pos FROM {} \
                     WHERE replicator = ?",
                    self.table
                ),
                (&self.name,),
            )
            .await?;
        Ok(row.map(|(file, pos, rfile, rpos)| {
            let from = rfile.zip(rpos).map(|(f, p)| Position::new(f, p));
            Resume::saved(Position::new(file, pos), from)
        }))
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

    /// Writes `position` (and the resume point, if reading must start earlier) on `conn`,
    /// which must be inside the batch's transaction.
    pub async fn save(
        &self,
        conn: &mut Conn,
        position: &Position,
        resume_from: Option<&Position>,
        source_ts: u32,
    ) -> Result<(), mysql_async::Error> {
        let resume_from = resume_from.filter(|r| *r < position);
        conn.exec_drop(
            format!(
                "INSERT INTO {} (replicator, binlog_file, binlog_pos, source_ts, updated_at, \
                 resume_file, resume_pos) VALUES (?, ?, ?, ?, NOW(6), ?, ?) ON DUPLICATE KEY \
                 UPDATE binlog_file = VALUES(binlog_file), binlog_pos = VALUES(binlog_pos), \
                 source_ts = VALUES(source_ts), updated_at = VALUES(updated_at), \
                 resume_file = VALUES(resume_file), resume_pos = VALUES(resume_pos)",
                self.table
            ),
            (
                &self.name,
                &*position.file,
                position.pos,
                source_ts,
                resume_from.map(|r| r.file.to_string()),
                resume_from.map(|r| r.pos),
            ),
        )
        .await
    }
}
