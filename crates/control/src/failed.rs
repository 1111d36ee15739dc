//! Failed events: rows that were read but could not be written, kept whole for replay.

use crate::{now_ms, text, Backend, ControlError, ControlStore};
use concord_change::{LoggedStatement, Position, TableName, Transaction, Undecodable};
use sqlx::Row;

/// Why a row was recorded instead of applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The target refused the row's content (too long, out of range, constraint…).
    Rejected,
    /// The binlog row could not be decoded.
    Undecodable,
    /// The target has no table to write it to.
    MissingTable,
    /// Source or target table lacks a usable primary key.
    NoPrimaryKey,
    /// A Kafka message that is not a readable change envelope (also dead-lettered).
    Malformed,
    /// A data change the source logged as an SQL statement (binlog_format STATEMENT or
    /// MIXED in its session): its rows are not in the binlog.
    StatementFormat,
    /// A partial row image (MINIMAL or NOBLOB) updated a row the target does not have: its
    /// missing columns cannot be made up.
    MissingRow,
    /// A partial row image that cannot be applied without guessing (in kafka mode, a
    /// primary-key change: the row's new key needs a whole image on its own partition).
    PartialImage,
    /// A source `TRUNCATE` left undone on the target (`replicator.truncate = "record"`, kafka
    /// mode, or the target refused to empty the table). One that does not say which table
    /// is recorded as a statement (`StatementFormat`).
    Truncate,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Rejected => "rejected",
            FailureReason::Undecodable => "undecodable",
            FailureReason::MissingTable => "missing_table",
            FailureReason::NoPrimaryKey => "no_primary_key",
            FailureReason::Malformed => "malformed",
            FailureReason::StatementFormat => "statement_format",
            FailureReason::MissingRow => "missing_row",
            FailureReason::PartialImage => "partial_image",
            FailureReason::Truncate => "truncate",
        }
    }
}

/// A failure to record.
#[derive(Clone, Debug)]
pub struct FailedEvent {
    pub position: Position,
    pub row_index: u32,
    pub table: TableName,
    pub op: String,
    pub reason: FailureReason,
    pub error: String,
    /// The change as JSON (the change model's serde form), replayable as is.
    pub event: String,
}

impl From<&Undecodable> for FailedEvent {
    /// A row the binlog reader could not decode, kept with its raw description.
    fn from(u: &Undecodable) -> Self {
        FailedEvent {
            position: u.position.clone(),
            row_index: u.row_index,
            table: u.table.clone(),
            op: "unknown".into(),
            reason: FailureReason::Undecodable,
            error: u.error.clone(),
            event: serde_json::to_string(u).expect("undecodable rows serialize"),
        }
    }
}

impl FailedEvent {
    /// The `i`-th table whose rows a source `ALTER TABLE … TRUNCATE|DROP|EXCHANGE
    /// PARTITION` (the `ddl` of `txn`) removed or swapped without row events; `target`: the
    /// target table, when the recording role knows it (not the capture).
    pub fn partition_rows(
        txn: &Transaction,
        i: usize,
        table: &TableName,
        target: Option<&TableName>,
    ) -> Self {
        let statement = txn.ddl.as_ref().map(|d| d.statement.as_str()).unwrap_or("");
        let target = match target {
            Some(t) => format!("target's {t}"),
            None => "target".to_owned(),
        };
        let why = format!(
            "the source removed or swapped rows of {table} by partition ({statement}), which \
             the binlog carries as a schema change without row events; the {target} keeps \
             the rows it had: re-sync the table"
        );
        Self::truncate(txn, txn.truncated.len() + i, table, why)
    }

    /// A source `TRUNCATE` of `table` (the `index`-th table the statement of `txn` names)
    /// left undone on the target, with `error` saying why.
    pub fn truncate(txn: &Transaction, index: usize, table: &TableName, error: String) -> Self {
        FailedEvent {
            position: txn.end.clone(),
            row_index: index as u32,
            table: table.clone(),
            op: "truncate".into(),
            reason: FailureReason::Truncate,
            error,
            event: serde_json::to_string(&txn.ddl).expect("statements serialize"),
        }
    }
}

