//! The statements of one checksum chunk: where it ends, its hash, and its rows.
//!
//! A chunk is a primary-key range `(after, through]`; either end may be open, so the
//! chunks of one run cover the whole key space — rows only the target has, before the
//! first or after the last source key, fall into the first or last chunk.
//!
//! Invariants: identifiers come from the schema cache's descriptions and are quoted; key
//! values are bound parameters; the hash statement is built once per table from the source
//! and target descriptions and hashes the same expression on both servers, so equal rows
//! hash equally.

use concord_change::Value;
use concord_schema_cache::{quote_ident, quote_table, TargetTable};

/// A primary-key range `(after, through]`; `None` is open.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyRange {
    pub after: Option<Vec<Value>>,
    pub through: Option<Vec<Value>>,
}

/// The statements for one table, built once.
#[derive(Clone, Debug)]
pub struct ChunkSql {
    table: String,
    key: Vec<String>,
    /// The hash of one row, as an SQL expression.
    row_hash: String,
    /// Every column of the table (for reading rows).
    columns: String,
}

/// Types whose values are text: converted to one character set before hashing, so a
/// column stored as latin1 on one side and utf8mb4 on the other hashes the same, and
/// `CONCAT_WS` never meets an illegal mix of collations.
fn is_text(data_type: &str) -> bool {
    matches!(
        data_type,
        "char"
            | "varchar"
            | "tinytext"
            | "text"
            | "mediumtext"
            | "longtext"
            | "enum"
            | "set"
            | "json"
    )
}

