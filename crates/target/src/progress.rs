//! How far the replicator has got, as the target records it: "has the replicator applied
//! position P". The verifier, the checksum and recovery look at a row only once the
//! replicator has applied the change in question, so a lagging replicator is never a
//! mismatch — and is never repaired over.
//!
//! Invariant: [`Replica::reached`] answers from what is committed on the target (the
//! replicator's checkpoint or stored offsets), never from what the replicator may have in
//! flight.

use crate::checkpoint::Checkpoints;
use crate::offsets::Offsets;
use concord_change::Position;
use concord_config::{Config, TransportKind};
use concord_control::ControlStore;
use mysql_async::Pool;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::sync::Arc;
use std::time::Duration;

/// A point in the replicator's input that it must have applied.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    /// Direct mode: the end of a source transaction.
    Binlog(Position),
    /// Kafka mode: a message (topic, partition, offset).
    Offset {
        topic: String,
        partition: i32,
        offset: i64,
    },
}

/// Which stream a row's changes travel in: one binlog, or (kafka mode) the partition its
/// key hashes to — every change of one row is on that partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Binlog,
    Partition {
        topic: String,
        partition: i32,
    },
    /// Every partition of a topic: what a whole table's rows travel in (kafka mode) when
    /// the rows are not known one by one (the checksum).
    Topic(String),
}

