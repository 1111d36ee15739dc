//! Kafka mode: replicators in one consumer group share the change topic's partitions and
//! apply them to the target.
//!
//! Invariants:
//! - a partition's offset is stored on the target in the same transaction as the rows it
//!   produced, and a batch commits only if that stored offset is still the one it started
//!   from (fencing, see [`crate::offsets`]) — so a replay applies nothing twice and a
//!   replicator that lost a partition cannot overwrite its new owner's work;
//! - messages below the stored offset are skipped; a broker position ahead of it is sought
//!   back, so broker-side commits are only a convenience;
//! - a message that is not a usable change envelope goes to the dead-letter topic *and*
//!   the control store before the offset moves past it;
//! - a TRUNCATE marker stops its partition until every partition of the topic has reached
//!   its copy ([`crate::barrier`], [`truncate`]).

mod truncate;

use crate::applier::{Applier, Outcome, Progress};
use crate::barrier::Barriers;
use crate::error::ReplicatorError;
use crate::gap::{GapVerdict, GapWatch};
use crate::metrics;
use concord_change::envelope::Message as Change;
use concord_change::{Position, TableName, Transaction};
use concord_config::{Config, KafkaConfig};
use concord_control::{ControlStore, FailedEvent, FailureReason};
use concord_schema_cache::SchemaCache;
use concord_target::offsets::{Offsets, PartitionProgress};
use concord_target::Checkpoints;
use mysql_async::{Conn, OptsBuilder, Pool};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type PartitionKey = (String, i32);

/// Partitions taken away in a rebalance, for the consume loop to forget.
struct GroupContext {
    revoked: Mutex<Vec<PartitionKey>>,
    /// The role's span: librdkafka calls the rebalance callbacks from its own thread, where
    /// the role's span is not current, and their log lines must still name the role.
    span: tracing::Span,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let _role = self.span.enter();
        if let Rebalance::Revoke(list) = rebalance {
            let mut revoked = self.revoked.lock().expect("revoked lock");
            for e in list.elements() {
                revoked.push((e.topic().to_owned(), e.partition()));
            }
            tracing::info!(partitions = list.count(), "partitions revoked");
        }
    }

    fn post_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        let _role = self.span.enter();
        if let Rebalance::Assign(list) = rebalance {
            tracing::info!(partitions = list.count(), "partitions assigned");
            // A partition paused at a TRUNCATE marker stays paused across a rebalance;
            // assigned (again), it is read from its stored offset and meets the marker
            // anew.
            let _ = consumer.resume(list);
        }
    }
}

/// What the loop knows of one partition it consumes.
struct PartitionState {
    /// The next offset stored on the target (`None`: nothing stored yet).
    stored: Option<i64>,
    /// The next offset this replicator expects to read.
    next: i64,
    gaps: GapWatch,
}

