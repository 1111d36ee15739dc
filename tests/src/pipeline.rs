//! The processes of a verification test, in direct or in kafka mode, and how to wait for
//! them: shared by the verifier's tests and the lossless tests.

use crate::broker::{high_watermarks, Broker, Kind};
use crate::concord::verifier_positions;
use crate::{wait_for, Concord, ConcordConfig, TestDb};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Direct,
    Kafka,
}

pub const TOPIC: &str = "concord.changes";

/// The processes of one test: direct mode — `concord run`, or `replicate` and `verify`
/// apart; kafka mode — its own broker, `capture`, `replicate` and `verify`.
pub struct Pipeline {
    pub mode: Mode,
    pub config: ConcordConfig,
    _broker: Option<Broker>,
    pub capture: Option<Concord>,
    pub replicator: Option<Concord>,
    /// The verifier (in direct mode without `apart`, the `run` process).
    pub verifier: Concord,
}

impl Pipeline {
    pub async fn start(db: &TestDb, mode: Mode, delay: &str, apart: bool) -> Pipeline {
        Self::start_on(Kind::Tansu, db, mode, delay, apart).await
    }

    /// `kind`: the broker in kafka mode.
    pub async fn start_on(
        kind: Kind,
        db: &TestDb,
        mode: Mode,
        delay: &str,
        apart: bool,
    ) -> Pipeline {
        Self::start_edited(kind, db, mode, delay, apart, |_| {}).await
    }

    /// As [`Pipeline::start_on`], with the config changed by `edit` first.
    pub async fn start_edited(
        kind: Kind,
        db: &TestDb,
        mode: Mode,
        delay: &str,
        apart: bool,
        edit: impl FnOnce(&mut ConcordConfig),
    ) -> Pipeline {
        let mut config = ConcordConfig::new(db);
        edit(&mut config);
        // Rows parked for a later change wait 3 s, not 10, before the source is asked: the
        // corrupted rows see no later change.
        config.extra = format!(
            "\n[verifier]\ndelay = \"{delay}\"\nsave_every = \"200ms\"\npark_for = \"3s\"\n"
        );
        // Several rounds at once: in kafka mode, and in direct mode's `concord run` with small
        // rounds so that many overlap. The direct pipelines `apart` keep the default of one
        // round at a time, so both ways of running rounds are exercised. (Small rounds do
        // not suit kafka mode: its waiting list holds one round, and a full list pauses the
        // partitions, which makes librdkafka fetch again.)
        match mode {
            Mode::Kafka => config.extra.push_str("rounds_in_flight = 3\n"),
            Mode::Direct if !apart => config
                .extra
                .push_str("rounds_in_flight = 3\nbatch_rows = 100\n"),
            Mode::Direct => {}
        }
        match mode {
            Mode::Direct if !apart => Pipeline {
                mode,
                verifier: Concord::start(&config).await,
                config,
                _broker: None,
                capture: None,
                replicator: None,
            },
            Mode::Direct => Pipeline {
                mode,
                replicator: Some(Concord::start_role(&config, "replicate").await),
                verifier: Concord::start_role(&config.sibling(), "verify").await,
                config,
                _broker: None,
                capture: None,
            },
            Mode::Kafka => {
                let broker = Broker::start_kind(kind).await;
                broker.create_topic(TOPIC, 4).await;
                broker.create_topic(&format!("{TOPIC}.dlq"), 1).await;
                config.kafka = Some((
                    broker.brokers(),
                    TOPIC.into(),
                    format!("{}-group", db.name),
                    String::new(),
                ));
                Pipeline {
                    mode,
                    capture: Some(Concord::start_role(&config.sibling(), "capture").await),
                    replicator: Some(Concord::start_role(&config.sibling(), "replicate").await),
                    verifier: Concord::start_role(&config.sibling(), "verify").await,
                    config,
                    _broker: Some(broker),
                }
            }
        }
    }

    /// The process that reads the binlog for the target: `run`, `replicate`, or (kafka
    /// mode) the capture.
    pub fn reader(&self) -> &Concord {
        self.capture.as_ref().unwrap_or_else(|| self.replicator())
    }

    pub fn replicator(&self) -> &Concord {
        self.replicator.as_ref().unwrap_or(&self.verifier)
    }

    /// Waits until the target has applied everything the source has now (kafka mode: the
    /// target equals the source on `tables` — use it only before corrupting them).
    pub async fn wait_applied(&self, db: &TestDb, tables: &[&str]) {
        match self.mode {
            Mode::Direct => {
                self.replicator()
                    .wait_caught_up(&db.servers, Duration::from_secs(60))
                    .await
            }
            Mode::Kafka => {
                for t in tables {
                    db.wait_same(t, "*", Duration::from_secs(60)).await;
                }
            }
        }
    }

    /// Waits until the verifier's saved position has passed everything written so far
    /// (kafka mode: every partition's high watermark, read once the target has applied).
    pub async fn wait_verified(&self, db: &TestDb, timeout: Duration) {
        match self.mode {
            Mode::Direct => wait_verified_binlog(db, &self.config, timeout).await,
            Mode::Kafka => {
                let (brokers, ..) = self.config.kafka.clone().expect("kafka mode");
                let goal = high_watermarks(&brokers, TOPIC).await;
                let config = self.config.clone();
                wait_for(&format!("verifier to pass {goal:?}"), timeout, || {
                    let (config, goal) = (config.clone(), goal.clone());
                    async move {
                        let saved = verifier_positions(&config, "concord-verifier").await;
                        goal.iter()
                            .all(|&(p, high)| {
                                high == 0
                                    || saved.iter().any(|(topic, part, _, next)| {
                                        topic == TOPIC && *part == i64::from(p) && *next >= high
                                    })
                            })
                            .then_some(())
                    }
                })
                .await;
            }
        }
    }

    /// Starts another verifier with the same settings (after the first was killed).
    pub async fn new_verifier(&self) -> Concord {
        Concord::start_role(&self.config.sibling(), "verify").await
    }
}

/// Waits until the verifier's saved position has passed everything the source has now.
pub async fn wait_verified_binlog(db: &TestDb, config: &ConcordConfig, timeout: Duration) {
    let goal = db.servers.source_position().await;
    wait_for(&format!("verifier to pass {goal}"), timeout, || {
        let config = config.clone();
        let goal = goal.clone();
        async move {
            verifier_positions(&config, "verifier")
                .await
                .into_iter()
                .find(|(stream, ..)| stream == "binlog")
                .filter(|(_, _, file, pos)| {
                    concord_change::Position::new(file.clone(), *pos as u64) >= goal
                })
                .map(|_| ())
        }
    })
    .await;
}