impl ChunkSql {
    /// `table` is the server's own description (source or target); `hashed` the columns
    /// both sides have, by name, in the source's order with the source's types — the same
    /// list for both servers.
    pub fn new(table: &TargetTable, hashed: &[(String, String)]) -> Self {
        let values: Vec<String> = hashed
            .iter()
            .map(|(name, ty)| {
                let q = quote_ident(name);
                if is_text(ty) {
                    format!("CONVERT({q} USING utf8mb4)")
                } else {
                    q
                }
            })
            .collect();
        // CONCAT_WS skips NULLs; the flags tell NULL from an empty string.
        let nulls: Vec<String> = hashed
            .iter()
            .map(|(name, _)| format!("ISNULL({})", quote_ident(name)))
            .collect();
        let text = format!(
            "CONCAT_WS('#', {}, CONCAT({}))",
            values.join(", "),
            nulls.join(", ")
        );
        // Not CRC32, though cheaper: a CRC is linear, so two rows given the same edit at
        // the same offset (every `amount + 1` of equal-length rows) change their CRCs by
        // the same bits, and the XOR over the chunk cancels them out. MD5 does not.
        let row_hash = format!("CAST(CONV(LEFT(MD5({text}), 16), 16, 10) AS UNSIGNED)");
        Self {
            table: format!("{} FORCE INDEX (PRIMARY)", quote_table(&table.name)),
            key: table.primary_key.iter().map(|k| quote_ident(k)).collect(),
            row_hash,
            columns: table
                .columns
                .iter()
                .map(|c| quote_ident(&c.name))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The key of the `n`th row after `after` (the chunk's last row), if there is one.
    pub fn boundary(&self, after: Option<&[Value]>, n: u64) -> (String, Vec<mysql_async::Value>) {
        let mut params = Vec::new();
        let filter = self.predicate(
            &KeyRange {
                after: after.map(<[Value]>::to_vec),
                through: None,
            },
            &mut params,
        );
        params.push(mysql_async::Value::UInt(n.saturating_sub(1)));
        let key = self.key.join(", ");
        (
            format!(
                "SELECT {key} FROM {} WHERE {filter} ORDER BY {key} LIMIT 1 OFFSET ?",
                self.table
            ),
            params,
        )
    }

    /// Row count and XOR of the row hashes of the range.
    pub fn hash(&self, range: &KeyRange) -> (String, Vec<mysql_async::Value>) {
        let mut params = Vec::new();
        let filter = self.predicate(range, &mut params);
        (
            format!(
                "SELECT COUNT(*), COALESCE(BIT_XOR({}), 0) FROM {} WHERE {filter}",
                self.row_hash, self.table
            ),
            params,
        )
    }

    /// Every column of at most `limit` rows of the range, in key order.
    pub fn rows(&self, range: &KeyRange, limit: u64) -> (String, Vec<mysql_async::Value>) {
        let mut params = Vec::new();
        let filter = self.predicate(range, &mut params);
        params.push(mysql_async::Value::UInt(limit));
        (
            format!(
                "SELECT {} FROM {} WHERE {filter} ORDER BY {} LIMIT ?",
                self.columns,
                self.table,
                self.key.join(", ")
            ),
            params,
        )
    }

    fn predicate(&self, range: &KeyRange, params: &mut Vec<mysql_async::Value>) -> String {
        let mut parts = Vec::new();
        if let Some(after) = &range.after {
            parts.push(compare(&self.key, after, ">", params));
        }
        if let Some(through) = &range.through {
            parts.push(compare(&self.key, through, "<=", params));
        }
        if parts.is_empty() {
            "TRUE".to_owned()
        } else {
            parts.join(" AND ")
        }
    }
}

/// `key op values` in key order, written out column by column — `(a > ? OR (a = ? AND
/// b > ?))` — which every server version turns into an index range.
fn compare(
    key: &[String],
    values: &[Value],
    op: &str,
    params: &mut Vec<mysql_async::Value>,
) -> String {
    let strict = op.trim_end_matches('=');
    let (first, rest) = (&key[0], &key[1..]);
    params.push(values[0].to_mysql());
    if rest.is_empty() {
        return format!("{first} {op} ?");
    }
    let head = format!("{first} {strict} ?");
    params.push(values[0].to_mysql());
    let tail = compare(rest, &values[1..], op, params);
    format!("({head} OR ({first} = ? AND {tail}))")
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_change::TableName;
    use concord_schema_cache::TargetColumn;

    fn table(key: &[&str]) -> TargetTable {
        TargetTable {
            name: TableName::new("shop", "orders"),
            columns: ["id", "part", "note"]
                .iter()
                .map(|n| TargetColumn {
                    name: n.to_string(),
                    data_type: if *n == "note" { "varchar" } else { "int" }.into(),
                })
                .collect(),
            primary_key: key.iter().map(|k| k.to_string()).collect(),
            has_unique_secondary: false,
        }
    }

    fn hashed() -> Vec<(String, String)> {
        vec![
            ("id".into(), "int".into()),
            ("note".into(), "varchar".into()),
        ]
    }

    #[test]
    fn a_composite_key_range_is_written_column_by_column_with_bound_values() {
        let sql = ChunkSql::new(&table(&["id", "part"]), &hashed());
        let range = KeyRange {
            after: Some(vec![Value::Int(1), Value::Int(2)]),
            through: Some(vec![Value::Int(5), Value::Int(0)]),
        };
        let (text, params) = sql.hash(&range);
        assert!(
            text.ends_with(
                "WHERE (`id` > ? OR (`id` = ? AND `part` > ?)) AND \
                 (`id` < ? OR (`id` = ? AND `part` <= ?))"
            ),
            "{text}"
        );
        let ints: Vec<_> = params
            .iter()
            .map(|p| match p {
                mysql_async::Value::Int(i) => *i,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ints, vec![1, 1, 2, 5, 5, 0]);
    }

    #[test]
    fn the_row_hash_converts_text_and_flags_nulls() {
        let sql = ChunkSql::new(&table(&["id"]), &hashed());
        let (text, params) = sql.hash(&KeyRange::default());
        assert!(text.contains(
            "CONCAT_WS('#', `id`, CONVERT(`note` USING utf8mb4), CONCAT(ISNULL(`id`), ISNULL(`note`)))"
        ), "{text}");
        assert!(text.contains("FORCE INDEX (PRIMARY) WHERE TRUE"), "{text}");
        assert!(params.is_empty());
    }

    #[test]
    fn the_boundary_is_the_nth_row_after_the_last_chunk() {
        let sql = ChunkSql::new(&table(&["id"]), &hashed());
        let (text, params) = sql.boundary(Some(&[Value::Int(10)]), 1000);
        assert_eq!(
            text,
            "SELECT `id` FROM `shop`.`orders` FORCE INDEX (PRIMARY) WHERE `id` > ? \
             ORDER BY `id` LIMIT 1 OFFSET ?"
        );
        assert_eq!(
            params,
            vec![mysql_async::Value::Int(10), mysql_async::Value::UInt(999)]
        );
    }
}
