//! The guarded repair write: the one way anything but the replicator's stream writes a row
//! to the target — auto, manual, bulk and batch repair alike.
//!
//! In one target transaction: read the target row with `FOR UPDATE` (the row, or its key's
//! gap, stays locked until commit), check that it still holds the image the difference was
//! observed with, read the source's *current* row, write it (an upsert of the shared
//! columns with the replicator's own statements, audit columns included, or a delete), and
//! commit. The caller verifies the row again afterwards.
//!
//! Invariants:
//! - a target row that changed since it was observed is never overwritten: the replicator
//!   got there first, and the repair is [`RepairOutcome::Superseded`];
//! - the source is read only once the target row is locked, so what is written is at least
//!   as new as anything the replicator applied to the row before: a repair never writes an
//!   older image over a newer one (the replicator may still apply changes older than the
//!   written row after it, but it applies them in source order, ending at the source's);
//! - the statements a preview shows ([`RowRepair::statements`]) are the statements that
//!   run, built by [`crate::sql`] like the replicator's.

use crate::session::{LENIENT_SQL_MODE, STRICT_SQL_MODE};
use crate::sql::{build, Statement};
use crate::write::{Write, WriteKind};
use concord_change::{Op, Position, RowChange, SourceTable, Value};
use concord_schema_cache::{ColumnPlan, TargetTable};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params};
use std::future::Future;
use std::sync::Arc;

/// How a repair reads the rows it guards and writes. The comparison library implements it
/// with the reads a comparison observes rows with, so that an unchanged target row reads
/// back as exactly the image that was observed.
pub trait RepairReads {
    /// The target row with `key` (in `table`'s primary-key order), in `table`'s column
    /// order, read inside the open transaction of `conn` with `FOR UPDATE`.
    fn target_locked(
        &self,
        conn: &mut Conn,
        table: &TargetTable,
        key: &[Value],
    ) -> impl Future<Output = Result<Option<Vec<Value>>, mysql_async::Error>> + Send;

    /// The source's row with the repair's key now, in the source table's column order.
    fn source_now(
        &self,
    ) -> impl Future<Output = Result<Option<Vec<Value>>, Box<dyn std::error::Error + Send + Sync>>> + Send;
}

/// One row to repair.
#[derive(Clone, Debug)]
pub struct RowRepair {
    pub target: Arc<TargetTable>,
    /// The source table as its rows are read (column names and key).
    pub source: Arc<SourceTable>,
    /// How the source's columns are written to the target's (the replicator's plan).
    pub plan: ColumnPlan,
    /// The row's key in the target's primary-key order.
    pub key: Vec<Value>,
    /// The target row as the difference was observed (the target's column order); `None`:
    /// the target had no such row.
    pub observed: Option<Vec<Value>>,
}

/// A statement as it ran (or would run): its text and the values bound to it, each as an
/// SQL literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShownStatement {
    pub sql: String,
    pub params: Vec<String>,
}

impl std::fmt::Display for ShownStatement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.sql)?;
        if !self.params.is_empty() {
            write!(f, "\n  -- with: {}", self.params.join(", "))?;
        }
        Ok(())
    }
}

