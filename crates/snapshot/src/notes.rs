//! Between the snapshot's readers and the stream owner (the direct-mode replicator, or the
//! capture): chunks are announced before they are read, the stream owner shows every
//! transaction it handles, and takes each chunk once it has handled everything up to the
//! chunk's consistent-snapshot position — with what it noted of the chunk's table since.
//!
//! Invariant: a chunk is handed to the stream owner only if every transaction that
//! committed after the chunk's snapshot position and that the stream owner handled before
//! taking it was noted — otherwise it is handed over *spoiled* and read again. (A transaction
//! handled before the announcement can still commit after the snapshot position: MariaDB
//! sends a transaction to replicas before its commit is visible to a new snapshot. So the
//! position the stream owner had handled at the announcement must not be past the
//! snapshot's.)

use crate::shape::Shape;
use concord_change::{Op, Position, RowChange, TableName, Transaction, Value};
use concord_chunking::KeyRange;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Notify};

/// What one chunk covers.
#[derive(Debug)]
pub enum Scope {
    /// The rows of a key range.
    Range(KeyRange),
    /// Exactly these keys (each in the source's primary-key order).
    Keys(Vec<Vec<Value>>),
}

/// A chunk of one job: its table and what it covers.
#[derive(Debug)]
pub struct ChunkSpec {
    pub job: i64,
    /// The chunk's number within its job (also names its rows' origin in failed events).
    pub seq: u64,
    pub shape: Arc<Shape>,
    pub scope: Scope,
}

/// A chunk as read: the rows (in the source's column order) and the binlog position of
/// the consistent snapshot they were read in.
#[derive(Debug)]
pub struct Read {
    pub rows: Vec<Vec<Value>>,
    pub at: Position,
}

/// How the stream owner ended a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written (direct mode) or published and acknowledged (kafka mode).
    Written { copied: u64, deleted: u64 },
    /// Not written: the chunk must be read again (why).
    Spoiled(String),
    /// Not written: the stream owner could not (why); the job fails.
    Failed(String),
}

/// What happened to one key after the chunk's snapshot position.
#[derive(Clone, Debug, PartialEq)]
pub enum Noted {
    /// A whole row was written or the row deleted: the stream owner already holds the
    /// key's current state; the chunk leaves it alone.
    Whole,
    /// Only partial row images (`binlog_row_image` MINIMAL/NOBLOB) updated it, in this
    /// order: laid over the chunk's row they give the key's current state.
    Partial(Vec<Vec<Value>>),
}

#[derive(Clone, Default)]
pub struct Notes {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Chunks announced and not yet taken; checked without the lock on every transaction.
    open: AtomicUsize,
    /// Jobs watching a table; with none, a transaction costs one atomic read and the
    /// update of `handled`.
    watching: AtomicUsize,
    /// The end of the last transaction the stream owner handled, whatever it changed: a
    /// table starts being watched from there.
    handled: Mutex<Position>,
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Tables with a snapshot job running (counted: jobs of one table may overlap), and
    /// for each the end of the last transaction the stream owner handled that changed it.
    watched: HashMap<TableName, (usize, Position)>,
    pending: Vec<Pending>,
}

/// A change of a key: the end of its transaction, and its after-image when that is
/// partial (`None`: the whole row was written or deleted).
type Handled = (Position, Option<Vec<Value>>);

struct Pending {
    id: u64,
    spec: Arc<ChunkSpec>,
    /// What the stream owner had handled when the chunk was announced.
    handled_at_announce: Position,
    /// Key (canonical form) → every change of it handled since the announcement.
    noted: HashMap<Vec<u8>, Vec<Handled>>,
    /// Changes of the table whose rows the binlog does not show, with their position.
    spoilers: Vec<(Position, String)>,
    read: Option<Read>,
    done: oneshot::Sender<Outcome>,
}

/// An announced chunk, as its reader holds it.
pub struct Announced {
    pub id: u64,
    pub outcome: oneshot::Receiver<Outcome>,
}

impl Notes {
    /// Announces a chunk about to be read; from now on the stream owner notes its table's
    /// changes. The outcome comes once the stream owner took it (or it was withdrawn).
    pub fn announce(&self, spec: Arc<ChunkSpec>) -> Announced {
        let (done, outcome) = oneshot::channel();
        let mut state = self.inner.state.lock().expect("notes lock");
        state.next += 1;
        let id = state.next;
        let handled_at_announce = state
            .watched
            .get(&spec.shape.name)
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
        state.pending.push(Pending {
            id,
            spec,
            handled_at_announce,
            noted: HashMap::new(),
            spoilers: Vec::new(),
            read: None,
            done,
        });
        self.inner.open.fetch_add(1, Ordering::SeqCst);
        Announced { id, outcome }
    }

