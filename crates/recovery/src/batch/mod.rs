//! Batch recovery: re-syncs one table's key range, or the rows a time window changed, after
//! an outage or an incident. A range goes through the chunked checksum (paced like it,
//! resumable per chunk as the job's own run); a window's keys are read back from the
//! source's binlogs ([`window`]) and checked page by page the same way. Every difference
//! the source confirms becomes a record, and each record is repaired through the guarded
//! write in mode `batch` (rows only the target has are deleted). A killed job, asked again
//! the same way, resumes where it stopped. `concord recovery batch` and the console both
//! run jobs through [`run_batch`].
//!
//! Invariant: a job repairs exactly the records its own check confirmed (marked with its
//! id), and a job marked `cancelled` writes nothing more once it sees the mark (between
//! pages of repairs; a running check stops when its task is stopped).

pub mod copy;
pub mod window;

use crate::{Mode, Recovery, RecoveryError, Settled};
use concord_change::TableName;
use concord_checksum::{Bounds, ChecksumError, TableReport};
use concord_chunking::parse_key;
use concord_config::Config;
use concord_control::{
    BatchJob, BatchRequest, ChecksumRun, ControlError, ControlStore, Mismatch, MismatchFilter,
    MismatchState,
};
use concord_schema_cache::TargetTable;

/// What a job is asked to do.
#[derive(Clone, Debug)]
pub struct BatchSpec {
    pub table: TableName,
    /// The range's first and last key (inclusive): a value, or a JSON array for a
    /// composite key.
    pub pk_from: Option<String>,
    pub pk_to: Option<String>,
    /// Instead of a range, the rows transactions committed since this time changed: a time
    /// (`2026-12-03 10:00:00` UTC, RFC 3339) or a duration ago (`2h`).
    pub since: Option<String>,
    pub until: Option<String>,
    pub dry_run: bool,
    pub actor: String,
}

/// What a job reports as it goes (a progress bar, log lines, nothing).
pub trait Watch: Send {
    /// The check starts over about this many rows.
    fn checking(&mut self, _rows: u64) {}
    /// A chunk or page of the check is finished.
    fn checked(&mut self, _job: i64, _run: &ChecksumRun) {}
    /// The check is over.
    fn checked_all(&mut self) {}
    /// Something the person who asked should know (the binlogs do not reach back, say).
    fn warn(&mut self, _text: &str) {}
}

/// Reports nothing.
pub struct Quiet;
impl Watch for Quiet {}

