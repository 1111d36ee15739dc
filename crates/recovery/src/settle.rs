//! Settling one mismatch record: look at the row again on both sides, then resolve it,
//! repair it through the guarded write, or hand it to a person.
//!
//! The look is one consistent cycle: the source row (S), the source's position P, the
//! replicator past P on the row's stream, the target row (T). S equal to T: *resolved*.
//! Otherwise, when writing is allowed, the guarded repair runs with T as the observed
//! image; a committed repair is verified by another cycle before the record is
//! *repaired*. A target row that moved under the repair (*superseded*) sends the record
//! back to `detected`: it is looked at again, never forced.
//!
//! Invariant: a record moves only from the state this look saw it in, and every move —
//! including one that wrote nothing — has its history row.

use crate::metrics;
use crate::reads::Reads;
use crate::{Recovery, RecoveryError};
use concord_change::{SourceTable, TableName, Value};
use concord_compare::recheck::named;
use concord_compare::rows::key_of;
use concord_compare::{differences, shared_columns, Side};
use concord_control::{MismatchRow, MismatchState, Move};
use concord_schema_cache::{ColumnPlan, TargetTable};
use concord_target::repair::{repair, RepairOutcome, RowRepair};
use concord_target::{classify, ErrorClass};
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

/// What a look needs about the record's table.
pub(crate) struct Tables {
    pub source: Arc<TargetTable>,
    pub target: Arc<TargetTable>,
    /// The key in the source's and in the target's primary-key order.
    pub source_key: Vec<Value>,
    pub target_key: Vec<Value>,
}

impl Recovery {
    /// Looks at record `m` again and settles it (see the module's docs). `write`: whether
    /// a difference may be repaired now; when not, `hold` says why it waits for a person.
    pub async fn settle(
        &self,
        m: &MismatchRow,
        mode: Mode,
        actor: &str,
        write: Result<(), String>,
    ) -> Result<Settled, RecoveryError> {
        let Some(from) = m.state().filter(|s| s.is_open()) else {
            return Ok(Settled::Waiting(format!("the record is {}", m.state)));
        };
        let tables = match self.tables(m).await? {
            Ok(t) => t,
            Err(why) => return self.to_manual(m, from, actor, mode, why).await,
        };
        if self.replicator_lag(&m.table).await? > self.grace {
            return Ok(Settled::Waiting(
                "the replicator lags by more than recovery.grace".into(),
            ));
        }
        let moving = Move {
            actor: actor.into(),
            reason: format!("{} look", mode.as_str()),
            ..Move::default()
        };
        if !self
            .compare
            .control
            .move_mismatch(m.id, from, MismatchState::Rechecking, &moving)
            .await?
        {
            return Ok(Settled::Waiting(
                "someone else moved the record first".into(),
            ));
        }
        let outcome = self.look_and_write(m, &tables, mode, actor, write).await;
        if let Err(e) = &outcome {
            // Put the record back where it was, so it is looked at again.
            let back = Move {
                actor: actor.into(),
                reason: format!("the look failed and will be tried again: {e}"),
                ..Move::default()
            };
            self.compare
                .control
                .move_mismatch(m.id, MismatchState::Rechecking, from, &back)
                .await?;
        }
        outcome
    }

