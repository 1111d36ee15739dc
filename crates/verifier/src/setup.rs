//! What the direct and kafka verifiers share: connections (every session in UTC), schema
//! caches for both sides, the due-time arithmetic and the retry of a round.

use crate::check::{CheckError, Checker, Item};
use crate::error::VerifierError;
use crate::parked::Parked;
use crate::progress::Replica;
use concord_change::Ddl;
use concord_config::{Config, TableFilter, TransportKind};
use concord_control::ControlStore;
use concord_replicator::checkpoint::Checkpoints;
use concord_replicator::offsets::Offsets;
use concord_schema_cache::{RefreshReason, SchemaCache};
use mysql_async::{Opts, OptsBuilder, Pool};
use rdkafka::consumer::BaseConsumer;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) struct Setup {
    pub source_opts: Opts,
    pub source: Pool,
    pub target: Pool,
    pub control: ControlStore,
    pub target_schema: SchemaCache,
    pub source_schema: SchemaCache,
}

/// The verifier's connection options: sessions read TIMESTAMP values as UTC (see
/// `sql_value`).
///
/// Pooled connections are kept, prepared statements and all: they are not reset when they
/// return to the pool (a reset drops the session's prepared statements; nothing the
/// verifier does changes session state beyond this setup), and idle ones stay for a minute
/// rather than being closed at once — rounds in flight use more connections than the
/// pool's minimum, and each new connection prepares its statements again. Pool limits
/// given in the URL (`pool_min`, `pool_max`) are kept.
pub(crate) fn verifier_opts(opts: Opts) -> Opts {
    let pool = opts
        .pool_opts()
        .clone()
        .with_reset_connection(false)
        .with_inactive_connection_ttl(Duration::from_secs(60));
    OptsBuilder::from_opts(opts)
        .stmt_cache_size(256)
        .pool_opts(pool)
        .setup(vec!["SET time_zone = '+00:00'".to_owned()])
        .into()
}

impl Setup {
    pub async fn connect(config: &Config) -> Result<Self, VerifierError> {
        let source_opts = verifier_opts(config.source.opts());
        let source = Pool::new(source_opts.clone());
        let target = Pool::new(verifier_opts(config.verifier_target_opts()));
        let control =
            ControlStore::connect(config.control.url.expose(), &config.control.url.redacted())
                .await?;
        Ok(Self {
            target_schema: SchemaCache::new(target.clone(), config.target.schema_ttl),
            source_schema: SchemaCache::new(source.clone(), config.target.schema_ttl),
            source_opts,
            source,
            target,
            control,
        })
    }

    /// How far the configured replicator has got: its checkpoint (direct mode) or the
    /// offsets its group stored on the target (kafka mode).
    pub fn replica(&self, config: &Config) -> Result<Replica, VerifierError> {
        Ok(match config.transport.kind {
            TransportKind::Direct => Replica::Direct {
                target: self.target.clone(),
                checkpoints: Checkpoints::new(
                    &config.target.checkpoint_schema,
                    &config.replicator.name,
                ),
            },
            TransportKind::Kafka => {
                let kafka = config.kafka.as_ref().ok_or(VerifierError::NotConfigured(
                    "kafka mode needs a [kafka] section",
                ))?;
                let client: BaseConsumer =
                    crate::kafka::base_config(kafka)
                        .create()
                        .map_err(|source| VerifierError::Kafka {
                            what: "creating the offsets client",
                            source,
                        })?;
                Replica::Kafka {
                    target: self.target.clone(),
                    offsets: Offsets::new(&config.target.checkpoint_schema, &kafka.group),
                    control: self.control.clone(),
                    capture: concord_capture::position_name(config),
                    client: Arc::new(client),
                }
            }
        })
    }

