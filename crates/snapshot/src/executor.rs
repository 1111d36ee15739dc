//! Runs a stream owner's snapshot jobs: walks each job's table in key-ordered chunks,
//! reads `snapshot.threads` of them at once (each announced to the stream owner first),
//! and saves the job's progress as the stream owner writes them, in key order.
//!
//! Invariant: a job's `after_key` moves only past chunks the stream owner reported written,
//! and only past a contiguous run of them, so a job resumed after a crash never skips a
//! chunk (chunks written beyond it are written again).

use crate::error::SnapshotError;
use crate::metrics;
use crate::notes::{ChunkSpec, Notes, Outcome, Scope, DDL_SPOILER};
use crate::shape::Shape;
use crate::source;
use concord_change::{TableName, Value};
use concord_chunking::{parse_key, parse_parts, wait_until_quiet, KeyRange};
use concord_config::{Config, SnapshotConfig, SnapshotMode, TableFilter};
use concord_control::{snapshot_state, ControlStore, SnapshotJob, SnapshotKind, SnapshotRequest};
use concord_schema_cache::{RefreshReason, SchemaCache};
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use mysql_async::Pool;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

/// How often an idle executor looks for queued jobs.
const POLL: Duration = Duration::from_secs(1);

/// The stream owner a job belongs to: `replicator:<replicator.name>` in direct mode,
/// `capture:<capture position name>` in kafka mode.
pub fn stream_of(config: &Config) -> String {
    match &config.kafka {
        Some(kafka) if config.transport.kind == concord_config::TransportKind::Kafka => {
            format!("capture:{}", kafka.capture_position_name())
        }
        _ => format!("replicator:{}", config.replicator.name),
    }
}

/// Whether a stream owner starting now copies its tables first (`snapshot.mode =
/// "initial"`): only on its first start (no saved position), and not when `source.start`
/// names a position — that continues from a copy made another way (a move from direct to
/// kafka mode, a target restored from a backup), whose tables are recorded as streamed.
pub fn copies_first(config: &Config, first_start: bool) -> bool {
    first_start && !matches!(config.source.start_from(), concord_config::StartFrom::At(_))
}

#[derive(Clone)]
pub struct Executor {
    inner: Arc<Shared>,
}

struct Shared {
    stream: String,
    config: SnapshotConfig,
    filter: TableFilter,
    skip_schema: String,
    source: Pool,
    source_schema: SchemaCache,
    target_schema: SchemaCache,
    control: ControlStore,
    notes: Notes,
    /// Chunks read at once, across jobs (`snapshot.threads`).
    reads: Arc<Semaphore>,
    /// Chunks announced and not yet written, across jobs: bounds the rows held in memory.
    slots: Arc<Semaphore>,
}

/// A chunk's future: its key range's end (or the keys done) and what was written.
type ChunkDone = Pin<Box<dyn Future<Output = Result<(Progress, u64, u64), SnapshotError>> + Send>>;

/// Where a job stands after a chunk.
#[derive(Clone, Debug)]
enum Progress {
    /// Every key up to this one is written; `None`: the range's end.
    Through(Option<Vec<Value>>),
    /// This many listed keys are written.
    Keys(usize),
}

impl Executor {
    pub fn new(config: &Config, control: ControlStore, notes: Notes) -> Self {
        let opts = concord_compare::session_opts(config.source.opts());
        let source = Pool::new(opts);
        let target = Pool::new(concord_compare::session_opts(config.target.opts()));
        Self {
            inner: Arc::new(Shared {
                stream: stream_of(config),
                config: config.snapshot.clone(),
                filter: config.tables.filter(),
                skip_schema: config.target.checkpoint_schema.clone(),
                source_schema: SchemaCache::new(source.clone(), config.target.schema_ttl),
                target_schema: SchemaCache::new(target, config.target.schema_ttl),
                source,
                control,
                notes,
                reads: Arc::new(Semaphore::new(config.snapshot.threads)),
                slots: Arc::new(Semaphore::new(3 * config.snapshot.threads)),
            }),
        }
    }

    pub fn notes(&self) -> &Notes {
        &self.inner.notes
    }

