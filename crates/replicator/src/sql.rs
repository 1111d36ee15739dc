//! The statements the applier sends to the target.
//!
//! Invariant: identifiers come only from a [`ColumnPlan`] (target-schema names, quoted);
//! every value is a bound parameter. Multi-row statements come in power-of-two sizes so
//! each table needs only a handful of prepared statement shapes.

use crate::batch::{Write, WriteKind};
use concord_change::{utc_datetime, TableName};
use concord_schema_cache::{quote_ident, quote_table, ColumnPlan};
use mysql_async::Value as MyValue;

/// Most rows in one statement; fewer when the table is wide (65,535 placeholders at most).
const MAX_ROWS: usize = 256;
const MAX_PLACEHOLDERS: usize = 60_000;

#[derive(Debug, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<MyValue>,
}

/// Splits `n` rows into statement sizes: full chunks of the largest power of two that fits,
/// then the binary digits of the remainder.
pub fn chunk_sizes(n: usize, columns_per_row: usize) -> Vec<usize> {
    let fit = (MAX_PLACEHOLDERS / columns_per_row.max(1)).clamp(1, MAX_ROWS);
    let max = 1usize << (usize::BITS - 1 - fit.leading_zeros());
    let mut sizes = vec![max; n / max];
    let mut rest = n % max;
    while rest > 0 {
        let p = 1usize << (usize::BITS - 1 - rest.leading_zeros());
        sizes.push(p);
        rest -= p;
    }
    sizes
}

pub fn columns_per_row(kind: WriteKind, plan: &ColumnPlan) -> usize {
    match kind {
        WriteKind::Upsert => {
            plan.columns.len()
                + usize::from(plan.audit_flag.is_some())
                + usize::from(plan.audit_ts.is_some())
        }
        WriteKind::Delete => plan.key.len(),
    }
}

