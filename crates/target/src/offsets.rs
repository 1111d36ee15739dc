//! Kafka offsets stored on the target, in the same transaction as the rows they produced.
//!
//! Invariant (fencing): a batch commits only if every partition's stored offset is still
//! the one this replicator started the batch from. A replicator that lost a partition in a
//! rebalance, and still holds a batch of it, finds the offset moved by the new owner and
//! abandons the batch instead of overwriting newer rows with older ones.

use concord_schema_cache::quote_ident;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// One partition's progress within a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionProgress {
    pub topic: String,
    pub partition: i32,
    /// The stored next offset the batch starts from (`None`: nothing stored yet).
    pub expected: Option<i64>,
    /// The next offset to read after this batch.
    pub next: i64,
}

#[derive(Clone, Debug)]
pub struct Offsets {
    schema: String,
    table: String,
    group: String,
}

impl Offsets {
    pub fn new(schema: &str, group: &str) -> Self {
        Self {
            schema: quote_ident(schema),
            table: format!("{}.{}", quote_ident(schema), quote_ident("kafka_offsets")),
            group: group.to_owned(),
        }
    }

    pub async fn ensure(&self, conn: &mut Conn) -> Result<(), mysql_async::Error> {
        conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {}", self.schema))
            .await?;
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {} (\
               consumer_group VARCHAR(191) NOT NULL, \
               topic VARCHAR(249) NOT NULL, \
               part INT NOT NULL, \
               next_offset BIGINT NOT NULL, \
               updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
               PRIMARY KEY (consumer_group, topic, part) \
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            self.table
        ))
        .await
    }

    /// The stored next offset of one partition.
    pub async fn load(
        &self,
        conn: &mut Conn,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, mysql_async::Error> {
        conn.exec_first(
            format!(
                "SELECT next_offset FROM {} WHERE consumer_group = ? AND topic = ? AND part = ?",
                self.table
            ),
            (&self.group, topic, partition),
        )
        .await
    }

    /// Inside the batch's transaction: locks each partition's row, checks it still holds
    /// `expected`, and writes `next`. `Ok(false)`: fenced, the caller must roll back.
    pub async fn claim_and_save(
        &self,
        conn: &mut Conn,
        parts: &[PartitionProgress],
    ) -> Result<bool, mysql_async::Error> {
        for p in parts {
            let stored: Option<i64> = conn
                .exec_first(
                    format!(
                        "SELECT next_offset FROM {} WHERE consumer_group = ? AND topic = ? AND part = ? FOR UPDATE",
                        self.table
                    ),
                    (&self.group, &p.topic, p.partition),
                )
                .await?;
            if stored != p.expected {
                tracing::warn!(topic = %p.topic, partition = p.partition, ?stored, expected = ?p.expected,
                    "partition moved on without this replicator (rebalance); batch abandoned");
                return Ok(false);
            }
            conn.exec_drop(
                format!(
                    "INSERT INTO {} (consumer_group, topic, part, next_offset, updated_at) VALUES (?, ?, ?, ?, NOW(6)) \
                     ON DUPLICATE KEY UPDATE next_offset = VALUES(next_offset), updated_at = VALUES(updated_at)",
                    self.table
                ),
                (&self.group, &p.topic, p.partition, p.next),
            )
            .await?;
        }
        Ok(true)
    }
}
