//! Kafka mode: the verifier is a consumer group of its own on the change topic(s), reading
//! the same envelopes as the replicators, each only once its commit time + delay passed.
//!
//! Invariants:
//! - at most `verifier.batch_rows` envelopes wait, besides the rounds being verified (at
//!   most `verifier.rounds_in_flight` of them); when they are all waiting for their time,
//!   the assigned partitions are paused (librdkafka then drops what it prefetched and
//!   fetches again on resume), so memory stays bounded for any backlog;
//! - the saved position of a partition is the offset after a message that was verified,
//!   and everything before it on that partition was verified too (rounds finish in order,
//!   see [`crate::rounds`]).

use crate::error::VerifierError;
use crate::metrics;
use crate::rounds::Rounds;
use crate::setup::{self, Setup};
use concord_change::envelope::Message as Change;
use concord_change::Position;
use concord_compare::Item;
use concord_config::{Config, KafkaConfig};
use concord_control::{until_stored, VerifierPosition};
use concord_target::{Mark, Stream};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::Offset;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::task::AbortOnDropHandle;

type PartitionKey = (String, i32);

/// An envelope waiting for its time.
struct Waiting {
    item: Item,
    commit_ts: u32,
}

pub async fn run(config: &Config, ready: Arc<AtomicBool>) -> Result<(), VerifierError> {
    let kafka = config.kafka.as_ref().ok_or(VerifierError::NotConfigured(
        "kafka mode needs a [kafka] section",
    ))?;
    let setup = Setup::connect(config).await?;
    let consumer: StreamConsumer =
        consumer_config(kafka, config)
            .create()
            .map_err(|source| VerifierError::Kafka {
                what: "creating the consumer",
                source,
            })?;
    consumer
        .subscribe(&[&kafka.subscription()])
        .map_err(|source| VerifierError::Kafka {
            what: "subscribing",
            source,
        })?;
    let checker = setup.checker.clone();
    let mut rounds: Rounds<(BTreeMap<PartitionKey, i64>, u32)> = Rounds::new(
        checker,
        config.verifier.rounds_in_flight,
        config.replicator.max_backoff,
    );
    let _counting =
        AbortOnDropHandle::new(tokio::spawn(concord_compare::metrics::report_open_records(
            setup.control().clone(),
            Duration::from_secs(5),
        )));
    let name = config.verifier.group.as_str();
    let mut next: HashMap<PartitionKey, i64> = setup
        .control()
        .verifier_positions(name)
        .await?
        .into_iter()
        .map(|p| ((p.stream, p.part), p.position as i64))
        .collect();
    if !next.is_empty() {
        tracing::info!(
            partitions = next.len(),
            "verifier resuming from its saved positions"
        );
    }
    tracing::info!(group = name, topic = %kafka.topic, delay = ?config.verifier.delay, "verifying");
    ready.store(true, Ordering::Relaxed);

    let delay = config.verifier.delay;
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut verified: BTreeMap<PartitionKey, i64> = BTreeMap::new();
    // Per partition, the offset after the last message with nothing to verify (a TRUNCATE
    // marker, an unreadable message): saved once nothing before it is left to verify.
    let mut skipped: BTreeMap<PartitionKey, i64> = BTreeMap::new();
    let mut saved_at = Instant::now();
    let mut paused = false;
    loop {
        let head_wait = waiting
            .front()
            .map(|w| setup::until_due(w.commit_ts, delay));
        let due = head_wait.is_some_and(|w| w.is_zero());
        if waiting.len() < config.verifier.batch_rows {
            if paused {
                resume(&consumer);
                paused = false;
            }
            // Not due yet: wait for the next message, at most until the head is due. Due:
            // take only what is already fetched, so that a verifier that is behind (every
            // message due on arrival) still verifies in rounds of up to `batch_rows`, not
            // one message at a time.
            let timeout = match head_wait {
                _ if due => Duration::from_millis(1),
                Some(w) => w.min(Duration::from_millis(500)),
                None => Duration::from_millis(500),
            };
            match tokio::time::timeout(timeout, consumer.recv()).await {
                Ok(Ok(m)) => {
                    let key = (m.topic().to_owned(), m.partition());
                    let want = next.get(&key).copied();
                    if want.is_some_and(|w| m.offset() < w) {
                        continue; // verified before the restart
                    }
                    if let Some(w) = want.filter(|&w| m.offset() > w) {
                        // The group starts where the broker says; the saved position wins.
                        let _ =
                            consumer.seek(&key.0, key.1, Offset::Offset(w), Duration::from_secs(5));
                        continue;
                    }
                    next.insert(key.clone(), m.offset() + 1);
                    match Change::decode(m.payload().unwrap_or_default()) {
                        // The table is empty from here on: the changes of it before the
                        // marker on this partition have nothing left to be compared with.
                        // (Their offsets are saved with the next verified message.)
                        Ok(Change::Truncate(t)) => {
                            let stream = Stream::Partition {
                                topic: key.0.clone(),
                                partition: key.1,
                            };
                            waiting.retain(|w| {
                                w.item.stream != stream || w.item.change.table.name != t.table
                            });
                            skipped.insert(key.clone(), m.offset() + 1);
                        }
                        Ok(Change::Change(env)) => waiting.push_back(Waiting {
                            commit_ts: env.change.commit_ts,
                            item: Item {
                                mark: Mark::Offset {
                                    topic: key.0.clone(),
                                    partition: key.1,
                                    offset: m.offset(),
                                },
                                stream: Stream::Partition {
                                    topic: key.0.clone(),
                                    partition: key.1,
                                },
                                origin: Position::new(
                                    format!("{}[{}]", key.0, key.1),
                                    m.offset() as u64,
                                ),
                                change: env.change,
                            },
                        }),
                        // The replicator dead-letters and records it; nothing to verify.
                        Err(e) => {
                            tracing::debug!(topic = %key.0, partition = key.1, offset = m.offset(), error = %e, "unreadable envelope skipped");
                            skipped.insert(key.clone(), m.offset() + 1);
                        }
                    }
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                // Nothing more fetched: verify what is due, or go on waiting.
                Err(_) if due => {}
                Err(_) => {
                    if waiting.is_empty() {
                        // Nothing to verify: recheck the parked rows, so that the saved
                        // positions can reach what was read.
                        finished(rounds.settle().await?, &mut verified, delay);
                        for (key, next) in std::mem::take(&mut skipped) {
                            let v = verified.entry(key).or_insert(next);
                            *v = (*v).max(next);
                        }
                        metrics::LAG.set(0.0);
                        save(config, &setup, &verified, &mut saved_at).await;
                    }
                    continue;
                }
            }
        } else if !due {
            // Full, and the oldest is not due yet: stop fetching until it is.
            if !paused {
                pause(&consumer);
                paused = true;
            }
            // The rounds before the head are older: let them finish and save meanwhile.
            finished(rounds.drain().await?, &mut verified, delay);
            save(config, &setup, &verified, &mut saved_at).await;
            if let Some(w) = head_wait {
                tokio::time::sleep(w.min(Duration::from_millis(500))).await;
            }
            continue;
        }
        let mut round = Vec::new();
        let mut last_ts = 0;
        while let Some(w) = waiting.front() {
            if round.len() >= config.verifier.batch_rows
                || !setup::until_due(w.commit_ts, delay).is_zero()
            {
                break;
            }
            let w = waiting.pop_front().expect("front exists");
            last_ts = w.commit_ts;
            round.push(w.item);
        }
        let mut next_after: BTreeMap<PartitionKey, i64> = BTreeMap::new();
        for item in &round {
            if let Mark::Offset {
                topic,
                partition,
                offset,
            } = &item.mark
            {
                next_after.insert((topic.clone(), *partition), offset + 1);
            }
        }
        // Past a skipped message once nothing before it waits (this round covers the rest).
        skipped.retain(|key, next| {
            let before = waiting.iter().any(|w| match &w.item.mark {
                Mark::Offset {
                    topic,
                    partition,
                    offset,
                } => (topic, partition) == (&key.0, &key.1) && offset < next,
                _ => false,
            });
            if !before {
                let n = next_after.entry(key.clone()).or_insert(*next);
                *n = (*n).max(*next);
            }
            before
        });
        let done = rounds.start(round, (next_after, last_ts)).await?;
        finished(done, &mut verified, delay);
        save(config, &setup, &verified, &mut saved_at).await;
    }
}

/// Rounds verified (oldest first): their partitions' next offsets and the lag.
fn finished(
    done: Vec<(BTreeMap<PartitionKey, i64>, u32)>,
    verified: &mut BTreeMap<PartitionKey, i64>,
    delay: Duration,
) {
    for (next, commit_ts) in done {
        verified.extend(next);
        metrics::LAG.set(setup::late_by(commit_ts, delay));
    }
}

async fn save(
    config: &Config,
    setup: &Setup,
    verified: &BTreeMap<PartitionKey, i64>,
    saved_at: &mut Instant,
) {
    if verified.is_empty() || saved_at.elapsed() < config.verifier.save_every {
        return;
    }
    let entries: Vec<VerifierPosition> = verified
        .iter()
        .map(|((topic, part), next)| VerifierPosition {
            resume_from: None,
            stream: topic.clone(),
            part: *part,
            file: String::new(),
            position: *next as u64,
        })
        .collect();
    until_stored("verifier position", config.replicator.max_backoff, || {
        setup
            .control()
            .save_verifier_positions(&config.verifier.group, &entries)
    })
    .await;
    *saved_at = Instant::now();
}

fn pause(consumer: &StreamConsumer) {
    if let Ok(assigned) = consumer.assignment() {
        let _ = consumer.pause(&assigned);
    }
}

fn resume(consumer: &StreamConsumer) {
    if let Ok(assigned) = consumer.assignment() {
        let _ = consumer.resume(&assigned);
    }
}

fn consumer_config(kafka: &KafkaConfig, config: &Config) -> ClientConfig {
    // The consumer may sit on a paused assignment for up to the delay; stay in the group.
    let poll_ms = (config.verifier.delay + Duration::from_secs(300))
        .max(Duration::from_secs(600))
        .as_millis();
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers);
    c.set("group.id", &config.verifier.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("queued.max.messages.kbytes", "16384")
        .set("max.poll.interval.ms", poll_ms.to_string())
        .set("session.timeout.ms", "10000")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c
}
