//! The consume loop's side of the TRUNCATE barrier (see [`crate::barrier`]): which
//! partitions wait at a marker, and moving them past it once the barrier allows.

use super::{GroupContext, PartitionKey, PartitionState};
use crate::applier::{Applier, Outcome, Progress};
use crate::barrier::{Barriers, Copy};
use crate::error::ReplicatorError;
use concord_change::envelope::Truncate;
use concord_change::{Ddl, Position, Transaction};
use concord_target::offsets::{Offsets, PartitionProgress};
use mysql_async::Pool;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A partition stopped at its copy of a TRUNCATE marker.
pub(super) struct Marker {
    pub offset: i64,
    pub truncate: Truncate,
    /// Its arrival is recorded on the target (after the batch before it committed).
    pub arrived: bool,
    since: Instant,
    warned: Instant,
}

impl Marker {
    fn copy<'a>(&self, topic: &'a str) -> Copy<'a> {
        Copy {
            topic,
            event: self.truncate.event(),
            attempt: self.truncate.attempt,
        }
    }

    pub fn new(offset: i64, truncate: Truncate) -> Self {
        Self {
            offset,
            truncate,
            arrived: false,
            since: Instant::now(),
            warned: Instant::now(),
        }
    }
}

/// What moving partitions past their markers needs.
pub(super) struct Barrier<'a> {
    pub pool: &'a Pool,
    pub barriers: &'a Barriers,
    pub offsets: &'a Offsets,
    pub consumer: &'a StreamConsumer<GroupContext>,
}

/// The partition `key`, for pause and resume.
pub(super) fn one(key: &PartitionKey) -> TopicPartitionList {
    list(key, None)
}

fn list(key: &PartitionKey, offset: Option<i64>) -> TopicPartitionList {
    let mut l = TopicPartitionList::new();
    match offset {
        Some(o) => {
            let _ = l.add_partition_offset(&key.0, key.1, Offset::Offset(o));
        }
        None => {
            l.add_partition(&key.0, key.1);
        }
    }
    l
}

