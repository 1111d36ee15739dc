//! Row changes and the source transactions that group them.
//!
//! Invariant: `before`/`after` images are aligned with [`SourceTable::columns`] — value `i`
//! belongs to column `i` — and a change's table description is the one that was in force
//! when the change was written (a later DDL gives later changes a new `SourceTable`).

use crate::{Position, Value};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A schema-qualified table name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableName {
    pub db: String,
    pub table: String,
}

impl TableName {
    pub fn new(db: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            db: db.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.table)
    }
}

/// How the source described a table in the binlog (its TABLE_MAP event).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceTable {
    pub name: TableName,
    pub columns: Vec<String>,
    /// Indexes into `columns` of the primary key, in key order. Empty: no primary key.
    pub primary_key: Vec<usize>,
}

impl SourceTable {
    pub fn has_primary_key(&self) -> bool {
        !self.primary_key.is_empty()
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
    }
}

/// Kind of row change, with Debezium's one-letter codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "c")]
    Insert,
    #[serde(rename = "u")]
    Update,
    #[serde(rename = "d")]
    Delete,
    /// A row as a snapshot read it (docs/SNAPSHOT.md): the whole row, written like an
    /// insert (an upsert by key).
    #[serde(rename = "r")]
    Read,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Read => "read",
        }
    }

    /// Whether the change writes its after-image whole, as a new row would be (an insert,
    /// or a snapshot's row).
    pub fn writes_whole_row(self) -> bool {
        matches!(self, Op::Insert | Op::Read)
    }
}

/// One changed row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    pub table: Arc<SourceTable>,
    pub op: Op,
    pub before: Option<Vec<Value>>,
    pub after: Option<Vec<Value>>,
    /// Start of the rows event that carried this row.
    pub position: Position,
    /// Index of this row inside its rows event (several rows share one event).
    pub row_index: u32,
    /// Source commit time of the transaction, seconds since the epoch.
    pub commit_ts: u32,
}

impl RowChange {
    /// Whether an update moved the row to a different primary key. (A partial after-image
    /// without a key column did not change that column.)
    pub fn changes_key(&self) -> bool {
        match (&self.before, &self.after) {
            (Some(b), Some(a)) => self
                .table
                .primary_key
                .iter()
                .any(|&i| !a[i].is_absent() && b[i] != a[i]),
            _ => false,
        }
    }

    /// Whether an image lacks columns (the source logged a MINIMAL or NOBLOB row image).
    pub fn is_partial(&self) -> bool {
        [&self.before, &self.after]
            .into_iter()
            .flatten()
            .any(|img| img.iter().any(Value::is_absent))
    }

    /// The row's key after the change (insert, update) or before it (delete): key values
    /// in primary-key order, from the after-image where it has them, else the before-image
    /// (a partial update's after-image lacks unchanged key columns). `None` if a key
    /// column is in neither.
    pub fn key(&self) -> Option<Vec<Value>> {
        let (first, second) = match self.op {
            Op::Delete => (self.before.as_deref(), None),
            Op::Insert | Op::Read => (self.after.as_deref(), None),
            Op::Update => (self.after.as_deref(), self.before.as_deref()),
        };
        self.table
            .primary_key
            .iter()
            .map(|&i| {
                [first, second]
                    .into_iter()
                    .flatten()
                    .map(|img| &img[i])
                    .find(|v| !v.is_absent())
                    .cloned()
            })
            .collect()
    }
}

/// A committed source transaction, or a statement that commits implicitly (DDL).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub changes: Vec<RowChange>,
    /// Where reading resumes after this transaction (end of its commit event).
    pub end: Position,
    /// Commit time, seconds since the epoch.
    pub commit_ts: u32,
    /// A DDL statement, with the default schema it ran in.
    pub ddl: Option<Ddl>,
    /// Included tables a `TRUNCATE` emptied (the statement is also `ddl`): after this
    /// transaction's changes, none of their rows is left. A DDL ends a batch, so nothing
    /// after it is applied before it.
    #[serde(default)]
    pub truncated: Vec<TableName>,
    /// Included tables an `ALTER TABLE … TRUNCATE|DROP|EXCHANGE PARTITION` (the `ddl`)
    /// removed or swapped rows of without row events: the target cannot be told which, so
    /// each is recorded for a re-sync.
    #[serde(default)]
    pub partition_rows: Vec<TableName>,
    /// Rows of included tables that could not be decoded; kept so they can be recorded.
    pub undecodable: Vec<Undecodable>,
    /// Data changes of included tables the source logged as SQL statements instead of row
    /// images; kept so they can be recorded (concord cannot apply them exactly).
    #[serde(default)]
    pub statements: Vec<LoggedStatement>,
    /// Where a reader must start again to continue after this transaction, when that is
    /// before `end`: the start of the oldest XA transaction that was prepared but not yet
    /// committed or rolled back (its rows are handed on only at its commit). `None`: `end`.
    /// At an `XA PREPARE` the reader hands on an empty transaction carrying only this, so
    /// the checkpoint moves on without forgetting the pending one.
    #[serde(default)]
    pub resume_from: Option<Position>,
    /// The source's global transaction id, `domain-server-sequence` (MariaDB), when the
    /// binlog carries one.
    pub gtid: Option<String>,
}

/// A row the reader could not turn into values (recorded as a failed event, never dropped
/// silently).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Undecodable {
    pub table: TableName,
    pub position: Position,
    pub row_index: u32,
    pub error: String,
}

/// A data change the source logged as an SQL statement (a session with `binlog_format`
/// STATEMENT or MIXED): its effect on rows is not in the binlog, so it is recorded for an
/// operator (and a re-sync of its tables), never skipped silently.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedStatement {
    /// Start of the query event.
    pub position: Position,
    /// The default schema the statement ran in.
    pub schema: String,
    pub statement: String,
    /// The included tables it may have changed; empty when the statement could not be
    /// attributed to a table (it is then recorded against `schema`).
    pub tables: Vec<TableName>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ddl {
    pub schema: String,
    pub statement: String,
    /// Tables the statement names, when the reader could tell; empty means "any table of
    /// `schema`".
    pub tables: Vec<TableName>,
}
