//! Turning a batch of source transactions into the writes the target needs.
//!
//! Invariant: applying the planned writes in order leaves every row in the state of the
//! *last* source change to it within the batch. Rows of different tables are independent
//! (the batch commits as one target transaction, foreign keys checked by the source), so
//! tables may be written one after another; within a table, source order is kept. A
//! partial row image (MINIMAL, NOBLOB) changes only the columns it carries, so a table
//! with one in the batch is not coalesced: every write of it is kept, in order.

use concord_change::{Op, RowChange, SourceTable, TableName, Transaction, Value};
pub use concord_target::write::{Write, WriteKind};
use std::collections::HashMap;
use std::sync::Arc;

/// Every write to one source table in a batch.
#[derive(Debug)]
pub struct TableWrites<'a> {
    pub table: TableName,
    pub writes: Vec<Write<'a>>,
}

/// Splits a batch into per-table write lists, tables in order of first appearance.
pub fn group_by_table(txns: &[Transaction]) -> Vec<TableWrites<'_>> {
    let mut index: HashMap<&TableName, usize> = HashMap::new();
    let mut out: Vec<TableWrites<'_>> = Vec::new();
    for change in txns.iter().flat_map(|t| &t.changes) {
        let i = *index.entry(&change.table.name).or_insert_with(|| {
            out.push(TableWrites {
                table: change.table.name.clone(),
                writes: Vec::new(),
            });
            out.len() - 1
        });
        writes_of(change, false, &mut out[i].writes);
    }
    out
}

/// The batch's writes in source order, as runs of consecutive writes to one table — for a
/// batch that writes a table other tables' foreign keys cascade from (`cascading`): the
/// target's engine must meet the changes in the order the source made them, so nothing is
/// regrouped or coalesced, and a key change of such a table is a [`WriteKind::Move`].
pub fn in_source_order<'a>(
    txns: &'a [Transaction],
    cascading: &dyn Fn(&TableName) -> bool,
) -> Vec<TableWrites<'a>> {
    let mut out: Vec<TableWrites<'a>> = Vec::new();
    for change in txns.iter().flat_map(|t| &t.changes) {
        if out.last().is_none_or(|t| t.table != change.table.name) {
            out.push(TableWrites {
                table: change.table.name.clone(),
                writes: Vec::new(),
            });
        }
        let moves = cascading(&change.table.name);
        writes_of(change, moves, &mut out.last_mut().expect("pushed").writes);
    }
    out
}

/// The key-level writes of one change; `moves`: a key change is a [`WriteKind::Move`].
fn writes_of<'a>(change: &'a RowChange, moves: bool, writes: &mut Vec<Write<'a>>) {
    let kind = match change.op {
        Op::Insert | Op::Read => WriteKind::Upsert,
        Op::Delete => WriteKind::Delete,
        // A partial after-image writes only its columns, by the key the row had. (A
        // partial before-image alone — NOBLOB with the blob changed — does not matter:
        // the after-image is whole.)
        Op::Update if change.after.iter().flatten().any(Value::is_absent) => WriteKind::Update,
        Op::Update if change.changes_key() && moves => WriteKind::Move,
        Op::Update => {
            if change.changes_key() {
                writes.push(Write {
                    kind: WriteKind::Delete,
                    change,
                });
            }
            WriteKind::Upsert
        }
    };
    writes.push(Write { kind, change });
}

/// Keeps only the last write of each exact key, at that last write's place. Any other
/// write that touches the same row (a collation-equal spelling of its key) comes before
/// it and is overridden by it, so the final state is unchanged. Writes of partial images
/// override nothing but their own columns: with one among them, all are kept.
pub fn coalesce(writes: Vec<Write<'_>>) -> Vec<Write<'_>> {
    if writes.iter().any(Write::is_partial) {
        return writes;
    }
    let mut last: HashMap<Vec<u8>, usize> = HashMap::with_capacity(writes.len());
    let keys: Vec<Vec<u8>> = writes.iter().map(Write::key_bytes).collect();
    for (i, k) in keys.iter().enumerate() {
        last.insert(k.clone(), i);
    }
    writes
        .into_iter()
        .enumerate()
        .filter(|(i, _)| last.get(&keys[*i]) == Some(i))
        .map(|(_, w)| w)
        .collect()
}

/// A maximal run of same-kind writes with the same source column layout: one statement
/// shape.
#[derive(Debug)]
pub struct Run<'a> {
    pub kind: WriteKind,
    pub source: Arc<SourceTable>,
    pub writes: Vec<Write<'a>>,
}