    async fn look_and_write(
        &self,
        m: &MismatchRow,
        t: &Tables,
        mode: Mode,
        actor: &str,
        write: Result<(), String>,
    ) -> Result<Settled, RecoveryError> {
        let label = m.table.to_string();
        let (s, target_now) = self.look(&m.table, t).await?;
        let shared = shared_columns(Some(&t.source), &t.target);
        let control = &self.compare.control;
        let rows =
            |r: &Option<Vec<Value>>, table: &TargetTable| named(&table.columns, r.as_deref());
        if differences(&shared, s.as_deref(), &t.target, target_now.as_deref()).is_none() {
            let mv = Move {
                actor: actor.into(),
                reason: "source and target agree now; nothing written".into(),
                before: rows(&target_now, &t.target),
                after: rows(&target_now, &t.target),
                ..Move::default()
            };
            control
                .move_mismatch(
                    m.id,
                    MismatchState::Rechecking,
                    MismatchState::Resolved,
                    &mv,
                )
                .await?;
            return Ok(Settled::Resolved);
        }
        if let Err(why) = write {
            metrics::REPAIRS
                .with_label_values(&[&label, mode.as_str(), "refused"])
                .inc();
            return self
                .to_manual(m, MismatchState::Rechecking, actor, mode, why)
                .await;
        }
        let row = match self.row_repair(t, target_now.clone()) {
            Ok(row) => row,
            Err(why) => {
                return self
                    .to_manual(m, MismatchState::Rechecking, actor, mode, why)
                    .await
            }
        };
        let outcome = match self.guarded_write(t, &row).await? {
            Ok(o) => o,
            Err(e) => return self.failed(m, &label, mode, actor, e).await,
        };
        match outcome {
            RepairOutcome::Superseded { now } => {
                metrics::REPAIRS
                    .with_label_values(&[&label, mode.as_str(), "superseded"])
                    .inc();
                let again = m.attempts + 1 >= MAX_SUPERSEDED;
                let mv = Move {
                    actor: actor.into(),
                    mode: Some(mode.as_str().into()),
                    reason: "superseded: the target row changed since it was observed (the \
                             replicator moved it); nothing written, looked at again"
                        .into(),
                    before: rows(&target_now, &t.target),
                    after: rows(&now, &t.target),
                    statement: None,
                };
                let to = if again {
                    MismatchState::NeedsManual
                } else {
                    MismatchState::Detected
                };
                control
                    .move_mismatch(m.id, MismatchState::Rechecking, to, &mv)
                    .await?;
                Ok(if again {
                    Settled::NeedsManual("superseded too often: the row keeps changing".into())
                } else {
                    Settled::Superseded
                })
            }
            RepairOutcome::NothingToWrite => {
                let mv = Move {
                    actor: actor.into(),
                    reason: "neither side has the row now; nothing written".into(),
                    ..Move::default()
                };
                control
                    .move_mismatch(
                        m.id,
                        MismatchState::Rechecking,
                        MismatchState::Resolved,
                        &mv,
                    )
                    .await?;
                Ok(Settled::Resolved)
            }
            RepairOutcome::Repaired {
                before,
                after,
                statements,
            } => {
                let statement = statements
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(";\n");
                // Verified again, as any change: both sides at a consistent point.
                let (s2, t2) = self.look(&m.table, t).await?;
                let holds = differences(&shared, s2.as_deref(), &t.target, t2.as_deref()).is_none();
                let (to, reason, settled) = if holds {
                    (
                        MismatchState::Repaired,
                        "the source's row was written and verified on both sides".to_owned(),
                        Settled::Repaired,
                    )
                } else {
                    (
                        MismatchState::Detected,
                        "the source's row was written, but the row differs again on \
                         verification; looked at again"
                            .to_owned(),
                        Settled::Superseded,
                    )
                };
                metrics::REPAIRS
                    .with_label_values(&[&label, mode.as_str(), "repaired"])
                    .inc();
                // Before: the target row the repair locked; after: the source row it wrote.
                let mv = Move {
                    actor: actor.into(),
                    mode: Some(mode.as_str().into()),
                    reason,
                    before: rows(&before, &t.target),
                    after: rows(&after, &t.source),
                    statement: Some(statement),
                };
                if !control
                    .move_mismatch(m.id, MismatchState::Rechecking, to, &mv)
                    .await?
                {
                    // Someone moved the record meanwhile (a look taken for stopped): the
                    // write stands; its SQL is kept here at least.
                    tracing::warn!(
                        id = m.id,
                        statement = mv.statement.as_deref().unwrap_or(""),
                        "a repaired record was moved by someone else before its outcome was kept"
                    );
                }
                Ok(settled)
            }
        }
    }

