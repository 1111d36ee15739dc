//! A source `TRUNCATE` on the target. The statement is a DDL, so it ends its batch: every
//! change read before it is written first, in the same target transaction, and none after
//! it. The target table is emptied with `DELETE` rather than `TRUNCATE`, which would
//! commit on its own: inside the batch's transaction the emptied table and the checkpoint
//! past the statement commit together, so a crash replays all of it or none.

use super::{transient, Abort, Applier, Attempt};
use crate::error::{classify, ErrorClass};
use crate::metrics;
use concord_change::Transaction;
use concord_config::TruncateMode;
use concord_control::FailedEvent;
use concord_schema_cache::{quote_table, RefreshReason};
use mysql_async::Params;

impl Applier {
    /// Empties the target tables `txn` truncated on the source — or, with
    /// `replicator.truncate = "record"`, records that it did not.
    pub(super) async fn truncate(
        &mut self,
        txn: &Transaction,
        failures: &mut Vec<FailedEvent>,
    ) -> Attempt<()> {
        for (index, table) in txn.truncated.iter().enumerate() {
            let target_name = self.filter.target_name(table);
            if self.config.truncate == TruncateMode::Record {
                let why = format!(
                    "the source emptied {table} (TRUNCATE); with replicator.truncate = \
                     \"record\" the target's {target_name} was left as it was: empty it or \
                     re-sync it"
                );
                failures.push(FailedEvent::truncate(txn, index, table, why));
                continue;
            }
            let Some(target) = self.schema.get(&target_name).await.map_err(transient)? else {
                tracing::warn!(%table, target = %target_name, position = %txn.end,
                    "source TRUNCATE of a table the target does not have; nothing to empty");
                continue;
            };
            let sql = format!("DELETE FROM {}", quote_table(&target.name));
            let Err(e) = self.exec(&sql, Params::Empty).await else {
                continue;
            };
            match classify(&e) {
                ErrorClass::Transient => return Err(transient(e)),
                ErrorClass::UnknownColumn | ErrorClass::MissingTable => {
                    self.schema
                        .refresh(&target.name, RefreshReason::MissingTable)
                        .await;
                    return Err(Abort::SchemaMoved);
                }
                // E.g. a foreign key of another table with checks on: kept for an operator.
                ErrorClass::Rejected => {
                    let why = format!("the target refused to empty {target_name}: {e}");
                    failures.push(FailedEvent::truncate(txn, index, table, why));
                }
            }
        }
        Ok(())
    }
}

/// Counts the batch's TRUNCATEs once it committed, and warns about each left undone.
pub(super) fn report(batch: &[Transaction], mode: TruncateMode) {
    for txn in batch {
        for table in &txn.truncated {
            let action = match mode {
                TruncateMode::Apply => "applied",
                TruncateMode::Record => {
                    tracing::warn!(%table, position = %txn.end,
                        "source TRUNCATE recorded as a failed event, not applied (replicator.truncate = \"record\")");
                    "recorded"
                }
            };
            metrics::TRUNCATES
                .with_label_values(&[&table.to_string(), action])
                .inc();
        }
    }
}
