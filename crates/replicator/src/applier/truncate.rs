//! A source `TRUNCATE` on the target. The statement is a DDL, so it ends its batch: every
//! change read before it is written first, in the same target transaction, and none after
//! it. The target table is emptied with `DELETE` rather than `TRUNCATE`, which would
//! commit on its own: inside the batch's transaction the emptied table and the checkpoint
//! past the statement commit together, so a crash replays all of it or none.

use super::{transient, Abort, Applier, Attempt};
use crate::metrics;
use concord_change::{Position, TableName, Transaction};
use concord_config::TruncateMode;
use concord_control::FailedEvent;
use concord_schema_cache::{quote_table, RefreshReason};
use concord_target::{classify, ErrorClass};
use mysql_async::Params;

/// What became of one table a source statement emptied (the `action` label of
/// `concord_truncates_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Done {
    Applied,
    /// Recorded as a failed event: `replicator.truncate = "record"`, a target that refused,
    /// or a partition statement.
    Recorded,
    /// The target has no such table: nothing to empty.
    NoTargetTable,
}

impl Done {
    fn as_str(self) -> &'static str {
        match self {
            Done::Applied => "applied",
            Done::Recorded => "recorded",
            Done::NoTargetTable => "no_target_table",
        }
    }
}

impl Applier {
    /// Empties the target tables `txn` truncated on the source — or, with
    /// `replicator.truncate = "record"`, records that it did not — and records each table
    /// whose partitions it truncated, dropped or exchanged.
    pub(super) async fn truncate(
        &mut self,
        txn: &Transaction,
        failures: &mut Vec<FailedEvent>,
    ) -> Attempt<()> {
        for (index, table) in txn.truncated.iter().enumerate() {
            let done = self.truncate_one(txn, index, table, failures).await?;
            self.truncates.push((table.clone(), txn.end.clone(), done));
        }
        for (i, table) in txn.partition_rows.iter().enumerate() {
            let target = self.filter.target_name(table);
            failures.push(FailedEvent::partition_rows(txn, i, table, Some(&target)));
            self.truncates
                .push((table.clone(), txn.end.clone(), Done::Recorded));
        }
        Ok(())
    }

    async fn truncate_one(
        &mut self,
        txn: &Transaction,
        index: usize,
        table: &TableName,
        failures: &mut Vec<FailedEvent>,
    ) -> Attempt<Done> {
        let target_name = self.filter.target_name(table);
        if self.config.truncate == TruncateMode::Record {
            let why = format!(
                "the source emptied {table} (TRUNCATE); with replicator.truncate = \
                 \"record\" the target's {target_name} was left as it was: empty it or \
                 re-sync it"
            );
            failures.push(FailedEvent::truncate(txn, index, table, why));
            return Ok(Done::Recorded);
        }
        let Some(target) = self.schema.get(&target_name).await.map_err(transient)? else {
            return Ok(Done::NoTargetTable);
        };
        let sql = format!("DELETE FROM {}", quote_table(&target.name));
        let Err(e) = self.exec(&sql, Params::Empty).await else {
            return Ok(Done::Applied);
        };
        match classify(&e) {
            ErrorClass::Transient => Err(transient(e)),
            ErrorClass::UnknownColumn | ErrorClass::MissingTable => {
                self.schema
                    .refresh(&target.name, RefreshReason::MissingTable)
                    .await;
                Err(Abort::SchemaMoved)
            }
            // E.g. a foreign key of another table with checks on: kept for an operator.
            ErrorClass::Rejected => {
                let why = format!("the target refused to empty {target_name}: {e}");
                failures.push(FailedEvent::truncate(txn, index, table, why));
                Ok(Done::Recorded)
            }
        }
    }
}

/// Counts what the committed batch's row-emptying statements did, and warns about each
/// not applied.
pub(super) fn report(done: &[(TableName, Position, Done)]) {
    for (table, position, d) in done {
        match d {
            Done::Applied => {}
            Done::Recorded => tracing::warn!(%table, %position,
                "source TRUNCATE recorded as a failed event (truncate), not applied to the target (replicator.truncate = \"record\", the target refused, or a partition statement)"),
            Done::NoTargetTable => tracing::warn!(%table, %position,
                "source TRUNCATE of a table the target does not have; nothing to empty"),
        }
        metrics::TRUNCATES
            .with_label_values(&[&table.to_string(), d.as_str()])
            .inc();
    }
}
