//! Turning source transactions into Kafka messages.

use crate::acks::Pending;
use crate::error::CaptureError;
use concord_change::envelope::{
    message_key, split_key_change, Envelope, SourceInfo, Truncate, TxnInfo,
};
use concord_change::{Op, Position, RowChange, Transaction, Value};
use concord_config::KafkaConfig;
use concord_control::{until_stored, ControlStore, FailedEvent, FailureReason};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Producer settings: idempotent, acknowledged by all in-sync replicas, retried without a
/// deadline — a message is delivered or the capture stops, it is never dropped.
///
/// `linger.ms` is 50, not librdkafka's 5: the idempotent producer keeps one produce request
/// in flight per partition, and while it waits for that request's acknowledgement with
/// messages already past their linger time, its broker thread spins on a zero poll timeout.
/// Measured in docs/BENCHMARKS.md: at 1,000 source transactions/s the capture used 45% of a
/// core with 5 ms and 11% with 50 ms, and the end-to-end lag p99 fell from 322 to 143 ms.
pub fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0")
        .set("linger.ms", "50")
        .set("queue.buffering.max.messages", "200000")
        .set("compression.type", "lz4");
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}

/// Longest pause between attempts to write to the control store.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) struct Publisher {
    producer: FutureProducer,
    kafka: KafkaConfig,
    server_id: u32,
    control: ControlStore,
    /// Permits for messages handed to the producer and not yet acknowledged
    /// (`kafka.max_unacked`). Keeping the producer's queue short matters beyond memory:
    /// messages queued behind a produce request in flight make librdkafka's idempotent
    /// producer spin (see [`producer_config`]).
    unacked: Arc<Semaphore>,
}

impl Publisher {
    pub fn new(
        producer: FutureProducer,
        kafka: KafkaConfig,
        server_id: u32,
        control: ControlStore,
    ) -> Self {
        let unacked = Arc::new(Semaphore::new(kafka.max_unacked));
        Self {
            producer,
            kafka,
            server_id,
            control,
            unacked,
        }
    }

    /// A partition statement that removed rows without row events cannot be carried (the
    /// rows are not known): each table is recorded for an operator's re-sync.
    async fn partition_rows(&self, txn: &Transaction) {
        for (i, table) in txn.partition_rows.iter().enumerate() {
            tracing::warn!(%table, position = %txn.end,
                "source partition statement removed or swapped rows without row events; recorded as a failed event (truncate)");
            let f = FailedEvent::partition_rows(txn, i, table, None);
            until_stored("failed event", MAX_BACKOFF, || {
                self.control.record_failed(&f)
            })
            .await;
        }
    }

    /// Hands every change of `txn` to the producer (which sends in the background) and
    /// returns what must be acknowledged before `txn.end` may be saved. `whole`: `txn` is
    /// a whole transaction or the last part of one, else a fragment — whose end and size
    /// are not known yet, so its messages say `end_file` "", `end_pos` 0 and `total` 0
    /// (docs/FORMAT.md) and nothing is saved after it; `before`: messages of the same
    /// transaction published in its earlier fragments.
    pub async fn publish(
        &self,
        txn: &Transaction,
        before: u32,
        whole: bool,
    ) -> Result<Pending, CaptureError> {
        let undecodable = txn.undecodable.iter().map(FailedEvent::from);
        let statements = txn.statements.iter().map(FailedEvent::from);
        for f in undecodable.chain(statements) {
            until_stored("failed event", MAX_BACKOFF, || {
                self.control.record_failed(&f)
            })
            .await;
        }
        for s in &txn.statements {
            concord_binlog::report_statement(s);
        }
        self.partition_rows(txn).await;
        let mut changes: Vec<RowChange> = Vec::with_capacity(txn.changes.len());
        for c in &txn.changes {
            // Only a partial *after*-image matters: with a whole one (NOBLOB's before-image
            // lacks the blob) the new key's insert is whole.
            let partial_after = c.after.iter().flatten().any(Value::is_absent);
            if c.op == Op::Update && partial_after && c.changes_key() {
                self.partial_key_move(c, &mut changes).await;
            } else if c.op == Op::Insert && c.key().is_none() {
                self.unkeyed_insert(c).await;
            } else {
                changes.extend(split_key_change(c));
            }
        }
        let total = if whole {
            before + changes.len() as u32
        } else {
            0
        };
        let (end_file, end_pos) = if whole {
            (txn.end.file.to_string(), txn.end.pos)
        } else {
            (String::new(), 0)
        };
        // Each TRUNCATE goes to every partition of its table's topic, after the changes.
        let mut markers = Vec::with_capacity(txn.truncated.len());
        for table in &txn.truncated {
            let topic = self.kafka.topic_for(&table.db, &table.table);
            let partitions = self.partitions(&topic).await?;
            markers.push((table, topic, partitions));
        }
        let messages = changes.len() + markers.iter().map(|m| m.2 as usize).sum::<usize>();
        let permit = self.permits(messages).await;
        let mut deliveries = Vec::with_capacity(messages);
        let now_ms = now_ms();
        for (index, change) in changes.iter().enumerate() {
            let source = SourceInfo {
                file: change.position.file.to_string(),
                pos: change.position.pos,
                row: change.row_index,
                gtid: txn.gtid.clone(),
                ts_ms: u64::from(txn.commit_ts) * 1000,
                db: change.table.name.db.clone(),
                table: change.table.name.table.clone(),
                server_id: self.server_id,
                txn: TxnInfo {
                    end_file: end_file.clone(),
                    end_pos,
                    index: before + index as u32,
                    total,
                },
            };
            let payload = Envelope::encode(change, &source, now_ms);
            let key = message_key(change);
            let topic = self.kafka.topic_for(&source.db, &source.table);
            let record = FutureRecord::to(&topic)
                .key(key.as_slice())
                .payload(payload.as_slice());
            let future = self.send(record, &change.position).await?;
            deliveries.push((topic, change.position.clone(), future));
        }
        for (index, (table, topic, partitions)) in markers.into_iter().enumerate() {
            let source = SourceInfo {
                file: txn.end.file.to_string(),
                pos: txn.end.pos,
                row: index as u32,
                gtid: txn.gtid.clone(),
                ts_ms: u64::from(txn.commit_ts) * 1000,
                db: table.db.clone(),
                table: table.table.clone(),
                server_id: self.server_id,
                txn: TxnInfo {
                    end_file: end_file.clone(),
                    end_pos,
                    index: total + index as u32,
                    total,
                },
            };
            // Later publishings of the same TRUNCATE (after a restart) are larger.
            let attempt = now_ms * 1000 + u64::from(rand::random::<u16>() % 1000);
            let payload = Truncate::encode(&source, partitions, attempt, now_ms);
            let key = table.to_string();
            tracing::info!(%table, %topic, partitions, position = %txn.end,
                "source TRUNCATE: publishing a marker to every partition");
            for p in 0..partitions as i32 {
                let record = FutureRecord::to(&topic)
                    .key(key.as_bytes())
                    .payload(payload.as_slice())
                    .partition(p);
                let future = self.send(record, &txn.end).await?;
                deliveries.push((topic.clone(), txn.end.clone(), future));
            }
        }
        Ok(Pending {
            end: whole.then(|| txn.end.clone()),
            resume_from: txn.resume_from.clone(),
            commit_ts: txn.commit_ts,
            deliveries,
            _unacked: permit,
            on_acked: None,
        })
    }
}

