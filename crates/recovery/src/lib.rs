//! Recovery: every mismatch ends resolved, repaired or decided by a person, and every write
//! it makes goes through the guarded repair (`concord_target::repair`), safely while the
//! replicator runs.
//!
//! A record is looked at again (see [`settle`]) after `recovery.grace` by the worker
//! ([`worker`]), or at once when an operator asks ([`actions`]). The look reads both sides
//! at a consistent point (the source row, the source's position, the replicator past it,
//! the target row): rows that agree now are *resolved* — nothing is written; rows that
//! still differ are repaired when the table's auto-repair is on and the circuit is closed,
//! else they wait in `needs_manual`.
//!
//! Invariants:
//! - nothing is written while the replicator lags by more than the grace period ([`lag`]);
//! - every state change is kept in the control store's history, with who, why, the rows
//!   before and after and the SQL that ran.

pub mod actions;
pub mod batch;
pub mod failed;
pub mod lag;
mod look;
pub mod metrics;
mod reads;
pub mod settle;
pub mod worker;

pub use settle::{Ask, Mode, Outcomes, Settled};

use concord_change::TableName;
use concord_compare::{CompareError, Comparer};
use concord_config::{Config, RecoveryRules, TableFilter, TransportKind};
use concord_control::ControlError;
use concord_target::Stream;
use mysql_async::Opts;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Compare(Box<CompareError>),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Config(#[from] concord_config::ConfigError),
    #[error("cannot open a writer session on the target")]
    Writer(#[source] mysql_async::Error),
    /// An operator's request that cannot be carried out as asked.
    #[error("{0}")]
    Refused(String),
}

impl From<CompareError> for RecoveryError {
    fn from(e: CompareError) -> Self {
        RecoveryError::Compare(Box::new(e))
    }
}

impl RecoveryError {
    /// Worth another try later (a server or the control store unreachable for now).
    pub fn is_transient(&self) -> bool {
        match self {
            RecoveryError::Compare(e) => e.is_transient(),
            RecoveryError::Control(e) => e.is_transient(),
            RecoveryError::Writer(_) => true,
            RecoveryError::Config(_) | RecoveryError::Refused(_) => false,
        }
    }
}

/// The recovery engine: the comparison of both sides, the target's writer session, and
/// the rules of what may be repaired automatically.
pub struct Recovery {
    pub compare: Comparer,
    filter: TableFilter,
    rules: RecoveryRules,
    grace: Duration,
    /// How the replicator connects (the repair writes as it does).
    writer: Opts,
    foreign_key_checks: bool,
    lock_wait: Duration,
    audit_flag_column: String,
    audit_ts_column: String,
    /// Kafka mode: a table's rows travel in its topic (`kafka.topic_for`).
    kafka: Option<concord_config::KafkaConfig>,
    lag: Mutex<HashMap<Stream, lag::LagGauge>>,
}

impl Recovery {
    pub async fn connect(config: &Config) -> Result<Self, RecoveryError> {
        let compare = Comparer::connect(config).await?;
        Ok(Self {
            compare,
            filter: config.tables.filter(),
            rules: config.recovery.rules()?,
            grace: config.recovery.grace,
            writer: config.target.opts(),
            foreign_key_checks: config.replicator.foreign_key_checks,
            lock_wait: config.replicator.lock_wait_timeout,
            audit_flag_column: config.replicator.audit_flag_column.clone(),
            audit_ts_column: config.replicator.audit_ts_column.clone(),
            kafka: match config.transport.kind {
                TransportKind::Kafka => config.kafka.clone(),
                TransportKind::Direct => None,
            },
            lag: Mutex::new(HashMap::new()),
        })
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// The stream a source table's rows travel in.
    pub fn stream_of(&self, source: &TableName) -> Stream {
        match &self.kafka {
            Some(k) => Stream::Topic(k.topic_for(&source.db, &source.table)),
            None => Stream::Binlog,
        }
    }

    /// The replicator's lag on the stream of `source` (see [`lag`]).
    pub async fn replicator_lag(&self, source: &TableName) -> Result<Duration, RecoveryError> {
        let position = self.compare.source_position(source).await?;
        let stream = self.stream_of(source);
        let mut gauges = self.lag.lock().await;
        let lag = gauges
            .entry(stream.clone())
            .or_default()
            .lag(&self.compare.replica, &stream, position)
            .await
            .map_err(|e| RecoveryError::Compare(Box::new(CompareError::Progress(e))))?;
        metrics::REPLICATOR_LAG.set(lag.as_secs_f64());
        Ok(lag)
    }

    /// Whether `source`'s mismatches are repaired without a person.
    pub fn auto_repair(&self, source: &TableName) -> bool {
        self.rules.auto_repair(source)
    }

    async fn writer(&self) -> Result<mysql_async::Conn, RecoveryError> {
        concord_target::session::connect_writer(
            self.writer.clone(),
            self.foreign_key_checks,
            self.lock_wait,
        )
        .await
        .map_err(RecoveryError::Writer)
    }
}
