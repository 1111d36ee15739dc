//! The direct-mode replicator as a snapshot's stream owner (docs/SNAPSHOT.md): it shows
//! every transaction it commits to the snapshot's [`Notes`], and between two batches
//! writes the chunks whose snapshot position it has passed — up to `snapshot.threads` at
//! once, each on a writer connection of its own. While chunks are being written the stream
//! waits; chunks that become ready meanwhile go to the writers as they free up, until the
//! stream has waited [`STREAM_WAITS_AT_MOST`] — then the writes drain and the stream goes on.
//!
//! Invariant: a chunk is taken only between two committed batches, at a position at or
//! after its snapshot's, and nothing after that position is applied before every chunk
//! taken there has committed (or been handed back to be read again).

use super::{Applier, Progress};
use crate::error::ReplicatorError;
use concord_change::{Op, Position, RowChange, Transaction, Value};
use concord_snapshot::{keys_in_scope, not_written_rows, Notes, Outcome, ReadyChunk, Resolved};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long the stream may wait behind chunk writes that keep coming before no more are
/// started and it goes on.
const STREAM_WAITS_AT_MOST: Duration = Duration::from_millis(250);

/// Attempts at writing one chunk before it is handed back to be read again.
const CHUNK_ATTEMPTS: u32 = 5;

type ChunkWrite = BoxFuture<'static, (Applier, Result<(), ReplicatorError>)>;

/// The chunk writes going on: kept by the stream's loop, not in the applier (the futures
/// are `Send` but not `Sync`, and the applier is shared by reference across awaits).
pub(crate) type ChunkWrites = FuturesUnordered<ChunkWrite>;

/// What a chunk writer is made of: the stream's applier's settings (its own connection,
/// no position).
struct WriterSeed {
    opts: mysql_async::Opts,
    schema: concord_schema_cache::SchemaCache,
    control: concord_control::ControlStore,
    filter: concord_config::TableFilter,
    checkpoints: concord_target::Checkpoints,
    config: concord_config::ReplicatorConfig,
    cascades: bool,
}

impl WriterSeed {
    fn writer(&self) -> Applier {
        let mut w = Applier::new(
            self.opts.clone(),
            self.schema.clone(),
            self.control.clone(),
            self.filter.clone(),
            self.checkpoints.clone(),
            self.config.clone(),
        );
        w.cascades = self.cascades;
        // A chunk's rows and deletes are one per key.
        w.distinct_keys = true;
        // The stream waits on a chunk: one the target keeps refusing is read again later.
        w.give_up_after = Some(CHUNK_ATTEMPTS);
        w
    }
}

/// The snapshot's link: its notes, and the writers of its chunks.
pub(crate) struct SnapshotLink {
    pub notes: Notes,
    seed: WriterSeed,
    /// Writers not writing now (the others are owned by their write's future).
    idle: Vec<Applier>,
    /// Chunks taken and not yet handed to a writer.
    queued: VecDeque<ReadyChunk>,
    threads: usize,
    /// Since when the stream has had something to apply while chunks were written.
    stream_waiting: Option<Instant>,
}

impl Applier {
    /// Makes this applier the stream owner of a snapshot: chunks announced on `notes` are
    /// written by up to `threads` writers at once.
    pub fn with_snapshot(mut self, notes: Notes, threads: usize) -> Self {
        let seed = WriterSeed {
            opts: self.opts.clone(),
            schema: self.schema.clone(),
            control: self.control.clone(),
            filter: self.filter.clone(),
            checkpoints: self.checkpoints.clone(),
            config: self.config.clone(),
            cascades: self.cascades,
        };
        self.snapshot = Some(SnapshotLink {
            notes,
            seed,
            idle: Vec::new(),
            queued: VecDeque::new(),
            threads: threads.max(1),
            stream_waiting: None,
        });
        self
    }

