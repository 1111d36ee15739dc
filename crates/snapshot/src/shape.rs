//! A table as the snapshot handles it: the source's own description (columns, types, key),
//! the statements that walk and read it, and the target table its rows go to.
//!
//! Invariant: rows are read as their stored values — text of other character sets as its
//! bytes, ENUMs and SETs by number where a label cannot stand for them — the values a
//! binlog row image of the same row carries, so a snapshot row and a change of the same
//! key compare and write alike.

use crate::error::SnapshotError;
use concord_change::{SourceTable, TableName, Value};
use concord_chunking::KeySql;
use concord_compare::rows::{key_of, row_key, select_list};
use concord_config::TableFilter;
use concord_schema_cache::{SchemaCache, TargetColumn, TargetTable};
use std::sync::Arc;

#[derive(Debug)]
pub struct Shape {
    /// The source table.
    pub name: TableName,
    /// The source's description of it.
    pub source: Arc<TargetTable>,
    /// The same, as changes carry it.
    pub change_table: Arc<SourceTable>,
    /// Walks the source's key.
    pub walk: KeySql,
    /// The select list that reads stored values ([`select_list`]).
    pub select: String,
    /// The target table (after `tables.renames`).
    pub target: TableName,
    /// Whether the target's key columns sort and compare as the source's (same types,
    /// character sets and collations): only then does a key range on the target hold the
    /// rows the same range holds on the source, so target rows the source lacks can be
    /// found by range.
    pub range_deletes: bool,
    /// The source's column definitions as [`fingerprint`] read them when the table was
    /// described (empty: not checked): a chunk read under another definition is refused.
    pub fingerprint: String,
}

/// The source table's column definitions, in one string: names, types, collations, what
/// generates them. Read inside a chunk's read transaction after its rows, it tells whether
/// the rows were read under the definition the job described.
pub async fn fingerprint(
    conn: &mut mysql_async::Conn,
    table: &TableName,
) -> Result<String, mysql_async::Error> {
    use mysql_async::prelude::Queryable;
    let row: Option<Option<String>> = conn
        .exec_first(
            "SELECT GROUP_CONCAT(COLUMN_NAME, ':', COLUMN_TYPE, ':', IFNULL(COLLATION_NAME, ''),              ':', EXTRA ORDER BY ORDINAL_POSITION SEPARATOR ';') FROM information_schema.COLUMNS              WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&table.db, &table.table),
        )
        .await?;
    Ok(row.flatten().unwrap_or_default())
}

impl Shape {
    /// Describes `table` on both sides; refuses a table without a primary key, and a
    /// target table that does not exist — each by name.
    pub async fn describe(
        source: &SchemaCache,
        target: &SchemaCache,
        filter: &TableFilter,
        table: &TableName,
    ) -> Result<Shape, SnapshotError> {
        let described = source
            .get(table)
            .await
            .map_err(|e| SnapshotError::Schema(Box::new(e)))?
            .ok_or_else(|| SnapshotError::NoSourceTable(table.clone()))?;
        if described.primary_key.is_empty() {
            return Err(SnapshotError::NoPrimaryKey(table.clone()));
        }
        let target_name = filter.target_name(table);
        let target_table = target
            .get(&target_name)
            .await
            .map_err(|e| SnapshotError::Schema(Box::new(e)))?
            .ok_or_else(|| SnapshotError::NoTargetTable {
                source_table: table.clone(),
                target: target_name.clone(),
            })?;
        Ok(Self::of(described, target_name, &target_table))
    }

    /// The shape of a source table described as `source`, whose target is `target`.
    pub fn of(source: Arc<TargetTable>, target_name: TableName, target: &TargetTable) -> Shape {
        let range_deletes = source.primary_key.iter().all(|k| {
            matches!((source.column(k), target.column(k)), (Some(s), Some(t)) if same_order(s, t))
        });
        Shape {
            name: source.name.clone(),
            change_table: source.change_table(),
            walk: KeySql::new(&source),
            select: select_list(&source),
            target: target_name,
            range_deletes,
            source,
            fingerprint: String::new(),
        }
    }

    /// The canonical form of a row's key (the row in the source's column order).
    pub fn row_key(&self, row: &[Value]) -> Vec<u8> {
        row_key(&self.source, row)
    }

    /// The canonical form of key values in primary-key order.
    pub fn key_form(&self, key: &[Value]) -> Vec<u8> {
        key_of(&self.source, key)
    }

    /// The key values of a row, in primary-key order.
    pub fn key_values(&self, row: &[Value]) -> Vec<Value> {
        self.change_table
            .primary_key
            .iter()
            .map(|&i| row[i].clone())
            .collect()
    }

    /// Whether a key column holds text: two keys of different bytes can then be the same
    /// row (a case-insensitive collation, trailing spaces under PAD SPACE).
    pub fn text_key(&self) -> bool {
        self.source
            .primary_key
            .iter()
            .any(|k| self.source.column(k).is_some_and(|c| c.charset.is_some()))
    }

    /// The data types of the key columns, in key order (to read keys given as text).
    pub fn key_types(&self) -> Vec<String> {
        self.source
            .primary_key
            .iter()
            .map(|k| {
                self.source
                    .column(k)
                    .map(|c| c.data_type.clone())
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// Whether two key columns order their values alike: integers of any width, or the same
/// type in the same character set and collation.
fn same_order(s: &TargetColumn, t: &TargetColumn) -> bool {
    let integer = |c: &TargetColumn| {
        matches!(
            c.data_type.as_str(),
            "tinyint" | "smallint" | "mediumint" | "int" | "bigint"
        )
    };
    (integer(s) && integer(t))
        || (s.data_type == t.data_type && s.charset == t.charset && s.collation == t.collation)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn table(name: &str) -> TargetTable {
        TargetTable {
            name: TableName::new("shop", name),
            columns: [("id", "int"), ("note", "varchar")]
                .iter()
                .map(|(n, ty)| TargetColumn {
                    name: n.to_string(),
                    data_type: ty.to_string(),
                    nullable: *n == "note",
                    charset: None,
                    collation: None,
                    generated: None,
                })
                .collect(),
            primary_key: vec!["id".into()],
            has_unique_secondary: false,
            cascades: Vec::new(),
        }
    }

    pub fn shape() -> Shape {
        let t = table("orders");
        Shape::of(Arc::new(t.clone()), t.name.clone(), &t)
    }

    #[test]
    fn target_keys_of_another_collation_are_not_walked_by_range() {
        assert!(shape().range_deletes);
        let source = table("orders");
        let mut target = source.clone();
        target.columns[0].data_type = "bigint".into();
        let widened = Shape::of(Arc::new(source.clone()), source.name.clone(), &target);
        assert!(
            widened.range_deletes,
            "an integer key widened still sorts alike"
        );
        target.columns[0].data_type = "varchar".into();
        let s = Shape::of(Arc::new(source.clone()), source.name.clone(), &target);
        assert!(!s.range_deletes);
    }
}