    /// `snapshot.mode = "initial"`: queues a job for every included table that never had
    /// one. `first_start`: the stream owner had no position before this start; if it had,
    /// and no table ever had a job, the deployment streamed before it knew snapshots — its
    /// tables are recorded as streamed instead of copied.
    pub async fn plan_initial(&self, first_start: bool) -> Result<usize, SnapshotError> {
        let s = &self.inner;
        if s.config.mode == SnapshotMode::Never {
            return Ok(0);
        }
        let tables = self.replicated_tables().await?;
        let had = s.control.initial_snapshot_tables(&s.stream).await?;
        if !first_start && had.is_empty() {
            for t in &tables {
                s.control.mark_streamed(&s.stream, t).await?;
            }
            if !tables.is_empty() {
                tracing::info!(tables = tables.len(),
                    "snapshot.mode = \"initial\" on a deployment that already streams: its tables are recorded as streamed, not copied (concord snapshot copies one on demand)");
            }
            return Ok(0);
        }
        let mut queued = 0;
        for t in tables.iter().filter(|t| !had.contains(t)) {
            let rows_estimate = match s.source.get_conn().await {
                Ok(mut conn) => source::estimate_table(&mut conn, t).await as i64,
                Err(_) => 0,
            };
            s.control
                .queue_snapshot(&SnapshotRequest {
                    stream: s.stream.clone(),
                    table: t.clone(),
                    kind: SnapshotKind::Initial,
                    pk_from: None,
                    pk_to: None,
                    keys_json: None,
                    rows_estimate,
                    actor: "system".into(),
                })
                .await?;
            queued += 1;
        }
        if queued > 0 {
            tracing::info!(
                tables = queued,
                "snapshot: tables never copied are copied before they are streamed"
            );
        }
        Ok(queued)
    }

    async fn replicated_tables(&self) -> Result<Vec<TableName>, SnapshotError> {
        let s = &self.inner;
        let mut conn = s
            .source
            .get_conn()
            .await
            .map_err(|e| source_error("", "connecting", e))?;
        concord_chunking::replicated_tables(&mut conn, &s.filter, &s.skip_schema)
            .await
            .map_err(|e| source_error("", "listing tables", e))
    }

