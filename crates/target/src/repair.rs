//! The guarded repair write: the one way anything but the replicator's stream writes a row
//! to the target — auto, manual, bulk and batch repair alike.
//!
//! In one target transaction, for a page of rows of one table: read the target rows with
//! `FOR UPDATE` (each row, or its key's gap, stays locked until commit), keep only those
//! that still hold the image their difference was observed with, read the source's
//! *current* rows for those, write them (upserts of the shared columns with the
//! replicator's own statements, audit columns included, and deletes — many rows to a
//! statement), and commit. The caller verifies the rows again afterwards.
//!
//! Invariants:
//! - a target row that changed since it was observed is never overwritten: the replicator
//!   got there first, and that row's repair is [`RepairOutcome::Superseded`];
//! - the source is read only once the target rows are locked, so what is written is at
//!   least as new as anything the replicator applied to a row before: a repair never writes
//!   an older image over a newer one (the replicator may still apply changes older than the
//!   written row after it, but it applies them in source order, ending at the source's);
//! - the statements a preview shows ([`RowRepair::statements`]) are the statements that
//!   run, built by [`crate::sql`] like the replicator's; a page runs the same statements
//!   with many rows' values in each.

use crate::session::{LENIENT_SQL_MODE, STRICT_SQL_MODE};
use crate::sql::{build, chunk_sizes, columns_per_row, Statement};
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
    /// The target rows with `keys` (each in `table`'s primary-key order), in `table`'s
    /// column order, read inside the open transaction of `conn` with `FOR UPDATE`; one
    /// entry per key, `None` where the target has no such row.
    fn target_locked(
        &self,
        conn: &mut Conn,
        table: &TargetTable,
        keys: &[Vec<Value>],
    ) -> impl Future<Output = Result<Vec<Option<Vec<Value>>>, mysql_async::Error>> + Send;

    /// The source's rows now of the page's rows `which` (indexes into the page given to
    /// [`repair_page`]), in the source table's column order; one entry per index.
    fn source_now(
        &self,
        which: &[usize],
    ) -> impl Future<
        Output = Result<Vec<Option<Vec<Value>>>, Box<dyn std::error::Error + Send + Sync>>,
    > + Send;
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
    /// target's row) — what a preview shows and what [`repair_page`] runs.
    pub fn statements(&self, source_row: Option<&[Value]>) -> Vec<Statement> {
        let (kind, change) = self.change(source_row);
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

    /// The write that puts `source_row` in place of the target's row: an upsert of it, or
    /// (no source row) a delete by key.
    fn change(&self, source_row: Option<&[Value]>) -> (WriteKind, RowChange) {
        let (kind, op, before, after) = match source_row {
            Some(row) => (WriteKind::Upsert, Op::Insert, None, Some(row.to_vec())),
            None => (WriteKind::Delete, Op::Delete, Some(self.key_image()), None),
        };
        let change = RowChange {
            table: self.source.clone(),
            op,
            before,
            after,
            position: Position::new("", 0),
            row_index: 0,
            commit_ts: 0,
        };
        (kind, change)
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

/// Repairs one row through `conn`: [`repair_page`] with a page of one.
pub async fn repair(
    conn: &mut Conn,
    row: &RowRepair,
    reads: &impl RepairReads,
) -> Result<RepairOutcome, RepairError> {
    let mut out = repair_page(conn, std::slice::from_ref(row), reads).await?;
    Ok(out.remove(0))
}

/// Repairs a page of rows of one table (one plan: every row's `target`, `source` and
/// `plan` are the first's) through `conn`, a writer session (see [`crate::session`]), in
/// one transaction: see the module's docs. One outcome per row, in the page's order. On
/// any error the transaction is rolled back and nothing is written — one row the target
/// refuses fails the page, so a caller repairs such a page again row by row to find it;
/// the session may be left in the lenient SQL mode, so the caller opens a new one.
pub async fn repair_page(
    conn: &mut Conn,
    rows: &[RowRepair],
    reads: &impl RepairReads,
) -> Result<Vec<RepairOutcome>, RepairError> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let err = first.target_error();
    conn.query_drop("START TRANSACTION").await.map_err(&err)?;
    let outcome = locked(conn, rows, reads).await;
    let wrote = outcome.as_ref().is_ok_and(|o| {
        o.iter()
            .any(|r| matches!(r, RepairOutcome::Repaired { .. }))
    });
    let end = if wrote { "COMMIT" } else { "ROLLBACK" };
    match conn.query_drop(end).await {
        Ok(()) => outcome,
        // The first error is the one that says what went wrong.
        Err(e) => outcome.and(Err(err(e))),
    }
}

/// The part of [`repair_page`] inside the transaction; it neither commits nor rolls back.
async fn locked(
    conn: &mut Conn,
    rows: &[RowRepair],
    reads: &impl RepairReads,
) -> Result<Vec<RepairOutcome>, RepairError> {
    let first = &rows[0];
    let err = first.target_error();
    let keys: Vec<Vec<Value>> = rows.iter().map(|r| r.key.clone()).collect();
    let now = reads
        .target_locked(conn, &first.target, &keys)
        .await
        .map_err(&err)?;
    let mut out: Vec<Option<RepairOutcome>> = vec![None; rows.len()];
    let mut unchanged = Vec::new();
    for (i, (row, now)) in rows.iter().zip(&now).enumerate() {
        if *now != row.observed {
            out[i] = Some(RepairOutcome::Superseded { now: now.clone() });
        } else {
            unchanged.push(i);
        }
    }
    let sources = if unchanged.is_empty() {
        Vec::new()
    } else {
        reads
            .source_now(&unchanged)
            .await
            .map_err(|source| RepairError::Source {
                table: first.source.name.to_string(),
                source,
            })?
    };
    let mut writes: Vec<(usize, Option<Vec<Value>>)> = Vec::new();
    for (&i, source_row) in unchanged.iter().zip(sources) {
        if source_row.is_none() && now[i].is_none() {
            out[i] = Some(RepairOutcome::NothingToWrite);
        } else {
            writes.push((i, source_row));
        }
    }
    write_rows(conn, rows, &writes).await?;
    for (i, source_row) in writes {
        out[i] = Some(RepairOutcome::Repaired {
            statements: rows[i].preview(source_row.as_deref()),
            before: now[i].clone(),
            after: source_row,
        });
    }
    Ok(out
        .into_iter()
        .map(|o| o.expect("every row has an outcome"))
        .collect())
}

/// Writes the source rows of `writes` (page index, the source's row or `None` to delete)
/// with the page's plan: upserts, then deletes, as many rows to a statement as fit.
async fn write_rows(
    conn: &mut Conn,
    rows: &[RowRepair],
    writes: &[(usize, Option<Vec<Value>>)],
) -> Result<(), RepairError> {
    let first = &rows[0];
    for kind in [WriteKind::Upsert, WriteKind::Delete] {
        let changes: Vec<RowChange> = writes
            .iter()
            .map(|(i, s)| rows[*i].change(s.as_deref()))
            .filter(|(k, _)| *k == kind)
            .map(|(_, c)| c)
            .collect();
        let writes: Vec<Write<'_>> = changes
            .iter()
            .map(|change| Write { kind, change })
            .collect();
        let mut offset = 0;
        for size in chunk_sizes(writes.len(), columns_per_row(kind, &first.plan)) {
            let chunk = &writes[offset..offset + size];
            offset += size;
            let statement = build(kind, &first.target.name, &first.plan, chunk);
            run(conn, first, &statement).await?;
        }
    }
    Ok(())
}

/// Runs one statement and its fix-ups (in a non-strict session, as the replicator does).
async fn run(conn: &mut Conn, row: &RowRepair, statement: &Statement) -> Result<(), RepairError> {
    let err = row.target_error();
    if statement.sql.is_empty() {
        return Ok(());
    }
    conn.exec_drop(&statement.sql, Params::Positional(statement.params.clone()))
        .await
        .map_err(&err)?;
    if statement.fixups.is_empty() {
        return Ok(());
    }
    conn.query_drop(format!("SET SESSION sql_mode = '{LENIENT_SQL_MODE}'"))
        .await
        .map_err(&err)?;
    for f in &statement.fixups {
        conn.exec_drop(&f.sql, Params::Positional(f.params.clone()))
            .await
            .map_err(&err)?;
    }
    conn.query_drop(format!("SET SESSION sql_mode = '{STRICT_SQL_MODE}'"))
        .await
        .map_err(&err)
}