pub async fn run(config: &Config, ready: Arc<AtomicBool>) -> Result<(), ReplicatorError> {
    let kafka = config.kafka.as_ref().ok_or(ReplicatorError::NotConfigured(
        "kafka mode needs a [kafka] section",
    ))?;
    let filter = config.tables.filter();
    let target_opts: mysql_async::Opts = OptsBuilder::from_opts(config.target.opts())
        .stmt_cache_size(1024)
        .into();
    let pool = Pool::new(config.target.opts());
    let offsets = Offsets::new(&config.target.checkpoint_schema, &kafka.group);
    let barriers = Barriers::new(&config.target.checkpoint_schema, &kafka.group);
    {
        let mut conn = Conn::new(target_opts.clone())
            .await
            .map_err(ReplicatorError::connecting("target", &config.target.url))?;
        offsets
            .ensure(&mut conn)
            .await
            .map_err(|source| ReplicatorError::Target {
                what: "creating the kafka offset table",
                source,
            })?;
        barriers
            .ensure(&mut conn)
            .await
            .map_err(|source| ReplicatorError::Target {
                what: "creating the kafka TRUNCATE barrier table",
                source,
            })?;
        crate::triggers::check(&mut conn, &filter, config.replicator.target_triggers).await?;
    }
    let control =
        ControlStore::connect(config.control.url.expose(), &config.control.url.redacted()).await?;
    let schema = SchemaCache::new(pool.clone(), config.target.schema_ttl);
    let mut applier = Applier::new(
        target_opts,
        schema.clone(),
        control.clone(),
        filter.clone(),
        Checkpoints::new(&config.target.checkpoint_schema, &config.replicator.name),
        config.replicator.clone(),
    )
    .without_cascades();

    let context = GroupContext {
        revoked: Mutex::default(),
        span: tracing::Span::current(),
    };
    let consumer: StreamConsumer<GroupContext> = consumer_config(kafka)
        .create_with_context(context)
        .map_err(|source| ReplicatorError::Kafka {
            what: "creating the consumer",
            source,
        })?;
    consumer
        .subscribe(&[&kafka.subscription()])
        .map_err(|source| ReplicatorError::Kafka {
            what: "subscribing",
            source,
        })?;
    let dead_letters: FutureProducer =
        dead_letter_config(kafka)
            .create()
            .map_err(|source| ReplicatorError::Kafka {
                what: "creating the dead-letter producer",
                source,
            })?;
    let dlq = kafka.dead_letter_topic();
    tracing::info!(group = %kafka.group, topic = %kafka.topic, "consuming");

    let mut parts: HashMap<PartitionKey, PartitionState> = HashMap::new();
    // Partitions stopped at a TRUNCATE marker.
    let mut waiting: HashMap<PartitionKey, truncate::Marker> = HashMap::new();
    let mut lag_reported = Instant::now() - LAG_EVERY;
    loop {
        let barrier = truncate::Barrier {
            pool: &pool,
            barriers: &barriers,
            offsets: &offsets,
            consumer: &consumer,
        };
        barrier.pass(&mut applier, &mut waiting, &mut parts).await?;
        let batch = gather(
            &consumer,
            config.replicator.batch_rows.min(kafka.max_in_flight),
            config.replicator.batch_time,
        )
        .await;
        ready.store(true, Ordering::Relaxed);
        let revoked: Vec<PartitionKey> = consumer
            .context()
            .revoked
            .lock()
            .expect("revoked lock")
            .drain(..)
            .collect();
        for key in &revoked {
            // A partition that moved to another replicator is that one's to report.
            let _ = metrics::CONSUMER_LAG.remove_label_values(&[&key.0, &key.1.to_string()]);
            parts.remove(key);
            waiting.remove(key);
        }
        // Messages gathered before a revocation are no longer ours to apply: keeping them
        // would bring the partition back into `parts` with an offset its new owner moves
        // past, and its lag would be reported wrong from then on. If the partition comes
        // back to us, its position is read again from the target.
        let batch: Vec<OwnedMessage> = if revoked.is_empty() {
            batch
        } else {
            batch
                .into_iter()
                .filter(|m| {
                    !revoked
                        .iter()
                        .any(|(t, p)| t == m.topic() && *p == m.partition())
                })
                .collect()
        };
        if batch.is_empty() {
            metrics::LAG.set(0.0);
            report_consumer_lag(&consumer, &parts, &mut lag_reported);
            continue;
        }
        let mut txns: Vec<Transaction> = Vec::new();
        let mut touched: BTreeMap<PartitionKey, PartitionProgress> = BTreeMap::new();
        let mut poison: Vec<(OwnedMessage, FailedEvent)> = Vec::new();
        let mut sought: HashSet<PartitionKey> = HashSet::new();
        let mut stuck = false;
        for m in batch {
            let key = (m.topic().to_owned(), m.partition());
            if !parts.contains_key(&key) {
                let mut conn = pool
                    .get_conn()
                    .await
                    .map_err(ReplicatorError::connecting("target", &config.target.url))?;
                let stored = offsets
                    .load(&mut conn, &key.0, key.1)
                    .await
                    .map_err(|source| ReplicatorError::Target {
                        what: "reading a partition's stored offset",
                        source,
                    })?;
                // Nothing of the partition applied yet: it starts at the log's beginning,
                // never at whichever message came first — messages of it dropped at a
                // rebalance (above) moved the consumer's position past them.
                let next = match stored {
                    Some(next) => next,
                    None => {
                        low_watermark(&consumer, &key).map_err(|source| ReplicatorError::Kafka {
                            what: "reading where a partition's log begins",
                            source,
                        })?
                    }
                };
                parts.insert(
                    key.clone(),
                    PartitionState {
                        stored,
                        next,
                        gaps: GapWatch::default(),
                    },
                );
            }
            let state = parts.get_mut(&key).expect("inserted above");
            if waiting.contains_key(&key) {
                continue; // stopped at a TRUNCATE marker; read again once past it
            }
            if m.offset() < state.next {
                continue; // applied before (a replay after a crash or a seek)
            }
            if m.offset() > state.next {
                // The broker's position is ahead of what the target holds (or messages
                // fetched before a seek are still queued): read again from the target's.
                // The rest of this batch of the partition is past it too.
                if !sought.insert(key.clone()) {
                    continue;
                }
                if let GapVerdict::Stuck { times, warn } = state.gaps.gap(state.next, m.offset()) {
                    metrics::OFFSET_GAPS
                        .with_label_values(&[&key.0, &key.1.to_string()])
                        .inc();
                    if warn {
                        tracing::warn!(topic = %key.0, partition = key.1, expected = state.next,
                            got = m.offset(), times,
                            "the broker keeps answering past the offset the target expects next; \
                             not skipping (that would lose changes), reading again more slowly");
                    }
                    stuck = true;
                }
                seek(&consumer, &key, state.next);
                continue;
            }
            state.gaps.progress();
            state.next = m.offset() + 1;
            let progress = touched
                .entry(key.clone())
                .or_insert_with(|| PartitionProgress {
                    topic: key.0.clone(),
                    partition: key.1,
                    expected: state.stored,
                    next: 0,
                });
            progress.next = state.next;
            match Change::decode(m.payload().unwrap_or_default()) {
                Ok(Change::Truncate(t)) if filter.matches(&t.table) => {
                    // Everything before the marker is applied with this batch; the marker
                    // itself is passed only through the barrier.
                    state.next = m.offset();
                    progress.next = m.offset();
                    waiting.insert(key.clone(), truncate::Marker::new(m.offset(), t));
                }
                Ok(Change::Truncate(_)) => {}
                Ok(Change::Change(env)) => {
                    let name = env.change.table.name.clone();
                    if !filter.matches(&name) {
                        continue;
                    }
                    // A table the target lacks is recorded compactly by the applier.
                    txns.push(Transaction {
                        commit_ts: env.change.commit_ts,
                        changes: vec![env.change],
                        ..Transaction::default()
                    });
                }
                Err(e) => {
                    let f = failed(&m, None, FailureReason::Malformed, e.to_string());
                    poison.push((m, f));
                }
            }
        }
        if stuck {
            // A broker that skips offsets: do not spin on seeks.
            tokio::time::sleep(STUCK_PAUSE).await;
        }
        if touched.is_empty() {
            continue;
        }
        for (m, f) in &poison {
            dead_letter(&dead_letters, &dlq, m, &f.error).await;
            applier.record_failures(std::slice::from_ref(f)).await;
        }
        let progress: Vec<PartitionProgress> = touched.into_values().collect();
        metrics::IN_FLIGHT.set(txns.len() as i64);
        let outcome = applier
            .apply_with_retry(&txns, Progress::Kafka(&offsets, &progress))
            .await?;
        metrics::IN_FLIGHT.set(0);
        match outcome {
            Outcome::Committed => {
                let mut list = TopicPartitionList::new();
                for p in &progress {
                    let key = (p.topic.clone(), p.partition);
                    if let Some(s) = parts.get_mut(&key) {
                        s.stored = Some(p.next);
                    }
                    if let Some(marker) = waiting.get_mut(&key).filter(|m| !m.arrived) {
                        barrier.arrive(&key, marker).await?;
                    }
                    let _ =
                        list.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next));
                }
                // Broker-side offsets only speed up the next assignment; the target's are
                // the truth, so a failed commit here is harmless.
                if kafka.commit_broker_offsets {
                    let _ = consumer.commit(&list, CommitMode::Async);
                }
                report_consumer_lag(&consumer, &parts, &mut lag_reported);
            }
            Outcome::Fenced => {
                for p in &progress {
                    let key = (p.topic.clone(), p.partition);
                    parts.remove(&key);
                    if waiting.remove(&key).is_some() {
                        let _ = consumer.resume(&truncate::one(&key));
                    }
                }
            }
        }
    }
}