    /// Runs the stream's queued jobs as they come, side by side (their chunks share
    /// `snapshot.threads` readers and a bounded number of chunks in memory); forever. A job
    /// that cannot run as asked (no key, no target table, a source that cannot be
    /// snapshotted) ends failed, with the reason; one interrupted by an error a retry gets
    /// past is started again after a backoff, from its last written chunk.
    pub async fn run(&self) {
        let s = &self.inner;
        let mut checked = false;
        let mut running: JoinSet<(i64, Result<(), SnapshotError>)> = JoinSet::new();
        let mut active: HashSet<i64> = HashSet::new();
        // Jobs interrupted by a transient error: when each may start again, and its backoff.
        let mut waiting: HashMap<i64, (Instant, Duration)> = HashMap::new();
        loop {
            while let Some(done) = running.try_join_next() {
                self.ended(done, &mut active, &mut waiting).await;
            }
            let jobs = match s.control.open_snapshots(&s.stream).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(error = %e, "snapshot: reading jobs; retrying");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let due: Vec<SnapshotJob> = jobs
                .into_iter()
                .filter(|j| !active.contains(&j.id))
                .filter(|j| {
                    waiting
                        .get(&j.id)
                        .is_none_or(|(at, _)| Instant::now() >= *at)
                })
                .collect();
            if !due.is_empty() && !checked {
                match self.check_source().await {
                    Ok(()) => checked = true,
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %chain(&e), "snapshot: the source is unreachable; retrying");
                        tokio::time::sleep(POLL).await;
                        continue;
                    }
                    Err(e) => {
                        let why = chain(&e);
                        tracing::error!(error = %why, "snapshot jobs cannot run");
                        for job in &due {
                            self.fail(job, &why).await;
                        }
                        continue;
                    }
                }
            }
            for job in due {
                active.insert(job.id);
                let this = self.clone();
                running.spawn(
                    async move {
                        let r = std::panic::AssertUnwindSafe(this.run_job(&job))
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|_| {
                                Err(SnapshotError::Failed {
                                    table: job.table.clone(),
                                    why: "the job's task panicked".into(),
                                })
                            });
                        (job.id, r.map_err(|e| this.describe_failure(&job, e)))
                    }
                    .in_current_span(),
                );
            }
            tokio::select! {
                Some(done) = running.join_next() => self.ended(done, &mut active, &mut waiting).await,
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Logs why a job stopped (its table named) and passes the error on.
    fn describe_failure(&self, job: &SnapshotJob, e: SnapshotError) -> SnapshotError {
        if e.is_transient() {
            tracing::warn!(table = %job.table, job = job.id, error = %chain(&e),
                "snapshot interrupted; it resumes after its last written chunk");
        } else {
            tracing::error!(table = %job.table, job = job.id, error = %chain(&e), "snapshot failed");
        }
        e
    }

    /// A job's task ended: done, failed for good, or to be tried again after a backoff.
    async fn ended(
        &self,
        done: Result<(i64, Result<(), SnapshotError>), tokio::task::JoinError>,
        active: &mut HashSet<i64>,
        waiting: &mut HashMap<i64, (Instant, Duration)>,
    ) {
        let Ok((id, result)) = done else {
            // Aborted (the executor is stopping): nothing to record.
            return;
        };
        active.remove(&id);
        match result {
            Ok(()) => {
                waiting.remove(&id);
            }
            Err(e) if e.is_transient() => {
                let backoff = waiting.get(&id).map_or(Duration::from_secs(1), |(_, b)| {
                    (*b * 2).min(Duration::from_secs(30))
                });
                waiting.insert(id, (Instant::now() + backoff, backoff));
            }
            Err(e) => {
                waiting.remove(&id);
                if let Ok(Some(job)) = self.inner.control.snapshot_job(id).await {
                    self.fail(&job, &chain(&e)).await;
                }
            }
        }
    }

    async fn check_source(&self) -> Result<(), SnapshotError> {
        let mut conn = self
            .inner
            .source
            .get_conn()
            .await
            .map_err(|e| source_error("", "connecting", e))?;
        source::check(&mut conn).await
    }

    /// Ends a job as failed, retrying while the control store is away.
    async fn fail(&self, job: &SnapshotJob, why: &str) {
        let mut backoff = Duration::from_secs(1);
        while let Err(e) = self
            .inner
            .control
            .finish_snapshot(job.id, snapshot_state::FAILED, Some(why))
            .await
        {
            tracing::warn!(error = %e, "snapshot: recording a failed job; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// Runs one job to its end (done, or cancelled meanwhile).
    async fn run_job(&self, job: &SnapshotJob) -> Result<(), SnapshotError> {
        let s = &self.inner;
        s.control.start_snapshot(job.id).await?;
        // The stream owner remembers what it handles of the table from now on, before any
        // chunk is announced.
        s.notes.watch(&job.table);
        let _unwatch = Unwatch(&s.notes, &job.table);
        let table = job.table.to_string();
        let mut conn = s
            .source
            .get_conn()
            .await
            .map_err(|e| source_error(&table, "connecting", e))?;
        // Read before the description: a DDL in between makes the first chunk's check fail
        // (the job starts over, described anew), never pass a stale description.
        let fingerprint = crate::shape::fingerprint(&mut conn, &job.table)
            .await
            .map_err(|e| source_error(&table, "reading the table's definition", e))?;
        s.source_schema
            .refresh(&job.table, RefreshReason::SourceDdl)
            .await;
        let target_name = s.filter.target_name(&job.table);
        s.target_schema
            .refresh(&target_name, RefreshReason::SourceDdl)
            .await;
        let mut shape =
            Shape::describe(&s.source_schema, &s.target_schema, &s.filter, &job.table).await?;
        shape.fingerprint = fingerprint;
        let shape = Arc::new(shape);
        let estimate = source::estimate(&mut conn, &shape).await;
        drop(conn);
        tracing::info!(%table, job = job.id, kind = job.kind.as_str(), resume_after = ?job.after_key, estimate,
            "snapshot of a table starting");
        if !shape.range_deletes && job.kind != SnapshotKind::Keys {
            tracing::warn!(%table, target = %shape.target,
                "the target's key columns sort differently from the source's (type, character set or collation): target rows the source does not have are not deleted by this copy; concord checksum finds them");
        }
        let mut copied = job.rows_copied;
        let mut deleted = job.rows_deleted;
        let mut chunks = job.chunks;
        let remaining = |copied: i64| {
            metrics::REMAINING
                .with_label_values(&[&table])
                .set((estimate as i64 - copied).max(0))
        };
        remaining(copied);
        let mut plan = Plan::of(job, &shape)?;
        let mut in_flight: FuturesOrdered<ChunkDone> = FuturesOrdered::new();
        let mut seq = chunks as u64;
        let mut planned_all = false;
        // The last chunk of a range ends open: the saved key stays the one before it, so a
        // crash before the job is marked done reads that last chunk again.
        let mut after = job.after_key.clone();
        loop {
            // As many chunks in flight as the shared budget allows (at least one).
            while !planned_all {
                let slot = if in_flight.is_empty() {
                    s.slots.clone().acquire_owned().await.expect("never closed")
                } else {
                    match s.slots.clone().try_acquire_owned() {
                        Ok(slot) => slot,
                        Err(_) => break,
                    }
                };
                let Some((scope, progress)) = plan.next(self, &shape).await? else {
                    planned_all = true;
                    break;
                };
                seq += 1;
                let spec = Arc::new(ChunkSpec {
                    job: job.id,
                    seq,
                    shape: shape.clone(),
                    scope,
                });
                let this = self.clone();
                in_flight.push_back(Box::pin(async move {
                    let (c, d) = this.chunk(spec).await?;
                    drop(slot);
                    Ok((progress, c, d))
                }));
            }
            let Some(first) = in_flight.next().await else {
                break;
            };
            // Every chunk written by now, in key order, then one save for all of them.
            let mut done = vec![first];
            while let Some(Some(more)) = in_flight.next().now_or_never() {
                done.push(more);
            }
            let mut failed = None;
            for d in done {
                let (progress, c, d) = match d {
                    Ok(written) => written,
                    Err(e) => {
                        // The chunks before it are written: their progress is kept.
                        failed = Some(e);
                        break;
                    }
                };
                copied += c as i64;
                deleted += d as i64;
                chunks += 1;
                metrics::ROWS.with_label_values(&[&table]).inc_by(c);
                metrics::DELETED.with_label_values(&[&table]).inc_by(d);
                after = progress.to_json().or(after);
            }
            remaining(copied);
            if !s
                .control
                .save_snapshot_progress(job.id, after.as_deref(), copied, deleted, chunks)
                .await?
            {
                tracing::info!(%table, job = job.id, "snapshot cancelled");
                return Ok(());
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        s.control
            .finish_snapshot(job.id, snapshot_state::DONE, None)
            .await?;
        metrics::REMAINING.with_label_values(&[&table]).set(0);
        tracing::info!(%table, job = job.id, copied, deleted, chunks, "snapshot of a table done");
        Ok(())
    }

    /// Reads one chunk (announced first) until the stream owner wrote it; a chunk spoiled
    /// by a change between its read and its write is read again.
    async fn chunk(&self, spec: Arc<ChunkSpec>) -> Result<(u64, u64), SnapshotError> {
        let s = &self.inner;
        let table = spec.shape.name.to_string();
        let mut spoiled = 0u32;
        let mut backoff = Duration::from_millis(50);
        loop {
            let announced;
            {
                let _reading = s.reads.acquire().await.expect("never closed");
                wait_until_quiet(&s.source, s.config.max_threads_running, "snapshot")
                    .await
                    .map_err(|e| source_error(&table, "reading Threads_running", e))?;
                let mut conn = s
                    .source
                    .get_conn()
                    .await
                    .map_err(|e| source_error(&table, "connecting", e))?;
                announced = s.notes.announce(spec.clone());
                // Withdrawn if this future is dropped before the rows are in: a chunk
                // announced and never read would keep the stream owner noting forever.
                let unread = Unread(&s.notes, Some(announced.id));
                let started = Instant::now();
                let read = source::read(&mut conn, &spec).await?;
                tracing::debug!(%table, chunk = spec.seq, rows = read.rows.len(), took = ?started.elapsed(), "chunk read");
                s.notes.fill(unread.disarm(), read);
            }
            match announced.outcome.await {
                Ok(Outcome::Written { copied, deleted }) => return Ok((copied, deleted)),
                Ok(Outcome::Spoiled(why)) if why.starts_with(DDL_SPOILER) => {
                    metrics::SPOILED.with_label_values(&[&table]).inc();
                    return Err(SnapshotError::TableChanged {
                        table: spec.shape.name.clone(),
                        why,
                    });
                }
                Ok(Outcome::Spoiled(why)) => {
                    metrics::SPOILED.with_label_values(&[&table]).inc();
                    spoiled += 1;
                    if spoiled >= 10 {
                        tracing::warn!(%table, chunk = spec.seq, times = spoiled, %why, "snapshot chunk read again, again");
                    } else {
                        tracing::info!(%table, chunk = spec.seq, %why, "snapshot chunk read again");
                    }
                    // Not at once: what spoiled it may take a while to go away.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Ok(Outcome::Failed(why)) => {
                    return Err(SnapshotError::Failed {
                        table: spec.shape.name.clone(),
                        why,
                    })
                }
                Err(_) => {
                    return Err(SnapshotError::Target {
                        table: spec.shape.name.clone(),
                        what: "the stream owner stopped before writing a chunk",
                        source: Box::new(mysql_async::Error::Other("stream owner stopped".into())),
                    })
                }
            }
        }
    }
}

/// Stops the stream owner remembering a table's transactions for a job that ended.
struct Unwatch<'a>(&'a Notes, &'a TableName);

impl Drop for Unwatch<'_> {
    fn drop(&mut self) {
        self.0.unwatch(self.1);
    }
}

/// Withdraws an announced chunk unless disarmed (its rows were handed over).
struct Unread<'a>(&'a Notes, Option<u64>);

impl Unread<'_> {
    fn disarm(mut self) -> u64 {
        self.1.take().expect("armed until disarmed")
    }
}

impl Drop for Unread<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.1 {
            self.0.withdraw(id);
        }
    }
}

