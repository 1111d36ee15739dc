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
pub use concord_chunking::KeyRange;
use concord_chunking::KeySql;
use concord_schema_cache::{quote_ident, TargetTable};

/// A column both servers hash: its name, the source's type, and whether either side
/// allows NULL in it.
#[derive(Clone, Debug)]
pub struct HashedColumn {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

/// The statements for one table, built once.
#[derive(Clone, Debug)]
pub struct ChunkSql {
    /// The key walk (boundaries, ranges) of the table.
    walk: KeySql,
    /// The hash of one row, as an SQL expression.
    row_hash: String,
    /// Every column of the table (for reading rows).
    columns: String,
}

/// Types whose values are text, and so have a character set.
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
    /// both sides have, in the source's order with the source's types — the same list for
    /// both servers, so both build the same expression up to character-set conversions.
    pub fn new(table: &TargetTable, hashed: &[HashedColumn]) -> Self {
        // Text is hashed as utf8mb4, so a latin1 column on one side and a utf8mb4 one on
        // the other hash alike. Converting a column that already is utf8mb4 would cost a
        // copy per value for nothing, so only the others are converted. Every text value
        // gets the one explicit collation, or columns of different collations would be an
        // "illegal mix" for CONCAT_WS (the collation does not change the bytes hashed).
        let value = |c: &HashedColumn| {
            let q = quote_ident(&c.name);
            let charset = table
                .column(&c.name)
                .and_then(|t| t.charset)
                .map(|cs| cs.name());
            match (is_text(&c.data_type), charset) {
                (false, _) => q,
                (true, Some("utf8mb4")) => format!("{q} COLLATE utf8mb4_bin"),
                (true, _) => format!("CONVERT({q} USING utf8mb4) COLLATE utf8mb4_bin"),
            }
        };
        let mut parts: Vec<String> = hashed.iter().map(value).collect();
        // CONCAT_WS skips NULLs; a flag per nullable column tells NULL from an empty
        // string. Columns that allow no NULL on either side need none (the flags are a
        // large share of the expression's cost).
        let nulls: Vec<String> = hashed
            .iter()
            .filter(|c| c.nullable)
            .map(|c| format!("ISNULL({})", quote_ident(&c.name)))
            .collect();
        if !nulls.is_empty() {
            parts.push(format!("CONCAT({})", nulls.join(", ")));
        }
        let key_text = match hashed
            .iter()
            .filter(|c| {
                table
                    .primary_key
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(&c.name))
            })
            .map(value)
            .collect::<Vec<_>>()
        {
            k if k.len() == 1 => k[0].clone(),
            k => format!("CONCAT_WS('#', {})", k.join(", ")),
        };
        // The row's CRC32 times an odd multiplier drawn from its key (both below 2^32, so
        // the product fits 64 bits). A CRC alone is linear: rows of equal length given the
        // same edit at the same offset change their CRCs by the same bits, and the XOR
        // over the chunk cancels them pairwise. Multiplied by a different number per row,
        // equal changes of the CRCs become unrelated changes of the products. (The key is
        // the same on both servers for rows that match, so the multiplier is too.)
        let row_hash = format!(
            "(CRC32(CONCAT_WS('#', {})) * (CRC32({key_text}) | 1))",
            parts.join(", ")
        );
        Self {
            walk: KeySql::new(table),
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
        let range = KeyRange {
            after: after.map(<[Value]>::to_vec),
            ..KeyRange::default()
        };
        self.walk.boundary(&range, n)
    }

    /// The largest key below `key` (where a range starting at `key` walks from).
    pub fn key_before(&self, key: &[Value]) -> (String, Vec<mysql_async::Value>) {
        self.walk.key_before(key)
    }

    /// Whether the range holds any row (`SELECT 1 … LIMIT 1`).
    pub fn any(&self, range: &KeyRange) -> (String, Vec<mysql_async::Value>) {
        self.walk.any(range)
    }

    /// The smallest and largest key (for a one-column key).
    pub fn key_extent(&self) -> String {
        self.walk.key_extent()
    }

    /// Row count and XOR of the row hashes of the range.
    pub fn hash(&self, range: &KeyRange) -> (String, Vec<mysql_async::Value>) {
        let mut params = Vec::new();
        let filter = range.predicate(self.walk.key(), &mut params);
        (
            format!(
                "SELECT COUNT(*), COALESCE(BIT_XOR({}), 0) FROM {} WHERE {filter}",
                self.row_hash,
                self.walk.table()
            ),
            params,
        )
    }

    /// Every column of at most `limit` rows of the range, in key order.
    pub fn rows(&self, range: &KeyRange, limit: u64) -> (String, Vec<mysql_async::Value>) {
        self.walk.rows(&self.columns, range, Some(limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_change::TableName;
    use concord_schema_cache::TargetColumn;

    fn table(key: &[&str]) -> TargetTable {
        table_in(key, "latin1")
    }

    fn table_in(key: &[&str], charset: &str) -> TargetTable {
        TargetTable {
            name: TableName::new("shop", "orders"),
            columns: ["id", "part", "note"]
                .iter()
                .map(|n| TargetColumn {
                    name: n.to_string(),
                    data_type: if *n == "note" { "varchar" } else { "int" }.into(),
                    nullable: *n == "note",
                    charset: (*n == "note")
                        .then(|| concord_change::Charset::from_name(charset).unwrap()),
                    collation: None,
                    generated: None,
                })
                .collect(),
            primary_key: key.iter().map(|k| k.to_string()).collect(),
            has_unique_secondary: false,
            cascades: Vec::new(),
        }
    }

    fn hashed() -> Vec<HashedColumn> {
        [("id", "int", false), ("note", "varchar", true)]
            .iter()
            .map(|(name, ty, nullable)| HashedColumn {
                name: name.to_string(),
                data_type: ty.to_string(),
                nullable: *nullable,
            })
            .collect()
    }

    #[test]
    fn the_row_hash_converts_other_charsets_and_flags_nullable_columns() {
        let sql = ChunkSql::new(&table(&["id"]), &hashed());
        let (text, params) = sql.hash(&KeyRange::default());
        assert!(
            text.contains(
                "(CRC32(CONCAT_WS('#', `id`, CONVERT(`note` USING utf8mb4) COLLATE utf8mb4_bin, \
                 CONCAT(ISNULL(`note`)))) * (CRC32(`id`) | 1))"
            ),
            "{text}"
        );
        assert!(text.contains("FORCE INDEX (PRIMARY) WHERE TRUE"), "{text}");
        assert!(params.is_empty());

        // Already utf8mb4: no conversion. No nullable column: no flags.
        let not_null: Vec<HashedColumn> = hashed()
            .into_iter()
            .map(|c| HashedColumn {
                nullable: false,
                ..c
            })
            .collect();
        let sql = ChunkSql::new(&table_in(&["id", "note"], "utf8mb4"), &not_null);
        let (text, _) = sql.hash(&KeyRange::default());
        assert!(
            text.contains(
                "(CRC32(CONCAT_WS('#', `id`, `note` COLLATE utf8mb4_bin)) * \
                 (CRC32(CONCAT_WS('#', `id`, `note` COLLATE utf8mb4_bin)) | 1))"
            ),
            "{text}"
        );
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