/// Per-partition lag: the messages between each partition's high watermark and the next
/// one to apply. Asking the broker for watermarks is a round trip, so at most every
/// [`LAG_EVERY`].
fn report_consumer_lag(
    consumer: &StreamConsumer<GroupContext>,
    parts: &HashMap<PartitionKey, PartitionState>,
    last: &mut Instant,
) {
    if last.elapsed() < LAG_EVERY {
        return;
    }
    *last = Instant::now();
    tokio::task::block_in_place(|| {
        for ((topic, partition), state) in parts {
            if let Ok((_, high)) =
                consumer.fetch_watermarks(topic, *partition, Duration::from_secs(2))
            {
                metrics::CONSUMER_LAG
                    .with_label_values(&[topic, &partition.to_string()])
                    .set((high - state.next).max(0));
            }
        }
    });
}

/// The first offset the broker still holds of a partition.
fn low_watermark(
    consumer: &StreamConsumer<GroupContext>,
    (topic, partition): &PartitionKey,
) -> Result<i64, rdkafka::error::KafkaError> {
    tokio::task::block_in_place(|| {
        consumer
            .fetch_watermarks(topic, *partition, Duration::from_secs(5))
            .map(|(low, _)| low)
    })
}

const LAG_EVERY: Duration = Duration::from_secs(5);
/// Before fetching again when a partition's broker keeps answering past the expected offset.
const STUCK_PAUSE: Duration = Duration::from_millis(500);

