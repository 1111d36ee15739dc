//! What an operator does to records — from the command line now, from the console later:
//! preview a repair, repair, ignore, close the circuit. Each goes through the same paths as
//! the worker's (the guarded repair, the audited moves), named after the person.

use crate::settle::Mode;
use crate::worker::{CIRCUIT, CLOSED};
use crate::{Outcomes, Recovery, RecoveryError};
use concord_control::{Mismatch, MismatchRow, MismatchState, Move, NamedRow, Subject};
use concord_target::repair::ShownStatement;

/// What a repair of a record would do now.
#[derive(Clone, Debug)]
pub struct Preview {
    pub source_row: Option<NamedRow>,
    pub target_row: Option<NamedRow>,
    /// Whether the rows differ now (the statements would change the target).
    pub differs: bool,
    /// The statements the repair would run, with their values.
    pub statements: Vec<ShownStatement>,
}

impl Recovery {
    /// What repairing a difference found but not recorded (a dry run) would do now.
    pub async fn preview_found(
        &self,
        m: &Mismatch,
    ) -> Result<Result<Preview, String>, RecoveryError> {
        let row = MismatchRow {
            id: 0,
            table: m.table.clone(),
            key: m.key.clone(),
            kind: m.kind,
            columns: m.columns.clone(),
            position: m.position.clone(),
            detected_by: m.detected_by.as_str().into(),
            state: MismatchState::Detected.as_str().into(),
            occurrences: 1,
            first_seen_ms: 0,
            last_seen_ms: 0,
            expected: m.expected.clone(),
            source_row: m.source_row.clone(),
            target_row: m.target_row.clone(),
            previous_id: None,
            state_ms: 0,
            note: None,
            attempts: 0,
        };
        self.preview(&row).await
    }

    /// Repairs records as `actor` (mode `manual`, or `batch`): each is looked at again and,
    /// if it still differs, written through the guarded repair — a page of one table's rows
    /// in one guarded transaction; results in the records' order.
    pub async fn repair_records(
        &self,
        records: &[MismatchRow],
        actor: &str,
        mode: Mode,
    ) -> Outcomes {
        let asks = records.iter().map(|m| (m, Ok(()))).collect();
        self.settle_all(asks, mode, actor).await
    }

    /// Ignores open records as `actor`; `reason` is required and kept in the history.
    pub async fn ignore_records(
        &self,
        records: &[MismatchRow],
        actor: &str,
        reason: &str,
    ) -> Result<Vec<(i64, bool)>, RecoveryError> {
        if reason.trim().is_empty() {
            return Err(RecoveryError::Refused(
                "a reason is required to ignore a mismatch".into(),
            ));
        }
        // One guarded move per record, all in one control-store transaction: a bulk
        // ignore of thousands is a handful of statements.
        let open: Vec<(i64, MismatchState, MismatchState, Move)> = records
            .iter()
            .filter_map(|m| {
                let from = m.state().filter(|s| s.is_open())?;
                let mv = Move {
                    actor: actor.into(),
                    reason: reason.into(),
                    before: m.target_row.clone(),
                    after: m.target_row.clone(),
                    ..Move::default()
                };
                Some((m.id, from, MismatchState::Ignored, mv))
            })
            .collect();
        let moved = self.compare.control.move_mismatches(&open).await?;
        let moved: std::collections::HashSet<i64> = open
            .iter()
            .zip(moved)
            .filter(|(_, ok)| *ok)
            .map(|((id, ..), _)| *id)
            .collect();
        let out = records
            .iter()
            .map(|m| (m.id, moved.contains(&m.id)))
            .collect();
        Ok(out)
    }

    /// Closes the auto-repair circuit; returns whether it was open.
    pub async fn resume(&self, actor: &str, reason: &str) -> Result<bool, RecoveryError> {
        let reason = if reason.trim().is_empty() {
            "resumed by an operator"
        } else {
            reason
        };
        let changed = self
            .compare
            .control
            .set_setting(CIRCUIT, CLOSED, reason, actor)
            .await?;
        if changed {
            self.compare
                .control
                .audit(Subject::Circuit, 0, actor, CLOSED, reason)
                .await?;
        }
        crate::metrics::CIRCUIT_OPEN.set(0);
        Ok(changed)
    }
}