impl Publisher {
    /// The share of `kafka.max_unacked` that `messages` messages take (all of it for more
    /// than the limit: such a group goes alone), once it is free.
    pub(crate) async fn permits(&self, messages: usize) -> OwnedSemaphorePermit {
        let wanted = messages.min(self.kafka.max_unacked) as u32;
        self.unacked
            .clone()
            .acquire_many_owned(wanted)
            .await
            .expect("the semaphore is never closed")
    }

    pub(crate) fn server_id(&self) -> u32 {
        self.server_id
    }

    pub(crate) fn topic_for(&self, db: &str, table: &str) -> String {
        self.kafka.topic_for(db, table)
    }

    /// Hands one message to the producer, waiting while its queue is full (the broker is
    /// slow or away) rather than buffer without bound.
    pub(crate) async fn send<'a>(
        &self,
        mut record: FutureRecord<'a, [u8], [u8]>,
        position: &Position,
    ) -> Result<DeliveryFuture, CaptureError> {
        loop {
            match self.producer.send_result(record) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, r)) => {
                    return Err(CaptureError::Delivery {
                        position: position.clone(),
                        topic: r.topic.to_owned(),
                        source: e,
                    })
                }
            }
        }
    }

    /// How many partitions `topic` has, from the broker (a blocking call, off the runtime).
    async fn partitions(&self, topic: &str) -> Result<u32, CaptureError> {
        let producer = self.producer.clone();
        let name = topic.to_owned();
        let metadata = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&name), Duration::from_secs(10))
        })
        .await
        .map_err(|source| CaptureError::Crashed {
            task: "topic metadata",
            source,
        })?;
        let metadata = metadata.map_err(|source| CaptureError::Metadata {
            topic: topic.to_owned(),
            source,
        })?;
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len() as u32);
        if count == 0 {
            return Err(CaptureError::Metadata {
                topic: topic.to_owned(),
                source: KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
            });
        }
        Ok(count)
    }

    /// A minimal insert that left a key column to its default: the message key cannot be
    /// told (it decides the partition, and so the order against the row's later changes),
    /// so the row is recorded instead of published out of order.
    async fn unkeyed_insert(&self, c: &RowChange) {
        tracing::warn!(table = %c.table.name, position = %c.position, "a minimal insert left a primary-key column to its default, so its message key is unknown; recorded as a failed event (partial_image)");
        let error = format!(
            "{}: a partial row image (binlog_row_image MINIMAL) of an insert lacks primary-key \
             columns the statement left to their defaults; in kafka mode its partition cannot \
             be told, so it was not published: re-sync the row",
            c.table.name
        );
        self.record_partial(c, error).await;
    }

    async fn record_partial(&self, c: &RowChange, error: String) {
        let f = FailedEvent {
            position: c.position.clone(),
            row_index: c.row_index,
            table: c.table.name.clone(),
            op: c.op.as_str().into(),
            reason: FailureReason::PartialImage,
            error,
            event: serde_json::to_string(c).expect("changes serialize"),
        };
        until_stored("failed event", MAX_BACKOFF, || {
            self.control.record_failed(&f)
        })
        .await;
    }

    /// A partial row image that moved its row to a new key: the old key's delete is
    /// published; the new row cannot be (its other columns are not in the image), so it is
    /// recorded for an operator's re-sync.
    async fn partial_key_move(&self, c: &RowChange, out: &mut Vec<RowChange>) {
        tracing::warn!(table = %c.table.name, position = %c.position, "a partial row image (binlog_row_image MINIMAL or NOBLOB) changed a primary key; the row at its new key is recorded as a failed event (partial_image)");
        let error = format!(
            "{}: a partial row image (binlog_row_image MINIMAL or NOBLOB) moved a row to a new \
             primary key; in kafka mode the row at its new key needs a whole image, so it was \
             not written: re-sync the row",
            c.table.name
        );
        self.record_partial(c, error).await;
        out.push(RowChange {
            op: Op::Delete,
            after: None,
            ..c.clone()
        });
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
