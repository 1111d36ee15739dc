//! What the target must hold after a change: a change (or a round of them) becomes one
//! [`Expectation`] per row — the latest change of the row wins — and a target row is
//! compared with it over the columns both sides have.
//!
//! Invariant: an expectation never claims more than its change carried: a partial row
//! image (MINIMAL, NOBLOB) says only what it holds, and a key move says the old key must
//! be gone.

use crate::equality::same;
use concord_change::{Op, Position, RowChange, SourceTable, TableName, Value};
use concord_config::TableFilter;
use concord_schema_cache::TargetTable;
use concord_target::{Mark, Stream};
use std::collections::HashMap;
use std::sync::Arc;

/// A change to verify and where it came from.
#[derive(Clone, Debug)]
pub struct Item {
    pub change: RowChange,
    /// What the replicator must have applied before the change is compared.
    pub mark: Mark,
    /// The stream the change's row travels in.
    pub stream: Stream,
    /// The change's origin for a mismatch record: a binlog position, or `topic[partition]`
    /// and the offset.
    pub origin: Position,
}

/// What the target should hold for one row after the latest change of the round.
#[derive(Clone, Debug)]
pub struct Expectation {
    pub source: Arc<SourceTable>,
    /// Key values in the source table's primary-key order.
    pub key: Vec<Value>,
    /// The row's after-image, or `None`: the row must be absent.
    pub after: Option<Vec<Value>>,
    pub stream: Stream,
    pub origin: Position,
    /// How many changes of the round this expectation stands for (coalesced into it).
    pub changes: usize,
}

impl Expectation {
    /// (column, value) pairs of the key, for records.
    pub fn named_key(&self) -> Vec<(String, Value)> {
        self.source
            .primary_key
            .iter()
            .map(|&i| self.source.columns[i].clone())
            .zip(self.key.iter().cloned())
            .collect()
    }

    /// The key's values in the order of `pk` (column names); `None` if a column of `pk`
    /// is not part of the change (or not in its partial row image: a minimal insert that
    /// left a key column to its default).
    pub fn key_in(&self, pk: &[String]) -> Option<Vec<Value>> {
        pk.iter()
            .map(|name| {
                let i = self.source.column_index(name)?;
                let at = self.source.primary_key.iter().position(|&k| k == i);
                let v = match at {
                    Some(at) => Some(self.key[at].clone()),
                    // Not a source key column: take it from the image if there is one.
                    None => self.after.as_ref().map(|a| a[i].clone()),
                };
                v.filter(|v| !v.is_absent())
            })
            .collect()
    }
}

/// Whether the target row (in `target`'s column order, `None` if absent) is what the
/// change left: the after-image over the columns both sides have (`mapping`: each source
/// column's index in the target row), or no row at all.
pub fn matches_target(
    e: &Expectation,
    mapping: &[Option<usize>],
    row: Option<&[Value]>,
    target: &TargetTable,
) -> bool {
    match (&e.after, row) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        // A source-only column is not replicated, so not compared.
        (Some(after), Some(row)) => after.iter().zip(mapping).all(|(v, j)| match j {
            Some(j) => same(v, &row[*j], &target.columns[*j].data_type),
            None => true,
        }),
    }
}

/// One source table description (one version of a table's columns), for per-round caches:
/// the changes of a round hold their descriptions, so an address is not reused meanwhile.
pub type TableId = usize;

pub fn table_id(t: &Arc<SourceTable>) -> TableId {
    Arc::as_ptr(t) as usize
}

