//! Failed events — rows the target refused — retried, repaired from the source, or ignored.
//!
//! A *retry* applies the stored change again (after the DBA widened the column, say). It is
//! safe only while the change is still the row's latest: a retry of an old change would
//! write an older row over a newer one. So a retry first checks that the source still holds
//! the stored row, then writes through the guarded repair — which, holding the target row
//! locked, writes the source's current row: the stored change's row, or something newer.
//! A change the source has moved past is refused with that reason; *repair from the
//! source* writes the current row whatever the stored change said.
//!
//! Invariant: a failed event stays open until a write verified on both sides, or an
//! operator's ignore with a reason, closes it; a retry the target refuses again keeps it
//! open with the new error, and every attempt is in the history.

use crate::look::Tables;
use crate::metrics;
use crate::{Recovery, RecoveryError};
use concord_change::{RowChange, Value};
use concord_compare::equality::same;
use concord_compare::recheck::named;
use concord_compare::{differences, shared_columns};
use concord_control::{FailedEventRow, FailedState, Move};
use concord_target::repair::{RepairError, RepairOutcome};
use concord_target::{classify, ErrorClass};

/// What an operator does to a failed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailedAction {
    Retry,
    Repair,
}

impl FailedAction {
    fn as_str(self) -> &'static str {
        match self {
            FailedAction::Retry => "retry",
            FailedAction::Repair => "repair",
        }
    }
}

/// How an action on a failed event ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailedOutcome {
    /// Written and verified: the event is closed (`retried` or `repaired`).
    Done,
    /// The target refused the row again: open, with this error.
    StillRefused(String),
    /// Nothing done, and why (the event stays as it is).
    NotDone(String),
}

impl Recovery {
    /// Retries or repairs failed event `id` as `actor`.
    pub async fn act_on_failed(
        &self,
        id: i64,
        action: FailedAction,
        actor: &str,
    ) -> Result<FailedOutcome, RecoveryError> {
        let control = &self.compare.control;
        let Some(event) = control.failed_event(id).await? else {
            return Err(RecoveryError::Refused(format!("no failed event {id}")));
        };
        if FailedState::parse(&event.status) != Some(FailedState::Open) {
            return Ok(FailedOutcome::NotDone(format!(
                "the event is {}",
                event.status
            )));
        }
        let change = match stored_change(&event) {
            Ok(c) => c,
            Err(why) => return Ok(FailedOutcome::NotDone(why)),
        };
        let image = match change.op {
            concord_change::Op::Delete => change.before.as_deref(),
            _ => change.after.as_deref(),
        }
        .unwrap_or_default();
        let value_of = |name: &str| {
            change
                .table
                .column_index(name)
                .and_then(|i| image.get(i).cloned())
                .filter(|v| !v.is_absent())
        };
        let t = match self.tables_for(&change.table.name, value_of).await? {
            Ok(t) => t,
            Err(why) => return Ok(FailedOutcome::NotDone(why)),
        };
        if self.replicator_lag(&change.table.name).await? > self.grace() {
            return Ok(FailedOutcome::NotDone(
                "the replicator lags by more than recovery.grace; try again once it caught up"
                    .into(),
            ));
        }
        let (s, target_now) = self.look(&change.table.name, &t).await?;
        if action == FailedAction::Retry && !still_latest(&change, &t, s.as_deref()) {
            return Ok(FailedOutcome::NotDone(
                "the source row changed since this event: it is no longer the row's latest \
                 change, and applying it would write an older row; repair it from the source \
                 instead (concord failed repair)"
                    .into(),
            ));
        }
        let row = match self.row_repair(&t.pair(), &t.keys(), target_now.clone()) {
            Ok(row) => row,
            Err(why) => return Ok(FailedOutcome::NotDone(why)),
        };
        let label = change.table.name.to_string();
        match self.guarded_write(&t, &row).await? {
            Ok(RepairOutcome::Superseded { .. }) => {
                metrics::REPAIRS
                    .with_label_values(&[&label, "manual", "superseded"])
                    .inc();
                Ok(FailedOutcome::NotDone(
                    "the target row changed during the attempt (the replicator moved it); \
                     nothing written, try again"
                        .into(),
                ))
            }
            Ok(RepairOutcome::NothingToWrite) => {
                self.close(&event, action, actor, None, None, None).await
            }
            Ok(RepairOutcome::Repaired {
                before,
                after,
                statements,
            }) => {
                let statement = statements
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(";\n");
                metrics::REPAIRS
                    .with_label_values(&[&label, "manual", "repaired"])
                    .inc();
                let (s2, t2) = self.look(&change.table.name, &t).await?;
                let shared = shared_columns(Some(&t.source), &t.target);
                if differences(&shared, s2.as_deref(), &t.target, t2.as_deref()).is_some() {
                    return Ok(FailedOutcome::NotDone(
                        "written, but the row differs again on verification (it is still \
                         changing); the event stays open"
                            .into(),
                    ));
                }
                let before = named(&t.target.columns, before.as_deref());
                let after = named(&t.source.columns, after.as_deref());
                self.close(&event, action, actor, before, after, Some(statement))
                    .await
            }
            Err(e) => self.refused_again(&event, action, actor, &label, &e).await,
        }
    }

