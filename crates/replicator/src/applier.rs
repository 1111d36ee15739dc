//! The applier: writes batches of source transactions to the target.
//!
//! Invariants:
//! - one batch is one target transaction, and that transaction also writes the batch's
//!   end position (see [`crate::checkpoint`]);
//! - a row the target rejects is recorded in the control store *before* the transaction
//!   that moves past it commits, so it is never lost;
//! - a transient error retries the whole batch, forever, with capped backoff;
//! - a source transaction the reader hands on in fragments is one target transaction too,
//!   committed with its last part (see [`fragments`]).

mod fragments;
mod missing;
mod snapshot;
mod truncate;

use crate::batch::{
    coalesce, group_by_table, in_source_order, runs, TableWrites, Write, WriteKind,
};
use crate::error::ReplicatorError;
use crate::metrics;
use concord_binlog::{ReaderEvent, Receiver};
use concord_change::{Position, TableName, Transaction};
use concord_config::{ReplicatorConfig, TableFilter};
use concord_control::{until_stored, ControlStore, FailedEvent, FailureReason, MissingRows};
use concord_schema_cache::{ColumnPlan, PlanError, RefreshReason, SchemaCache, TargetTable};
use concord_target::offsets::{Offsets, PartitionProgress};
use concord_target::sql::{build, chunk_sizes, columns_per_row, Fixup};
use concord_target::Checkpoints;
use concord_target::{classify, ErrorClass};
use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Params};
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_target::session::{connect_writer, IDLE_RECONNECT, LENIENT_SQL_MODE, STRICT_SQL_MODE};

pub struct Applier {
    opts: Opts,
    conn: Option<Conn>,
    /// When the connection last ended a transaction (see [`IDLE_RECONNECT`]).
    idle_since: Instant,
    schema: SchemaCache,
    control: ControlStore,
    filter: TableFilter,
    checkpoints: Checkpoints,
    config: ReplicatorConfig,
    /// Rows of the batch being written whose target table is missing (see [`missing`]).
    missing: Vec<MissingRows>,
    /// What the batch's TRUNCATEs did, table by table (see [`truncate`]).
    truncates: Vec<(TableName, Position, truncate::Done)>,
    /// Whether the target's engine is left to cascade foreign keys (direct mode: batches
    /// keep source order). Kafka mode cannot keep it across partitions, and gets a key
    /// change as a delete and an insert, which would cascade a delete.
    cascades: bool,
    /// Set when this applier is a snapshot's stream owner (see [`snapshot`]).
    snapshot: Option<snapshot::SnapshotLink>,
    /// Every batch it writes names each key once (a snapshot's chunk writer): there is
    /// nothing to coalesce.
    distinct_keys: bool,
    /// Transient failures of one batch after which it gives up (a snapshot's chunk writer:
    /// the stream waits on it, and a chunk given up is read again later); `None`: never.
    give_up_after: Option<u32>,
}

/// What a batch records as its position, in its own transaction.
pub enum Progress<'a> {
    /// The binlog position after the batch's last transaction.
    Binlog,
    /// Kafka offsets, fenced (see [`crate::offsets`]).
    Kafka(&'a Offsets, &'a [PartitionProgress]),
    /// None: a snapshot's chunk, written between two batches of the stream.
    Snapshot,
}

/// How a batch ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    /// Another replicator owns a partition of the batch now; nothing was committed.
    Fenced,
}

/// Why one attempt at a batch did not commit.
#[derive(Debug)]
enum Abort {
    Transient(Box<dyn std::error::Error + Send + Sync>),
    SchemaMoved,
    Fenced,
}