pub fn build(
    kind: WriteKind,
    target: &TableName,
    plan: &ColumnPlan,
    writes: &[Write<'_>],
) -> Statement {
    match kind {
        WriteKind::Upsert => upsert(target, plan, writes),
        WriteKind::Delete => delete(target, plan, writes),
    }
}

fn upsert(target: &TableName, plan: &ColumnPlan, writes: &[Write<'_>]) -> Statement {
    let mut names: Vec<&str> = plan
        .columns
        .iter()
        .map(|c| c.target_name.as_str())
        .collect();
    names.extend(plan.audit_flag.as_deref());
    names.extend(plan.audit_ts.as_deref());
    let quoted: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
    let row = format!("({})", vec!["?"; names.len()].join(","));
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        quote_table(target),
        quoted.join(","),
        vec![row.as_str(); writes.len()].join(",")
    );
    sql.push_str(" ON DUPLICATE KEY UPDATE ");
    sql.push_str(
        &quoted
            .iter()
            .map(|q| format!("{q}=VALUES({q})"))
            .collect::<Vec<_>>()
            .join(","),
    );
    let mut params = Vec::with_capacity(names.len() * writes.len());
    for w in writes {
        let image = w.image();
        params.extend(
            plan.columns
                .iter()
                .map(|c| image[c.source_index].to_mysql()),
        );
        if plan.audit_flag.is_some() {
            params.push(MyValue::Int(1));
        }
        if plan.audit_ts.is_some() {
            params.push(commit_time(w.change.commit_ts));
        }
    }
    Statement { sql, params }
}

fn delete(target: &TableName, plan: &ColumnPlan, writes: &[Write<'_>]) -> Statement {
    let mut params = Vec::with_capacity(plan.key.len() * writes.len());
    for w in writes {
        let image = w.image();
        params.extend(plan.key.iter().map(|k| image[k.source_index].to_mysql()));
    }
    let condition = if let [only] = plan.key.as_slice() {
        format!(
            "{} IN ({})",
            quote_ident(&only.target_name),
            vec!["?"; writes.len()].join(",")
        )
    } else {
        // A plain OR of equalities is range-optimised on every MariaDB/MySQL version,
        // unlike row constructors in IN.
        let one = format!(
            "({})",
            plan.key
                .iter()
                .map(|k| format!("{}=?", quote_ident(&k.target_name)))
                .collect::<Vec<_>>()
                .join(" AND ")
        );
        vec![one.as_str(); writes.len()].join(" OR ")
    };
    Statement {
        sql: format!("DELETE FROM {} WHERE {condition}", quote_table(target)),
        params,
    }
}

/// Source commit time as a UTC DATETIME parameter (the applier's session is in UTC).
fn commit_time(ts: u32) -> MyValue {
    utc_datetime(i64::from(ts), 0).unwrap_or(MyValue::NULL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_change::{Op, Position, RowChange, SourceTable, Value};
    use concord_schema_cache::PlannedColumn;
    use std::sync::Arc;

    #[test]
    fn chunking_uses_power_of_two_shapes() {
        assert_eq!(chunk_sizes(600, 4), vec![256, 256, 64, 16, 8]);
        assert_eq!(chunk_sizes(1, 4), vec![1]);
        assert_eq!(chunk_sizes(0, 4), Vec::<usize>::new());
        // 1000 columns: at most 60 rows fit, so 32-row statements.
        assert_eq!(chunk_sizes(70, 1000), vec![32, 32, 4, 2]);
        assert_eq!(chunk_sizes(600, 4).iter().sum::<usize>(), 600);
    }

    fn plan(key: &[usize], audit: bool) -> ColumnPlan {
        ColumnPlan {
            columns: vec![
                PlannedColumn {
                    source_index: 0,
                    target_name: "id".into(),
                },
                PlannedColumn {
                    source_index: 1,
                    target_name: "k2".into(),
                },
                PlannedColumn {
                    source_index: 2,
                    target_name: "na`me".into(),
                },
            ],
            key: key
                .iter()
                .map(|&i| PlannedColumn {
                    source_index: i,
                    target_name: ["id", "k2"][i].into(),
                })
                .collect(),
            skipped: vec![],
            audit_flag: audit.then(|| "concord_replicated".into()),
            audit_ts: audit.then(|| "concord_source_ts".into()),
            keep_order: false,
        }
    }

    fn change(id: i64) -> RowChange {
        RowChange {
            table: Arc::new(SourceTable {
                name: TableName::new("s", "t"),
                columns: vec!["id".into(), "k2".into(), "na`me".into(), "gone".into()],
                primary_key: vec![0],
            }),
            op: Op::Insert,
            before: Some(vec![
                Value::Int(id),
                Value::Int(7),
                Value::Text("x".into()),
                Value::Null,
            ]),
            after: Some(vec![
                Value::Int(id),
                Value::Int(7),
                Value::Text("x".into()),
                Value::Null,
            ]),
            position: Position::new("f", 4),
            row_index: 0,
            commit_ts: 1_700_000_000,
        }
    }

    #[test]
    fn upsert_binds_shared_columns_and_audit_values() {
        let (a, b) = (change(1), change(2));
        let ws = [
            Write {
                kind: WriteKind::Upsert,
                change: &a,
            },
            Write {
                kind: WriteKind::Upsert,
                change: &b,
            },
        ];
        let s = build(
            WriteKind::Upsert,
            &TableName::new("s", "t"),
            &plan(&[0], true),
            &ws,
        );
        assert_eq!(
            s.sql,
            "INSERT INTO `s`.`t` (`id`,`k2`,`na``me`,`concord_replicated`,`concord_source_ts`) \
             VALUES (?,?,?,?,?),(?,?,?,?,?) ON DUPLICATE KEY UPDATE `id`=VALUES(`id`),\
             `k2`=VALUES(`k2`),`na``me`=VALUES(`na``me`),`concord_replicated`=VALUES(`concord_replicated`),\
             `concord_source_ts`=VALUES(`concord_source_ts`)"
        );
        assert_eq!(s.params.len(), 10);
        assert_eq!(s.params[5], MyValue::Int(2));
        assert_eq!(s.params[9], MyValue::Date(2023, 11, 14, 22, 13, 20, 0));
    }

    #[test]
    fn deletes_by_single_and_composite_key() {
        let (a, b) = (change(1), change(2));
        let ws = [
            Write {
                kind: WriteKind::Delete,
                change: &a,
            },
            Write {
                kind: WriteKind::Delete,
                change: &b,
            },
        ];
        let t = TableName::new("s", "t");
        let s = build(WriteKind::Delete, &t, &plan(&[0], false), &ws);
        assert_eq!(s.sql, "DELETE FROM `s`.`t` WHERE `id` IN (?,?)");
        assert_eq!(s.params, vec![MyValue::Int(1), MyValue::Int(2)]);
        let s = build(WriteKind::Delete, &t, &plan(&[0, 1], false), &ws);
        assert_eq!(
            s.sql,
            "DELETE FROM `s`.`t` WHERE (`id`=? AND `k2`=?) OR (`id`=? AND `k2`=?)"
        );
        assert_eq!(s.params.len(), 4);
    }
}