/// What is left of a job: the next key range, or the next listed keys.
enum Plan {
    Range {
        cursor: KeyRange,
        rows: u64,
        finished: bool,
    },
    Keys {
        keys: Vec<Vec<Value>>,
        done: usize,
        per_chunk: usize,
    },
}

impl Plan {
    fn of(job: &SnapshotJob, shape: &Shape) -> Result<Plan, SnapshotError> {
        let types = shape.key_types();
        let bad = |given: &str, why: String| SnapshotError::BadKey {
            table: job.table.clone(),
            given: given.to_owned(),
            why,
        };
        let parse = |given: &Option<String>| -> Result<Option<Vec<Value>>, SnapshotError> {
            given
                .as_deref()
                .map(|g| parse_key(g, &types).map_err(|why| bad(g, why)))
                .transpose()
        };
        if job.kind == SnapshotKind::Keys {
            let text = job.keys_json.as_deref().unwrap_or("[]");
            let listed: Vec<serde_json::Value> =
                serde_json::from_str(text).map_err(|e| bad(text, e.to_string()))?;
            let keys = listed
                .iter()
                .map(|k| match k {
                    serde_json::Value::Array(parts) => parse_parts(parts, &types),
                    one => parse_parts(std::slice::from_ref(one), &types),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|why| bad(text, why))?;
            let done = job
                .after_key
                .as_deref()
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            return Ok(Plan::Keys {
                keys,
                done,
                per_chunk: 1000,
            });
        }
        let after = match &job.after_key {
            Some(a) => Some(serde_json::from_str(a).map_err(|e| bad(a, e.to_string()))?),
            None => None,
        };
        Ok(Plan::Range {
            cursor: KeyRange {
                after,
                through: None,
                from: parse(&job.pk_from)?,
                until: parse(&job.pk_to)?,
            },
            rows: 0,
            finished: false,
        })
    }

    /// The next chunk's scope and where the job stands once it is written.
    async fn next(
        &mut self,
        executor: &Executor,
        shape: &Shape,
    ) -> Result<Option<(Scope, Progress)>, SnapshotError> {
        match self {
            Plan::Keys {
                keys,
                done,
                per_chunk,
            } => {
                if *done >= keys.len() {
                    return Ok(None);
                }
                let end = (*done + *per_chunk).min(keys.len());
                let chunk = keys[*done..end].to_vec();
                *done = end;
                Ok(Some((Scope::Keys(chunk), Progress::Keys(end))))
            }
            Plan::Range {
                cursor,
                rows,
                finished,
            } => {
                if *finished {
                    return Ok(None);
                }
                let s = &executor.inner;
                if *rows == 0 {
                    *rows = s.config.chunk_rows;
                }
                let mut conn = s
                    .source
                    .get_conn()
                    .await
                    .map_err(|e| source_error(&shape.name.to_string(), "connecting", e))?;
                let next = source::next_ranges(&mut conn, shape, cursor, *rows, 1).await?;
                let range = next.into_iter().next().expect("one range is always given");
                match &range.through {
                    Some(t) => cursor.after = Some(t.clone()),
                    None => *finished = true,
                }
                let progress = Progress::Through(range.through.clone());
                Ok(Some((Scope::Range(range), progress)))
            }
        }
    }
}

impl Progress {
    /// As a job's `after_key`: the key's values as JSON, or the count of keys done.
    fn to_json(&self) -> Option<String> {
        match self {
            Progress::Through(Some(k)) => serde_json::to_string(k).ok(),
            Progress::Through(None) => None,
            Progress::Keys(n) => Some(n.to_string()),
        }
    }
}

fn source_error(table: &str, what: &'static str, e: mysql_async::Error) -> SnapshotError {
    let table = match table.split_once('.') {
        Some((db, t)) => TableName::new(db, t),
        None => TableName::new("", table),
    };
    SnapshotError::Source {
        table,
        what,
        source: Box::new(e),
    }
}

/// The error and its causes, for a log line or a job's record.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
