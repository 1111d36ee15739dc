//! Runs a stream owner's snapshot jobs: walks each job's table in key-ordered chunks,
//! reads `snapshot.threads` of them at once (each announced to the stream owner first),
//! and saves the job's progress as the stream owner writes them, in key order.
//!
//! Invariant: a job's `after_key` moves only past chunks the stream owner reported written,
//! and only past a contiguous run of them, so a job resumed after a crash never skips a
//! chunk (chunks written beyond it are written again).

use crate::error::SnapshotError;
use crate::metrics;
use crate::notes::{ChunkSpec, Notes, Outcome, Scope};
use crate::shape::Shape;
use crate::source;
use concord_change::{TableName, Value};
use concord_chunking::{parse_key, parse_parts, wait_until_quiet, KeyRange};
use concord_config::{Config, SnapshotConfig, SnapshotMode, TableFilter};
use concord_control::{snapshot_state, ControlStore, SnapshotJob, SnapshotKind, SnapshotRequest};
use concord_schema_cache::SchemaCache;
use futures_util::stream::{FuturesOrdered, StreamExt};
use mysql_async::Pool;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

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

    /// Runs the stream's queued jobs, oldest first, as they come; forever. A job that
    /// cannot run as asked (no key, no target table, a source that cannot be snapshotted)
    /// ends failed, with the reason; the others are retried.
    pub async fn run(&self) {
        let s = &self.inner;
        let mut checked = false;
        let mut backoff = Duration::from_secs(1);
        loop {
            let jobs = match s.control.open_snapshots(&s.stream).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(error = %e, "snapshot: reading jobs; retrying");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            if jobs.is_empty() {
                tokio::time::sleep(POLL).await;
                continue;
            }
            if !checked {
                match self.check_source().await {
                    Ok(()) => checked = true,
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %chain(&e), "snapshot: the source is unreachable; retrying");
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                    Err(e) => {
                        let why = chain(&e);
                        tracing::error!(error = %why, "snapshot jobs cannot run");
                        for job in &jobs {
                            self.fail(job, &why).await;
                        }
                        continue;
                    }
                }
            }
            for job in jobs {
                match self.run_job(&job).await {
                    Ok(()) => backoff = Duration::from_secs(1),
                    Err(e) if e.is_transient() => {
                        tracing::warn!(table = %job.table, job = job.id, error = %chain(&e), retry_in = ?backoff,
                            "snapshot interrupted; it resumes after its last written chunk");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        break;
                    }
                    Err(e) => {
                        let why = chain(&e);
                        tracing::error!(table = %job.table, job = job.id, error = %why, "snapshot failed");
                        self.fail(&job, &why).await;
                    }
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
        let shape = Arc::new(
            Shape::describe(&s.source_schema, &s.target_schema, &s.filter, &job.table).await?,
        );
        let table = job.table.to_string();
        let estimate = {
            let mut conn = s
                .source
                .get_conn()
                .await
                .map_err(|e| source_error(&table, "connecting", e))?;
            source::estimate(&mut conn, &shape).await
        };
        tracing::info!(%table, job = job.id, kind = job.kind.as_str(), resume_after = ?job.after_key, estimate,
            "snapshot of a table starting");
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
        let reads = Arc::new(Semaphore::new(s.config.threads));
        let mut in_flight: FuturesOrdered<ChunkDone> = FuturesOrdered::new();
        let mut seq = chunks as u64;
        // The last chunk of a range ends open: the saved key stays the one before it, so a
        // crash before the job is marked done reads that last chunk again.
        let mut after = job.after_key.clone();
        loop {
            while in_flight.len() < 2 * s.config.threads {
                let Some((scope, progress)) = plan.next(self, &shape).await? else {
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
                let reads = reads.clone();
                in_flight.push_back(Box::pin(async move {
                    let (c, d) = this.chunk(spec, reads).await?;
                    Ok((progress, c, d))
                }));
            }
            let Some(done) = in_flight.next().await else {
                break;
            };
            let (progress, c, d) = done?;
            copied += c as i64;
            deleted += d as i64;
            chunks += 1;
            metrics::ROWS.with_label_values(&[&table]).inc_by(c);
            metrics::DELETED.with_label_values(&[&table]).inc_by(d);
            remaining(copied);
            after = progress.to_json().or(after);
            if !s
                .control
                .save_snapshot_progress(job.id, after.as_deref(), copied, deleted, chunks)
                .await?
            {
                tracing::info!(%table, job = job.id, "snapshot cancelled");
                return Ok(());
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
    async fn chunk(
        &self,
        spec: Arc<ChunkSpec>,
        reads: Arc<Semaphore>,
    ) -> Result<(u64, u64), SnapshotError> {
        let s = &self.inner;
        let table = spec.shape.name.to_string();
        loop {
            let announced;
            {
                let _reading = reads.acquire().await.expect("never closed");
                wait_until_quiet(&s.source, s.config.max_threads_running, "snapshot")
                    .await
                    .map_err(|e| source_error(&table, "reading Threads_running", e))?;
                let mut conn = s
                    .source
                    .get_conn()
                    .await
                    .map_err(|e| source_error(&table, "connecting", e))?;
                announced = s.notes.announce(spec.clone());
                match source::read(&mut conn, &spec).await {
                    Ok(read) => s.notes.fill(announced.id, read),
                    Err(e) => {
                        s.notes.withdraw(announced.id);
                        return Err(e);
                    }
                }
            }
            match announced.outcome.await {
                Ok(Outcome::Written { copied, deleted }) => return Ok((copied, deleted)),
                Ok(Outcome::Spoiled(why)) => {
                    metrics::SPOILED.with_label_values(&[&table]).inc();
                    tracing::info!(%table, chunk = spec.seq, %why, "snapshot chunk read again");
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