pub enum Replica {
    Direct {
        target: Pool,
        checkpoints: Checkpoints,
    },
    Kafka {
        target: Pool,
        offsets: Offsets,
        control: ControlStore,
        /// The capture's name in the control store (its saved position).
        capture: String,
        /// For partition high watermarks.
        client: Arc<BaseConsumer>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("reading the replicator's progress on the target: {0}")]
    Target(#[from] mysql_async::Error),
    #[error("reading the capture's position: {0}")]
    Control(#[from] concord_control::ControlError),
    #[error("kafka: reading {what} of topic {topic}")]
    Kafka {
        what: &'static str,
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("kafka: topic {0} has no partitions")]
    NoPartitions(String),
    /// The blocking task that asked the broker ended without an answer (the runtime is
    /// shutting down).
    #[error("kafka: the broker query did not finish")]
    Interrupted(#[source] tokio::task::JoinError),
    /// The config lacks what this mode needs.
    #[error("{0}")]
    NotConfigured(&'static str),
    #[error("kafka: creating the offsets client")]
    Client(#[source] rdkafka::error::KafkaError),
}

impl ProgressError {
    /// Whether asking again may answer: a server or the broker unreachable for now, not a
    /// config that lacks what the mode needs.
    pub fn is_transient(&self) -> bool {
        match self {
            ProgressError::Target(_)
            | ProgressError::Kafka { .. }
            | ProgressError::NoPartitions(_)
            | ProgressError::Interrupted(_) => true,
            ProgressError::Control(e) => e.is_transient(),
            ProgressError::NotConfigured(_) | ProgressError::Client(_) => false,
        }
    }
}

impl Replica {
    /// How far the configured replicator has got: its checkpoint (direct mode) or the
    /// offsets its group stored on the target (kafka mode, with the capture's saved
    /// position in `control` and the topics' high watermarks from the broker).
    pub fn for_config(
        config: &Config,
        target: Pool,
        control: ControlStore,
    ) -> Result<Replica, ProgressError> {
        Ok(match config.transport.kind {
            TransportKind::Direct => Replica::Direct {
                target,
                checkpoints: Checkpoints::new(
                    &config.target.checkpoint_schema,
                    &config.replicator.name,
                ),
            },
            TransportKind::Kafka => {
                let kafka = config.kafka.as_ref().ok_or(ProgressError::NotConfigured(
                    "kafka mode needs a [kafka] section",
                ))?;
                let mut client = ClientConfig::new();
                client.set("bootstrap.servers", &kafka.brokers);
                for (k, v) in &kafka.properties {
                    client.set(k, v);
                }
                let client: BaseConsumer = client.create().map_err(ProgressError::Client)?;
                Replica::Kafka {
                    target,
                    offsets: Offsets::new(&config.target.checkpoint_schema, &kafka.group),
                    control,
                    capture: kafka.capture_position_name(),
                    client: Arc::new(client),
                }
            }
        })
    }
}

impl Replica {
    /// Whether the replicator has applied `mark`.
    pub async fn reached(&self, mark: &Mark) -> Result<bool, ProgressError> {
        match (self, mark) {
            (
                Replica::Direct {
                    target,
                    checkpoints,
                },
                Mark::Binlog(p),
            ) => {
                let mut conn = target.get_conn().await?;
                Ok(checkpoints.load(&mut conn).await?.is_some_and(|c| c >= *p))
            }
            (
                Replica::Kafka {
                    target, offsets, ..
                },
                Mark::Offset {
                    topic,
                    partition,
                    offset,
                },
            ) => {
                let mut conn = target.get_conn().await?;
                let stored = offsets.load(&mut conn, topic, *partition).await?;
                Ok(stored.is_some_and(|next| next > *offset))
            }
            // A mark of the other mode can never be reached by this replicator.
            _ => Ok(false),
        }
    }

    /// The mark that covers every change of `stream` up to source position `p` — `None`
    /// while that cannot be told yet (kafka mode: the capture has not published up to `p`).
    pub async fn mark_for(
        &self,
        p: &Position,
        stream: &Stream,
    ) -> Result<Option<Mark>, ProgressError> {
        match (self, stream) {
            (Replica::Direct { .. }, _) => Ok(Some(Mark::Binlog(p.clone()))),
            (
                Replica::Kafka {
                    control,
                    capture,
                    client,
                    ..
                },
                Stream::Partition { topic, partition },
            ) => {
                // Everything the capture published up to `p` is below the high watermark
                // read after the capture's saved position passed `p`.
                let published = control.capture_position(capture).await?;
                if published.is_none_or(|c| c.position < *p) {
                    return Ok(None);
                }
                let client = client.clone();
                let (topic, partition) = (topic.clone(), *partition);
                let high = tokio::task::spawn_blocking(move || {
                    match client.fetch_watermarks(&topic, partition, Duration::from_secs(5)) {
                        Ok((_, high)) => Ok((topic, high)),
                        Err(source) => Err(ProgressError::Kafka {
                            what: "a high watermark",
                            topic,
                            source,
                        }),
                    }
                })
                .await
                .map_err(ProgressError::Interrupted)??;
                Ok(Some(Mark::Offset {
                    topic: high.0,
                    partition,
                    offset: high.1 - 1,
                }))
            }
            (Replica::Kafka { .. }, Stream::Binlog | Stream::Topic(_)) => Ok(None),
        }
    }

    /// The streams `stream` stands for: a topic's partitions, or itself.
    async fn expand(&self, stream: &Stream) -> Result<Vec<Stream>, ProgressError> {
        Ok(match (self, stream) {
            (Replica::Kafka { client, .. }, Stream::Topic(topic)) => {
                partitions(client.clone(), topic.clone())
                    .await?
                    .into_iter()
                    .map(|partition| Stream::Partition {
                        topic: topic.clone(),
                        partition,
                    })
                    .collect()
            }
            (Replica::Direct { .. }, _) => vec![Stream::Binlog],
            _ => vec![stream.clone()],
        })
    }

    /// Whether the replicator has applied every change of `stream` up to source position
    /// `p` now (without waiting).
    pub async fn has_applied(&self, p: &Position, stream: &Stream) -> Result<bool, ProgressError> {
        for s in &self.expand(stream).await? {
            match self.mark_for(p, s).await? {
                Some(Mark::Offset { offset, .. }) if offset < 0 => {}
                Some(mark) if self.reached(&mark).await? => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Waits until the replicator has applied every change of `stream` up to source
    /// position `p` (for [`Stream::Topic`], of each of the topic's partitions).
    pub async fn wait_applied(
        &self,
        p: &Position,
        stream: &Stream,
        every: Duration,
    ) -> Result<(), ProgressError> {
        for s in &self.expand(stream).await? {
            let mark = loop {
                if let Some(m) = self.mark_for(p, s).await? {
                    break m;
                }
                tokio::time::sleep(every).await;
            };
            self.wait_for(&mark, every).await?;
        }
        Ok(())
    }

    /// Waits until the replicator has applied `mark`, checking every `every`. Waiting has
    /// no limit: a replicator that is behind (or down) is not a mismatch.
    pub async fn wait_for(&self, mark: &Mark, every: Duration) -> Result<(), ProgressError> {
        let mut logged = std::time::Instant::now();
        loop {
            if let Mark::Offset { offset, .. } = mark {
                if *offset < 0 {
                    return Ok(());
                }
            }
            if self.reached(mark).await? {
                return Ok(());
            }
            if logged.elapsed() > Duration::from_secs(30) {
                tracing::info!(
                    ?mark,
                    "waiting for the replicator to apply this before verifying"
                );
                logged = std::time::Instant::now();
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// The partition ids of `topic`, from the broker's metadata.
async fn partitions(client: Arc<BaseConsumer>, topic: String) -> Result<Vec<i32>, ProgressError> {
    tokio::task::spawn_blocking(move || {
        let metadata = client
            .fetch_metadata(Some(&topic), Duration::from_secs(5))
            .map_err(|source| ProgressError::Kafka {
                what: "the metadata",
                topic: topic.clone(),
                source,
            })?;
        let ids: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if ids.is_empty() {
            return Err(ProgressError::NoPartitions(topic));
        }
        Ok(ids)
    })
    .await
    .map_err(ProgressError::Interrupted)?
}