impl Barrier<'_> {
    /// After the batch that stopped a partition at its marker committed: its arrival is
    /// recorded and the partition paused until the barrier lets it pass.
    pub async fn arrive(
        &self,
        key: &PartitionKey,
        marker: &mut Marker,
    ) -> Result<(), ReplicatorError> {
        let mut conn = self.conn().await?;
        self.barriers
            .arrive(&mut conn, &marker.copy(&key.0), key.1, marker.offset)
            .await
            .map_err(|source| ReplicatorError::Target {
                what: "recording a partition's arrival at a TRUNCATE",
                source,
            })?;
        marker.arrived = true;
        let _ = self.consumer.pause(&list(key, None));
        tracing::info!(table = %marker.truncate.table, topic = %key.0, partition = key.1,
            offset = marker.offset, partitions = marker.truncate.partitions,
            "partition reached a source TRUNCATE; waiting for the topic's other partitions");
        Ok(())
    }

    /// Moves every waiting partition the barrier allows past its marker: partition 0 once
    /// every copy has arrived (emptying the table as it does), the others once partition
    /// 0 has.
    pub async fn pass(
        &self,
        applier: &mut Applier,
        waiting: &mut HashMap<PartitionKey, Marker>,
        parts: &mut HashMap<PartitionKey, PartitionState>,
    ) -> Result<(), ReplicatorError> {
        // Partition 0 first: the others pass after it.
        let mut keys: Vec<PartitionKey> = waiting
            .iter()
            .filter(|(_, m)| m.arrived)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_by_key(|k| k.1);
        for key in keys {
            let marker = waiting.get_mut(&key).expect("listed above");
            let Some(empty) = self.may_pass(&key, marker).await? else {
                continue;
            };
            let Some(state) = parts.get_mut(&key) else {
                waiting.remove(&key);
                continue;
            };
            let progress = [PartitionProgress {
                topic: key.0.clone(),
                partition: key.1,
                expected: state.stored,
                next: marker.offset + 1,
            }];
            // Partition 0 empties the table in the transaction that moves it on.
            let batch = if empty {
                vec![emptying(&marker.truncate)]
            } else {
                Vec::new()
            };
            let outcome = applier
                .apply_with_retry(&batch, Progress::Kafka(self.offsets, &progress))
                .await?;
            let marker = waiting.remove(&key).expect("listed above");
            match outcome {
                Outcome::Committed => {
                    state.stored = Some(marker.offset + 1);
                    state.next = marker.offset + 1;
                    let _ = self.consumer.resume(&list(&key, None));
                    let _ = self.consumer.seek_partitions(
                        list(&key, Some(marker.offset + 1)),
                        Duration::from_secs(5),
                    );
                    tracing::info!(table = %marker.truncate.table, topic = %key.0,
                        partition = key.1, emptied = empty,
                        "partition passed a source TRUNCATE");
                }
                Outcome::Fenced => {
                    parts.remove(&key);
                    let _ = self.consumer.resume(&list(&key, None));
                }
            }
        }
        Ok(())
    }

    /// Whether the partition may pass its marker now: `Some(true)` emptying the table
    /// (partition 0, every copy arrived), `Some(false)` without (partition 0 has emptied
    /// it; or the attempt can never complete, see [`crate::barrier`]), `None`: wait.
    async fn may_pass(
        &self,
        key: &PartitionKey,
        marker: &mut Marker,
    ) -> Result<Option<bool>, ReplicatorError> {
        let mut conn = self.conn().await?;
        let copy = marker.copy(&key.0);
        let t = &marker.truncate;
        let read = |source| ReplicatorError::Target {
            what: "reading a TRUNCATE barrier",
            source,
        };
        let arrived = self
            .barriers
            .arrived(&mut conn, &copy, t.partitions)
            .await
            .map_err(read)?;
        let complete = arrived >= t.partitions;
        if key.1 == 0 && complete {
            return Ok(Some(true));
        }
        if key.1 != 0 && complete {
            let first = self
                .barriers
                .first_copy(&mut conn, &copy)
                .await
                .map_err(read)?;
            let stored = self
                .offsets
                .load(&mut conn, &key.0, 0)
                .await
                .map_err(read)?;
            if let (Some(first), Some(stored)) = (first, stored) {
                if stored > first {
                    return Ok(Some(false));
                }
            }
        }
        if !complete
            && self
                .barriers
                .later_attempt(&mut conn, &copy)
                .await
                .map_err(read)?
        {
            tracing::info!(table = %t.table, topic = %key.0, partition = key.1,
                "passing the copy of an interrupted publishing of a TRUNCATE; the capture published it again");
            return Ok(Some(false));
        }
        if marker.warned.elapsed() > Duration::from_secs(60) {
            marker.warned = Instant::now();
            tracing::warn!(table = %t.table, topic = %key.0, partition = key.1, arrived,
                partitions = t.partitions, waiting_s = marker.since.elapsed().as_secs(),
                "still waiting at a source TRUNCATE for the topic's other partitions (is every partition's replicator running?)");
        }
        Ok(None)
    }

    async fn conn(&self) -> Result<mysql_async::Conn, ReplicatorError> {
        self.pool
            .get_conn()
            .await
            .map_err(|source| ReplicatorError::Target {
                what: "connecting for a TRUNCATE barrier",
                source,
            })
    }
}

/// The batch that empties the marker's table on the target (through `tables.rename`, with
/// `replicator.truncate` deciding, as in direct mode).
fn emptying(t: &Truncate) -> Transaction {
    Transaction {
        end: Position::new(t.source.txn.end_file.clone(), t.source.txn.end_pos),
        commit_ts: (t.source.ts_ms / 1000) as u32,
        gtid: t.source.gtid.clone(),
        ddl: Some(Ddl {
            schema: t.table.db.clone(),
            statement: format!("TRUNCATE TABLE `{}`.`{}`", t.table.db, t.table.table),
            tables: vec![t.table.clone()],
        }),
        truncated: vec![t.table.clone()],
        ..Transaction::default()
    }
}
