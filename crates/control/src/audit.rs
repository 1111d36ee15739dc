//! The audit log: every history row — a record's move, a bulk action, the circuit, a job
//! started — with what it is about, searchable and paged by id (newest first).
//!
//! Invariant: every filter value is a bound parameter; only fixed SQL text is assembled.

use crate::console::AuditRow;
use crate::lifecycle::{history_row, HISTORY_COLUMNS};
use crate::mismatches::opt_text as opt;
use crate::{text, ControlError, ControlStore};
use concord_change::TableName;
use sqlx::Row;

/// Which audit rows to list.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Who (exact).
    pub actor: Option<String>,
    /// `mismatch`, `failed_event`, `bulk`, `circuit`, `batch_job`, `checksum`.
    pub subject: Option<String>,
    /// One subject's rows (with `subject`).
    pub subject_id: Option<i64>,
    /// The state moved to, or the action (`repair`, `ignore`, `close`, …).
    pub to_state: Option<String>,
    /// At or after / before (ms since the epoch).
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Rows about records of this table.
    pub table: Option<TableName>,
    /// Below this id (the next page).
    pub before_id: Option<i64>,
}

impl ControlStore {
    /// Audit rows matching `f`, newest first, at most `limit`.
    pub async fn find_audit(
        &self,
        f: &AuditFilter,
        limit: i64,
    ) -> Result<Vec<AuditRow>, ControlError> {
        let cols: String = HISTORY_COLUMNS
            .split(", ")
            .map(|c| format!("h.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut conds: Vec<&str> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        // Conditions and their values in one order: texts first, then numbers.
        if let Some(a) = &f.actor {
            conds.push("h.actor = ?");
            texts.push(a.clone());
        }
        if let Some(s) = &f.subject {
            conds.push("h.subject = ?");
            texts.push(s.clone());
        }
        if let Some(s) = &f.to_state {
            conds.push("h.to_state = ?");
            texts.push(s.clone());
        }
        if let Some(t) = &f.table {
            conds.push(
                "((m.db = ? AND m.tbl = ?) OR (fe.db = ? AND fe.tbl = ?) OR \
                 (b.db = ? AND b.tbl = ?))",
            );
            for _ in 0..3 {
                texts.push(t.db.clone());
                texts.push(t.table.clone());
            }
        }
        for (cond, v) in [
            ("h.subject_id = ?", f.subject_id),
            ("h.at_ms >= ?", f.since_ms),
            ("h.at_ms < ?", f.until_ms),
            ("h.id < ?", f.before_id),
        ] {
            if let Some(v) = v {
                conds.push(cond);
                ints.push(v);
            }
        }
        let wher = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let sql = format!(
            "SELECT h.subject, h.subject_id, COALESCE(m.db, fe.db, b.db), \
             COALESCE(m.tbl, fe.tbl, b.tbl), m.pk, {cols} FROM recovery_history h \
             LEFT JOIN mismatches m ON h.subject = 'mismatch' AND m.id = h.subject_id \
             LEFT JOIN failed_events fe ON h.subject = 'failed_event' AND fe.id = h.subject_id \
             LEFT JOIN batch_jobs b ON h.subject = 'batch_job' AND b.id = h.subject_id\
             {wher} ORDER BY h.id DESC LIMIT ?"
        );
        let mut q = sqlx::query(&sql);
        for t in texts {
            q = q.bind(t);
        }
        for i in ints {
            q = q.bind(i);
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let db = opt(r, 2)?;
                let tbl = opt(r, 3)?;
                Ok(AuditRow {
                    subject: text(r, 0)?,
                    subject_id: r.try_get(1)?,
                    table: db.zip(tbl).map(|(d, t)| TableName::new(d, t)),
                    key: opt(r, 4)?,
                    history: history_row(r, 5)?,
                })
            })
            .collect()
    }
}
