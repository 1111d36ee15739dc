//! Which columns a change writes: the ones both the source event and the target table
//! have. Source-only columns are skipped (counted, warned once per table+column);
//! target-only columns are left alone, except concord's own audit columns. A column the
//! target generates (`AS (…) STORED|VIRTUAL`, a system-versioning timestamp) is never
//! written — the target computes it, as it would for any client; a column generated on
//! the source but plain on the target is written with the value the source computed (the
//! binlog carries it).

use crate::{metrics, TargetColumn, TargetTable};
use concord_change::SourceTable;
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedColumn {
    /// Index into the source images.
    pub source_index: usize,
    /// The target's column (its name as the target spells it, type, character set and
    /// collation).
    pub target: TargetColumn,
}

/// How one source table's rows are written to one target table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnPlan {
    pub columns: Vec<PlannedColumn>,
    /// Primary-key columns (source key, target spelling).
    pub key: Vec<PlannedColumn>,
    pub skipped: Vec<String>,
    pub audit_flag: Option<String>,
    pub audit_ts: Option<String>,
    pub keep_order: bool,
}

/// Why a source table cannot be written to its target table at all.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the source table has no primary key; concord needs one to apply updates and deletes")]
    NoSourceKey,
    #[error("the target table lacks primary-key column `{0}`")]
    KeyColumnMissing(String),
}

impl ColumnPlan {
    pub fn new(
        source: &SourceTable,
        target: &TargetTable,
        audit_flag_column: &str,
        audit_ts_column: &str,
    ) -> Result<Self, PlanError> {
        if !source.has_primary_key() {
            return Err(PlanError::NoSourceKey);
        }
        // Both sides have them; a generated one finds rows (as a key) but is not written.
        let mut shared = Vec::new();
        let mut skipped = Vec::new();
        for (i, name) in source.columns.iter().enumerate() {
            match target.column(name) {
                Some(t) => shared.push(PlannedColumn {
                    source_index: i,
                    target: t.clone(),
                }),
                None => skipped.push(name.clone()),
            }
        }
        let key = source
            .primary_key
            .iter()
            .map(|&i| {
                shared
                    .iter()
                    .find(|c| c.source_index == i)
                    .cloned()
                    .ok_or_else(|| PlanError::KeyColumnMissing(source.columns[i].clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let columns = shared
            .into_iter()
            .filter(|c| c.target.generated.is_none())
            .collect();
        // Audit columns are filled by concord only when they are the target's own; a
        // source that has them too just replicates its values.
        let audit = |name: &str| {
            if source.column_index(name).is_some() {
                None
            } else {
                target.column(name).map(|c| c.name.clone())
            }
        };
        for name in &skipped {
            warn_skipped_once(&source.name.to_string(), name);
        }
        Ok(Self {
            columns,
            key,
            skipped,
            audit_flag: audit(audit_flag_column),
            audit_ts: audit(audit_ts_column),
            keep_order: target.has_unique_secondary,
        })
    }

    /// Counts `rows` values not written for each skipped column.
    pub fn count_skipped(&self, table: &str, rows: usize) {
        for col in &self.skipped {
            metrics::SKIPPED_COLUMNS
                .with_label_values(&[table, col])
                .inc_by(rows as u64);
        }
    }
}

static WARNED: LazyLock<Mutex<HashSet<(String, String)>>> = LazyLock::new(Default::default);

fn warn_skipped_once(table: &str, column: &str) {
    let first = WARNED
        .lock()
        .expect("warned-set lock")
        .insert((table.to_owned(), column.to_owned()));
    if first {
        tracing::warn!(
            table,
            column,
            "source column is not on the target; its values are skipped until the target gains it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TargetColumn;
    use concord_change::TableName;

    fn target(cols: &[&str], pk: &[&str]) -> TargetTable {
        TargetTable {
            name: TableName::new("d", "t"),
            columns: cols
                .iter()
                .map(|c| TargetColumn {
                    name: c.to_string(),
                    data_type: "int".into(),
                    nullable: false,
                    charset: None,
                    collation: None,
                    generated: None,
                })
                .collect(),
            primary_key: pk.iter().map(|s| s.to_string()).collect(),
            has_unique_secondary: false,
            cascades: Vec::new(),
        }
    }

    fn source(cols: &[&str], pk: &[usize]) -> SourceTable {
        SourceTable {
            name: TableName::new("d", "t"),
            columns: cols.iter().map(|s| s.to_string()).collect(),
            primary_key: pk.to_vec(),
        }
    }

    #[test]
    fn writes_shared_columns_skips_source_only_and_fills_audit() {
        let p = ColumnPlan::new(
            &source(&["id", "a", "new_col"], &[0]),
            &target(
                &[
                    "ID",
                    "a",
                    "extra",
                    "concord_replicated",
                    "concord_source_ts",
                ],
                &["ID"],
            ),
            "concord_replicated",
            "concord_source_ts",
        )
        .unwrap();
        let names: Vec<_> = p.columns.iter().map(|c| c.target.name.as_str()).collect();
        assert_eq!(names, ["ID", "a"]);
        assert_eq!(p.skipped, ["new_col"]);
        assert_eq!(p.key[0].target.name, "ID");
        assert_eq!(p.audit_flag.as_deref(), Some("concord_replicated"));
        assert_eq!(p.audit_ts.as_deref(), Some("concord_source_ts"));
    }

    #[test]
    fn columns_the_target_generates_are_not_written() {
        let mut t = target(&["id", "q", "total", "vtotal"], &["id"]);
        t.columns[2].generated = Some(crate::Generated::Stored);
        t.columns[3].generated = Some(crate::Generated::Virtual);
        let p =
            ColumnPlan::new(&source(&["id", "q", "total", "vtotal"], &[0]), &t, "f", "t").unwrap();
        let names: Vec<_> = p.columns.iter().map(|c| c.target.name.as_str()).collect();
        assert_eq!(names, ["id", "q"]);
        assert!(
            p.skipped.is_empty(),
            "not skipped as missing: {:?}",
            p.skipped
        );
        assert_eq!(
            crate::Generated::from_extra("VIRTUAL GENERATED"),
            Some(crate::Generated::Virtual)
        );
        assert_eq!(
            crate::Generated::from_extra("STORED GENERATED"),
            Some(crate::Generated::Stored)
        );
        assert_eq!(crate::Generated::from_extra("DEFAULT_GENERATED"), None);
        assert_eq!(crate::Generated::from_extra("INVISIBLE"), None);
        assert_eq!(crate::Generated::from_extra(""), None);
    }

    #[test]
    fn refuses_tables_without_usable_key() {
        let t = target(&["id", "a"], &["id"]);
        assert_eq!(
            ColumnPlan::new(&source(&["id", "a"], &[]), &t, "f", "t").unwrap_err(),
            PlanError::NoSourceKey
        );
        assert_eq!(
            ColumnPlan::new(&source(&["k", "a"], &[0]), &t, "f", "t").unwrap_err(),
            PlanError::KeyColumnMissing("k".into())
        );
    }
}