impl From<&LoggedStatement> for FailedEvent {
    /// A data change logged as SQL, recorded against its first included table (or, when
    /// it could not be attributed, its default schema as `schema.*`), SQL and all.
    fn from(s: &LoggedStatement) -> Self {
        let table = s
            .tables
            .first()
            .cloned()
            .unwrap_or_else(|| TableName::new(s.schema.clone(), "*"));
        let tables = if s.tables.is_empty() {
            format!("the tables of schema `{}` it changed", s.schema)
        } else {
            s.tables
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        FailedEvent {
            position: s.position.clone(),
            row_index: 0,
            table,
            op: "statement".into(),
            reason: FailureReason::StatementFormat,
            error: format!(
                "the source logged this change as an SQL statement, not as row images (its \
                 session ran with binlog_format STATEMENT or MIXED), so concord cannot apply \
                 it exactly; re-sync {tables}. Statement (default schema `{}`): {}",
                s.schema, s.statement
            ),
            event: serde_json::to_string(s).expect("statements serialize"),
        }
    }
}

/// A recorded failure as the store has it.
#[derive(Clone, Debug)]
pub struct FailedEventRow {
    pub id: i64,
    pub position: Position,
    pub row_index: u32,
    pub table: TableName,
    pub op: String,
    pub reason: String,
    pub error: String,
    pub event: String,
    pub status: String,
    pub occurrences: i64,
}

impl ControlStore {
    /// Records a failure; the same origin recorded again bumps its occurrence count.
    pub async fn record_failed(&self, f: &FailedEvent) -> Result<(), ControlError> {
        let upsert = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO failed_events (source_file, source_pos, row_index, db, tbl, op, reason, \
                 error, event, first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (source_file, source_pos, row_index) DO UPDATE SET \
                 occurrences = occurrences + 1, error = excluded.error, last_seen_ms = excluded.last_seen_ms"
            }
            Backend::MySql => {
                "INSERT INTO failed_events (source_file, source_pos, row_index, db, tbl, op, reason, \
                 error, event, first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE occurrences = occurrences + 1, error = VALUES(error), \
                 last_seen_ms = VALUES(last_seen_ms)"
            }
        };
        let now = now_ms();
        sqlx::query(upsert)
            .bind(&*f.position.file)
            .bind(f.position.pos as i64)
            .bind(i64::from(f.row_index))
            .bind(&f.table.db)
            .bind(&f.table.table)
            .bind(&f.op)
            .bind(f.reason.as_str())
            .bind(&f.error)
            .bind(&f.event)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Open failed events per table, for the `concord_failed_events_open` gauge.
    pub async fn open_failed_counts(&self) -> Result<Vec<(TableName, i64)>, ControlError> {
        let rows = sqlx::query(
            "SELECT db, tbl, COUNT(*) FROM failed_events WHERE status = 'open' GROUP BY db, tbl",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    TableName::new(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?),
                    r.try_get::<i64, _>(2)?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ControlError::from)
    }

    /// Failed events, newest first, optionally of one table.
    pub async fn failed_events(
        &self,
        table: Option<&TableName>,
        limit: i64,
    ) -> Result<Vec<FailedEventRow>, ControlError> {
        let base = format!("SELECT {FAILED_COLUMNS} FROM failed_events");
        let rows = match table {
            Some(t) => {
                sqlx::query(&format!(
                    "{base} WHERE db = ? AND tbl = ? ORDER BY id DESC LIMIT ?"
                ))
                .bind(&t.db)
                .bind(&t.table)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("{base} ORDER BY id DESC LIMIT ?"))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(failed_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ControlError::from)
    }

    /// One failed event.
    pub async fn failed_event(&self, id: i64) -> Result<Option<FailedEventRow>, ControlError> {
        let row = sqlx::query(&format!(
            "SELECT {FAILED_COLUMNS} FROM failed_events WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(failed_row).transpose()?)
    }
}

pub(crate) const FAILED_COLUMNS: &str =
    "id, source_file, source_pos, row_index, db, tbl, op, reason, \
                              error, event, status, occurrences";

pub(crate) fn failed_row(r: &sqlx::any::AnyRow) -> Result<FailedEventRow, sqlx::Error> {
    Ok(FailedEventRow {
        id: r.try_get(0)?,
        position: Position::new(r.try_get::<String, _>(1)?, r.try_get::<i64, _>(2)? as u64),
        row_index: r.try_get::<i64, _>(3)? as u32,
        table: TableName::new(r.try_get::<String, _>(4)?, r.try_get::<String, _>(5)?),
        op: r.try_get(6)?,
        reason: r.try_get(7)?,
        error: text(r, 8)?,
        event: text(r, 9)?,
        status: r.try_get(10)?,
        occurrences: r.try_get(11)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(pos: u64) -> FailedEvent {
        FailedEvent {
            position: Position::new("mysql-bin.000001", pos),
            row_index: 0,
            table: TableName::new("shop", "orders"),
            op: "insert".into(),
            reason: FailureReason::Rejected,
            error: "Data too long for column 'note'".into(),
            event: "{}".into(),
        }
    }

    #[tokio::test]
    async fn sqlite_store_records_and_dedups_by_origin() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        store.record_failed(&event(100)).await.unwrap();
        store.record_failed(&event(100)).await.unwrap();
        store.record_failed(&event(200)).await.unwrap();
        let rows = store.failed_events(None, 10).await.unwrap();
        assert_eq!(rows.len(), 2);
        let first = rows.iter().find(|r| r.position.pos == 100).unwrap();
        assert_eq!(first.occurrences, 2);
        assert_eq!(first.reason, "rejected");
        assert_eq!(first.table, TableName::new("shop", "orders"));
        // Reopening runs migrations again without harm.
        let again = ControlStore::connect(&url, &url).await.unwrap();
        assert_eq!(again.failed_events(None, 10).await.unwrap().len(), 2);
    }
}
