//! `concord checksum`: an online, chunked comparison of whole tables between source and
//! target, for what the per-change verifier cannot see (rows changed on the target by
//! hand, gaps from before concord ran, a replicator bug that skipped a change).
//!
//! Each server hashes its own rows of a chunk; only differing chunks cost row reads, and
//! only rows the source recheck confirms are recorded — as mismatches detected by
//! `checksum`, the same records the verifier writes. Runs are resumable per table.
//!
//! Invariant: as with the verifier, nothing is recorded that the source did not confirm
//! twice (see `concord_compare::recheck`).

mod chunk;
mod ends;
mod error;
mod keys;
mod metrics;
mod narrow;
mod pace;
mod table;

pub use error::ChecksumError;
pub use keys::check_keys;
pub use table::{Bounds, TableReport};

use concord_change::TableName;
use concord_compare::Comparer;
use concord_config::{Config, TableFilter, TransportKind};
use concord_control::{ChecksumRun, Mismatch};
use concord_target::{Replica, Stream};
use mysql_async::Pool;
use std::time::{Duration, Instant};
use table::{checksum_table, RunOf, Sides};

/// Which tables to check.
#[derive(Clone, Debug)]
pub enum Selection {
    Tables(Vec<TableName>),
    /// Every source table the config replicates.
    All,
}

/// Checks the selected tables one after another and reports on each. A table that cannot
/// be checked (no key, missing on the target, a definite error) is reported with its
/// problem and the others go on; a transient error resumes the table from its last chunk.
pub async fn run(
    config: &Config,
    selection: Selection,
    restart: bool,
) -> Result<Vec<TableReport>, ChecksumError> {
    let checker = Comparer::connect(config).await?;
    require_replicator(config, &checker.replica).await?;
    let filter = config.tables.filter();
    let tables = match selection {
        Selection::Tables(t) => t,
        Selection::All => replicated_tables(config, &filter, &checker.source).await?,
    };
    tracing::info!(tables = tables.len(), "checksum starting");
    let mut reports = Vec::new();
    for name in tables {
        let of = RunOf {
            scope: "",
            restart,
            bounds: &Bounds::default(),
        };
        reports.push(check_table(config, &checker, &filter, &name, &of, &mut |_| {}).await);
    }
    Ok(reports)
}

/// Checks the rows of `table` whose keys are within `bounds` for batch recovery job `job`
/// (its run resumes after its last finished chunk), calling `on_chunk` after each chunk.
/// With `record` off, confirmed differences are returned instead of recorded; recorded,
/// they are marked as the job's.
pub async fn check_range(
    config: &Config,
    table: &TableName,
    bounds: &Bounds,
    job: i64,
    record: bool,
    on_chunk: &mut (dyn FnMut(&ChecksumRun) + Send),
) -> Result<(TableReport, Vec<Mismatch>), ChecksumError> {
    let mut checker = Comparer::connect(config).await?;
    checker.record = record;
    checker.batch_job = Some(job);
    let scope = batch_scope(job);
    require_replicator(config, &checker.replica).await?;
    let filter = config.tables.filter();
    let of = RunOf {
        scope: &scope,
        restart: false,
        bounds,
    };
    let mut report = check_table(config, &checker, &filter, table, &of, on_chunk).await;
    let found = std::mem::take(&mut report.found);
    Ok((report, found))
}

