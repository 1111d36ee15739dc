//! The statements the applier sends to the target.
//!
//! Invariants: identifiers come only from a [`ColumnPlan`] (target-schema names, quoted);
//! every value is a bound parameter. Multi-row statements come in power-of-two sizes so
//! each table needs only a handful of prepared statement shapes. Text in a character set
//! other than UTF-8 is bound as its bytes and relabelled with that set in the statement
//! ([`Charset::placeholder`]), so the target stores the same bytes — or, when its column
//! has another set, converts them with the server's own tables.

use crate::write::{Write, WriteKind};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use concord_change::{utc_datetime, Charset, TableName, Value};
use concord_schema_cache::{quote_ident, quote_table, ColumnPlan, PlannedColumn};
use mysql_async::Value as MyValue;

/// Most rows in one statement; fewer when the table is wide (65,535 placeholders at most).
const MAX_ROWS: usize = 256;
const MAX_PLACEHOLDERS: usize = 60_000;

#[derive(Debug, PartialEq)]
pub struct Statement {
    /// Empty when there is nothing to write (a partial image of columns the target lacks).
    pub sql: String,
    pub params: Vec<MyValue>,
    /// Run after the statement, in a non-strict session: ENUM columns set to index 0 (the
    /// "error value" a strict session refuses to store).
    pub fixups: Vec<Fixup>,
}

/// An ENUM index-0 fix-up of one written row.
#[derive(Debug, PartialEq)]
pub struct Fixup {
    /// The row's place among the statement's writes.
    pub write: usize,
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
        // Partial updates go one row per statement anyway.
        WriteKind::Update | WriteKind::Move => MAX_PLACEHOLDERS,
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
        WriteKind::Update | WriteKind::Move => update(target, plan, &writes[0]),
    }
}

/// The character set of a column's text in `images`, when it is not UTF-8 (all values of
/// one column of one table map share it).
fn column_charset(column: &PlannedColumn, images: &[&[Value]]) -> Option<Charset> {
    images
        .iter()
        .find_map(|img| img.get(column.source_index).and_then(Value::charset))
}

fn relabel(charset: Option<Charset>) -> String {
    match charset {
        Some(cs) => cs.placeholder(),
        None => "?".to_owned(),
    }
}

/// A value as a parameter of a strict statement, for a placeholder that relabels bytes
/// (`relabelled`) or not. ENUM index 0 is written as index 1 and corrected by a fix-up.
fn bind(v: &Value, relabelled: bool) -> MyValue {
    match v {
        // UTF-8 text beside other bytes of the same column: bound as bytes too.
        Value::Text(s) if relabelled => MyValue::Bytes(B64.encode(s.as_bytes()).into_bytes()),
        Value::EnumIndex(0) => MyValue::UInt(1),
        v => v.to_mysql(),
    }
}

/// A key value in a condition on a stored row: as [`bind`], but ENUM index 0 as itself,
/// unless the row was `just_written` (before its fix-up, it holds index 1).
fn bind_key(v: &Value, relabelled: bool, just_written: bool) -> MyValue {
    match v {
        Value::EnumIndex(0) if !just_written => MyValue::UInt(0),
        v => bind(v, relabelled),
    }
}

/// The condition that matches the rows with the keys of `images` (one row each). A key
/// column a minimal insert left to its default matches its default.
fn key_condition(
    plan: &ColumnPlan,
    images: &[&[Value]],
    just_written: bool,
) -> (String, Vec<MyValue>) {
    let mut params = Vec::with_capacity(plan.key.len() * images.len());
    let charsets: Vec<Option<Charset>> =
        plan.key.iter().map(|k| column_charset(k, images)).collect();
    let mark = |k: &PlannedColumn, cs: Option<Charset>, v: &Value| match v {
        Value::Absent => {
            let q = quote_ident(&k.target.name);
            format!("DEFAULT({q})")
        }
        _ => k.target.compare_placeholder(cs),
    };
    let single = match plan.key.as_slice() {
        [only] if images.iter().all(|i| !i[only.source_index].is_absent()) => Some(only),
        _ => None,
    };
    if let Some(only) = single {
        let marks: Vec<String> = images
            .iter()
            .map(|img| {
                params.push(bind_key(
                    &img[only.source_index],
                    charsets[0].is_some(),
                    just_written,
                ));
                mark(only, charsets[0], &img[only.source_index])
            })
            .collect();
        let condition = format!(
            "{} IN ({})",
            quote_ident(&only.target.name),
            marks.join(",")
        );
        return (condition, params);
    }
    // A plain OR of equalities is range-optimised on every MariaDB/MySQL version, unlike
    // row constructors in IN.
    let rows: Vec<String> = images
        .iter()
        .map(|img| {
            let parts: Vec<String> = plan
                .key
                .iter()
                .zip(&charsets)
                .map(|(k, cs)| {
                    let v = &img[k.source_index];
                    if !v.is_absent() {
                        params.push(bind_key(v, cs.is_some(), just_written));
                    }
                    format!("{}={}", quote_ident(&k.target.name), mark(k, *cs, v))
                })
                .collect();
            format!("({})", parts.join(" AND "))
        })
        .collect();
    (rows.join(" OR "), params)
}