    /// What repairing `m` would do now: both rows as they are and the statements that
    /// would run — the same plan [`Recovery::settle`] runs. `Err`: why it cannot be
    /// repaired.
    pub async fn preview(
        &self,
        m: &MismatchRow,
    ) -> Result<Result<crate::actions::Preview, String>, RecoveryError> {
        let t = match self.tables(m).await? {
            Ok(t) => t,
            Err(why) => return Ok(Err(why)),
        };
        let (s, target_now) = self.look(&m.table, &t).await?;
        let shared = shared_columns(Some(&t.source), &t.target);
        let differs =
            differences(&shared, s.as_deref(), &t.target, target_now.as_deref()).is_some();
        let row = match self.row_repair(&t, target_now.clone()) {
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

    /// The guarded repair of `t`'s row, observed as `observed` on the target; `Err`: why the
    /// row cannot be written (no usable key on one side).
    pub(crate) fn row_repair(
        &self,
        t: &Tables,
        observed: Option<Vec<Value>>,
    ) -> Result<RowRepair, String> {
        let source = source_description(&t.source);
        let plan = ColumnPlan::new(
            &source,
            &t.target,
            &self.audit_flag_column,
            &self.audit_ts_column,
        )
        .map_err(|e| format!("the row cannot be written: {e}"))?;
        Ok(RowRepair {
            target: t.target.clone(),
            source,
            plan,
            key: t.target_key.clone(),
            observed,
        })
    }

    /// Runs the guarded repair of `row` in a fresh writer session.
    pub(crate) async fn guarded_write(
        &self,
        t: &Tables,
        row: &RowRepair,
    ) -> Result<Result<RepairOutcome, concord_target::repair::RepairError>, RecoveryError> {
        let reads = Reads {
            compare: &self.compare,
            source: &t.source,
            source_key: &t.source_key,
        };
        let mut conn = self.writer().await?;
        Ok(repair(&mut conn, row, &reads).await)
    }

    /// A repair that failed: a target refusing the source's row waits for a person; trouble
    /// with a server puts the record back to be looked at again.
    async fn failed(
        &self,
        m: &MismatchRow,
        label: &str,
        mode: Mode,
        actor: &str,
        e: concord_target::repair::RepairError,
    ) -> Result<Settled, RecoveryError> {
        use concord_target::repair::RepairError;
        metrics::REPAIRS
            .with_label_values(&[label, mode.as_str(), "failed"])
            .inc();
        let refused = match &e {
            RepairError::Target { source, .. } => classify(source) == ErrorClass::Rejected,
            RepairError::Source { .. } => false,
        };
        let why = format!("the repair failed: {e}: {}", error_chain(&e));
        if refused {
            return self
                .to_manual(m, MismatchState::Rechecking, actor, mode, why)
                .await;
        }
        let mv = Move {
            actor: actor.into(),
            mode: Some(mode.as_str().into()),
            reason: format!("{why}; looked at again"),
            ..Move::default()
        };
        self.compare
            .control
            .move_mismatch(
                m.id,
                MismatchState::Rechecking,
                MismatchState::Detected,
                &mv,
            )
            .await?;
        Ok(Settled::Waiting(why))
    }

    async fn to_manual(
        &self,
        m: &MismatchRow,
        from: MismatchState,
        actor: &str,
        mode: Mode,
        why: String,
    ) -> Result<Settled, RecoveryError> {
        let mv = Move {
            actor: actor.into(),
            mode: None,
            reason: why.clone(),
            ..Move::default()
        };
        let _ = mode;
        if from != MismatchState::NeedsManual {
            self.compare
                .control
                .move_mismatch(m.id, from, MismatchState::NeedsManual, &mv)
                .await?;
        }
        Ok(Settled::NeedsManual(why))
    }

    /// Both sides' descriptions of the record's table and its key in each side's order,
    /// or why the record cannot be looked at.
    async fn tables(&self, m: &MismatchRow) -> Result<Result<Tables, String>, RecoveryError> {
        let value_of = |k: &str| {
            m.key
                .iter()
                .chain(m.source_row.iter().flatten())
                .chain(m.target_row.iter().flatten())
                .find(|(c, _)| c.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        self.tables_for(&m.table, value_of).await
    }

    /// As [`Recovery::tables`], for source table `source_name` and a row whose column
    /// values `value_of` gives by name.
    pub(crate) async fn tables_for(
        &self,
        source_name: &TableName,
        value_of: impl Fn(&str) -> Option<Value>,
    ) -> Result<Result<Tables, String>, RecoveryError> {
        let target_name = self.filter.target_name(source_name);
        let Some(source) = self
            .compare
            .source_schema
            .get(source_name)
            .await
            .map_err(cmp)?
        else {
            return Ok(Err(format!("{source_name} no longer exists on the source")));
        };
        let Some(target) = self
            .compare
            .target_schema
            .get(&target_name)
            .await
            .map_err(cmp)?
        else {
            return Ok(Err(format!("{target_name} does not exist on the target")));
        };
        let key_in =
            |pk: &[String]| -> Option<Vec<Value>> { pk.iter().map(|k| value_of(k)).collect() };
        let (Some(source_key), Some(target_key)) =
            (key_in(&source.primary_key), key_in(&target.primary_key))
        else {
            return Ok(Err(
                "the record's key does not name every primary-key column of both tables \
                 (a key changed since it was recorded)"
                    .into(),
            ));
        };
        Ok(Ok(Tables {
            source,
            target,
            source_key,
            target_key,
        }))
    }

    /// One consistent cycle: S, then P, the replicator past P, then T.
    pub(crate) async fn look(
        &self,
        source_name: &TableName,
        t: &Tables,
    ) -> Result<(Option<Vec<Value>>, Option<Vec<Value>>), RecoveryError> {
        let c = &self.compare;
        let s = c
            .read_rows(Side::Source, &t.source, std::slice::from_ref(&t.source_key))
            .await?
            .get(&key_of(&t.source, &t.source_key))
            .cloned();
        let p = c.source_position(source_name).await?;
        let stream = self.stream_of(source_name);
        let waited = tokio::time::timeout(self.grace, c.replica.wait_applied(&p, &stream, c.poll));
        match waited.await {
            Ok(r) => r.map_err(|e| cmp(concord_compare::CompareError::Progress(e)))?,
            Err(_) => {
                return Err(RecoveryError::Refused(
                    "the replicator did not reach the source's position within \
                     recovery.grace"
                        .into(),
                ))
            }
        }
        let target_now = c
            .read_rows(Side::Target, &t.target, std::slice::from_ref(&t.target_key))
            .await?
            .get(&key_of(&t.target, &t.target_key))
            .cloned();
        Ok((s, target_now))
    }
}

fn cmp(e: impl Into<concord_compare::CompareError>) -> RecoveryError {
    RecoveryError::Compare(Box::new(e.into()))
}

/// A source table's description as the statements need it (names and key indexes).
fn source_description(t: &TargetTable) -> Arc<SourceTable> {
    let columns: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
    let primary_key = t
        .primary_key
        .iter()
        .filter_map(|k| columns.iter().position(|c| c.eq_ignore_ascii_case(k)))
        .collect();
    Arc::new(SourceTable {
        name: t.name.clone(),
        columns,
        primary_key,
    })
}

/// The causes below an error, for a record a person reads.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push(c.to_string());
        cause = c.source();
    }
    out.join(": ")
}