    /// The chunk was read: the stream owner may take it once it has handled `read.at`.
    pub fn fill(&self, id: u64, read: Read) {
        let mut state = self.inner.state.lock().expect("notes lock");
        if let Some(p) = state.pending.iter_mut().find(|p| p.id == id) {
            p.read = Some(read);
        }
        drop(state);
        self.inner.ready.notify_one();
    }

    /// The chunk could not be read: forget it.
    pub fn withdraw(&self, id: u64) {
        let mut state = self.inner.state.lock().expect("notes lock");
        let before = state.pending.len();
        state.pending.retain(|p| p.id != id);
        if state.pending.len() < before {
            self.inner.open.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A job of `table` starts: from now on the stream owner remembers the last transaction
    /// it handled that changed the table (a chunk announced later is checked against it).
    /// Must be called before the job's first chunk is announced.
    pub fn watch(&self, table: &TableName) {
        let mut state = self.inner.state.lock().expect("notes lock");
        // Until the stream handles a transaction of the table, any it handled may have been.
        let since = self.inner.handled.lock().expect("handled lock").clone();
        let entry = state.watched.entry(table.clone()).or_insert((0, since));
        entry.0 += 1;
        self.inner.watching.fetch_add(1, Ordering::SeqCst);
    }

    /// The job of `table` ended.
    pub fn unwatch(&self, table: &TableName) {
        let mut state = self.inner.state.lock().expect("notes lock");
        if let Some((jobs, _)) = state.watched.get_mut(table) {
            *jobs -= 1;
            if *jobs == 0 {
                state.watched.remove(table);
            }
            self.inner.watching.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The stream owner handled `txn` (applied it, or published it): its changes of tables
    /// with announced chunks are noted.
    pub fn observe(&self, txn: &Transaction) {
        *self.inner.handled.lock().expect("handled lock") = txn.end.clone();
        if self.inner.watching.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut state = self.inner.state.lock().expect("notes lock");
        let State {
            watched, pending, ..
        } = &mut *state;
        for (table, (_, last)) in watched.iter_mut() {
            if touches(txn, table) {
                *last = txn.end.clone();
            }
        }
        if self.inner.open.load(Ordering::SeqCst) == 0 {
            return;
        }
        for p in pending.iter_mut() {
            p.note(txn);
        }
    }

    /// Whether any chunk is announced and not yet taken.
    pub fn is_active(&self) -> bool {
        self.inner.open.load(Ordering::SeqCst) > 0
    }

    /// Takes the chunks that were read at or before `handled` — the stream owner's position
    /// between two of its batches — with what was noted of them after their read.
    pub fn take_ready(&self, handled: &Position) -> Vec<ReadyChunk> {
        if !self.is_active() {
            return Vec::new();
        }
        let mut state = self.inner.state.lock().expect("notes lock");
        let (ready, waiting): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut state.pending)
            .into_iter()
            .partition(|p| p.read.as_ref().is_some_and(|r| r.at <= *handled));
        state.pending = waiting;
        self.inner.open.fetch_sub(ready.len(), Ordering::SeqCst);
        ready.into_iter().map(Pending::into_ready).collect()
    }

    /// Resolves when a chunk may have become ready (a permit is kept if nobody waits).
    pub async fn wait_ready(&self) {
        self.inner.ready.notified().await
    }
}

/// The spoiler reason of a DDL starts so (the executor describes the table again for it).
pub const DDL_SPOILER: &str = "DDL: ";

/// Whether `txn` changed `table` (rows, or a statement or DDL that may have).
fn touches(txn: &Transaction, table: &TableName) -> bool {
    txn.changes.iter().any(|c| c.table.name == *table)
        || txn.undecodable.iter().any(|u| u.table == *table)
        || txn
            .statements
            .iter()
            .any(|s| s.tables.contains(table) || (s.tables.is_empty() && s.schema == table.db))
        || txn.ddl.as_ref().is_some_and(|d| {
            d.tables.contains(table) || (d.tables.is_empty() && d.schema == table.db)
        })
}

/// The key of `image` (in primary-key order); where a key column is absent from it, the
/// value of `under` (the before-image), if given. `None` when a key column is in neither.
fn key_values(c: &RowChange, image: &[Value], under: Option<&[Value]>) -> Option<Vec<Value>> {
    c.table
        .primary_key
        .iter()
        .map(|&i| {
            image
                .get(i)
                .filter(|v| !v.is_absent())
                .or_else(|| under.and_then(|u| u.get(i)).filter(|v| !v.is_absent()))
                .cloned()
        })
        .collect()
}

impl Pending {
    fn note(&mut self, txn: &Transaction) {
        // Once read, what committed at or before its position is in its rows: nothing to
        // keep (a stream far behind would otherwise fill memory with its backlog).
        if self.read.as_ref().is_some_and(|r| txn.end <= r.at) {
            return;
        }
        let shape = &self.spec.shape;
        let table = &shape.name;
        if let Some(ddl) = &txn.ddl {
            let names_it = ddl.tables.contains(table)
                || (ddl.tables.is_empty() && ddl.schema == table.db)
                || txn.truncated.contains(table)
                || txn.partition_rows.contains(table);
            if names_it {
                self.spoilers
                    .push((txn.end.clone(), format!("{DDL_SPOILER}{}", ddl.statement)));
            }
        }
        let unattributed =
            |s: &concord_change::LoggedStatement| s.tables.is_empty() && s.schema == table.db;
        if txn
            .statements
            .iter()
            .any(|s| s.tables.contains(table) || unattributed(s))
        {
            self.spoilers
                .push((txn.end.clone(), "a change logged as a statement".to_owned()));
        }
        if txn.undecodable.iter().any(|u| u.table == *table) {
            self.spoilers.push((
                txn.end.clone(),
                "a row that could not be decoded".to_owned(),
            ));
        }
        for c in txn.changes.iter().filter(|c| c.table.name == *table) {
            let old = c.before.as_ref().and_then(|b| key_values(c, b, None));
            // A partial after-image carries only the key columns it changed: the new key
            // is the before-image's with those laid over it.
            let new = match &c.after {
                Some(a) => key_values(c, a, c.before.as_deref()),
                None => None,
            };
            let partial_after = c.after.iter().flatten().any(Value::is_absent);
            let (old, new) = (
                old.map(|k| shape.key_form(&k)),
                new.map(|k| shape.key_form(&k)),
            );
            match (c.op, partial_after) {
                (Op::Update, true) if old.is_some() && old != new => {
                    // A partial image moved its row to another key: the row at the new key
                    // is the old one with the image laid over it, which the chunk cannot
                    // put together by key. Read the chunk again.
                    self.spoilers.push((
                        txn.end.clone(),
                        "a partial row image (MINIMAL) changed a primary key".to_owned(),
                    ));
                }
                (Op::Update, true) => {
                    if let Some(k) = new.or(old) {
                        self.noted
                            .entry(k)
                            .or_default()
                            .push((txn.end.clone(), c.after.clone()));
                    }
                }
                _ => {
                    for k in [old, new].into_iter().flatten() {
                        self.noted
                            .entry(k)
                            .or_default()
                            .push((txn.end.clone(), None));
                    }
                }
            }
        }
    }

    fn into_ready(self) -> ReadyChunk {
        let read = self.read.expect("only read chunks are ready");
        let at = read.at.clone();
        // Only what committed after the snapshot matters: the rows already show the rest.
        let after = |p: &Position| *p > at;
        let spoiled = if self.handled_at_announce > at {
            Some(format!(
                "the stream had handled {} when the chunk was announced, past its snapshot \
                 position {at}",
                self.handled_at_announce
            ))
        } else {
            self.spoilers
                .into_iter()
                .find(|(p, _)| after(p))
                .map(|(_, why)| why)
        };
        let mut noted = HashMap::new();
        for (key, changes) in self.noted {
            let changes: Vec<_> = changes.into_iter().filter(|(p, _)| after(p)).collect();
            if changes.is_empty() {
                continue;
            }
            let kind = if changes.iter().any(|(_, img)| img.is_none()) {
                Noted::Whole
            } else {
                Noted::Partial(changes.into_iter().filter_map(|(_, img)| img).collect())
            };
            noted.insert(key, kind);
        }
        ReadyChunk {
            spec: self.spec,
            at,
            rows: read.rows,
            noted,
            spoiled,
            done: self.done,
        }
    }
}

/// A chunk the stream owner took: to write (or publish) now, before anything it handles
/// next.
pub struct ReadyChunk {
    pub spec: Arc<ChunkSpec>,
    /// The snapshot position the rows were read at.
    pub at: Position,
    pub rows: Vec<Vec<Value>>,
    /// Keys changed after `at`, and how.
    pub noted: HashMap<Vec<u8>, Noted>,
    /// Why the chunk must be read again instead, if it must.
    pub spoiled: Option<String>,
    done: oneshot::Sender<Outcome>,
}

impl ReadyChunk {
    /// Tells the chunk's reader how it ended.
    pub fn finish(self, outcome: Outcome) {
        let _ = self.done.send(outcome);
    }

    /// The rows to write and the keys to delete (see [`crate::merge`]); `target_keys`: the
    /// target's keys in the chunk's scope, in its primary-key order.
    pub fn resolve(&mut self, target_keys: &[Vec<Value>]) -> crate::merge::Resolved {
        crate::merge::resolve(
            &self.spec.shape,
            std::mem::take(&mut self.rows),
            &self.noted,
            target_keys,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::tests::shape;
    use concord_change::{Ddl, RowChange};

    fn spec() -> Arc<ChunkSpec> {
        Arc::new(ChunkSpec {
            job: 1,
            seq: 1,
            shape: Arc::new(shape()),
            scope: Scope::Range(KeyRange::default()),
        })
    }

    fn at(pos: u64) -> Position {
        Position::new("bin.000001", pos)
    }

    fn change(op: Op, before: Option<Vec<Value>>, after: Option<Vec<Value>>) -> RowChange {
        RowChange {
            table: shape().change_table.clone(),
            op,
            before,
            after,
            position: at(1),
            row_index: 0,
            commit_ts: 0,
        }
    }

    fn row(id: i64, note: &str) -> Vec<Value> {
        vec![Value::Int(id), Value::Text(note.into())]
    }

    fn txn(end: u64, changes: Vec<RowChange>) -> Transaction {
        Transaction {
            changes,
            end: at(end),
            ..Transaction::default()
        }
    }

    fn watched() -> Notes {
        let notes = Notes::default();
        notes.watch(&shape().name);
        notes
    }

    #[test]
    fn only_changes_after_the_snapshot_are_kept_and_whole_beats_partial() {
        let notes = watched();
        notes.observe(&txn(100, vec![]));
        let chunk = notes.announce(spec());
        // Before the snapshot position (its rows show it): not kept.
        notes.observe(&txn(150, vec![change(Op::Insert, None, Some(row(1, "a")))]));
        notes.fill(
            chunk.id,
            Read {
                rows: vec![row(1, "a"), row(2, "b"), row(3, "c")],
                at: at(200),
            },
        );
        notes.observe(&txn(
            250,
            vec![
                change(Op::Delete, Some(row(2, "b")), None),
                change(
                    Op::Update,
                    Some(row(3, "c")),
                    Some(vec![Value::Absent, Value::Text("c2".into())]),
                ),
            ],
        ));
        assert!(
            notes.take_ready(&at(199)).is_empty(),
            "not before its position"
        );
        let mut ready = notes.take_ready(&at(250));
        assert_eq!(ready.len(), 1);
        let chunk = &mut ready[0];
        assert!(chunk.spoiled.is_none());
        let s = shape();
        assert!(!chunk.noted.contains_key(&s.key_form(&[Value::Int(1)])));
        assert_eq!(chunk.noted[&s.key_form(&[Value::Int(2)])], Noted::Whole);
        assert!(matches!(
            chunk.noted[&s.key_form(&[Value::Int(3)])],
            Noted::Partial(_)
        ));
        let resolved = chunk.resolve(&[]);
        assert_eq!(resolved.rows, vec![row(1, "a"), row(3, "c2")]);
        assert!(!notes.is_active());
    }

    #[test]
    fn a_stream_past_the_snapshot_at_the_announcement_spoils_the_chunk() {
        let notes = watched();
        // The stream handled a change of the table at 300 before the chunk was announced;
        // the snapshot that follows reports 200 (a transaction sent to replicas before its
        // commit was visible).
        notes.observe(&txn(300, vec![change(Op::Insert, None, Some(row(9, "x")))]));
        let chunk = notes.announce(spec());
        notes.fill(
            chunk.id,
            Read {
                rows: vec![],
                at: at(200),
            },
        );
        let ready = notes.take_ready(&at(300));
        assert!(ready[0]
            .spoiled
            .as_deref()
            .unwrap()
            .contains("past its snapshot"));

        // Transactions of other tables handled past the snapshot do not matter.
        let notes = watched();
        notes.observe(&txn(150, vec![change(Op::Insert, None, Some(row(9, "x")))]));
        notes.observe(&txn(300, vec![]));
        let chunk = notes.announce(spec());
        notes.fill(
            chunk.id,
            Read {
                rows: vec![],
                at: at(200),
            },
        );
        assert!(notes.take_ready(&at(300))[0].spoiled.is_none());
    }

    #[test]
    fn a_table_watched_late_assumes_what_the_stream_handled_may_have_touched_it() {
        let notes = Notes::default();
        notes.observe(&txn(300, vec![]));
        notes.watch(&shape().name);
        let chunk = notes.announce(spec());
        notes.fill(
            chunk.id,
            Read {
                rows: vec![],
                at: at(200),
            },
        );
        assert!(notes.take_ready(&at(300))[0].spoiled.is_some());
    }

    #[test]
    fn a_partial_image_moving_a_composite_key_spoils_the_chunk() {
        use concord_change::SourceTable;
        let table = Arc::new(SourceTable {
            name: shape().name.clone(),
            columns: vec!["id".into(), "note".into()],
            primary_key: vec![0, 1],
        });
        let mut composite = crate::shape::tests::table("orders");
        composite.primary_key = vec!["id".into(), "note".into()];
        let composite = Arc::new(composite);
        let shape = crate::shape::Shape::of(composite.clone(), composite.name.clone(), &composite);
        let notes = watched();
        let chunk = notes.announce(Arc::new(ChunkSpec {
            job: 1,
            seq: 1,
            shape: Arc::new(shape),
            scope: Scope::Range(KeyRange::default()),
        }));
        notes.fill(
            chunk.id,
            Read {
                rows: vec![row(1, "a")],
                at: at(200),
            },
        );
        // MINIMAL image: the after-image carries only the key column it changed.
        notes.observe(&txn(
            250,
            vec![RowChange {
                table,
                op: Op::Update,
                before: Some(row(1, "a")),
                after: Some(vec![Value::Absent, Value::Text("b".into())]),
                position: at(240),
                row_index: 0,
                commit_ts: 0,
            }],
        ));
        let ready = notes.take_ready(&at(250));
        assert!(
            ready[0]
                .spoiled
                .as_deref()
                .is_some_and(|w| w.contains("primary key")),
            "{:?}",
            ready[0].spoiled
        );
    }

    #[test]
    fn changes_the_rows_already_show_are_not_kept() {
        let notes = watched();
        let chunk = notes.announce(spec());
        notes.fill(
            chunk.id,
            Read {
                rows: vec![row(1, "a")],
                at: at(500),
            },
        );
        // A stream far behind handles its backlog: nothing of it is kept.
        for end in 100..200 {
            notes.observe(&txn(
                end,
                vec![change(Op::Insert, None, Some(row(end as i64, "x")))],
            ));
        }
        let state = notes.inner.state.lock().unwrap();
        assert!(state.pending[0].noted.is_empty());
    }

    #[test]
    fn a_ddl_of_the_table_after_the_snapshot_spoils_it_one_before_does_not() {
        let notes = watched();
        let ddl = |end: u64| Transaction {
            end: at(end),
            ddl: Some(Ddl {
                schema: "shop".into(),
                statement: "ALTER TABLE orders ADD COLUMN x INT".into(),
                tables: vec![concord_change::TableName::new("shop", "orders")],
            }),
            ..Transaction::default()
        };
        let first = notes.announce(spec());
        notes.observe(&ddl(150));
        notes.fill(
            first.id,
            Read {
                rows: vec![],
                at: at(200),
            },
        );
        let second = notes.announce(spec());
        notes.fill(
            second.id,
            Read {
                rows: vec![],
                at: at(200),
            },
        );
        notes.observe(&ddl(250));
        let ready = notes.take_ready(&at(250));
        assert_eq!(ready.len(), 2);
        assert!(ready
            .iter()
            .all(|c| c.spoiled.as_deref().is_some_and(|w| w.contains("DDL"))));
        let third = notes.announce(spec());
        notes.observe(&ddl(260));
        notes.fill(
            third.id,
            Read {
                rows: vec![],
                at: at(270),
            },
        );
        assert!(notes.take_ready(&at(270))[0].spoiled.is_none());
    }
}