/// Waits for one message, then takes what is already there, up to `max` messages or
/// `max_time`.
async fn gather(
    consumer: &StreamConsumer<GroupContext>,
    max: usize,
    max_time: Duration,
) -> Vec<OwnedMessage> {
    let mut out = Vec::new();
    let first = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await;
    match first {
        Ok(Ok(m)) => out.push(m.detach()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "kafka consume error");
            tokio::time::sleep(Duration::from_millis(200)).await;
            return out;
        }
        Err(_) => return out,
    }
    let deadline = Instant::now() + max_time;
    while out.len() < max && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(2), consumer.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            _ => break,
        }
    }
    out
}

fn seek(consumer: &StreamConsumer<GroupContext>, key: &PartitionKey, offset: i64) {
    if let Err(e) = consumer.seek(
        &key.0,
        key.1,
        Offset::Offset(offset),
        Duration::from_secs(5),
    ) {
        tracing::warn!(topic = %key.0, partition = key.1, offset, error = %e, "seek failed; will retry");
    }
}

fn failed(
    m: &OwnedMessage,
    table: Option<&TableName>,
    reason: FailureReason,
    error: String,
) -> FailedEvent {
    FailedEvent {
        position: Position::new(
            format!("{}[{}]", m.topic(), m.partition()),
            m.offset() as u64,
        ),
        row_index: 0,
        table: table.cloned().unwrap_or_else(|| TableName::new("", "")),
        op: "unknown".into(),
        reason,
        error,
        event: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
    }
}

async fn dead_letter(producer: &FutureProducer, topic: &str, m: &OwnedMessage, error: &str) {
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "concord.error",
            value: Some(error),
        })
        .insert(Header {
            key: "concord.topic",
            value: Some(m.topic()),
        })
        .insert(Header {
            key: "concord.partition",
            value: Some(&partition),
        })
        .insert(Header {
            key: "concord.offset",
            value: Some(&offset),
        });
    let payload = m.payload().unwrap_or_default();
    let key = m.key().unwrap_or_default();
    let mut backoff = Duration::from_millis(100);
    loop {
        let record = FutureRecord::to(topic)
            .payload(payload)
            .key(key)
            .headers(headers.clone());
        match producer.send(record, Duration::from_secs(10)).await {
            Ok(_) => {
                metrics::DEAD_LETTERED.inc();
                return;
            }
            Err((e, _)) => {
                tracing::warn!(error = %e, topic, "dead-letter topic unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn consumer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &kafka.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // Bounds what librdkafka prefetches while the target is slow: fetching pauses
        // when this much is queued, so memory stays bounded.
        .set("queued.max.messages.kbytes", "65536")
        // A replicator retrying a target that is down does not poll; give it time before
        // the group moves its partitions (fencing keeps that safe either way).
        .set("max.poll.interval.ms", "600000")
        .set("session.timeout.ms", "10000")
        // A fetch returns as soon as there is data on Kafka, but some brokers (tansu) hold
        // it for the full wait; 500 ms (the default) then becomes the floor of the lag.
        .set("fetch.wait.max.ms", "20");
    if let Some(id) = &kafka.instance_id {
        c.set("group.instance.id", id);
    }
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}

fn dead_letter_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all");
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}
