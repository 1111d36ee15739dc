//! Narrowing a chunk whose hashes differ to the rows that differ: both servers' rows of the
//! range are read page by page and compared with the verifier's equality rules.
//!
//! Invariant: at most one page of rows per side is held (the target's page may hold more
//! only where the target has extra rows inside it); every row of the range on either side
//! is compared exactly once.

use super::chunk::KeyRange;
use super::table::Sides;
use concord_change::{Position, Value};
use concord_compare::rows::{key_of, row_key, values};
use concord_compare::{differences, sql, CompareError, Comparer, Expectation, Side};
use concord_schema_cache::TargetTable;
use concord_target::Stream;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, Pool, Row};
use std::collections::HashMap;

/// Rows per page of the source side.
const PAGE: u64 = 5_000;

/// The rows of `range` that differ between the servers, as expectations for the source
/// recheck (the source row, or none where only the target has the row).
pub(crate) async fn narrow(
    checker: &Comparer,
    sides: &Sides,
    range: &KeyRange,
    stream: &Stream,
    origin: &Position,
) -> Result<Vec<Expectation>, CompareError> {
    let mut out = Vec::new();
    let mut after = range.after.clone();
    loop {
        let page = KeyRange {
            after: after.clone(),
            ..range.clone()
        };
        let (text, params) = sides.source_sql.rows(&page, PAGE);
        let source_rows = read(&checker.source, Side::Source, &sides.source, text, params).await?;
        let full = source_rows.len() as u64 == PAGE;
        // A full page ends at its last source row; the target is read over the same range.
        let through = match source_rows.last() {
            Some(last) if full => Some(sides.source_key(last)),
            _ => range.through.clone(),
        };
        let page = KeyRange {
            after,
            through: through.clone(),
            ..range.clone()
        };
        let (text, params) = sides.target_sql.rows(&page, u64::MAX);
        let target_rows = read(&checker.target, Side::Target, &sides.target, text, params).await?;

        let mut targets: HashMap<Vec<u8>, Vec<Value>> = target_rows
            .into_iter()
            .map(|t| (row_key(&sides.target, &t), t))
            .collect();
        for s in source_rows {
            let key = key_of(&sides.target, &sides.source_key_in_target_order(&s));
            let t = targets.remove(&key);
            if differences(
                &sides.shared,
                Some(s.as_slice()),
                &sides.target,
                t.as_deref(),
            )
            .is_some()
            {
                out.push(sides.expectation(sides.source_key(&s), Some(s), stream, origin));
            }
        }
        // What is left exists only on the target.
        for t in targets.into_values() {
            out.push(sides.expectation(sides.key_from_target(&t), None, stream, origin));
        }
        if !full {
            return Ok(out);
        }
        after = through;
    }
}

async fn read(
    pool: &Pool,
    side: Side,
    table: &TargetTable,
    text: String,
    params: Vec<mysql_async::Value>,
) -> Result<Vec<Vec<Value>>, CompareError> {
    let mut conn = pool
        .get_conn()
        .await
        .map_err(|e| sql(side, &table.name, e))?;
    let rows: Vec<Row> = conn
        .exec(text, Params::Positional(params))
        .await
        .map_err(|e| sql(side, &table.name, e))?;
    Ok(rows
        .into_iter()
        .map(|r| values(r, &table.columns))
        .collect())
}