/// The round's changes as one expectation per row: the latest change of each row wins; an
/// update that moves a row to a new key also says the old key must be gone. A partial
/// after-image (MINIMAL, NOBLOB) only says what it carries: laid over the row's earlier
/// image of the round, if there is one; its other columns are not compared.
pub fn coalesce(items: &[Item], filter: &TableFilter) -> Vec<Expectation> {
    /// The winning change of a row so far: the item, whether the row must be absent, and
    /// how many changes it stands for. Images are cloned once, for the winners only —
    /// except a partial image laid over an earlier one (`merged`).
    struct Latest<'a> {
        item: &'a Item,
        key: Vec<Value>,
        gone: bool,
        changes: usize,
        merged: Option<Vec<Value>>,
    }
    let mut latest: HashMap<(&TableName, Vec<u8>), Latest> = HashMap::new();
    // Asked once per table description, not once per change.
    let mut verified: HashMap<TableId, bool> = HashMap::new();
    for item in items {
        let c = &item.change;
        let wanted = *verified
            .entry(table_id(&c.table))
            .or_insert_with(|| filter.matches(&c.table.name) && c.table.has_primary_key());
        if !wanted {
            continue;
        }
        let key_of_image = |image: &[Value]| -> Vec<Value> {
            c.table
                .primary_key
                .iter()
                .map(|&i| image[i].clone())
                .collect()
        };
        // `counted`: whether this change is counted under the key (a key move counts once,
        // under the new key).
        let mut put = |key: Vec<Value>, gone: bool, counted: bool| {
            let mut bytes = Vec::new();
            for v in &key {
                v.key_bytes(&mut bytes);
            }
            let slot = (&c.table.name, bytes);
            let earlier = latest.get(&slot);
            let merged = match (&c.after, earlier) {
                (Some(after), Some(e))
                    if !gone && !e.gone && after.iter().any(Value::is_absent) =>
                {
                    let base = e.merged.as_ref().or(e.item.change.after.as_ref());
                    base.filter(|b| b.len() == after.len()).map(|b| {
                        b.iter()
                            .zip(after)
                            .map(|(old, new)| {
                                if new.is_absent() {
                                    old.clone()
                                } else {
                                    new.clone()
                                }
                            })
                            .collect()
                    })
                }
                _ => None,
            };
            let changes = earlier.map_or(0, |e| e.changes) + usize::from(counted);
            latest.insert(
                slot,
                Latest {
                    item,
                    key,
                    gone,
                    changes,
                    merged,
                },
            );
        };
        match (c.op, &c.before, &c.after) {
            (Op::Delete, Some(before), _) => put(key_of_image(before), true, true),
            (Op::Insert | Op::Read, _, Some(after)) => put(key_of_image(after), false, true),
            (Op::Update, Some(before), Some(_)) => {
                let old = key_of_image(before);
                // A partial after-image lacks the key columns it did not change.
                let Some(new) = c.key() else { continue };
                if old != new {
                    put(old, true, false);
                }
                put(new, false, true);
            }
            _ => {}
        }
    }
    latest
        .into_values()
        .map(|l| Expectation {
            source: l.item.change.table.clone(),
            key: l.key,
            after: match (l.gone, l.merged) {
                (true, _) => None,
                (false, Some(merged)) => Some(merged),
                (false, None) => l.item.change.after.clone(),
            },
            stream: l.item.stream.clone(),
            origin: l.item.origin.clone(),
            changes: l.changes,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Arc<SourceTable> {
        Arc::new(SourceTable {
            name: TableName::new("shop", "orders"),
            columns: vec!["id".into(), "total".into()],
            primary_key: vec![0],
        })
    }

    fn item(op: Op, before: Option<(i64, i64)>, after: Option<(i64, i64)>, pos: u64) -> Item {
        let img = |(id, t): (i64, i64)| vec![Value::Int(id), Value::Int(t)];
        Item {
            change: RowChange {
                table: table(),
                op,
                before: before.map(img),
                after: after.map(img),
                position: Position::new("b.000001", pos),
                row_index: 0,
                commit_ts: 0,
            },
            mark: Mark::Binlog(Position::new("b.000001", pos)),
            stream: Stream::Binlog,
            origin: Position::new("b.000001", pos),
        }
    }

    #[test]
    fn latest_change_per_row_wins_and_key_moves_expect_the_old_key_gone() {
        let filter = TableFilter::new(&Default::default()).unwrap();
        let items = vec![
            item(Op::Insert, None, Some((1, 10)), 100),
            item(Op::Update, Some((1, 10)), Some((1, 11)), 200),
            item(Op::Insert, None, Some((2, 20)), 300),
            item(Op::Update, Some((2, 20)), Some((3, 20)), 400),
        ];
        let mut got: Vec<(i64, Option<i64>, u64, usize)> = coalesce(&items, &filter)
            .into_iter()
            .map(|e| {
                let Value::Int(id) = e.key[0] else { panic!() };
                let total = e.after.map(|a| match a[1] {
                    Value::Int(t) => t,
                    _ => panic!(),
                });
                (id, total, e.origin.pos, e.changes)
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (1, Some(11), 200, 2),
                (2, None, 400, 1),
                (3, Some(20), 400, 1)
            ]
        );
    }
}
