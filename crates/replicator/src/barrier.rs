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
//!
//! A capture that restarts publishes the TRUNCATE again (with the changes before it) under
//! a later `attempt`; each attempt is a barrier of its own, so the table is emptied again
//! after the changes published again. An attempt interrupted before every partition got
//! its copy can never complete. A partition can arrive at a later attempt's copy only past
//! every earlier copy on it, and it cannot pass a copy of a complete attempt before that
//! attempt's barrier opens; so once a later attempt's copy has arrived anywhere while this
//! attempt is incomplete, this one never completes, and its copies are passed without
//! emptying the table — the later attempt follows on every partition. (Attempts are
//! ordered by the capture's clock, see `docs/FORMAT.md`.)

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
            table: format!(
                "{}.{}",
                quote_ident(schema),
                quote_ident("kafka_truncate_barriers")
            ),
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
               attempt BIGINT UNSIGNED NOT NULL, \
               part INT NOT NULL, \
               marker_offset BIGINT NOT NULL, \
               arrived_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
               PRIMARY KEY (consumer_group, topic, event, attempt, part) \
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
        copy: &Copy<'_>,
        partition: i32,
        offset: i64,
    ) -> Result<(), mysql_async::Error> {
        conn.exec_drop(
            format!(
                "INSERT IGNORE INTO {} (consumer_group, topic, event, attempt, part, \
                 marker_offset) VALUES (?, ?, ?, ?, ?, ?)",
                self.table
            ),
            (
                &self.group,
                copy.topic,
                &copy.event,
                copy.attempt,
                partition,
                offset,
            ),
        )
        .await
    }

    /// How many of partitions `0..partitions` have arrived at their copy.
    pub async fn arrived(
        &self,
        conn: &mut Conn,
        copy: &Copy<'_>,
        partitions: u32,
    ) -> Result<u32, mysql_async::Error> {
        let n: Option<u32> = conn
            .exec_first(
                format!(
                    "SELECT COUNT(*) FROM {} WHERE consumer_group = ? AND topic = ? \
                     AND event = ? AND attempt = ? AND part >= 0 AND part < ?",
                    self.table
                ),
                (
                    &self.group,
                    copy.topic,
                    &copy.event,
                    copy.attempt,
                    partitions,
                ),
            )
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// Where partition 0's copy is, once partition 0 has arrived.
    pub async fn first_copy(
        &self,
        conn: &mut Conn,
        copy: &Copy<'_>,
    ) -> Result<Option<i64>, mysql_async::Error> {
        conn.exec_first(
            format!(
                "SELECT marker_offset FROM {} WHERE consumer_group = ? AND topic = ? \
                 AND event = ? AND attempt = ? AND part = 0",
                self.table
            ),
            (&self.group, copy.topic, &copy.event, copy.attempt),
        )
        .await
    }

    /// Whether a copy of a later attempt at the same TRUNCATE has arrived anywhere.
    pub async fn later_attempt(
        &self,
        conn: &mut Conn,
        copy: &Copy<'_>,
    ) -> Result<bool, mysql_async::Error> {
        let n: Option<u32> = conn
            .exec_first(
                format!(
                    "SELECT COUNT(*) FROM {} WHERE consumer_group = ? AND topic = ? \
                     AND event = ? AND attempt > ?",
                    self.table
                ),
                (&self.group, copy.topic, &copy.event, copy.attempt),
            )
            .await?;
        Ok(n.unwrap_or(0) > 0)
    }
}

/// One attempt at a TRUNCATE on one topic: the copies that meet at one barrier.
pub struct Copy<'a> {
    pub topic: &'a str,
    pub event: String,
    pub attempt: u64,
}
