//! Primary-key ranges and the statements that walk them.

use concord_change::Value;
use concord_schema_cache::{quote_ident, quote_table, TargetTable};

/// A primary-key range `(after, through]`; `None` is open. `from` and `until` bound it
/// further (inclusive): the ends of a range asked for (a batch recovery's, a snapshot's),
/// kept on every chunk of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyRange {
    pub after: Option<Vec<Value>>,
    pub through: Option<Vec<Value>>,
    pub from: Option<Vec<Value>>,
    pub until: Option<Vec<Value>>,
}

impl KeyRange {
    /// The range's condition on the key columns `key` (quoted), its values pushed onto
    /// `params`; `TRUE` for the whole key space.
    pub fn predicate(&self, key: &[String], params: &mut Vec<mysql_async::Value>) -> String {
        let mut parts = Vec::new();
        if let Some(after) = &self.after {
            parts.push(compare(key, after, ">", params));
        }
        if let Some(through) = &self.through {
            parts.push(compare(key, through, "<=", params));
        }
        if let Some(from) = &self.from {
            parts.push(compare(key, from, ">=", params));
        }
        if let Some(until) = &self.until {
            parts.push(compare(key, until, "<=", params));
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
pub fn compare(
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

/// The key-walking statements of one table, built once from its description.
#[derive(Clone, Debug)]
pub struct KeySql {
    /// `db`.`t` FORCE INDEX (PRIMARY): the walk is the primary key's order.
    table: String,
    key: Vec<String>,
}

impl KeySql {
    pub fn new(table: &TargetTable) -> Self {
        Self {
            table: format!("{} FORCE INDEX (PRIMARY)", quote_table(&table.name)),
            key: table.primary_key.iter().map(|k| quote_ident(k)).collect(),
        }
    }

    /// The quoted table with its index hint, for statements built elsewhere.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The quoted key columns, in key order.
    pub fn key(&self) -> &[String] {
        &self.key
    }

    /// The key of the `n`th row of `range` after its `after` (where a chunk of `n` rows
    /// ends), if there is one.
    pub fn boundary(&self, range: &KeyRange, n: u64) -> (String, Vec<mysql_async::Value>) {
        let mut params = Vec::new();
        let filter = range.predicate(&self.key, &mut params);
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

    /// The largest key below `key` (where a range starting at `key` walks from).
    pub fn key_before(&self, key: &[Value]) -> (String, Vec<mysql_async::Value>) {
        let mut params = Vec::new();
        let filter = compare(&self.key, key, "<", &mut params);
        let order: Vec<String> = self.key.iter().map(|k| format!("{k} DESC")).collect();
        (
            format!(
                "SELECT {} FROM {} WHERE {filter} ORDER BY {} LIMIT 1",
                self.key.join(", "),
                self.table,
                order.join(", ")
            ),
            params,
        )
    }

    /// Whether the range holds any row (`SELECT 1 … LIMIT 1`).
    pub fn any(&self, range: &KeyRange) -> (String, Vec<mysql_async::Value>) {
        let mut params = Vec::new();
        let filter = range.predicate(&self.key, &mut params);
        (
            format!("SELECT 1 FROM {} WHERE {filter} LIMIT 1", self.table),
            params,
        )
    }

    /// The smallest and largest key (for a one-column key).
    pub fn key_extent(&self) -> String {
        format!(
            "SELECT MIN({k}), MAX({k}) FROM {}",
            self.table,
            k = self.key[0]
        )
    }

    /// `columns` (a select list) of the range's rows in key order, at most `limit` of them
    /// (`None`: all).
    pub fn rows(
        &self,
        columns: &str,
        range: &KeyRange,
        limit: Option<u64>,
    ) -> (String, Vec<mysql_async::Value>) {
        let mut params = Vec::new();
        let filter = range.predicate(&self.key, &mut params);
        let limit = match limit {
            Some(n) => {
                params.push(mysql_async::Value::UInt(n));
                " LIMIT ?"
            }
            None => "",
        };
        (
            format!(
                "SELECT {columns} FROM {} WHERE {filter} ORDER BY {}{limit}",
                self.table,
                self.key.join(", ")
            ),
            params,
        )
    }
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
                    nullable: *n == "note",
                    charset: None,
                    collation: None,
                    generated: None,
                })
                .collect(),
            primary_key: key.iter().map(|k| k.to_string()).collect(),
            has_unique_secondary: false,
            cascades: Vec::new(),
        }
    }

    #[test]
    fn a_composite_key_range_is_written_column_by_column_with_bound_values() {
        let sql = KeySql::new(&table(&["id", "part"]));
        let range = KeyRange {
            after: Some(vec![Value::Int(1), Value::Int(2)]),
            through: Some(vec![Value::Int(5), Value::Int(0)]),
            ..KeyRange::default()
        };
        let (text, params) = sql.rows("`id`", &range, Some(10));
        assert_eq!(
            text,
            "SELECT `id` FROM `shop`.`orders` FORCE INDEX (PRIMARY) WHERE \
             (`id` > ? OR (`id` = ? AND `part` > ?)) AND \
             (`id` < ? OR (`id` = ? AND `part` <= ?)) ORDER BY `id`, `part` LIMIT ?"
        );
        let ints: Vec<_> = params
            .iter()
            .map(|p| match p {
                mysql_async::Value::Int(i) => *i,
                mysql_async::Value::UInt(u) => *u as i64,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ints, vec![1, 1, 2, 5, 5, 0, 10]);
    }

    #[test]
    fn the_boundary_is_the_nth_row_after_the_last_chunk() {
        let sql = KeySql::new(&table(&["id"]));
        let range = KeyRange {
            after: Some(vec![Value::Int(10)]),
            until: Some(vec![Value::Int(90)]),
            ..KeyRange::default()
        };
        let (text, params) = sql.boundary(&range, 1000);
        assert_eq!(
            text,
            "SELECT `id` FROM `shop`.`orders` FORCE INDEX (PRIMARY) WHERE `id` > ? AND `id` <= ? \
             ORDER BY `id` LIMIT 1 OFFSET ?"
        );
        assert_eq!(
            params,
            vec![
                mysql_async::Value::Int(10),
                mysql_async::Value::Int(90),
                mysql_async::Value::UInt(999)
            ]
        );
    }
}
