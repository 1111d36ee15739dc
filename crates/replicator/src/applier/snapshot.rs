//! The direct-mode replicator as a snapshot's stream owner (docs/SNAPSHOT.md): it shows
//! every transaction it commits to the snapshot's [`Notes`], and between two batches
//! writes the chunks whose snapshot position it has passed — several at once, each on a
//! writer connection of its own, while the stream waits.
//!
//! Invariant: a chunk is written only between two committed batches, at a position at or
//! after its snapshot's, and nothing after that position is applied before the chunk's
//! transaction has committed.

use super::{Applier, Progress};
use crate::error::ReplicatorError;
use concord_change::{Op, Position, RowChange, Transaction, Value};
use concord_snapshot::{keys_in_scope, Notes, Outcome, ReadyChunk, Resolved};
use futures_util::future::join_all;
use std::time::Duration;

/// The snapshot's link: its notes, and the writers of its chunks.
pub(crate) struct SnapshotLink {
    pub notes: Notes,
    writers: Vec<Applier>,
    threads: usize,
}

impl Applier {
    /// Makes this applier the stream owner of a snapshot: chunks announced on `notes` are
    /// written by up to `threads` writers at once.
    pub fn with_snapshot(mut self, notes: Notes, threads: usize) -> Self {
        self.snapshot = Some(SnapshotLink {
            notes,
            writers: Vec::new(),
            threads: threads.max(1),
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

    /// Between two batches, at `at` (the position committed last): writes the chunks read
    /// at or before it.
    pub(super) async fn write_snapshot_chunks(
        &mut self,
        at: Option<&Position>,
    ) -> Result<(), ReplicatorError> {
        let (Some(at), Some(link)) = (at, self.snapshot.as_ref()) else {
            return Ok(());
        };
        let ready = link.notes.take_ready(at);
        if ready.is_empty() {
            return Ok(());
        }
        let threads = link.threads;
        let needed = ready.len().min(threads);
        let mut writers = std::mem::take(&mut self.snapshot.as_mut().expect("checked").writers);
        while writers.len() < needed {
            writers.push(self.chunk_writer());
        }
        let mut ready = ready.into_iter();
        let mut result = Ok(());
        loop {
            let round: Vec<ReadyChunk> = ready.by_ref().take(threads).collect();
            if round.is_empty() {
                break;
            }
            let written = join_all(
                writers
                    .iter_mut()
                    .zip(round)
                    .map(|(w, chunk)| w.write_snapshot_chunk(chunk)),
            )
            .await;
            if let Some(e) = written.into_iter().find_map(Result::err) {
                result = Err(e);
                break;
            }
        }
        // Chunks not reached (a writer failed) go back to their readers as spoiled.
        for chunk in ready {
            chunk.finish(Outcome::Spoiled("the replicator restarts".into()));
        }
        self.snapshot.as_mut().expect("checked").writers = writers;
        result
    }

    /// A writer for chunks: this applier's settings, its own connection, no position.
    fn chunk_writer(&self) -> Applier {
        let mut w = Applier::new(
            self.opts.clone(),
            self.schema.clone(),
            self.control.clone(),
            self.filter.clone(),
            self.checkpoints.clone(),
            self.config.clone(),
        );
        w.cascades = self.cascades;
        w
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
        let resolved = chunk.resolve(&keys);
        let (copied, deleted) = (resolved.rows.len() as u64, resolved.deletes.len() as u64);
        let txn = chunk_transaction(&chunk, resolved);
        match self.apply_with_retry(&[txn], Progress::Snapshot).await {
            Ok(_) => {
                chunk.finish(Outcome::Written { copied, deleted });
                Ok(())
            }
            Err(e) => {
                chunk.finish(Outcome::Spoiled(format!("writing the chunk: {e}")));
                Err(e)
            }
        }
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

/// A chunk's writes as one transaction of changes: rows as [`Op::Read`], deletes by key.
/// Their origin (in failed events) is `snapshot:<job>` at the chunk's number.
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
    Transaction {
        changes,
        end: chunk.at.clone(),
        commit_ts: now,
        ..Transaction::default()
    }
}