fn shown(sql: &str, params: &[mysql_async::Value]) -> ShownStatement {
    ShownStatement {
        sql: sql.to_owned(),
        params: params.iter().map(|v| v.as_sql(false)).collect(),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum RepairOutcome {
    /// Written and committed: the target row before, the source row written (`None`: the
    /// row was deleted), the statements that ran.
    Repaired {
        before: Option<Vec<Value>>,
        after: Option<Vec<Value>>,
        statements: Vec<ShownStatement>,
    },
    /// Both sides have no such row: nothing to write.
    NothingToWrite,
    /// The target row is no longer the one observed: nothing written; `now` is what it
    /// holds.
    Superseded { now: Option<Vec<Value>> },
}

#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The target refused a statement, or the connection failed; classify the cause with
    /// [`crate::classify`] to tell a retry from a row the target rejects.
    #[error("target {table}: {source}")]
    Target {
        table: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("reading the source's row of {table}")]
    Source {
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl RowRepair {
    /// The statements that write `source_row` (the source's current row; `None`: delete the
    /// target's row) — what a preview shows and what [`repair`] runs.
    pub fn statements(&self, source_row: Option<&[Value]>) -> Vec<Statement> {
        let change = match source_row {
            Some(row) => RowChange {
                table: self.source.clone(),
                op: Op::Insert,
                before: None,
                after: Some(row.to_vec()),
                position: Position::new("", 0),
                row_index: 0,
                commit_ts: 0,
            },
            None => RowChange {
                table: self.source.clone(),
                op: Op::Delete,
                before: Some(self.key_image()),
                after: None,
                position: Position::new("", 0),
                row_index: 0,
                commit_ts: 0,
            },
        };
        let kind = match source_row {
            Some(_) => WriteKind::Upsert,
            None => WriteKind::Delete,
        };
        let write = Write {
            kind,
            change: &change,
        };
        vec![build(kind, &self.target.name, &self.plan, &[write])]
    }

    /// The statements [`RowRepair::statements`] builds, as shown to a person.
    pub fn preview(&self, source_row: Option<&[Value]>) -> Vec<ShownStatement> {
        self.statements(source_row)
            .iter()
            .flat_map(|s| {
                std::iter::once(shown(&s.sql, &s.params))
                    .chain(s.fixups.iter().map(|f| shown(&f.sql, &f.params)))
            })
            .filter(|s| !s.sql.is_empty())
            .collect()
    }

    /// A source-ordered image holding only the key (for a delete's condition): the plan's
    /// key columns find their values by source index.
    fn key_image(&self) -> Vec<Value> {
        let mut image = vec![Value::Null; self.source.columns.len()];
        for (planned, value) in self.plan.key.iter().zip(&self.key) {
            if let Some(slot) = image.get_mut(planned.source_index) {
                *slot = value.clone();
            }
        }
        image
    }

    fn target_error(&self) -> impl Fn(mysql_async::Error) -> RepairError + '_ {
        |source| RepairError::Target {
            table: self.target.name.to_string(),
            source,
        }
    }
}

/// Repairs one row through `conn`, a writer session (see [`crate::session`]): see the
/// module's docs. On any error the transaction is rolled back and nothing is written;
/// the session may be left in the lenient SQL mode, so the caller opens a new one.
pub async fn repair(
    conn: &mut Conn,
    row: &RowRepair,
    reads: &impl RepairReads,
) -> Result<RepairOutcome, RepairError> {
    let err = row.target_error();
    conn.query_drop("START TRANSACTION").await.map_err(&err)?;
    let outcome = locked(conn, row, reads).await;
    let end = match &outcome {
        Ok(RepairOutcome::Repaired { .. }) => "COMMIT",
        _ => "ROLLBACK",
    };
    match conn.query_drop(end).await {
        Ok(()) => outcome,
        // The first error is the one that says what went wrong.
        Err(e) => outcome.and(Err(err(e))),
    }
}

/// The part of [`repair`] inside the transaction; it neither commits nor rolls back.
async fn locked(
    conn: &mut Conn,
    row: &RowRepair,
    reads: &impl RepairReads,
) -> Result<RepairOutcome, RepairError> {
    let err = row.target_error();
    let now = reads
        .target_locked(conn, &row.target, &row.key)
        .await
        .map_err(&err)?;
    if now != row.observed {
        return Ok(RepairOutcome::Superseded { now });
    }
    let source_row = reads
        .source_now()
        .await
        .map_err(|source| RepairError::Source {
            table: row.source.name.to_string(),
            source,
        })?;
    if source_row.is_none() && now.is_none() {
        return Ok(RepairOutcome::NothingToWrite);
    }
    let mut ran = Vec::new();
    for statement in row.statements(source_row.as_deref()) {
        if statement.sql.is_empty() {
            continue;
        }
        conn.exec_drop(&statement.sql, Params::Positional(statement.params.clone()))
            .await
            .map_err(&err)?;
        ran.push(shown(&statement.sql, &statement.params));
        if !statement.fixups.is_empty() {
            conn.query_drop(format!("SET SESSION sql_mode = '{LENIENT_SQL_MODE}'"))
                .await
                .map_err(&err)?;
            for f in &statement.fixups {
                conn.exec_drop(&f.sql, Params::Positional(f.params.clone()))
                    .await
                    .map_err(&err)?;
                ran.push(shown(&f.sql, &f.params));
            }
            conn.query_drop(format!("SET SESSION sql_mode = '{STRICT_SQL_MODE}'"))
                .await
                .map_err(&err)?;
        }
    }
    Ok(RepairOutcome::Repaired {
        before: now,
        after: source_row,
        statements: ran,
    })
}
