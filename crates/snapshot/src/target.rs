//! The target's keys in a chunk's scope, read when the chunk is written: those the source
//! does not have (and the stream did not write) are deleted.
//!
//! Invariant: a range is read on the target only when its key columns order values as the
//! source's do ([`Shape::range_deletes`]); otherwise nothing is read and nothing deleted
//! by range — a differently ordered range could hold rows of the source's other chunks.

use crate::notes::{ChunkSpec, Scope};
use crate::shape::Shape;
use concord_change::Value;
use concord_chunking::KeySql;
use concord_compare::rows::fetch_by;
use concord_compare::sql_value::from_sql;
use concord_schema_cache::TargetTable;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row};

/// The target's keys in `spec`'s scope, in the source's key order (`target` is the target
/// table's description).
pub async fn keys_in_scope(
    conn: &mut Conn,
    spec: &ChunkSpec,
    target: &TargetTable,
) -> Result<Vec<Vec<Value>>, mysql_async::Error> {
    let shape = &spec.shape;
    let order = key_order(shape, target);
    let Some(order) = order else {
        return Ok(Vec::new());
    };
    let keys: Vec<Vec<Value>> = match &spec.scope {
        // A range is meaningful on the target only over the same key columns in the same
        // order.
        Scope::Range(range)
            if shape.range_deletes && order.iter().enumerate().all(|(i, &j)| i == j) =>
        {
            let walk = KeySql::new(target);
            let (sql, params) = walk.rows(&walk.key().join(", "), range, None);
            let rows: Vec<Row> = conn.exec(sql, Params::Positional(params)).await?;
            let types: Vec<String> = target
                .primary_key
                .iter()
                .map(|k| {
                    target
                        .column(k)
                        .map(|c| c.data_type.clone())
                        .unwrap_or_default()
                })
                .collect();
            rows.into_iter()
                .map(|r| {
                    r.unwrap()
                        .into_iter()
                        .zip(&types)
                        .map(|(v, ty)| from_sql(v, ty))
                        .collect()
                })
                .collect()
        }
        Scope::Range(_) => return Ok(Vec::new()),
        Scope::Keys(keys) => {
            let in_target: Vec<Vec<Value>> = keys.iter().map(|k| reorder(k, &order)).collect();
            fetch_by(conn, target, &target.primary_key, &in_target)
                .await?
                .into_values()
                .map(|row| {
                    target
                        .primary_key
                        .iter()
                        .map(|k| {
                            let i = target
                                .columns
                                .iter()
                                .position(|c| c.name.eq_ignore_ascii_case(k))
                                .expect("key columns are columns");
                            row[i].clone()
                        })
                        .collect()
                })
                .collect()
        }
    };
    // The target's key order back to the source's.
    let back = inverse(&order);
    Ok(keys.iter().map(|k| reorder(k, &back)).collect())
}

/// Of `deletes` (target keys in the source's key order), those that are not the same row,
/// under the target's collation, as a key of `rows` (the chunk's rows, source column order):
/// with a text key, a target `'ABC'` is the row `'abc'` of a case-insensitive collation and
/// must not be deleted when the chunk writes `'abc'` (in kafka mode the two messages may
/// take different partitions, so the order of the writes cannot settle it).
pub async fn not_written_rows(
    conn: &mut Conn,
    shape: &Shape,
    target: &TargetTable,
    rows: &[Vec<Value>],
    deletes: Vec<Vec<Value>>,
) -> Result<Vec<Vec<Value>>, mysql_async::Error> {
    if deletes.is_empty() || !shape.text_key() {
        return Ok(deletes);
    }
    let Some(order) = key_order(shape, target) else {
        return Ok(deletes);
    };
    let written: Vec<Vec<Value>> = rows
        .iter()
        .map(|r| reorder(&shape.key_values(r), &order))
        .collect();
    // The target's own rows that its collation matches with a written key.
    let same: std::collections::HashSet<Vec<u8>> =
        fetch_by(conn, target, &target.primary_key, &written)
            .await?
            .into_values()
            .map(|row| {
                let key: Vec<Value> = target
                    .primary_key
                    .iter()
                    .map(|k| {
                        let i = target
                            .columns
                            .iter()
                            .position(|c| c.name.eq_ignore_ascii_case(k))
                            .expect("key columns are columns");
                        row[i].clone()
                    })
                    .collect();
                shape.key_form(&reorder(&key, &inverse(&order)))
            })
            .collect();
    Ok(deletes
        .into_iter()
        .filter(|k| !same.contains(&shape.key_form(k)))
        .collect())
}

/// For each target key column, its index in the source's key; `None` when the two keys
/// are not the same columns.
fn key_order(shape: &Shape, target: &TargetTable) -> Option<Vec<usize>> {
    let source = &shape.source.primary_key;
    if source.len() != target.primary_key.len() {
        return None;
    }
    target
        .primary_key
        .iter()
        .map(|k| source.iter().position(|s| s.eq_ignore_ascii_case(k)))
        .collect()
}

/// `key` (in the order `order` maps from) in the other order: element `i` of the result is
/// `key[order[i]]`.
fn reorder(key: &[Value], order: &[usize]) -> Vec<Value> {
    order.iter().map(|&i| key[i].clone()).collect()
}

fn inverse(order: &[usize]) -> Vec<usize> {
    let mut back = vec![0; order.len()];
    for (i, &j) in order.iter().enumerate() {
        back[j] = i;
    }
    back
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_move_between_the_two_key_orders_and_back() {
        let key = vec![Value::Int(1), Value::Text("b".into()), Value::Int(3)];
        // The target's key is (c, a, b) of the source's (a, b, c).
        let order = vec![2, 0, 1];
        let target = reorder(&key, &order);
        assert_eq!(
            target,
            vec![Value::Int(3), Value::Int(1), Value::Text("b".into())]
        );
        assert_eq!(reorder(&target, &inverse(&order)), key);
    }
}