    /// After a committed batch (or part of one): the snapshot notes its changes.
    pub(super) fn note_for_snapshot(&self, batch: &[Transaction]) {
        if let Some(link) = &self.snapshot {
            for t in batch {
                link.notes.observe(t);
            }
        }
    }

    /// The snapshot's notes, to wait on while idle.
    pub(super) fn snapshot_notes(&self) -> Option<Notes> {
        self.snapshot.as_ref().map(|l| l.notes.clone())
    }

    /// Between two batches, at `at` (the position committed last): starts writing the
    /// chunks read at or before it, as writers are free. `stream_has_more`: the stream has
    /// something to apply — after [`STREAM_WAITS_AT_MOST`] no new chunk is taken.
    /// Returns whether chunk writes are still going on (the stream must wait for them).
    pub(super) fn start_snapshot_writes(
        &mut self,
        writing: &mut ChunkWrites,
        at: Option<&Position>,
        stream_has_more: bool,
    ) -> bool {
        let Some(link) = self.snapshot.as_mut() else {
            return false;
        };
        let busy = !writing.is_empty() || !link.queued.is_empty();
        let waited_enough = match (stream_has_more && busy, link.stream_waiting) {
            (true, None) => {
                link.stream_waiting = Some(Instant::now());
                false
            }
            (true, Some(since)) => since.elapsed() >= STREAM_WAITS_AT_MOST,
            (false, _) => {
                link.stream_waiting = None;
                false
            }
        };
        if let (Some(at), false) = (at, waited_enough) {
            link.queued.extend(link.notes.take_ready(at));
        }
        while writing.len() < link.threads {
            let Some(chunk) = link.queued.pop_front() else {
                break;
            };
            let writer = link.idle.pop().unwrap_or_else(|| link.seed.writer());
            writing.push(Box::pin(async move {
                let mut writer = writer;
                let result = writer.write_snapshot_chunk(chunk).await;
                (writer, result)
            }));
        }
        !writing.is_empty()
    }

    /// A chunk write ended: its writer goes back to the idle ones.
    pub(super) fn snapshot_write_done(
        &mut self,
        (writer, result): (Applier, Result<(), ReplicatorError>),
    ) -> Result<(), ReplicatorError> {
        let Some(link) = self.snapshot.as_mut() else {
            return result;
        };
        link.idle.push(writer);
        if result.is_err() {
            // The run ends: chunks taken and not written go back to their readers.
            for chunk in link.queued.drain(..) {
                chunk.finish(Outcome::Spoiled("the replicator restarts".into()));
            }
        }
        result
    }

