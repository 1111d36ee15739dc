//! Settling mismatch records: look at their rows again on both sides, then resolve them,
//! repair them through the guarded write, or hand them to a person.
//!
//! Records are settled a page of one table's rows at a time — claimed together, looked at
//! in one consistent cycle ([`crate::look`]), written in one guarded transaction, verified
//! in another cycle and their outcomes kept in one control-store transaction — so a batch
//! of thousands costs a handful of round trips per page, not per row. S (the source row)
//! equal to T (the target row): *resolved*. Otherwise, when writing is allowed, the guarded
//! repair runs with T as the observed image; a committed repair is verified by another
//! cycle before the record is *repaired*. A target row that moved under the repair
//! (*superseded*) sends the record back to `detected`: it is looked at again, never forced.
//!
//! Invariant: a record moves only from the state this look saw it in, and every move —
//! including one that wrote nothing — has its history row.

use crate::look::{error_chain, refused, Keys, Pair, Seen, KEY_CHANGED};
use crate::metrics;
use crate::{Recovery, RecoveryError};
use concord_change::{TableName, Value};
use concord_compare::recheck::named;
use concord_compare::{differences, shared_columns};
use concord_control::{MismatchRow, MismatchState, Move};
use concord_target::repair::{RepairError, RepairOutcome, RowRepair};
use std::collections::HashMap;
use std::sync::Arc;

/// Who asked for a repair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The worker, after the grace period.
    Auto,
    /// An operator, for these records.
    Manual,
    /// A batch recovery job.
    Batch,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Manual => "manual",
            Mode::Batch => "batch",
        }
    }
}

/// How a look at a record ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    Resolved,
    Repaired,
    /// The target row moved under the repair; the record is `detected` again.
    Superseded,
    /// Handed to a person (`needs_manual`), and why.
    NeedsManual(String),
    /// Left as it was, and why (the replicator lags, a server is unreachable, someone
    /// else moved the record first).
    Waiting(String),
}

/// Superseded repairs of one record after which it waits for a person: the row keeps
/// changing under every attempt.
const MAX_SUPERSEDED: i64 = 5;

/// Rows of one table settled together.
const PAGE: usize = 500;

/// Pages settled at once.
const PAGES_AT_ONCE: usize = 3;

/// Attempts at keeping a finished look's outcome (100 ms doubling: about 25 s in all,
/// beside each attempt's own wait for the store's lock).
const KEEP_ATTEMPTS: u32 = 9;

/// A record to settle, and whether its difference may be written now (when not, why it
/// waits for a person).
pub type Ask<'a> = (&'a MismatchRow, Result<(), String>);

/// How each record of a call ended, in the order asked; an error is shared by the page of
/// records it stopped.
pub type Outcomes = Vec<(i64, Result<Settled, Arc<RecoveryError>>)>;

/// A record of a page being settled: where it was, its key, and whether it may be written.
struct Claim<'a> {
    m: &'a MismatchRow,
    from: MismatchState,
    keys: Keys,
    write: Result<(), String>,
}

/// What a page decided: the moves to keep (in one transaction) and each record's outcome.
#[derive(Default)]
struct Decided {
    moves: Vec<(i64, MismatchState, MismatchState, Move)>,
    settled: Vec<(i64, Settled)>,
}

impl Decided {
    fn push(&mut self, id: i64, from: MismatchState, to: MismatchState, mv: Move, s: Settled) {
        if from != to {
            self.moves.push((id, from, to, mv));
        }
        self.settled.push((id, s));
    }
}

impl Recovery {
    /// Looks at record `m` again and settles it (see the module's docs). `write`: whether
    /// a difference may be repaired now; when not, it says why the record waits for a
    /// person.
    pub async fn settle(
        &self,
        m: &MismatchRow,
        mode: Mode,
        actor: &str,
        write: Result<(), String>,
    ) -> Result<Settled, RecoveryError> {
        let mut out = self
            .settle_page(&m.table, vec![(m, write)], mode, actor)
            .await?;
        Ok(out.remove(0).1)
    }