/// The ENUM index-0 fix-up of the row written from `image`, if it needs one: the columns
/// of the target's ENUMs that the source holds as index 0 are set to it, on the row as it
/// was written.
fn fixup(
    target: &TableName,
    plan: &ColumnPlan,
    columns: &[&PlannedColumn],
    image: &[Value],
    write: usize,
) -> Option<Fixup> {
    let zeroed: Vec<&str> = columns
        .iter()
        .filter(|c| c.target.data_type == "enum" && image[c.source_index] == Value::EnumIndex(0))
        .map(|c| c.target.name.as_str())
        .collect();
    if zeroed.is_empty() {
        return None;
    }
    let set = zeroed
        .iter()
        .map(|n| format!("{} = 0", quote_ident(n)))
        .collect::<Vec<_>>()
        .join(", ");
    let (condition, params) = key_condition(plan, &[image], true);
    Some(Fixup {
        write,
        sql: format!("UPDATE {} SET {set} WHERE {condition}", quote_table(target)),
        params,
    })
}

fn upsert(target: &TableName, plan: &ColumnPlan, writes: &[Write<'_>]) -> Statement {
    // A partial image (always alone in its statement) names only the columns it carries.
    let columns: Vec<&PlannedColumn> = plan
        .columns
        .iter()
        .filter(|c| !writes[0].image()[c.source_index].is_absent())
        .collect();
    let images: Vec<&[Value]> = writes.iter().map(Write::image).collect();
    let charsets: Vec<Option<Charset>> =
        columns.iter().map(|c| column_charset(c, &images)).collect();
    let mut names: Vec<String> = columns
        .iter()
        .map(|c| quote_ident(&c.target.name))
        .collect();
    let mut marks: Vec<String> = charsets.iter().map(|cs| relabel(*cs)).collect();
    for audit in [&plan.audit_flag, &plan.audit_ts].into_iter().flatten() {
        names.push(quote_ident(audit));
        marks.push("?".into());
    }
    let row = format!("({})", marks.join(","));
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        quote_table(target),
        names.join(","),
        vec![row.as_str(); writes.len()].join(",")
    );
    sql.push_str(" ON DUPLICATE KEY UPDATE ");
    sql.push_str(
        &names
            .iter()
            .map(|q| format!("{q}=VALUES({q})"))
            .collect::<Vec<_>>()
            .join(","),
    );
    let mut params = Vec::with_capacity(names.len() * writes.len());
    let mut fixups = Vec::new();
    for (i, w) in writes.iter().enumerate() {
        let image = w.image();
        params.extend(
            columns
                .iter()
                .zip(&charsets)
                .map(|(c, cs)| bind(&image[c.source_index], cs.is_some())),
        );
        if plan.audit_flag.is_some() {
            params.push(MyValue::Int(1));
        }
        if plan.audit_ts.is_some() {
            params.push(commit_time(w.change.commit_ts));
        }
        fixups.extend(fixup(target, plan, &columns, image, i));
    }
    Statement {
        sql,
        params,
        fixups,
    }
}

/// `UPDATE … SET <the columns the partial image carries> WHERE <key of the before-image>`.
fn update(target: &TableName, plan: &ColumnPlan, w: &Write<'_>) -> Statement {
    let image = w.image();
    let columns: Vec<&PlannedColumn> = plan
        .columns
        .iter()
        .filter(|c| !image[c.source_index].is_absent())
        .collect();
    if columns.is_empty() {
        // Only columns the target lacks changed: nothing to write.
        return Statement {
            sql: String::new(),
            params: Vec::new(),
            fixups: Vec::new(),
        };
    }
    let mut set: Vec<String> = Vec::new();
    let mut params: Vec<MyValue> = Vec::new();
    for c in &columns {
        let v = &image[c.source_index];
        set.push(format!(
            "{}={}",
            quote_ident(&c.target.name),
            relabel(v.charset())
        ));
        params.push(bind(v, v.charset().is_some()));
    }
    if let Some(flag) = &plan.audit_flag {
        set.push(format!("{}=?", quote_ident(flag)));
        params.push(MyValue::Int(1));
    }
    if let Some(ts) = &plan.audit_ts {
        set.push(format!("{}=?", quote_ident(ts)));
        params.push(commit_time(w.change.commit_ts));
    }
    let (condition, key_params) = key_condition(plan, &[w.key_image()], false);
    params.extend(key_params);
    // The fix-up finds the row by its key after the update: the after-image's where it
    // has the column, else the before-image's.
    let keyed: Vec<Value> = (0..image.len())
        .map(|i| match &image[i] {
            Value::Absent => w.key_image()[i].clone(),
            v => v.clone(),
        })
        .collect();
    Statement {
        sql: format!(
            "UPDATE {} SET {} WHERE {condition}",
            quote_table(target),
            set.join(",")
        ),
        params,
        fixups: fixup(target, plan, &columns, &keyed, 0)
            .into_iter()
            .collect(),
    }
}

fn delete(target: &TableName, plan: &ColumnPlan, writes: &[Write<'_>]) -> Statement {
    let images: Vec<&[Value]> = writes.iter().map(Write::key_image).collect();
    let (condition, params) = key_condition(plan, &images, false);
    Statement {
        sql: format!("DELETE FROM {} WHERE {condition}", quote_table(target)),
        params,
        fixups: Vec::new(),
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
    use concord_schema_cache::{PlannedColumn, TargetColumn};
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

    fn column(source_index: usize, name: &str) -> PlannedColumn {
        PlannedColumn {
            source_index,
            target: TargetColumn {
                name: name.into(),
                data_type: "int".into(),
                nullable: false,
                charset: None,
                collation: None,
                generated: None,
            },
        }
    }

    fn plan(key: &[usize], audit: bool) -> ColumnPlan {
        ColumnPlan {
            columns: vec![column(0, "id"), column(1, "k2"), column(2, "na`me")],
            key: key.iter().map(|&i| column(i, ["id", "k2"][i])).collect(),
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