    /// Ignores failed event `id` as `actor`, with a reason (required).
    pub async fn ignore_failed(
        &self,
        id: i64,
        actor: &str,
        reason: &str,
    ) -> Result<bool, RecoveryError> {
        if reason.trim().is_empty() {
            return Err(RecoveryError::Refused(
                "a reason is required to ignore a failed event".into(),
            ));
        }
        let mv = Move {
            actor: actor.into(),
            reason: reason.into(),
            ..Move::default()
        };
        Ok(self
            .compare
            .control
            .move_failed(id, FailedState::Open, FailedState::Ignored, &mv, None)
            .await?)
    }

    async fn close(
        &self,
        event: &FailedEventRow,
        action: FailedAction,
        actor: &str,
        before: Option<concord_control::NamedRow>,
        after: Option<concord_control::NamedRow>,
        statement: Option<String>,
    ) -> Result<FailedOutcome, RecoveryError> {
        let to = match action {
            FailedAction::Retry => FailedState::Retried,
            FailedAction::Repair => FailedState::Repaired,
        };
        let mv = Move {
            actor: actor.into(),
            mode: Some("manual".into()),
            reason: format!(
                "{}: the row was written and verified on both sides",
                action.as_str()
            ),
            before,
            after,
            statement,
        };
        let moved = self
            .compare
            .control
            .move_failed(event.id, FailedState::Open, to, &mv, None)
            .await?;
        Ok(if moved {
            FailedOutcome::Done
        } else {
            FailedOutcome::NotDone("someone else closed the event first".into())
        })
    }

    /// The target refused the row again: the event stays open with the new error.
    async fn refused_again(
        &self,
        event: &FailedEventRow,
        action: FailedAction,
        actor: &str,
        label: &str,
        e: &RepairError,
    ) -> Result<FailedOutcome, RecoveryError> {
        metrics::REPAIRS
            .with_label_values(&[label, "manual", "failed"])
            .inc();
        let transient = matches!(e, RepairError::Target { source, .. }
            if classify(source) == ErrorClass::Transient)
            || matches!(e, RepairError::Source { .. });
        let error = format!("{e}: {}", crate::look::error_chain(e));
        if transient {
            return Ok(FailedOutcome::NotDone(format!(
                "a server was unavailable: {error}; try again"
            )));
        }
        let mv = Move {
            actor: actor.into(),
            mode: Some("manual".into()),
            reason: format!("{} refused again by the target: {error}", action.as_str()),
            ..Move::default()
        };
        self.compare
            .control
            .move_failed(
                event.id,
                FailedState::Open,
                FailedState::Open,
                &mv,
                Some(&error),
            )
            .await?;
        Ok(FailedOutcome::StillRefused(error))
    }
}

/// The row change a failed event keeps, or why it has none (a statement, a truncate, an
/// undecodable row: nothing to apply row by row).
fn stored_change(event: &FailedEventRow) -> Result<RowChange, String> {
    match event.op.as_str() {
        "insert" | "update" | "delete" | "read" => {
            serde_json::from_str(&event.event).map_err(|e| {
                format!("the stored change cannot be read ({e}); ignore it or re-sync the table")
            })
        }
        op => Err(format!(
            "a `{}` event ({op}) has no row to apply; re-sync the table, then ignore it \
             with a reason",
            event.reason
        )),
    }
}

/// Whether the source's row now (`s`, in `t.source`'s column order) is still what the
/// stored change left: its after-image (or no row, for a delete) over the columns it has.
fn still_latest(change: &RowChange, t: &Tables, s: Option<&[Value]>) -> bool {
    let stored = match change.op {
        concord_change::Op::Delete => None,
        _ => change.after.as_deref(),
    };
    match (stored, s) {
        (None, None) => true,
        (Some(image), Some(now)) => change.table.columns.iter().zip(image).all(|(name, v)| {
            if v.is_absent() {
                return true;
            }
            match t
                .source
                .columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
            {
                Some(i) => same(v, &now[i], &t.source.columns[i].data_type),
                None => true,
            }
        }),
        _ => false,
    }
}
