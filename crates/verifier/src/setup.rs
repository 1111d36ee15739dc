//! What the direct and kafka verifiers share: the comparison (connections, schema caches,
//! the replicator's progress), the due-time arithmetic and the retry of a round.

use crate::check::Checker;
use crate::error::VerifierError;
use crate::parked::Parked;
use concord_change::Ddl;
use concord_compare::Item;
use concord_compare::{session_opts, CompareError, Comparer};
use concord_config::{Config, TableFilter};
use concord_control::ControlStore;
use concord_schema_cache::RefreshReason;
use mysql_async::{Opts, Pool};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) struct Setup {
    /// The source's connection options for the verifier's own binlog reader.
    pub source_opts: Opts,
    pub checker: Arc<Checker>,
}

impl Setup {
    pub async fn connect(config: &Config) -> Result<Self, VerifierError> {
        // The control store unreachable at start stops the verifier as it always did; the
        // same error later on is retried like any comparison's.
        let compare = Comparer::connect(config).await.map_err(|e| match e {
            CompareError::Control(e) => VerifierError::Control(e),
            e => e.into(),
        })?;
        let checker = Checker::new(
            compare,
            config.tables.filter(),
            Parked::new(config.verifier.park_rows, config.verifier.park_for),
        );
        Ok(Self {
            source_opts: session_opts(config.source.opts()),
            checker: Arc::new(checker),
        })
    }

    pub fn control(&self) -> &ControlStore {
        &self.checker.compare.control
    }

    pub fn target(&self) -> &Pool {
        &self.checker.compare.target
    }

    /// A source DDL: both sides' cached column sets of the tables it names are read again.
    pub async fn forget(&self, ddl: &Ddl, filter: &TableFilter) {
        let compare = &self.checker.compare;
        if ddl.tables.is_empty() {
            compare.source_schema.refresh_schema(&ddl.schema);
            let mapped =
                filter.target_name(&concord_change::TableName::new(ddl.schema.clone(), ""));
            compare.target_schema.refresh_schema(&mapped.db);
        }
        for t in &ddl.tables {
            compare
                .source_schema
                .refresh(t, RefreshReason::SourceDdl)
                .await;
            compare
                .target_schema
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
    Fut: std::future::Future<Output = Result<(), CompareError>>,
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
                checker.compare.refresh_after(&e).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
            }
            Err(e) => return Err(e.into()),
        }
    }
}