    /// Settles many records, a page of one table's rows at a time (a few pages at once);
    /// outcomes in the order asked.
    pub async fn settle_all(&self, asks: Vec<Ask<'_>>, mode: Mode, actor: &str) -> Outcomes {
        use futures_util::stream::{self, StreamExt};
        let order: Vec<i64> = asks.iter().map(|(m, _)| m.id).collect();
        let mut by_table: Vec<(TableName, Vec<Ask<'_>>)> = Vec::new();
        for ask in asks {
            match by_table.iter_mut().find(|(t, _)| *t == ask.0.table) {
                Some((_, page)) => page.push(ask),
                None => by_table.push((ask.0.table.clone(), vec![ask])),
            }
        }
        let mut pages = Vec::new();
        for (table, mut asks) in by_table {
            while !asks.is_empty() {
                let rest = asks.split_off(asks.len().min(PAGE));
                pages.push((table.clone(), asks));
                asks = rest;
            }
        }
        // Pages of one table hold different rows (a record's key is open once), so they
        // are settled side by side; each keeps its own guarded transaction.
        // The futures are made before they become a stream: a stream mapping with a
        // closure makes the whole future's `Send` unprovable to rustc (a known limit with
        // higher-ranked lifetimes), and the console runs this in spawned tasks.
        let pages: Vec<_> = pages
            .into_iter()
            .map(|(table, asks)| async move {
                let ids: Vec<i64> = asks.iter().map(|(m, _)| m.id).collect();
                (ids, self.settle_page(&table, asks, mode, actor).await)
            })
            .collect();
        let settled: Vec<_> = stream::iter(pages)
            .buffer_unordered(PAGES_AT_ONCE)
            .collect()
            .await;
        let mut done: HashMap<i64, Result<Settled, Arc<RecoveryError>>> = HashMap::new();
        for (ids, outcome) in settled {
            match outcome {
                Ok(out) => done.extend(out.into_iter().map(|(id, s)| (id, Ok(s)))),
                Err(e) => {
                    let e = Arc::new(e);
                    done.extend(ids.into_iter().map(|id| (id, Err(e.clone()))));
                }
            }
        }
        order
            .into_iter()
            .filter_map(|id| done.remove(&id).map(|r| (id, r)))
            .collect()
    }

    /// Settles a page of records of source table `table`. An error leaves every claimed
    /// record where it was, to be looked at again.
    async fn settle_page(
        &self,
        table: &TableName,
        asks: Vec<Ask<'_>>,
        mode: Mode,
        actor: &str,
    ) -> Result<Vec<(i64, Settled)>, RecoveryError> {
        let control = &self.compare.control;
        let mut decided = Decided::default();
        let pair = match self.pair(table).await? {
            Ok(p) => Some(p),
            Err(why) => {
                for (m, _) in &asks {
                    if let Some(from) = open(m, &mut decided) {
                        decided.push(
                            m.id,
                            from,
                            MismatchState::NeedsManual,
                            manual(actor, &why),
                            Settled::NeedsManual(why.clone()),
                        );
                    }
                }
                None
            }
        };
        let mut claims = Vec::new();
        if let Some(pair) = &pair {
            for (m, write) in asks {
                let Some(from) = open(m, &mut decided) else {
                    continue;
                };
                match pair.keys(|k| value_of(m, k)) {
                    Some(keys) => claims.push(Claim {
                        m,
                        from,
                        keys,
                        write,
                    }),
                    None => decided.push(
                        m.id,
                        from,
                        MismatchState::NeedsManual,
                        manual(actor, KEY_CHANGED),
                        Settled::NeedsManual(KEY_CHANGED.into()),
                    ),
                }
            }
        }
        let (Some(pair), false) = (pair, claims.is_empty()) else {
            control.move_mismatches(&decided.moves).await?;
            return Ok(decided.settled);
        };
        if self.replicator_lag(table).await? > self.grace {
            let why = "the replicator lags by more than recovery.grace";
            for c in &claims {
                decided.settled.push((c.m.id, Settled::Waiting(why.into())));
            }
            control.move_mismatches(&decided.moves).await?;
            return Ok(decided.settled);
        }
        // The claim, with the moves decided so far: one transaction.
        let looking = Move {
            actor: actor.into(),
            reason: format!("{} look", mode.as_str()),
            ..Move::default()
        };
        let first = decided.moves.len();
        decided.moves.extend(
            claims
                .iter()
                .map(|c| (c.m.id, c.from, MismatchState::Rechecking, looking.clone())),
        );
        let moved = control.move_mismatches(&decided.moves).await?;
        decided.moves.clear();
        let mut held = Vec::new();
        for (c, moved) in claims.into_iter().zip(&moved[first..]) {
            if *moved {
                held.push(c);
            } else {
                decided.settled.push((
                    c.m.id,
                    Settled::Waiting("someone else moved the record first".into()),
                ));
            }
        }
        if held.is_empty() {
            return Ok(decided.settled);
        }
        match self
            .look_and_write(table, &pair, &held, mode, actor, &mut decided)
            .await
        {
            Ok(()) => {
                self.keep(&decided).await?;
                Ok(decided.settled)
            }
            Err(e) => {
                // Put the records back where they were, so they are looked at again.
                let back = Move {
                    actor: actor.into(),
                    reason: format!("the look failed and will be tried again: {e}"),
                    ..Move::default()
                };
                let moves: Vec<_> = held
                    .iter()
                    .map(|c| (c.m.id, MismatchState::Rechecking, c.from, back.clone()))
                    .collect();
                self.moves_kept(&moves).await?;
                Err(e)
            }
        }
    }

    /// Keeps a page's outcomes in one transaction; a repaired record someone else moved
    /// meanwhile keeps its write and has its SQL logged at least.
    async fn keep(&self, decided: &Decided) -> Result<(), RecoveryError> {
        let moved = self.moves_kept(&decided.moves).await?;
        for ((id, _, _, mv), moved) in decided.moves.iter().zip(moved) {
            if !moved && mv.statement.is_some() {
                tracing::warn!(
                    id,
                    statement = mv.statement.as_deref().unwrap_or(""),
                    "a repaired record was moved by someone else before its outcome was kept"
                );
            }
        }
        Ok(())
    }

    /// Moves claimed records out of `rechecking`, trying a few times: the look is over
    /// (and a repair may be committed on the target), so giving up at the first busy
    /// control store would leave them claimed until `requeue_interrupted` puts them back
    /// a minute or more later — and a repaired row would then be found equal and closed
    /// as merely resolved, its repair missing from its history.
    async fn moves_kept(
        &self,
        moves: &[(i64, MismatchState, MismatchState, Move)],
    ) -> Result<Vec<bool>, RecoveryError> {
        let mut backoff = std::time::Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            match self.compare.control.move_mismatches(moves).await {
                Ok(moved) => return Ok(moved),
                Err(e) if e.is_transient() && attempt < KEEP_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, retry_in = ?backoff, "outcome of a look not kept yet; trying again");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The claimed records' look, their repairs and the verification of what was written;
    /// every outcome goes into `decided`.
    async fn look_and_write(
        &self,
        table: &TableName,
        pair: &Pair,
        held: &[Claim<'_>],
        mode: Mode,
        actor: &str,
        decided: &mut Decided,
    ) -> Result<(), RecoveryError> {
        let label = table.to_string();
        let keys: Vec<Keys> = held.iter().map(|c| c.keys.clone()).collect();
        let seen = self.look_page(table, pair, &keys).await?;
        let shared = shared_columns(Some(&pair.source), &pair.target);
        let rechecking = MismatchState::Rechecking;
        let mut to_write: Vec<(&Claim<'_>, RowRepair, Option<Vec<Value>>)> = Vec::new();
        let mut template: Option<RowRepair> = None;
        for (c, (s, t)) in held.iter().zip(seen) {
            if differences(&shared, s.as_deref(), &pair.target, t.as_deref()).is_none() {
                let image = named(&pair.target.columns, t.as_deref());
                let mv = Move {
                    actor: actor.into(),
                    reason: "source and target agree now; nothing written".into(),
                    before: image.clone(),
                    after: image,
                    ..Move::default()
                };
                decided.push(
                    c.m.id,
                    rechecking,
                    MismatchState::Resolved,
                    mv,
                    Settled::Resolved,
                );
                continue;
            }
            if let Err(why) = &c.write {
                metrics::REPAIRS
                    .with_label_values(&[&label, mode.as_str(), "refused"])
                    .inc();
                decided.push(
                    c.m.id,
                    rechecking,
                    MismatchState::NeedsManual,
                    manual(actor, why),
                    Settled::NeedsManual(why.clone()),
                );
                continue;
            }
            let row = match &template {
                Some(t0) => Ok(RowRepair {
                    key: c.keys.target.clone(),
                    observed: t.clone(),
                    ..t0.clone()
                }),
                None => self.row_repair(pair, &c.keys, t.clone()),
            };
            match row {
                Ok(row) => {
                    template.get_or_insert_with(|| row.clone());
                    to_write.push((c, row, t));
                }
                Err(why) => decided.push(
                    c.m.id,
                    rechecking,
                    MismatchState::NeedsManual,
                    manual(actor, &why),
                    Settled::NeedsManual(why),
                ),
            }
        }
        if to_write.is_empty() {
            return Ok(());
        }
        let rows: Vec<RowRepair> = to_write.iter().map(|(_, r, _)| r.clone()).collect();
        let keys: Vec<Keys> = to_write.iter().map(|(c, _, _)| c.keys.clone()).collect();
        let written = self.guarded_page(pair, &rows, &keys).await?;
        let mut verify = Vec::new();
        for ((c, _, observed), w) in to_write.into_iter().zip(written) {
            match w {
                Ok(RepairOutcome::Repaired {
                    before,
                    after,
                    statements,
                }) => {
                    metrics::REPAIRS
                        .with_label_values(&[&label, mode.as_str(), "repaired"])
                        .inc();
                    let statement = statements
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(";\n");
                    // Before: the target row the repair locked; after: the source row it wrote.
                    let mv = Move {
                        actor: actor.into(),
                        mode: Some(mode.as_str().into()),
                        before: named(&pair.target.columns, before.as_deref()),
                        after: named(&pair.source.columns, after.as_deref()),
                        statement: Some(statement),
                        ..Move::default()
                    };
                    verify.push((c, mv));
                }
                Ok(RepairOutcome::Superseded { now }) => {
                    metrics::REPAIRS
                        .with_label_values(&[&label, mode.as_str(), "superseded"])
                        .inc();
                    superseded(c, actor, mode, pair, observed, now, decided);
                }
                Ok(RepairOutcome::NothingToWrite) => {
                    let mv = Move {
                        actor: actor.into(),
                        reason: "neither side has the row now; nothing written".into(),
                        ..Move::default()
                    };
                    decided.push(
                        c.m.id,
                        rechecking,
                        MismatchState::Resolved,
                        mv,
                        Settled::Resolved,
                    );
                }
                Err(e) => {
                    metrics::REPAIRS
                        .with_label_values(&[&label, mode.as_str(), "failed"])
                        .inc();
                    failed(c, actor, mode, &e, decided);
                }
            }
        }
        if verify.is_empty() {
            return Ok(());
        }
        let keys: Vec<Keys> = verify.iter().map(|(c, _)| c.keys.clone()).collect();
        // Verified again, as any change: both sides at a consistent point.
        let again = self.look_page(table, pair, &keys).await;
        for (i, (c, mut mv)) in verify.into_iter().enumerate() {
            let holds = match &again {
                Ok(seen) => {
                    let (s, t) = &seen[i];
                    differences(&shared, s.as_deref(), &pair.target, t.as_deref()).is_none()
                }
                Err(_) => false,
            };
            let (to, settled) = if holds {
                mv.reason = "the source's row was written and verified on both sides".into();
                (MismatchState::Repaired, Settled::Repaired)
            } else {
                mv.reason = match &again {
                    Ok(_) => "the source's row was written, but the row differs again on \
                              verification; looked at again"
                        .into(),
                    Err(e) => format!("the source's row was written, but it could not be verified ({e}); looked at again"),
                };
                (MismatchState::Detected, Settled::Superseded)
            };
            decided.push(c.m.id, rechecking, to, mv, settled);
        }
        Ok(())
    }

    /// What repairing `m` would do now: both rows as they are and the statements that
    /// would run — the same plan [`Recovery::settle`] runs. `Err`: why it cannot be
    /// repaired.
    pub async fn preview(
        &self,
        m: &MismatchRow,
    ) -> Result<Result<crate::actions::Preview, String>, RecoveryError> {
        let t = match self.tables_for(&m.table, |k| value_of(m, k)).await? {
            Ok(t) => t,
            Err(why) => return Ok(Err(why)),
        };
        let (s, target_now): Seen = self.look(&m.table, &t).await?;
        let shared = shared_columns(Some(&t.source), &t.target);
        let differs =
            differences(&shared, s.as_deref(), &t.target, target_now.as_deref()).is_some();
        let row = match self.row_repair(&t.pair(), &t.keys(), target_now.clone()) {
            Ok(row) => row,
            Err(why) => return Ok(Err(why)),
        };
        let statements = if differs && (s.is_some() || target_now.is_some()) {
            row.preview(s.as_deref())
        } else {
            Vec::new()
        };
        Ok(Ok(crate::actions::Preview {
            source_row: named(&t.source.columns, s.as_deref()),
            target_row: named(&t.target.columns, target_now.as_deref()),
            differs,
            statements,
        }))
    }
}

/// The record's state when it is open; otherwise it is left alone, and `decided` says so.
fn open(m: &MismatchRow, decided: &mut Decided) -> Option<MismatchState> {
    let from = m.state().filter(|s| s.is_open());
    if from.is_none() {
        decided
            .settled
            .push((m.id, Settled::Waiting(format!("the record is {}", m.state))));
    }
    from
}

/// A move to a person (`needs_manual`), and why.
fn manual(actor: &str, why: &str) -> Move {
    Move {
        actor: actor.into(),
        reason: why.into(),
        ..Move::default()
    }
}

/// The value of column `k` in a record: its key, or the rows it recorded.
fn value_of(m: &MismatchRow, k: &str) -> Option<Value> {
    m.key
        .iter()
        .chain(m.source_row.iter().flatten())
        .chain(m.target_row.iter().flatten())
        .find(|(c, _)| c.eq_ignore_ascii_case(k))
        .map(|(_, v)| v.clone())
}

/// A repair the replicator overtook: looked at again, or — after too many — handed to a
/// person.
fn superseded(
    c: &Claim<'_>,
    actor: &str,
    mode: Mode,
    pair: &Pair,
    observed: Option<Vec<Value>>,
    now: Option<Vec<Value>>,
    decided: &mut Decided,
) {
    let again = c.m.attempts + 1 >= MAX_SUPERSEDED;
    let mv = Move {
        actor: actor.into(),
        mode: Some(mode.as_str().into()),
        reason: "superseded: the target row changed since it was observed (the \
                 replicator moved it); nothing written, looked at again"
            .into(),
        before: named(&pair.target.columns, observed.as_deref()),
        after: named(&pair.target.columns, now.as_deref()),
        statement: None,
    };
    let (to, settled) = if again {
        (
            MismatchState::NeedsManual,
            Settled::NeedsManual("superseded too often: the row keeps changing".into()),
        )
    } else {
        (MismatchState::Detected, Settled::Superseded)
    };
    decided.push(c.m.id, MismatchState::Rechecking, to, mv, settled);
}

/// A repair that failed: a target refusing the source's row waits for a person; trouble
/// with a server puts the record back to be looked at again.
fn failed(c: &Claim<'_>, actor: &str, mode: Mode, e: &RepairError, decided: &mut Decided) {
    let why = format!("the repair failed: {e}: {}", error_chain(e));
    let rechecking = MismatchState::Rechecking;
    if refused(e) {
        let mv = manual(actor, &why);
        decided.push(
            c.m.id,
            rechecking,
            MismatchState::NeedsManual,
            mv,
            Settled::NeedsManual(why),
        );
        return;
    }
    let mv = Move {
        actor: actor.into(),
        mode: Some(mode.as_str().into()),
        reason: format!("{why}; looked at again"),
        ..Move::default()
    };
    decided.push(
        c.m.id,
        rechecking,
        MismatchState::Detected,
        mv,
        Settled::Waiting(why),
    );
}