type Attempt<T> = Result<T, Abort>;

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn transient(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Abort {
    Abort::Transient(e.into())
}

impl Applier {
    pub fn new(
        opts: Opts,
        schema: SchemaCache,
        control: ControlStore,
        filter: TableFilter,
        checkpoints: Checkpoints,
        config: ReplicatorConfig,
    ) -> Self {
        // Exported at 0 from the start, so an alert's increase() sees the first retry.
        for cause in ["transient", "schema", "control_store"] {
            metrics::RETRIES.with_label_values(&[cause]);
        }
        Self {
            opts,
            conn: None,
            idle_since: Instant::now(),
            schema,
            control,
            filter,
            checkpoints,
            config,
            missing: Vec::new(),
            truncates: Vec::new(),
            cascades: true,
            snapshot: None,
            distinct_keys: false,
            give_up_after: None,
        }
    }

    /// Kafka mode: foreign keys never cascade on the target (see `cascades`); the verifier
    /// flags the child rows a cascade on the source changed.
    pub fn without_cascades(mut self) -> Self {
        self.cascades = false;
        self
    }

    /// Applies what the reader sends until the channel closes.
    pub async fn run(
        mut self,
        mut rx: Receiver,
        ready: Arc<AtomicBool>,
    ) -> Result<(), ReplicatorError> {
        // The end of the last batch this loop committed (unknown until the first one).
        let mut saved: Option<Position> = None;
        let notes = self.snapshot_notes();
        let mut writing = snapshot::ChunkWrites::new();
        loop {
            // Between two batches: the snapshot's chunks read at or before this position
            // are written before anything after it is applied.
            if self.start_snapshot_writes(&mut writing, saved.as_ref(), !rx.is_empty()) {
                let notes = notes.as_ref().expect("writes come from a snapshot");
                tokio::select! {
                    Some(done) = writing.next() => self.snapshot_write_done(done)?,
                    () = notes.wait_ready() => {}
                }
                continue;
            }
            let first = match &notes {
                None => rx.recv().await,
                Some(notes) => tokio::select! {
                    event = rx.recv() => event,
                    // A chunk was read while the stream is idle.
                    () = notes.wait_ready() => continue,
                },
            };
            let Some(first) = first else {
                return Ok(());
            };
            let mut batch = match first {
                ReaderEvent::CaughtUp {
                    position,
                    resume_from,
                } => {
                    // Idle at the end of the binlog: move the checkpoint there too (past a
                    // rotation, say), so that "the replicator has applied everything up to
                    // the source's current position" can be seen from the target alone —
                    // the verifier waits for exactly that. The first time also covers a
                    // replicator that started at the source's current position with no
                    // checkpoint: restarted later, it resumes here, not at a newer "current".
                    if saved.as_ref().is_none_or(|s| *s < position) {
                        let idle = Transaction {
                            end: position.clone(),
                            resume_from,
                            commit_ts: unix_now() as u32,
                            ..Transaction::default()
                        };
                        self.apply_with_retry(std::slice::from_ref(&idle), Progress::Binlog)
                            .await?;
                    }
                    saved = Some(position);
                    metrics::LAG.set(0.0);
                    ready.store(true, Ordering::Relaxed);
                    continue;
                }
                ReaderEvent::Transaction(t) => vec![t],
                ReaderEvent::Fragment(f) => {
                    saved = self.apply_fragmented(Vec::new(), f, &mut rx).await?;
                    ready.store(true, Ordering::Relaxed);
                    continue;
                }
            };
            let mut rows = batch[0].changes.len();
            let mut caught_up = false;
            let mut fragment = None;
            let deadline = Instant::now() + self.config.batch_time;
            // A DDL closes the batch so the schema cache is refreshed before later rows.
            while rows < self.config.batch_rows
                && batch.last().is_some_and(|t| t.ddl.is_none())
                && Instant::now() < deadline
            {
                match rx.try_recv() {
                    Ok(ReaderEvent::Transaction(t)) => {
                        rows += t.changes.len();
                        batch.push(t);
                    }
                    Ok(ReaderEvent::CaughtUp { .. }) => {
                        caught_up = true;
                        break;
                    }
                    // A big transaction begins: the batch so far goes into its target
                    // transaction.
                    Ok(ReaderEvent::Fragment(f)) => {
                        fragment = Some(f);
                        break;
                    }
                    Err(_) => break,
                }
            }
            saved = match fragment {
                Some(f) => self.apply_fragmented(batch, f, &mut rx).await?,
                None => {
                    self.apply_with_retry(&batch, Progress::Binlog).await?;
                    batch.last().map(|t| t.end.clone())
                }
            };
            ready.store(true, Ordering::Relaxed);
            if caught_up && rx.is_empty() {
                metrics::LAG.set(0.0);
            }
        }
    }

    /// Applies one batch and its progress in one target transaction, retrying transient
    /// errors forever.
    pub async fn apply_with_retry(
        &mut self,
        batch: &[Transaction],
        progress: Progress<'_>,
    ) -> Result<Outcome, ReplicatorError> {
        let mut backoff = Duration::from_millis(100);
        let mut schema_retries = 0u32;
        let mut attempts = 0u32;
        let started = Instant::now();
        self.forget_schemas_touched_by(batch).await;
        let failed = loop {
            attempts += 1;
            match self.apply_once(batch, &progress).await {
                Ok(failed) => break failed,
                Err(Abort::Fenced) => return Ok(Outcome::Fenced),
                Err(Abort::SchemaMoved) if schema_retries < 5 => {
                    schema_retries += 1;
                    metrics::RETRIES.with_label_values(&["schema"]).inc();
                }
                Err(Abort::SchemaMoved) => {
                    metrics::RETRIES.with_label_values(&["schema"]).inc();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
                Err(Abort::Transient(e)) if self.give_up_after.is_some_and(|n| attempts >= n) => {
                    self.conn = None;
                    return Err(ReplicatorError::GaveUp {
                        attempts,
                        source: e,
                    });
                }
                Err(Abort::Transient(e)) => {
                    metrics::RETRIES.with_label_values(&["transient"]).inc();
                    let position = batch.last().map(|t| t.end.clone()).unwrap_or_default();
                    tracing::warn!(%position, error = %e, retry_in = ?backoff, "target unavailable; retrying batch");
                    self.conn = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        };
        self.account(batch, &failed, started);
        Ok(Outcome::Committed)
    }

    /// After a batch (or part of a fragmented transaction) was written: its logs and
    /// metrics.
    fn account(&mut self, batch: &[Transaction], failed: &[FailedEvent], started: Instant) {
        for s in batch.iter().flat_map(|t| &t.statements) {
            concord_binlog::report_statement(s);
        }
        truncate::report(&std::mem::take(&mut self.truncates));
        missing::report(&std::mem::take(&mut self.missing));
        self.note_for_snapshot(batch);
        let rows: usize = batch.iter().map(|t| t.changes.len()).sum();
        if rows > 0 {
            metrics::BATCH_ROWS.observe(rows as f64);
            metrics::BATCH_SECONDS.observe(started.elapsed().as_secs_f64());
        }
        let mut applied: HashMap<(&TableName, &str), i64> = HashMap::new();
        for c in batch.iter().flat_map(|t| &t.changes) {
            *applied.entry((&c.table.name, c.op.as_str())).or_default() += 1;
        }
        for f in failed {
            if let Some(n) = applied.get_mut(&(&f.table, f.op.as_str())) {
                *n -= 1;
            }
        }
        for ((table, op), n) in applied {
            metrics::APPLIED
                .with_label_values(&[&table.to_string(), op])
                .inc_by(n.max(0) as u64);
        }
        if let Some(last) = batch.last() {
            metrics::LAG.set((unix_now() - f64::from(last.commit_ts)).max(0.0));
        }
    }

    async fn connection(&mut self) -> Attempt<&mut Conn> {
        // Idle for long, the session may be near the server's wait_timeout: a new one
        // rather than a failed statement.
        if self.idle_since.elapsed() > IDLE_RECONNECT {
            self.conn = None;
        }
        if self.conn.is_none() {
            let conn = connect_writer(
                self.opts.clone(),
                self.config.foreign_key_checks,
                self.config.lock_wait_timeout,
            )
            .await
            .map_err(transient)?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    async fn apply_once(
        &mut self,
        batch: &[Transaction],
        progress: &Progress<'_>,
    ) -> Attempt<Vec<FailedEvent>> {
        self.begin().await?;
        let failures = self
            .write_part(batch, matches!(progress, Progress::Binlog))
            .await?;
        self.commit(batch, progress).await?;
        Ok(failures)
    }

    async fn begin(&mut self) -> Attempt<()> {
        self.connection().await?;
        self.exec("START TRANSACTION", Params::Empty)
            .await
            .map_err(transient)
    }

    /// Writes `batch` into the open target transaction and records what failed (rolling
    /// back on an error). `ordered`: the batch comes in binlog order (see
    /// [`ControlStore::record_missing`]).
    async fn write_part(
        &mut self,
        batch: &[Transaction],
        ordered: bool,
    ) -> Attempt<Vec<FailedEvent>> {
        let mut failures: Vec<FailedEvent> = Vec::new();
        self.missing.clear();
        self.truncates.clear();
        let result = self.write_batch(batch, &mut failures).await;
        if let Err(e) = result {
            self.rollback().await;
            return Err(e);
        }
        failures.extend(
            batch
                .iter()
                .flat_map(|t| &t.undecodable)
                .map(FailedEvent::from),
        );
        failures.extend(
            batch
                .iter()
                .flat_map(|t| &t.statements)
                .map(FailedEvent::from),
        );
        self.record_failures(&failures).await;
        self.record_missing(&self.missing, ordered).await;
        Ok(failures)
    }

    async fn rollback(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            let _ = conn.query_drop("ROLLBACK").await;
        }
        self.idle_since = Instant::now();
    }

    /// Saves the batch's progress in the open target transaction and commits it.
    async fn commit(&mut self, batch: &[Transaction], progress: &Progress<'_>) -> Attempt<()> {
        let conn = self.conn.as_mut().expect("connected");
        let saved = match progress {
            Progress::Binlog => {
                let last = batch.last().expect("batches are never empty");
                self.checkpoints
                    .save(conn, &last.end, last.resume_from.as_ref(), last.commit_ts)
                    .await
                    .map(|()| true)
            }
            Progress::Kafka(offsets, parts) => offsets.claim_and_save(conn, parts).await,
            Progress::Snapshot => Ok(true),
        };
        match saved {
            Ok(true) => {}
            Ok(false) => {
                let _ = conn.query_drop("ROLLBACK").await;
                return Err(Abort::Fenced);
            }
            Err(e) => {
                let _ = conn.query_drop("ROLLBACK").await;
                return Err(transient(e));
            }
        }
        conn.query_drop("COMMIT").await.map_err(transient)?;
        self.idle_since = Instant::now();
        Ok(())
    }

    /// A source DDL may be followed by the same change on the target at any moment, so
    /// the tables it names (or, if the reader could not tell, its whole schema) are read
    /// from the target again before the rows after it are written.
    async fn forget_schemas_touched_by(&self, batch: &[Transaction]) {
        for ddl in batch.iter().filter_map(|t| t.ddl.as_ref()) {
            tracing::info!(schema = %ddl.schema, statement = %ddl.statement, "source DDL");
            if ddl.tables.is_empty() {
                let mapped = self
                    .filter
                    .target_name(&TableName::new(ddl.schema.clone(), ""));
                self.schema.refresh_schema(&ddl.schema);
                self.schema.refresh_schema(&mapped.db);
            }
            for table in &ddl.tables {
                report_online_schema_change(table, &ddl.statement);
                let target = self.filter.target_name(table);
                self.schema.refresh(&target, RefreshReason::SourceDdl).await;
            }
        }
    }

    async fn write_batch(
        &mut self,
        batch: &[Transaction],
        failures: &mut Vec<FailedEvent>,
    ) -> Attempt<()> {
        let groups = group_by_table(batch);
        let mut targets: HashMap<TableName, Option<Arc<TargetTable>>> = HashMap::new();
        for g in &groups {
            let target_name = self.filter.target_name(&g.table);
            let target = self.schema.get(&target_name).await.map_err(transient)?;
            targets.insert(g.table.clone(), target);
        }
        // Tables whose target rows other tables' foreign keys cascade from, and that this
        // batch deletes rows of or moves to other keys: only those changes cascade.
        let cascading: HashSet<TableName> = if self.cascades {
            groups
                .iter()
                .filter(|g| {
                    targets[&g.table]
                        .as_ref()
                        .is_some_and(|t| !t.cascades.is_empty())
                        && g.writes.iter().any(|w| w.kind == WriteKind::Delete)
                })
                .map(|g| g.table.clone())
                .collect()
        } else {
            HashSet::new()
        };
        if cascading.is_empty() {
            for group in groups {
                let target = targets[&group.table].clone();
                let may_coalesce = !self.distinct_keys;
                self.write_table(group, target, may_coalesce, false, failures)
                    .await?;
            }
        } else {
            // The target's engine cascades as the source's did only if it meets the
            // changes in source order, with its checks on for the parent's deletes and
            // key moves.
            drop(groups);
            for part in in_source_order(batch, &|t| cascading.contains(t)) {
                let target = targets[&part.table].clone();
                let parent = cascading.contains(&part.table);
                self.write_table(part, target, false, parent, failures)
                    .await?;
            }
        }
        // A truncating transaction ends its batch (it is a DDL): every row above came
        // before it.
        for txn in batch
            .iter()
            .filter(|t| !t.truncated.is_empty() || !t.partition_rows.is_empty())
        {
            self.truncate(txn, failures).await?;
        }
        Ok(())
    }

    /// Writes one table's part of a batch; `may_coalesce`: only the last write of each key
    /// is needed (not so when the target has other unique keys, or cascades); `parent`:
    /// other tables' foreign keys cascade from it, so its deletes and key moves run with
    /// the target's checks on (only they cascade; its other writes keep the configured
    /// setting, so its own foreign keys do not start refusing rows).
    async fn write_table(
        &mut self,
        group: TableWrites<'_>,
        target: Option<Arc<TargetTable>>,
        may_coalesce: bool,
        parent: bool,
        failures: &mut Vec<FailedEvent>,
    ) -> Attempt<()> {
        let target_name = self.filter.target_name(&group.table);
        let Some(target) = target else {
            let m = missing::missing_rows(&group.table, &target_name, &group.writes);
            self.missing.push(m);
            return Ok(());
        };
        let writes = if target.has_unique_secondary || !may_coalesce {
            group.writes
        } else {
            coalesce(group.writes)
        };
        for run in runs(&writes) {
            let plan = match ColumnPlan::new(
                &run.source,
                &target,
                &self.config.audit_flag_column,
                &self.config.audit_ts_column,
            ) {
                Ok(p) => p,
                Err(e @ (PlanError::NoSourceKey | PlanError::KeyColumnMissing(_))) => {
                    for w in &run.writes {
                        failures.push(failed(
                            w,
                            FailureReason::NoPrimaryKey,
                            format!("{target_name}: {e}"),
                        ));
                    }
                    continue;
                }
            };
            plan.count_skipped(&group.table.to_string(), run.writes.len());
            let checks = parent && matches!(run.kind, WriteKind::Delete | WriteKind::Move);
            if checks {
                self.foreign_key_checks(true).await?;
            }
            let written = self.write_run(&run, &target, &plan, failures).await;
            if checks {
                self.foreign_key_checks(self.config.foreign_key_checks)
                    .await?;
            }
            written?;
        }
        Ok(())
    }

    async fn write_run(
        &mut self,
        run: &crate::batch::Run<'_>,
        target: &TargetTable,
        plan: &ColumnPlan,
        failures: &mut Vec<FailedEvent>,
    ) -> Attempt<()> {
        let mut offset = 0;
        for size in chunk_sizes(run.writes.len(), columns_per_row(run.kind, plan)) {
            let chunk = &run.writes[offset..offset + size];
            offset += size;
            self.write_chunk(run.kind, target, plan, chunk, failures)
                .await?;
        }
        Ok(())
    }

    /// Turns the target's foreign-key checks on or off for the statements that follow (a
    /// connection opened afresh has the configured setting).
    async fn foreign_key_checks(&mut self, on: bool) -> Attempt<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        conn.query_drop(format!("SET SESSION foreign_key_checks = {}", u8::from(on)))
            .await
            .map_err(transient)
    }

    /// Writes one statement's rows; if the target rejects the statement for its content,
    /// writes the rows one by one and records those it rejects.
    async fn write_chunk(
        &mut self,
        kind: WriteKind,
        target: &TargetTable,
        plan: &ColumnPlan,
        chunk: &[Write<'_>],
        failures: &mut Vec<FailedEvent>,
    ) -> Attempt<()> {
        let stmt = build(kind, &target.name, plan, chunk);
        if stmt.sql.is_empty() {
            return Ok(());
        }
        let e = match self.exec(&stmt.sql, Params::Positional(stmt.params)).await {
            Ok(()) if kind == WriteKind::Move && self.found_none() => {
                // The target lacks the row at its old key: the new one is written whole.
                return Box::pin(self.write_chunk(
                    WriteKind::Upsert,
                    target,
                    plan,
                    chunk,
                    failures,
                ))
                .await;
            }
            Ok(()) => {
                return self
                    .after_write(kind, target, chunk, stmt.fixups, failures)
                    .await
            }
            Err(e) => e,
        };
        match classify(&e) {
            ErrorClass::Transient => Err(transient(e)),
            ErrorClass::UnknownColumn => {
                self.schema
                    .refresh(&target.name, RefreshReason::UnknownColumn)
                    .await;
                Err(Abort::SchemaMoved)
            }
            ErrorClass::MissingTable => {
                self.schema
                    .refresh(&target.name, RefreshReason::MissingTable)
                    .await;
                Err(Abort::SchemaMoved)
            }
            ErrorClass::Rejected if chunk.len() == 1 => {
                let w = &chunk[0];
                tracing::warn!(table = %target.name, position = %w.change.position, error = %e, "target rejected a row; recorded as a failed event");
                failures.push(failed(w, FailureReason::Rejected, e.to_string()));
                Ok(())
            }
            ErrorClass::Rejected => {
                for w in chunk {
                    Box::pin(self.write_chunk(
                        kind,
                        target,
                        plan,
                        std::slice::from_ref(w),
                        failures,
                    ))
                    .await?;
                }
                Ok(())
            }
        }
    }

    /// After a statement succeeded: a partial update that found no row is recorded (its
    /// missing columns cannot be made up), and ENUM index-0 values are set in a non-strict
    /// session — the only statements that run in one, each setting only those columns.
    async fn after_write(
        &mut self,
        kind: WriteKind,
        target: &TargetTable,
        chunk: &[Write<'_>],
        fixups: Vec<Fixup>,
        failures: &mut Vec<FailedEvent>,
    ) -> Attempt<()> {
        let conn = self.conn.as_mut().expect("connected before exec");
        if kind == WriteKind::Update && conn.affected_rows() == 0 {
            let w = &chunk[0];
            tracing::warn!(table = %target.name, position = %w.change.position, "a partial row image updates a row the target does not have; recorded as a failed event");
            failures.push(failed(
                w,
                FailureReason::MissingRow,
                format!(
                    "{}: the source logged a partial row image (binlog_row_image MINIMAL or \
                     NOBLOB) for an update of a row the target does not have; its other \
                     columns are not known",
                    target.name
                ),
            ));
            return Ok(());
        }
        if fixups.is_empty() {
            return Ok(());
        }
        self.exec(
            &format!("SET SESSION sql_mode = '{LENIENT_SQL_MODE}'"),
            Params::Empty,
        )
        .await
        .map_err(transient)?;
        for f in fixups {
            if let Err(e) = self.exec(&f.sql, Params::Positional(f.params)).await {
                // A fresh connection is strict again.
                self.conn = None;
                return Err(transient(e));
            }
            let conn = self.conn.as_mut().expect("connected before exec");
            if conn.affected_rows() == 0 {
                let w = &chunk[f.write];
                tracing::warn!(table = %target.name, position = %w.change.position, "an ENUM index 0 could not be set on the row written; recorded as a failed event");
                failures.push(failed(
                    w,
                    FailureReason::Rejected,
                    format!(
                        "{}: the row was written with ENUM index 1 where the source holds \
                         index 0 (the empty error value), and the fix-up found no row to set \
                         it on",
                        target.name
                    ),
                ));
            }
        }
        self.exec(
            &format!("SET SESSION sql_mode = '{STRICT_SQL_MODE}'"),
            Params::Empty,
        )
        .await
        .map_err(transient)
    }

    /// Whether the last statement found no row (`client_found_rows`: found, not changed).
    fn found_none(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.affected_rows() == 0)
    }

    async fn exec(&mut self, sql: &str, params: Params) -> Result<(), mysql_async::Error> {
        let conn = self.conn.as_mut().expect("connected before exec");
        if matches!(params, Params::Empty) {
            conn.query_drop(sql).await
        } else {
            conn.exec_drop(sql, params).await
        }
    }

    /// A failed event must be stored before the batch commits; the control store being
    /// down therefore holds replication back (retried) rather than losing the record.
    pub(crate) async fn record_failures(&self, failures: &[FailedEvent]) {
        for f in failures {
            let retries = until_stored("failed event", self.config.max_backoff, || {
                self.control.record_failed(f)
            })
            .await;
            metrics::RETRIES
                .with_label_values(&["control_store"])
                .inc_by(u64::from(retries));
            metrics::FAILED
                .with_label_values(&[&f.table.to_string(), f.reason.as_str()])
                .inc();
        }
    }
}

/// Says at INFO what an online schema change tool is doing, from its DDL on a helper table:
/// created (its run started), renamed (the swap), dropped (it finished or cleaned up).
fn report_online_schema_change(table: &TableName, statement: &str) {
    let Some((tool, original)) = concord_config::osc_helper(table) else {
        return;
    };
    let verb = statement
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let what = match verb.as_str() {
        "CREATE" => "started: helper table created",
        "RENAME" => "swapped the tables",
        "DROP" => "finished: helper table dropped",
        _ => "changed its helper table",
    };
    tracing::info!(tool = tool.as_str(), table = %original, helper = %table,
        "online schema change {what}; its helper tables are not replicated");
}

fn failed(w: &Write<'_>, reason: FailureReason, error: String) -> FailedEvent {
    FailedEvent {
        position: w.change.position.clone(),
        row_index: w.change.row_index,
        table: w.change.table.name.clone(),
        op: w.change.op.as_str().into(),
        reason,
        error,
        event: serde_json::to_string(w.change).expect("changes serialize"),
    }
}
