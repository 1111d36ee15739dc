//! Reading rows by primary key (or by a foreign key's columns), many at a time: the verifier
//! reads the target (and, for a recheck, the source) once per table per round — never once
//! per change.
//!
//! Invariant: every identifier in the statement comes from a [`TargetTable`] the server's
//! own `information_schema` described (see the schema cache), quoted; key values are bound
//! parameters.

use crate::equality::key_form;
use concord_change::Value;
use concord_schema_cache::{quote_ident, quote_table, TargetColumn, TargetTable};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row};
use std::collections::HashMap;

use crate::sql_value::{from_sql, from_sql_in};

/// Rows of one table, keyed by the canonical form of their primary key
/// ([`key_form`]); values in the table's column order.
pub type Rows = HashMap<Vec<u8>, Vec<Value>>;

/// The largest number of keys in one statement. Smaller reads are padded to a power of two
/// (by repeating a key) so a handful of prepared statements serve every size.
const MAX_KEYS: usize = 512;

/// A row read with every column of a table (in `columns`' order), as values.
pub fn values(row: Row, columns: &[TargetColumn]) -> Vec<Value> {
    row.unwrap()
        .into_iter()
        .zip(columns)
        .map(|(v, c)| from_sql(v, &c.data_type))
        .collect()
}

/// ENUM and SET columns: read by number too, for the values a label cannot stand for.
fn numbered(c: &TargetColumn) -> bool {
    matches!(c.data_type.as_str(), "enum" | "set")
}

/// The columns of `table` as [`fetch`] reads them, exactly as stored: text of a character
/// set other than UTF-8 as its bytes (the server would convert it to utf8mb4), and after
/// them each ENUM's and SET's number (ENUM index 0 reads as `''`, like a label `''` would).
pub fn select_list(table: &TargetTable) -> String {
    let mut list: Vec<String> = table
        .columns
        .iter()
        .map(|c| match c.legacy_charset() {
            Some(_) => format!("CAST({} AS BINARY)", quote_ident(&c.name)),
            None => quote_ident(&c.name),
        })
        .collect();
    list.extend(
        table
            .columns
            .iter()
            .filter(|c| numbered(c))
            .map(|c| format!("({}+0)", quote_ident(&c.name))),
    );
    list.join(", ")
}

/// A row read with [`select_list`], as values in `table`'s column order. An ENUM at index
/// 0, or one whose label is not text concord can read, becomes its index; a SET whose
/// labels are not, its bitmask — as the binlog decoder represents such values.
pub fn stored_values(row: Row, table: &TargetTable) -> Vec<Value> {
    let mut raw = row.unwrap().into_iter();
    let mut out: Vec<Value> = table
        .columns
        .iter()
        .zip(raw.by_ref())
        .map(|(c, v)| from_sql_in(v, &c.data_type, c.legacy_charset()))
        .collect();
    let numbered = table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| numbered(c));
    for ((i, c), number) in numbered.zip(raw) {
        let number = match from_sql(number, "bigint") {
            Value::Int(n) => n as u64,
            Value::UInt(n) => n,
            _ => continue,
        };
        let unreadable = matches!(out[i], Value::Chars { .. });
        out[i] = match (c.data_type.as_str(), &out[i]) {
            (_, Value::Null) => continue,
            ("enum", _) if number == 0 || unreadable => Value::EnumIndex(number as u16),
            ("set", _) if unreadable => Value::SetBits(number),
            _ => continue,
        };
    }
    out
}

/// The canonical key of a row given in `table`'s column order.
pub fn row_key(table: &TargetTable, row: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for k in &table.primary_key {
        let i = table
            .columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(k))
            .expect("primary-key columns are columns");
        key_form(&row[i], &table.columns[i].data_type, &mut out);
    }
    out
}

/// The canonical key of key values given in `table.primary_key` order.
pub fn key_of(table: &TargetTable, key: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in table.primary_key.iter().zip(key) {
        let ty = table
            .column(k)
            .map(|c| c.data_type.as_str())
            .unwrap_or_default();
        key_form(v, ty, &mut out);
    }
    out
}

/// Reads every column of the rows of `table` whose columns `by` — its primary key, or a
/// foreign key's columns — hold one of `keys` (each in `by`'s order). Rows that do not
/// exist are simply absent from the result, which is keyed by primary key.
pub async fn fetch_by(
    conn: &mut Conn,
    table: &TargetTable,
    by: &[String],
    keys: &[Vec<Value>],
) -> Result<Rows, mysql_async::Error> {
    fetch(conn, table, by, keys, "").await
}

/// The rows of `table` with primary keys `keys` (each in `table.primary_key` order), read
/// as [`fetch_by`] reads rows but with `FOR UPDATE`: inside an open transaction each row —
/// or, where there is none, its key's gap — stays locked until the transaction ends.
pub async fn fetch_locked(
    conn: &mut Conn,
    table: &TargetTable,
    keys: &[Vec<Value>],
) -> Result<Rows, mysql_async::Error> {
    fetch(conn, table, &table.primary_key, keys, " FOR UPDATE").await
}

async fn fetch(
    conn: &mut Conn,
    table: &TargetTable,
    by: &[String],
    keys: &[Vec<Value>],
    locking: &str,
) -> Result<Rows, mysql_async::Error> {
    let mut out = Rows::with_capacity(keys.len());
    if keys.is_empty() || by.is_empty() || table.primary_key.is_empty() {
        return Ok(out);
    }
    let columns = select_list(table);
    let key_cols = by.iter().map(|k| quote_ident(k)).collect::<Vec<_>>();
    let width = key_cols.len();
    let lhs = if width == 1 {
        key_cols[0].clone()
    } else {
        format!("({})", key_cols.join(", "))
    };
    // Key text of another character set than UTF-8 is bound as its bytes, relabelled and
    // put into the key column's set and collation.
    let key_columns: Vec<Option<&TargetColumn>> = by.iter().map(|k| table.column(k)).collect();
    let one = |key: &[Value]| {
        let marks: Vec<String> = key
            .iter()
            .zip(&key_columns)
            .map(|(v, c)| match c {
                Some(c) => c.compare_placeholder(v.charset()),
                None => "?".to_owned(),
            })
            .collect();
        if width == 1 {
            marks.join("")
        } else {
            format!("({})", marks.join(", "))
        }
    };
    for chunk in keys.chunks(MAX_KEYS) {
        let size = chunk.len().next_power_of_two();
        let list: Vec<String> = (0..size)
            .map(|i| one(&chunk[i.min(chunk.len() - 1)]))
            .collect();
        let sql = format!(
            "SELECT {columns} FROM {} WHERE {lhs} IN ({}){locking}",
            quote_table(&table.name),
            list.join(", ")
        );
        let params: Vec<mysql_async::Value> = (0..size)
            .flat_map(|i| chunk[i.min(chunk.len() - 1)].iter().map(Value::to_mysql))
            .collect();
        let rows: Vec<Row> = conn.exec(sql, Params::Positional(params)).await?;
        for row in rows {
            let values = stored_values(row, table);
            out.insert(row_key(table, &values), values);
        }
    }
    Ok(out)
}
