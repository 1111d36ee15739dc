//! TRUNCATE in kafka mode: the barrier a topic's partitions meet at their copies of a
//! TRUNCATE marker (`docs/FORMAT.md`). A table's rows are spread over the partitions by
//! key, so no single partition's replicator may empty it on its own.
//!
//! Invariant: the target table is emptied once, after every partition has applied what
//! came before its copy of the marker, and before any partition applies what comes after
//! it. Each partition stops at its copy (its stored offset stays *at* the marker) and
//! records its arrival here; partition 0's replicator, once all copies have arrived, empties
//! the table and moves partition 0 past its copy in one target transaction; every other
//! partition moves past its copy only once partition 0's stored offset is past partition
//! 0's copy. All of it is read from the target, so a restart or a rebalance at any point
//! finds the same state and goes on from it.

use concord_schema_cache::quote_ident;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

#[derive(Clone, Debug)]
pub struct Barriers {
    table: String,
    group: String,
}

impl Barriers {
    pub fn new(schema: &str, group: &str) -> Self {
        Self {
            table: format!("{}.{}", quote_ident(schema), quote_ident("kafka_truncates")),
            group: group.to_owned(),
        }
    }

    /// Creates the table (the schema exists: the offsets table's `ensure` made it).
    pub async fn ensure(&self, conn: &mut Conn) -> Result<(), mysql_async::Error> {
        conn.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {} (\
               consumer_group VARCHAR(191) NOT NULL, \
               topic VARCHAR(249) NOT NULL, \
               event VARCHAR(191) NOT NULL, \
               part INT NOT NULL, \
               marker_offset BIGINT NOT NULL, \
               arrived_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
               PRIMARY KEY (consumer_group, topic, event, part) \
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            self.table
        ))
        .await
    }

    /// Records that `partition` has applied everything before its copy of `event`, which
    /// is at `offset`. Recording it again (after a restart) changes nothing.
    pub async fn arrive(
        &self,
        conn: &mut Conn,
        topic: &str,
        event: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), mysql_async::Error> {
        conn.exec_drop(
            format!(
                "INSERT IGNORE INTO {} (consumer_group, topic, event, part, marker_offset) \
                 VALUES (?, ?, ?, ?, ?)",
                self.table
            ),
            (&self.group, topic, event, partition, offset),
        )
        .await
    }

    /// How many of partitions `0..partitions` have arrived at `event`.
    pub async fn arrived(
        &self,
        conn: &mut Conn,
        topic: &str,
        event: &str,
        partitions: u32,
    ) -> Result<u32, mysql_async::Error> {
        let n: Option<u32> = conn
            .exec_first(
                format!(
                    "SELECT COUNT(*) FROM {} WHERE consumer_group = ? AND topic = ? \
                     AND event = ? AND part >= 0 AND part < ?",
                    self.table
                ),
                (&self.group, topic, event, partitions),
            )
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// Where partition 0's copy of `event` is, once partition 0 has arrived.
    pub async fn first_copy(
        &self,
        conn: &mut Conn,
        topic: &str,
        event: &str,
    ) -> Result<Option<i64>, mysql_async::Error> {
        conn.exec_first(
            format!(
                "SELECT marker_offset FROM {} WHERE consumer_group = ? AND topic = ? \
                 AND event = ? AND part = 0",
                self.table
            ),
            (&self.group, topic, event),
        )
        .await
    }
}