/// How a job ended.
#[derive(Debug)]
pub struct Done {
    pub job: BatchJob,
    /// A dry run's confirmed differences (nothing was recorded or written).
    pub found: Vec<Mismatch>,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The request cannot be carried out as asked (an unknown table, a bad key or time).
    #[error("{0}")]
    Refused(String),
    /// The table could not be checked (no key, missing on the target, …): the job failed.
    #[error("{table}: {problem}")]
    Problem { table: TableName, problem: String },
    #[error("batch job {0} was cancelled")]
    Cancelled(i64),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("checking the job's rows")]
    Checksum(#[from] ChecksumError),
    #[error("reading the window's keys")]
    Window(#[from] window::WindowError),
    #[error("queueing the copy")]
    Copy(#[source] concord_snapshot::SnapshotError),
}

/// What a job covers: a key range, or the keys a time window changed.
enum Cover {
    Range(Bounds),
    /// Commit times in milliseconds, both ends included.
    Window(i64, i64),
}

/// Records handed to the recovery engine at once (it settles them a page at a time, a few
/// pages side by side).
const RECORDS_AT_ONCE: i64 = 3_000;

/// Sweeps over a job's records before the ones still moving are left to the worker.
const SWEEPS: usize = 5;

/// The pause between the range check's two source cycles: every difference it confirms
/// is looked at again under the guarded repair before anything is written, so the cycles
/// need not be `verifier.retry_after` apart.
const RECHECK_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// Starts (or resumes) the job `spec` asks for and runs it to its end.
pub async fn run_batch(
    config: &Config,
    recovery: &Recovery,
    spec: &BatchSpec,
    watch: &mut (dyn Watch + Send),
) -> Result<Done, BatchError> {
    start(config, recovery, spec)
        .await?
        .run(config, recovery, spec, watch)
        .await
}

/// A job started (or found unfinished, to resume), not run yet.
pub struct Started {
    job: BatchJob,
    cover: Cover,
    source: std::sync::Arc<TargetTable>,
}

impl Started {
    pub fn job(&self) -> &BatchJob {
        &self.job
    }

    /// Runs the job to its end.
    pub async fn run(
        self,
        config: &Config,
        recovery: &Recovery,
        spec: &BatchSpec,
        watch: &mut (dyn Watch + Send),
    ) -> Result<Done, BatchError> {
        run_job(
            config,
            recovery,
            spec,
            self.job,
            self.cover,
            &self.source,
            watch,
        )
        .await
    }
}

/// Checks the request and starts its job (or finds the unfinished one it resumes).
pub async fn start(
    config: &Config,
    recovery: &Recovery,
    spec: &BatchSpec,
) -> Result<Started, BatchError> {
    let table = &spec.table;
    let Some(source) = recovery
        .compare
        .source_schema
        .get(table)
        .await
        .map_err(|e| RecoveryError::from(concord_compare::CompareError::from(e)))?
    else {
        return Err(BatchError::Refused(format!(
            "table {table} does not exist on the source"
        )));
    };
    if !config.tables.filter().matches(table) {
        return Err(BatchError::Refused(format!(
            "table {table} is not replicated by this config"
        )));
    }
    let cover = cover(spec, &source).map_err(BatchError::Refused)?;
    let request = BatchRequest {
        table: table.clone(),
        pk_from: spec.pk_from.clone(),
        pk_to: spec.pk_to.clone(),
        since_text: spec.since.clone(),
        until_text: spec.until.clone(),
        window: match cover {
            Cover::Window(since, until) => Some((since, until)),
            Cover::Range(_) => None,
        },
        dry_run: spec.dry_run,
        actor: spec.actor.clone(),
    };
    let (job, resumed) = recovery.compare.control.start_batch(&request).await?;
    // A resumed window job keeps the window it resolved when it started.
    let cover = match (job.window, cover) {
        (Some((since, until)), _) => Cover::Window(since, until),
        (None, cover) => cover,
    };
    tracing::info!(job = job.id, %table, resumed, dry_run = spec.dry_run, "batch recovery");
    Ok(Started { job, cover, source })
}

async fn run_job(
    config: &Config,
    recovery: &Recovery,
    spec: &BatchSpec,
    mut job: BatchJob,
    cover: Cover,
    source: &TargetTable,
    watch: &mut (dyn Watch + Send),
) -> Result<Done, BatchError> {
    let store = &recovery.compare.control;
    let (report, found) = match check(config, recovery, spec, source, &job, &cover, watch).await {
        Ok(r) => r,
        Err(e) => {
            save(store, &job, "failed", Some(&crate::look::error_chain(&e))).await?;
            return Err(e);
        }
    };
    job.checked = report.rows as i64;
    if let Some(problem) = report.problem {
        save(store, &job, "failed", Some(&problem)).await?;
        return Err(BatchError::Problem {
            table: spec.table.clone(),
            problem,
        });
    }
    if spec.dry_run {
        job.differing = found.len() as i64;
        save(store, &job, "done", None).await?;
        return Ok(Done { job, found });
    }
    repair(recovery, store, &mut job, &spec.actor).await?;
    save(store, &job, "done", None).await?;
    Ok(Done {
        job,
        found: Vec::new(),
    })
}

/// The job's cover from the request, or what is wrong with it.
fn cover(spec: &BatchSpec, source: &TargetTable) -> Result<Cover, String> {
    if let Some(since) = &spec.since {
        let since_ms = parse_time(since)
            .ok_or_else(|| format!("since `{since}`: not a time (`2026-12-03 10:00:00` UTC, RFC 3339) or a duration ago (`2h`)"))?;
        let until_ms = match &spec.until {
            Some(until) => parse_time(until)
                .ok_or_else(|| format!("until `{until}`: not a time or a duration ago"))?,
            None => parse_time("0s").expect("now parses"),
        };
        if until_ms < since_ms {
            return Err("until is before since".into());
        }
        return Ok(Cover::Window(since_ms, until_ms));
    }
    let types: Vec<String> = source
        .primary_key
        .iter()
        .map(|k| {
            source
                .column(k)
                .map(|c| c.data_type.clone())
                .unwrap_or_default()
        })
        .collect();
    let mut bounds = Bounds::default();
    for (arg, text, slot) in [
        ("pk-from", &spec.pk_from, &mut bounds.from),
        ("pk-to", &spec.pk_to, &mut bounds.to),
    ] {
        if let Some(text) = text {
            *slot = Some(parse_key(text, &types).map_err(|why| format!("{arg} `{text}`: {why}"))?);
        }
    }
    Ok(Cover::Range(bounds))
}

/// A time in milliseconds since the epoch: RFC 3339 (or `2026-12-03 10:00:00`, UTC), or a
/// duration ago (`2h`).
pub fn parse_time(s: &str) -> Option<i64> {
    let now = std::time::SystemTime::now();
    let at = match humantime::parse_duration(s) {
        Ok(d) => now.checked_sub(d)?,
        Err(_) => humantime::parse_rfc3339_weak(s).ok()?,
    };
    at.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as i64)
}

/// The job's check: the range through the chunked checksum, or the window's keys page by
/// page; what it confirmed is recorded (or, in a dry run, returned).
async fn check(
    config: &Config,
    recovery: &Recovery,
    spec: &BatchSpec,
    source: &TargetTable,
    job: &BatchJob,
    cover: &Cover,
    watch: &mut (dyn Watch + Send),
) -> Result<(TableReport, Vec<Mismatch>), BatchError> {
    let table = &spec.table;
    let mut check_config = config.clone();
    check_config.verifier.retry_after = RECHECK_PAUSE;
    // A window becomes its keys first.
    let keys = match cover {
        Cover::Range(bounds) => Err(bounds),
        Cover::Window(since, until) => {
            let w = window::keys_changed(config, table, source, (*since, *until)).await?;
            if !w.complete {
                tracing::warn!(%table, "the source's binlogs begin after the window's start: changes made before its oldest binlog are not in the window; check those with a key range");
                watch.warn("the source's binlogs begin after the window's start; only the changes they still hold are checked");
            }
            if w.unreadable > 0 {
                tracing::warn!(%table, changes = w.unreadable, "changes in the window whose rows the binlog does not show (undecodable, logged as statements, truncates); check the table with a key range too");
                watch.warn(&format!("{} change(s) in the window have no row images in the binlog; check the table with a key range too", w.unreadable));
            }
            tracing::info!(%table, keys = w.keys.len(), transactions = w.transactions, "batch recovery: the window's keys");
            Ok(w.keys)
        }
    };
    watch.checking(match &keys {
        Ok(k) => k.len() as u64,
        Err(_) => estimate(recovery, table).await,
    });
    let id = job.id;
    let mut on_chunk = |run: &ChecksumRun| watch.checked(id, run);
    let record = !spec.dry_run;
    let checked = match &keys {
        Ok(keys) => {
            concord_checksum::check_keys(&check_config, table, keys, id, record, &mut on_chunk)
                .await
        }
        Err(bounds) => {
            concord_checksum::check_range(&check_config, table, bounds, id, record, &mut on_chunk)
                .await
        }
    };
    watch.checked_all();
    Ok(checked?)
}

/// Repairs the records the job's check confirmed (marked as the job's, whichever detector
/// recorded them first), saving the counts as it goes and stopping when the job is
/// cancelled.
async fn repair(
    recovery: &Recovery,
    store: &ControlStore,
    job: &mut BatchJob,
    actor: &str,
) -> Result<(), BatchError> {
    let filter = MismatchFilter {
        tables: vec![job.table.clone()],
        states: MismatchState::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .collect(),
        batch_job: Some(job.id),
        ..MismatchFilter::default()
    };
    // Each record is settled once; one the replicator moved under its repair (superseded)
    // or that waited is looked at again in a later sweep.
    let mut seen = std::collections::HashSet::new();
    let mut settled = std::collections::HashSet::new();
    for sweep in 0..SWEEPS {
        let mut f = filter.clone();
        let mut left = 0;
        loop {
            if store
                .batch_job(job.id)
                .await?
                .is_some_and(|j| j.state == CANCELLED)
            {
                return Err(BatchError::Cancelled(job.id));
            }
            let page = store.find_mismatches(&f, RECORDS_AT_ONCE).await?;
            let Some(last) = page.last() else { break };
            f.before_id = Some(last.id);
            let todo: Vec<_> = page
                .into_iter()
                .filter(|m| !settled.contains(&m.id))
                .collect();
            for m in &todo {
                if seen.insert(m.id) {
                    job.differing += 1;
                }
            }
            for (id, outcome) in recovery.repair_records(&todo, actor, Mode::Batch).await {
                let done = match outcome {
                    Ok(Settled::Repaired) | Ok(Settled::Resolved) => {
                        job.repaired += 1;
                        true
                    }
                    Ok(Settled::NeedsManual(why)) => {
                        tracing::warn!(id, %why, "batch repair: needs a person");
                        job.failed += 1;
                        true
                    }
                    Ok(Settled::Superseded) => {
                        job.superseded += 1;
                        false
                    }
                    Ok(Settled::Waiting(why)) => {
                        tracing::info!(id, %why, "batch repair waits");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(id, error = %e, "batch repair failed; looked at again");
                        false
                    }
                };
                if done {
                    settled.insert(id);
                } else {
                    left += 1;
                }
            }
            save(store, job, RUNNING, None).await?;
        }
        if left == 0 {
            return Ok(());
        }
        tracing::info!(
            sweep,
            left,
            "batch recovery: rows still moving; looking again"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    // Still moving after every sweep: counted as not repaired; the worker goes on with them.
    job.failed += (seen.len() - settled.len()) as i64;
    Ok(())
}

const RUNNING: &str = "running";
/// The state an operator gives a job to stop it.
pub const CANCELLED: &str = "cancelled";

/// Saves the job's counts and state (see `ControlStore::save_batch`) — unless an operator
/// cancelled it meanwhile — and shows the counts as metrics.
async fn save(
    store: &ControlStore,
    job: &BatchJob,
    state: &str,
    error: Option<&str>,
) -> Result<(), ControlError> {
    let table = job.table.to_string();
    for (count, value) in [
        ("checked", job.checked),
        ("differing", job.differing),
        ("repaired", job.repaired),
        ("superseded", job.superseded),
        ("failed", job.failed),
    ] {
        crate::metrics::BATCH_ROWS
            .with_label_values(&[&table, count])
            .set(value);
    }
    store.save_batch(job, state, error).await
}

async fn estimate(recovery: &Recovery, table: &TableName) -> u64 {
    use mysql_async::prelude::Queryable;
    let Ok(mut conn) = recovery.compare.source.get_conn().await else {
        return 0;
    };
    conn.exec_first::<Option<u64>, _, _>(
        "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
        (&table.db, &table.table),
    )
    .await
    .ok()
    .flatten()
    .flatten()
    .unwrap_or(0)
}
