//! Lists for people: failed events by table and status, checksum runs and batch jobs with
//! their outcomes — newest first, paged by id.

use crate::batch_jobs::{batch_job, BatchJob, BATCH_COLUMNS};
use crate::failed::{failed_row, FAILED_COLUMNS};
use crate::{text, ControlError, ControlStore, FailedEventRow};
use concord_change::TableName;
use sqlx::Row;

/// Which failed events to list.
#[derive(Clone, Debug, Default)]
pub struct FailedFilter {
    pub table: Option<TableName>,
    /// `open`, `retried`, `repaired`, `ignored`.
    pub status: Option<String>,
    pub before_id: Option<i64>,
}

/// A checksum run as listed: whole-table runs (`scope` empty) and batch jobs' ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChecksumRunRow {
    pub id: i64,
    pub table: TableName,
    pub scope: String,
    /// `running`, `done`, `abandoned`.
    pub state: String,
    pub chunks: i64,
    pub rows: i64,
    pub chunks_differ: i64,
    pub mismatches: i64,
    pub started_ms: i64,
    pub updated_ms: i64,
}

impl ControlStore {
    /// Failed events matching `f`, newest first.
    pub async fn find_failed(
        &self,
        f: &FailedFilter,
        limit: i64,
    ) -> Result<Vec<FailedEventRow>, ControlError> {
        let mut conds = Vec::new();
        if f.table.is_some() {
            conds.push("db = ? AND tbl = ?");
        }
        if f.status.is_some() {
            conds.push("status = ?");
        }
        if f.before_id.is_some() {
            conds.push("id < ?");
        }
        let wher = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let sql =
            format!("SELECT {FAILED_COLUMNS} FROM failed_events{wher} ORDER BY id DESC LIMIT ?");
        let mut q = sqlx::query(&sql);
        if let Some(t) = &f.table {
            q = q.bind(t.db.clone()).bind(t.table.clone());
        }
        if let Some(s) = &f.status {
            q = q.bind(s.clone());
        }
        if let Some(id) = f.before_id {
            q = q.bind(id);
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(failed_row).collect::<Result<_, _>>()?)
    }

    /// Checksum runs, newest first; `whole_tables`: only `concord checksum`'s own.
    pub async fn checksum_runs(
        &self,
        whole_tables: bool,
        limit: i64,
    ) -> Result<Vec<ChecksumRunRow>, ControlError> {
        let wher = if whole_tables {
            " WHERE scope = ''"
        } else {
            ""
        };
        let rows = sqlx::query(&format!(
            "SELECT id, db, tbl, scope, state, chunks, rows_checked, chunks_differ, mismatches, \
             started_ms, updated_ms FROM checksum_runs{wher} ORDER BY id DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ChecksumRunRow {
                    id: r.try_get(0)?,
                    table: TableName::new(text(r, 1)?, text(r, 2)?),
                    scope: text(r, 3)?,
                    state: text(r, 4)?,
                    chunks: r.try_get(5)?,
                    rows: r.try_get(6)?,
                    chunks_differ: r.try_get(7)?,
                    mismatches: r.try_get(8)?,
                    started_ms: r.try_get(9)?,
                    updated_ms: r.try_get(10)?,
                })
            })
            .collect()
    }

    /// Batch recovery jobs, newest first.
    pub async fn batch_jobs(&self, limit: i64) -> Result<Vec<BatchJob>, ControlError> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM batch_jobs ORDER BY id DESC LIMIT ?");
        let rows = sqlx::query(&sql).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(batch_job).collect::<Result<_, _>>()?)
    }

    pub async fn batch_job(&self, id: i64) -> Result<Option<BatchJob>, ControlError> {
        let sql = format!("SELECT {BATCH_COLUMNS} FROM batch_jobs WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(batch_job).transpose()?)
    }
}