/// One table, retried from its last chunk after transient errors; the report says what was
/// found, or the problem that stopped it.
async fn check_table(
    config: &Config,
    checker: &Comparer,
    filter: &TableFilter,
    name: &TableName,
    of: &RunOf<'_>,
    on_chunk: &mut (dyn FnMut(&ChecksumRun) + Send),
) -> TableReport {
    let started = Instant::now();
    let mut report = TableReport::new(name.clone());
    let stream = stream_of(config, name);
    let mut backoff = Duration::from_millis(200);
    let mut first = true;
    // Each attempt describes the table afresh: a DDL that interrupted the last one (a
    // column gone on one side, the table dropped and created again) is seen, and the run
    // resumes from its last chunk over the columns both sides have now.
    loop {
        let sides = match describe(checker, filter, name).await {
            Ok(sides) => sides,
            Err(problem) => {
                report.problem = Some(problem);
                break;
            }
        };
        let attempt = RunOf {
            restart: of.restart && first,
            ..*of
        };
        let r = checksum_table(
            checker,
            &config.checksum,
            &sides,
            &stream,
            &attempt,
            &mut report,
            on_chunk,
        )
        .await;
        first = false;
        match r {
            Ok(()) => break,
            Err(e) if e.is_transient() => {
                tracing::warn!(table = %name, error = %e, retry_in = ?backoff, "checksum interrupted; resuming the table");
                checker.refresh_after(&e).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.replicator.max_backoff);
            }
            Err(e) => {
                report.problem = Some(e.to_string());
                break;
            }
        }
    }
    report.elapsed = started.elapsed();
    tracing::info!(table = %name, rows = report.rows, chunks = report.chunks,
        differing = report.chunks_differ, mismatches = report.mismatches,
        problem = report.problem.as_deref().unwrap_or(""), "table checked");
    report
}

/// The checksum run scope of batch recovery job `job` (its own, so a whole-table checksum
/// and the job resume independently).
pub fn batch_scope(job: i64) -> String {
    format!("batch:{job}")
}

/// The stream a source table's rows travel in.
fn stream_of(config: &Config, name: &TableName) -> Stream {
    match (&config.transport.kind, &config.kafka) {
        (TransportKind::Kafka, Some(k)) => Stream::Topic(k.topic_for(&name.db, &name.table)),
        _ => Stream::Binlog,
    }
}

/// Both servers' view of the table, or why it cannot be checked.
async fn describe(
    setup: &Comparer,
    filter: &TableFilter,
    name: &TableName,
) -> Result<Sides, String> {
    if !filter.matches(name) {
        return Err("not replicated by this config (tables.include / tables.exclude)".into());
    }
    let source = match setup.source_schema.get(name).await {
        Ok(Some(t)) => t,
        Ok(None) => return Err("no such table on the source".into()),
        Err(e) => return Err(format!("reading the source's schema: {e}")),
    };
    let target_name = filter.target_name(name);
    let target = match setup.target_schema.get(&target_name).await {
        Ok(Some(t)) => t,
        Ok(None) => return Err(format!("{target_name} does not exist on the target")),
        Err(e) => return Err(format!("reading the target's schema: {e}")),
    };
    Sides::new(source, target)
}

/// The checksum compares against what the replicator applied: without a replicator that
/// has ever run, every chunk would wait for it forever.
async fn require_replicator(config: &Config, replica: &Replica) -> Result<(), ChecksumError> {
    if let Replica::Direct {
        target,
        checkpoints,
    } = replica
    {
        let found = async {
            let mut conn = target.get_conn().await?;
            checkpoints.load(&mut conn).await
        }
        .await;
        match found {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                return Err(ChecksumError::NoReplicator {
                    replicator: config.replicator.name.clone(),
                    schema: config.target.checkpoint_schema.clone(),
                })
            }
        }
    }
    Ok(())
}

/// The source tables `config` replicates.
pub async fn replicated_tables(
    config: &Config,
    filter: &TableFilter,
    source: &Pool,
) -> Result<Vec<TableName>, ChecksumError> {
    let mut conn = source
        .get_conn()
        .await
        .map_err(|source| ChecksumError::Connect {
            server: format!("source {}", config.source.url.redacted()),
            source,
        })?;
    concord_chunking::replicated_tables(&mut conn, filter, &config.target.checkpoint_schema)
        .await
        .map_err(|source| ChecksumError::Setup {
            side: "source",
            what: "listing tables",
            source,
        })
}