    /// Writes one chunk in one target transaction: its rows less what the stream wrote
    /// since its read, and deletes of target keys the source did not have.
    async fn write_snapshot_chunk(&mut self, mut chunk: ReadyChunk) -> Result<(), ReplicatorError> {
        if let Some(why) = chunk.spoiled.take() {
            chunk.finish(Outcome::Spoiled(why));
            return Ok(());
        }
        let shape = chunk.spec.shape.clone();
        let target = match self.schema.get(&shape.target).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                chunk.finish(Outcome::Failed(format!(
                    "the target has no table {}",
                    shape.target
                )));
                return Ok(());
            }
            Err(e) => {
                chunk.finish(Outcome::Spoiled(format!(
                    "reading the target's columns: {e}"
                )));
                return Ok(());
            }
        };
        let keys = match self.target_keys(&chunk, &target).await {
            Ok(k) => k,
            Err(e) => {
                chunk.finish(Outcome::Spoiled(format!("reading the target's keys: {e}")));
                return Ok(());
            }
        };
        let mut resolved = chunk.resolve(&keys);
        resolved.deletes = match self.not_written(&chunk, &target, &mut resolved).await {
            Ok(d) => d,
            Err(e) => {
                chunk.finish(Outcome::Spoiled(format!("reading the target's keys: {e}")));
                return Ok(());
            }
        };
        let (copied, deleted) = (resolved.rows.len() as u64, resolved.deletes.len() as u64);
        let txn = chunk_transaction(&chunk, resolved);
        match self.apply_with_retry(&[txn], Progress::Snapshot).await {
            Ok(_) => {
                chunk.finish(Outcome::Written { copied, deleted });
                Ok(())
            }
            Err(e @ ReplicatorError::GaveUp { .. }) => {
                let why = format!("writing the chunk: {e}: {}", chain_of(&e));
                tracing::warn!(table = %shape.name, chunk = chunk.spec.seq, %why, "snapshot chunk handed back to be read again");
                chunk.finish(Outcome::Spoiled(why));
                Ok(())
            }
            Err(e) => {
                chunk.finish(Outcome::Spoiled(format!("writing the chunk: {e}")));
                Err(e)
            }
        }
    }

    /// The chunk's deletes less the target rows its collation matches with a written key.
    async fn not_written(
        &mut self,
        chunk: &ReadyChunk,
        target: &concord_schema_cache::TargetTable,
        resolved: &mut Resolved,
    ) -> Result<Vec<Vec<Value>>, mysql_async::Error> {
        let deletes = std::mem::take(&mut resolved.deletes);
        if deletes.is_empty() {
            return Ok(deletes);
        }
        let conn = self
            .connection()
            .await
            .map_err(|_| mysql_async::Error::Other("the target is unreachable".into()))?;
        let shape = chunk.spec.shape.clone();
        not_written_rows(conn, &shape, target, &resolved.rows, deletes).await
    }

    /// The target's keys in the chunk's scope, retried while the target is away (for a few
    /// attempts: a chunk given up is read again later).
    async fn target_keys(
        &mut self,
        chunk: &ReadyChunk,
        target: &concord_schema_cache::TargetTable,
    ) -> Result<Vec<Vec<Value>>, mysql_async::Error> {
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            let conn = match self.connection().await {
                Ok(c) => c,
                Err(_) => {
                    attempts += 1;
                    if attempts > 5 {
                        return Err(mysql_async::Error::Other(
                            "the target is unreachable".into(),
                        ));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
            };
            match keys_in_scope(conn, &chunk.spec, target).await {
                Ok(k) => return Ok(k),
                Err(e) => {
                    self.conn = None;
                    attempts += 1;
                    if attempts > 5 {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }
}

/// The causes below an error, joined.
fn chain_of(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push(c.to_string());
        cause = c.source();
    }
    out.join(": ")
}

/// A chunk's writes as one transaction of changes: deletes by key first — a target key
/// that differs from a row's key only in ways its collation ignores (case, trailing
/// spaces) is the same row, deleted and then written anew — then the rows as
/// [`Op::Read`]. Their origin (in failed events) is `snapshot:<job>` at the chunk's number.
fn chunk_transaction(chunk: &ReadyChunk, resolved: Resolved) -> Transaction {
    let shape = &chunk.spec.shape;
    let origin = Position::new(format!("snapshot:{}", chunk.spec.job), chunk.spec.seq);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or_default();
    let table = shape.change_table.clone();
    let width = table.columns.len();
    let mut changes: Vec<RowChange> =
        Vec::with_capacity(resolved.rows.len() + resolved.deletes.len());
    for key in resolved.deletes {
        let mut image = vec![Value::Absent; width];
        for (&i, v) in table.primary_key.iter().zip(key) {
            image[i] = v;
        }
        changes.push(RowChange {
            table: table.clone(),
            op: Op::Delete,
            before: Some(image),
            after: None,
            position: origin.clone(),
            row_index: changes.len() as u32,
            commit_ts: now,
        });
    }
    for row in resolved.rows {
        changes.push(RowChange {
            table: table.clone(),
            op: Op::Read,
            before: None,
            after: Some(row),
            position: origin.clone(),
            row_index: changes.len() as u32,
            commit_ts: now,
        });
    }
    Transaction {
        changes,
        end: chunk.at.clone(),
        commit_ts: now,
        ..Transaction::default()
    }
}