    pub fn checker(&self, config: &Config, replica: Replica) -> Checker {
        Checker::new(
            self.target.clone(),
            self.source.clone(),
            self.target_schema.clone(),
            self.source_schema.clone(),
            self.control.clone(),
            config.tables.filter(),
            replica,
            Duration::from_millis(50),
            config.verifier.retry_after,
            Parked::new(config.verifier.park_rows, config.verifier.park_for),
        )
    }

    /// A source DDL: both sides' cached column sets of the tables it names are read again.
    pub async fn forget(&self, ddl: &Ddl, filter: &TableFilter) {
        if ddl.tables.is_empty() {
            self.source_schema.refresh_schema(&ddl.schema);
            let mapped =
                filter.target_name(&concord_change::TableName::new(ddl.schema.clone(), ""));
            self.target_schema.refresh_schema(&mapped.db);
        }
        for t in &ddl.tables {
            self.source_schema
                .refresh(t, RefreshReason::SourceDdl)
                .await;
            self.target_schema
                .refresh(&filter.target_name(t), RefreshReason::SourceDdl)
                .await;
        }
    }
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// How long until a change committed at `commit_ts` (whole seconds) is due for checking.
/// The commit time is rounded down by the binlog, so a change is due one second late
/// rather than early.
pub(crate) fn until_due(commit_ts: u32, delay: Duration) -> Duration {
    let due = Duration::from_secs(u64::from(commit_ts) + 1) + delay;
    due.saturating_sub(now())
}

/// Seconds a change committed at `commit_ts` is being verified after it was due.
pub(crate) fn late_by(commit_ts: u32, delay: Duration) -> f64 {
    let due = Duration::from_secs(u64::from(commit_ts) + 1) + delay;
    now().saturating_sub(due).as_secs_f64()
}

/// Verifies a round, retrying it whole after a transient error (servers or control store
/// unavailable) with capped backoff; a definite error stops the verifier.
pub(crate) async fn verify_with_retry(
    checker: &Checker,
    items: &[Item],
    round: u64,
    max_backoff: Duration,
) -> Result<(), VerifierError> {
    retrying(checker, "verification round", max_backoff, || {
        checker.verify(items, round)
    })
    .await
}

/// Rechecks every parked row, retrying transient errors like a round.
pub(crate) async fn recheck_parked_with_retry(
    checker: &Checker,
    max_backoff: Duration,
) -> Result<(), VerifierError> {
    retrying(checker, "recheck of parked rows", max_backoff, || {
        checker.recheck_parked(true)
    })
    .await
}

/// Failed attempts in a row after which a round's error stops the verifier: with the
/// default `replicator.max_backoff` of 30 s, about a minute and a half of retrying.
const GIVE_UP_AFTER: u32 = 10;

/// Runs `attempt` until it succeeds, retrying transient errors with backoff — up to
/// [`GIVE_UP_AFTER`] times.
async fn retrying<F, Fut>(
    checker: &Checker,
    what: &str,
    max_backoff: Duration,
    mut attempt: F,
) -> Result<(), VerifierError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), CheckError>>,
{
    let mut backoff = Duration::from_millis(100);
    let mut failed = 0;
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            // Still failing after the backoff has long reached its cap: the verifier stops,
            // so that it is restarted and shows as down meanwhile rather than retry quietly.
            Err(e) if failed >= GIVE_UP_AFTER => return Err(e.into()),
            Err(e) if e.is_transient() => {
                failed += 1;
                tracing::warn!(error = %e, retry_in = ?backoff, "{what} failed; retrying");
                checker.refresh_after(&e).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_limits_from_the_url_are_kept() {
        let opts = Opts::from_url("mysql://root@127.0.0.1:3307/db?pool_min=2&pool_max=7").unwrap();
        let opts = verifier_opts(opts);
        let limits = opts.pool_opts().constraints();
        assert_eq!((limits.min(), limits.max()), (2, 7));
        assert!(!opts.pool_opts().reset_connection());
        assert_eq!(
            opts.pool_opts().inactive_connection_ttl(),
            Duration::from_secs(60)
        );
    }
}