/// A write that goes [`Write::alone`] is a run of its own.
pub fn runs<'a>(writes: &[Write<'a>]) -> Vec<Run<'a>> {
    let mut out: Vec<Run<'a>> = Vec::new();
    let mut alone = false;
    for w in writes {
        let this = w.alone();
        let joins = !alone && !this;
        alone = this;
        match out.last_mut() {
            Some(r)
                if joins
                    && r.kind == w.kind
                    && (Arc::ptr_eq(&r.source, &w.change.table)
                        || *r.source == *w.change.table) =>
            {
                r.writes.push(*w)
            }
            _ => out.push(Run {
                kind: w.kind,
                source: w.change.table.clone(),
                writes: vec![*w],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_change::Position;

    fn table(name: &str) -> Arc<SourceTable> {
        Arc::new(SourceTable {
            name: TableName::new("d", name),
            columns: vec!["id".into(), "v".into()],
            primary_key: vec![0],
        })
    }

    fn change(
        t: &Arc<SourceTable>,
        op: Op,
        before: Option<(i64, &str)>,
        after: Option<(i64, &str)>,
    ) -> RowChange {
        let img = |(id, v): (i64, &str)| vec![Value::Int(id), Value::Text(v.into())];
        RowChange {
            table: t.clone(),
            op,
            before: before.map(img),
            after: after.map(img),
            position: Position::new("f", 4),
            row_index: 0,
            commit_ts: 0,
        }
    }

    fn txn(changes: Vec<RowChange>) -> Transaction {
        Transaction {
            changes,
            ..Default::default()
        }
    }

    fn summary(ws: &[Write<'_>]) -> Vec<(WriteKind, i64, String)> {
        ws.iter()
            .map(|w| {
                let img = w.image();
                let id = match img[0] {
                    Value::Int(i) => i,
                    _ => unreachable!(),
                };
                let v = match &img[1] {
                    Value::Text(s) => s.clone(),
                    _ => unreachable!(),
                };
                (w.kind, id, v)
            })
            .collect()
    }

    #[test]
    fn key_change_becomes_delete_then_upsert() {
        let a = table("a");
        let txns = vec![txn(vec![change(
            &a,
            Op::Update,
            Some((1, "x")),
            Some((2, "x")),
        )])];
        let g = group_by_table(&txns);
        assert_eq!(
            summary(&g[0].writes),
            vec![
                (WriteKind::Delete, 1, "x".into()),
                (WriteKind::Upsert, 2, "x".into())
            ]
        );
    }

    #[test]
    fn coalescing_keeps_the_last_write_per_key() {
        let a = table("a");
        let txns = vec![
            txn(vec![change(&a, Op::Insert, None, Some((1, "v1")))]),
            txn(vec![
                change(&a, Op::Delete, Some((2, "old")), None),
                change(&a, Op::Update, Some((1, "v1")), Some((1, "v2"))),
            ]),
            txn(vec![
                change(&a, Op::Delete, Some((1, "v2")), None),
                change(&a, Op::Insert, None, Some((2, "new"))),
            ]),
        ];
        let g = group_by_table(&txns);
        let c = coalesce(g.into_iter().next().unwrap().writes);
        assert_eq!(
            summary(&c),
            vec![
                (WriteKind::Delete, 1, "v2".into()),
                (WriteKind::Upsert, 2, "new".into())
            ]
        );
    }

    #[test]
    fn a_partial_image_keeps_every_write_of_its_table_in_order() {
        let a = table("a");
        let mut partial = change(&a, Op::Update, Some((1, "v1")), Some((1, "v2")));
        partial.after.as_mut().unwrap()[1] = Value::Absent;
        let txns = vec![txn(vec![
            change(&a, Op::Insert, None, Some((1, "v1"))),
            partial,
            change(&a, Op::Delete, Some((2, "x")), None),
        ])];
        let g = group_by_table(&txns);
        let kinds: Vec<WriteKind> = coalesce(g.into_iter().next().unwrap().writes)
            .iter()
            .map(|w| w.kind)
            .collect();
        assert_eq!(
            kinds,
            [WriteKind::Upsert, WriteKind::Update, WriteKind::Delete],
            "the insert before the partial update is not coalesced away"
        );
        // A partial before-image with a whole after-image is an ordinary upsert.
        let mut noblob = change(&a, Op::Update, Some((1, "v1")), Some((1, "v2")));
        noblob.before.as_mut().unwrap()[1] = Value::Absent;
        let txns = vec![txn(vec![noblob])];
        assert_eq!(group_by_table(&txns)[0].writes[0].kind, WriteKind::Upsert);
    }

    #[test]
    fn tables_group_in_first_appearance_order_and_runs_split_by_kind() {
        let (a, b) = (table("a"), table("b"));
        let txns = vec![txn(vec![
            change(&b, Op::Insert, None, Some((1, "b1"))),
            change(&a, Op::Insert, None, Some((1, "a1"))),
            change(&b, Op::Insert, None, Some((2, "b2"))),
            change(&b, Op::Delete, Some((3, "b3")), None),
            change(&b, Op::Insert, None, Some((4, "b4"))),
        ])];
        let g = group_by_table(&txns);
        assert_eq!(
            g.iter().map(|t| t.table.table.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        let r = runs(&g[0].writes);
        assert_eq!(
            r.iter()
                .map(|r| (r.kind, r.writes.len()))
                .collect::<Vec<_>>(),
            [
                (WriteKind::Upsert, 2),
                (WriteKind::Delete, 1),
                (WriteKind::Upsert, 1)
            ]
        );
    }

    #[test]
    fn source_order_keeps_every_write_and_moves_keys_of_cascading_tables() {
        let (parent, child) = (table("parent"), table("child"));
        let txns = vec![
            txn(vec![
                change(&child, Op::Insert, None, Some((10, "c"))),
                change(&parent, Op::Delete, Some((1, "p")), None),
            ]),
            txn(vec![
                change(&parent, Op::Insert, None, Some((1, "p2"))),
                change(&parent, Op::Update, Some((2, "q")), Some((3, "q"))),
                change(&child, Op::Update, Some((20, "c")), Some((21, "c"))),
            ]),
        ];
        let is_parent = |t: &TableName| t.table == "parent";
        let seq = in_source_order(&txns, &is_parent);
        let shape: Vec<(&str, Vec<WriteKind>)> = seq
            .iter()
            .map(|t| {
                (
                    t.table.table.as_str(),
                    t.writes.iter().map(|w| w.kind).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("child", vec![WriteKind::Upsert]),
                (
                    "parent",
                    vec![WriteKind::Delete, WriteKind::Upsert, WriteKind::Move]
                ),
                ("child", vec![WriteKind::Delete, WriteKind::Upsert]),
            ]
        );
        let moved = seq[1].writes[2];
        assert!(moved.alone());
        assert_eq!(summary(&[moved]), [(WriteKind::Move, 3, "q".into())]);
        assert_eq!(moved.key_image()[0], Value::Int(2), "found by its old key");
    }

    #[test]
    fn a_new_column_layout_starts_a_new_run() {
        let a = table("a");
        let a2 = Arc::new(SourceTable {
            columns: vec!["id".into(), "v".into(), "w".into()],
            ..(*a).clone()
        });
        let mut late = change(&a2, Op::Insert, None, Some((2, "x")));
        late.after.as_mut().unwrap().push(Value::Null);
        let txns = vec![txn(vec![
            change(&a, Op::Insert, None, Some((1, "x"))),
            late,
        ])];
        let g = group_by_table(&txns);
        assert_eq!(runs(&g[0].writes).len(), 2);
    }
}
