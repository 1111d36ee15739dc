//! Rows of a replicated table the target does not have: one compact record per table (the
//! count and the position range, see `concord_control::MissingRows`) instead of a failed
//! event per row, and a warning per table at most once a minute.

use super::Applier;
use crate::batch::Write;
use crate::metrics;
use concord_change::TableName;
use concord_control::{until_stored, MissingRows};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The compact record of `writes`, rows of `table` that `target` lacks.
pub(super) fn missing_rows(
    table: &TableName,
    target: &TableName,
    writes: &[Write<'_>],
) -> MissingRows {
    let positions = writes.iter().map(|w| &w.change.position);
    let first = positions.clone().min().cloned().unwrap_or_default();
    let last = positions.max().cloned().unwrap_or_default();
    MissingRows {
        table: table.clone(),
        target: target.clone(),
        first,
        last,
        rows: writes.len() as u64,
    }
}

impl Applier {
    /// Stores the batch's missing-table records (before its commit, so a crash loses none);
    /// `ordered`: the batch comes from one binlog stream read in order (direct mode).
    pub(super) async fn record_missing(&self, missing: &[MissingRows], ordered: bool) {
        for m in missing {
            until_stored("missing-table record", self.config.max_backoff, || {
                self.control.record_missing(m, ordered)
            })
            .await;
        }
    }
}

/// Counts the committed batch's missing rows and warns, once a minute per table.
pub(super) fn report(missing: &[MissingRows]) {
    static LAST_WARNED: LazyLock<Mutex<HashMap<TableName, Instant>>> =
        LazyLock::new(Default::default);
    for m in missing {
        metrics::MISSING_TABLE_ROWS
            .with_label_values(&[&m.table.to_string()])
            .inc_by(m.rows);
        let now = Instant::now();
        let mut warned = LAST_WARNED.lock().unwrap_or_else(|e| e.into_inner());
        let due = warned
            .get(&m.table)
            .is_none_or(|at| now.duration_since(*at) >= Duration::from_secs(60));
        if due {
            warned.insert(m.table.clone(), now);
            tracing::warn!(table = %m.table, target = %m.target, rows = m.rows,
                first = %m.first, last = %m.last,
                "the target has no table for these rows; kept as one missing-table record per \
                 table (count and position range) — create the table and re-sync it; further \
                 rows are counted in concord_missing_table_rows_total and warned about once a \
                 minute");
        }
    }
}
