//! The target's column sets, cached, so that DDL can reach the source and the target in
//! either order without stopping replication.
//!
//! Invariant: every identifier concord puts into SQL for the target comes from a
//! [`TargetTable`] read from the target's own `information_schema` — never from an event or
//! a user — and is quoted with [`quote_ident`]. A cached entry lives at most `ttl`, and is
//! dropped at once when the target says the schema moved (unknown column, missing table).

mod plan;

pub use plan::{ColumnPlan, PlanError, PlannedColumn};

use concord_change::{Charset, TableName};
use moka::future::Cache;
use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use std::sync::Arc;
use std::time::Duration;

/// One table as the target has it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetTable {
    pub name: TableName,
    pub columns: Vec<TargetColumn>,
    /// Primary-key column names in key order.
    pub primary_key: Vec<String>,
    /// A UNIQUE key other than the primary key exists: rows can collide on it, so the
    /// applier must keep the source's order of changes within this table.
    pub has_unique_secondary: bool,
    /// Foreign keys of other tables that reference this one with an action on delete or
    /// update (CASCADE, SET NULL, SET DEFAULT): the target's engine carries a change of
    /// this table to those children, as the source's did — the binlog does not log
    /// cascaded changes.
    pub cascades: Vec<Cascade>,
}

/// A foreign key of `child` referencing a table, with what a delete or key update of the
/// referenced row does to the child's rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cascade {
    pub child: TableName,
    pub child_columns: Vec<String>,
    pub parent_columns: Vec<String>,
    pub on_delete: RefAction,
    pub on_update: RefAction,
}

/// `REFERENTIAL_CONSTRAINTS.DELETE_RULE` / `UPDATE_RULE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefAction {
    Cascade,
    SetNull,
    SetDefault,
    /// `RESTRICT` or `NO ACTION`: the child's rows are not changed.
    Restrict,
}

impl RefAction {
    fn from_rule(rule: &str) -> Self {
        match rule.to_ascii_uppercase().as_str() {
            "CASCADE" => RefAction::Cascade,
            "SET NULL" => RefAction::SetNull,
            "SET DEFAULT" => RefAction::SetDefault,
            _ => RefAction::Restrict,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetColumn {
    pub name: String,
    /// `information_schema.COLUMNS.DATA_TYPE`, e.g. `int`, `varchar`, `datetime`.
    pub data_type: String,
    pub nullable: bool,
    /// The character set of a character column (`utf8mb4`, `latin1`…); `None` for the
    /// other types.
    pub charset: Option<Charset>,
    /// The collation of a character column (`latin1_swedish_ci`…).
    pub collation: Option<String>,
    /// The server computes the column: it is never written.
    pub generated: Option<Generated>,
}

/// How the server computes a column (`information_schema.COLUMNS.EXTRA`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generated {
    /// `AS (expr) STORED` (`PERSISTENT`): computed on write and stored, so it is data the
    /// verifier compares.
    Stored,
    /// `AS (expr) VIRTUAL`: computed on read; not compared.
    Virtual,
    /// `GENERATED ALWAYS AS ROW START|END` of a system-versioned table: the server's own
    /// timestamps; not compared.
    System,
}

impl Generated {
    /// From `information_schema.COLUMNS.EXTRA`. (MySQL's `DEFAULT_GENERATED` marks a
    /// default expression, not a generated column.)
    pub fn from_extra(extra: &str) -> Option<Self> {
        let extra = extra.to_ascii_uppercase();
        if extra.contains("VIRTUAL GENERATED") {
            Some(Generated::Virtual)
        } else if extra.contains("STORED GENERATED") || extra.contains("PERSISTENT GENERATED") {
            Some(Generated::Stored)
        } else if extra.contains("ROW START") || extra.contains("ROW END") {
            Some(Generated::System)
        } else {
            None
        }
    }
}

impl TargetColumn {
    /// Whether the column holds data that must agree with the source: not computed on
    /// read (virtual) nor the server's versioning timestamps.
    pub fn is_compared(&self) -> bool {
        matches!(self.generated, None | Some(Generated::Stored))
    }

    /// The character set of a text column whose bytes are not UTF-8 (read such a column
    /// as `CAST(col AS BINARY)` to get its stored bytes); `None` for other columns.
    pub fn legacy_charset(&self) -> Option<Charset> {
        self.charset
            .filter(|c| !c.is_utf8() && *c != Charset::BINARY)
    }

    /// The placeholder of a value compared with this column (`col = …`) whose text is in
    /// `value` ([`Charset::placeholder`], bound as its bytes): converted into the column's
    /// character set and collation, since two character sets or collations of equal
    /// standing cannot be compared ("illegal mix of collations"). Plain `?` for other
    /// values (they are coercible).
    pub fn compare_placeholder(&self, value: Option<Charset>) -> String {
        let Some(value) = value else {
            return "?".to_owned();
        };
        let bytes = value.placeholder();
        match (&self.charset, &self.collation) {
            (Some(cs), Some(collation)) if *cs == value => format!("{bytes} COLLATE {collation}"),
            (Some(cs), Some(collation)) => {
                format!("CONVERT({bytes} USING {}) COLLATE {collation}", cs.name())
            }
            _ => bytes,
        }
    }
}

impl TargetTable {
    pub fn column(&self, name: &str) -> Option<&TargetColumn> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The table as the change model describes a source table (column names in order,
    /// key indexes): for changes made from rows read with SQL, which the binlog would have
    /// described from its table map.
    pub fn change_table(&self) -> Arc<concord_change::SourceTable> {
        let columns: Vec<String> = self.columns.iter().map(|c| c.name.clone()).collect();
        let primary_key = self
            .primary_key
            .iter()
            .filter_map(|k| columns.iter().position(|c| c.eq_ignore_ascii_case(k)))
            .collect();
        Arc::new(concord_change::SourceTable {
            name: self.name.clone(),
            columns,
            primary_key,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("reading the target schema of {table}: {source}")]
pub struct SchemaError {
    pub table: TableName,
    #[source]
    pub source: Arc<mysql_async::Error>,
}

/// Why an entry was dropped before its time.
#[derive(Clone, Copy, Debug)]
pub enum RefreshReason {
    UnknownColumn,
    MissingTable,
    SourceDdl,
}

impl RefreshReason {
    fn as_str(self) -> &'static str {
        match self {
            RefreshReason::UnknownColumn => "unknown_column",
            RefreshReason::MissingTable => "missing_table",
            RefreshReason::SourceDdl => "source_ddl",
        }
    }
}

impl RefreshReason {
    /// Whether `e` is the server saying the table's column set moved under the statement
    /// (an unknown column, a table or schema that is not there): the cached entry is stale,
    /// and the statement is worth running again once it is read afresh.
    pub fn of_error(e: &mysql_async::Error) -> Option<RefreshReason> {
        // ER_BAD_FIELD_ERROR; ER_NO_SUCH_TABLE, ER_BAD_DB_ERROR, ER_BAD_TABLE_ERROR.
        match e {
            mysql_async::Error::Server(s) => match s.code {
                1054 => Some(RefreshReason::UnknownColumn),
                1146 | 1049 | 1051 => Some(RefreshReason::MissingTable),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Cached column sets of target tables. `None` means "the target has no such table".
#[derive(Clone)]
pub struct SchemaCache {
    pool: Pool,
    tables: Cache<TableName, Option<Arc<TargetTable>>>,
}

impl SchemaCache {
    pub fn new(pool: Pool, ttl: Duration) -> Self {
        Self {
            pool,
            tables: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub async fn get(&self, table: &TableName) -> Result<Option<Arc<TargetTable>>, SchemaError> {
        let pool = self.pool.clone();
        let name = table.clone();
        self.tables
            .try_get_with(table.clone(), async move { load(&pool, &name).await })
            .await
            .map_err(|source| SchemaError {
                table: table.clone(),
                source,
            })
    }

    /// Drops one table's entry; the next `get` reads the target again.
    pub async fn refresh(&self, table: &TableName, reason: RefreshReason) {
        metrics::REFRESHES
            .with_label_values(&[reason.as_str()])
            .inc();
        tracing::info!(%table, reason = reason.as_str(), "target schema refreshed");
        self.tables.invalidate(table).await;
    }

    /// Drops every table of a schema: used for a source DDL whose statement could not be
    /// read well enough to name the tables it touched.
    pub fn refresh_schema(&self, db: &str) {
        metrics::REFRESHES
            .with_label_values(&[RefreshReason::SourceDdl.as_str()])
            .inc();
        let db = db.to_owned();
        let _ = self.tables.invalidate_entries_if(move |k, _| k.db == db);
    }
}

/// One row of `information_schema.COLUMNS`: name, data type, nullable, character set,
/// collation, extra.
type ColumnRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn load(
    pool: &Pool,
    table: &TableName,
) -> Result<Option<Arc<TargetTable>>, mysql_async::Error> {
    let mut conn = pool.get_conn().await?;
    let columns: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, COLLATION_NAME, \
             EXTRA FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (&table.db, &table.table),
        )
        .await?;
    if columns.is_empty() {
        return Ok(None);
    }
    let keys: Vec<(String, i64, String)> = conn
        .exec(
            "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (&table.db, &table.table),
        )
        .await?;
    let primary_key = keys
        .iter()
        .filter(|(idx, ..)| idx == "PRIMARY")
        .map(|(_, _, col)| col.clone())
        .collect();
    let has_unique_secondary = keys
        .iter()
        .any(|(idx, non_unique, _)| idx != "PRIMARY" && *non_unique == 0);
    Ok(Some(Arc::new(TargetTable {
        name: table.clone(),
        columns: columns
            .into_iter()
            .map(
                |(name, data_type, nullable, charset, collation, extra)| TargetColumn {
                    name,
                    data_type: data_type.to_ascii_lowercase(),
                    nullable: nullable == "YES",
                    charset: charset.and_then(|c| Charset::from_name(&c)),
                    // Only ever written into SQL as a collation name: refused unless it is one.
                    collation: collation
                        .filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')),
                    generated: extra.as_deref().and_then(Generated::from_extra),
                },
            )
            .collect(),
        primary_key,
        has_unique_secondary,
        cascades: cascades(&mut conn, table).await?,
    })))
}

/// The foreign keys that reference `table` with an action, from the target's
/// `information_schema`.
async fn cascades(
    conn: &mut mysql_async::Conn,
    table: &TableName,
) -> Result<Vec<Cascade>, mysql_async::Error> {
    type Row = (String, String, String, String, String, String, String);
    let rows: Vec<Row> = conn
        .exec(
            "SELECT rc.CONSTRAINT_SCHEMA, rc.TABLE_NAME, rc.CONSTRAINT_NAME, rc.DELETE_RULE, \
             rc.UPDATE_RULE, k.COLUMN_NAME, k.REFERENCED_COLUMN_NAME \
             FROM information_schema.REFERENTIAL_CONSTRAINTS rc \
             JOIN information_schema.KEY_COLUMN_USAGE k \
               ON k.CONSTRAINT_SCHEMA = rc.CONSTRAINT_SCHEMA \
              AND k.CONSTRAINT_NAME = rc.CONSTRAINT_NAME AND k.TABLE_NAME = rc.TABLE_NAME \
              AND k.REFERENCED_TABLE_NAME IS NOT NULL \
             WHERE rc.UNIQUE_CONSTRAINT_SCHEMA = ? AND rc.REFERENCED_TABLE_NAME = ? \
             ORDER BY rc.CONSTRAINT_SCHEMA, rc.TABLE_NAME, rc.CONSTRAINT_NAME, k.ORDINAL_POSITION",
            (&table.db, &table.table),
        )
        .await?;
    let mut out: Vec<(String, Cascade)> = Vec::new();
    for (db, child, name, on_delete, on_update, column, referenced) in rows {
        let on_delete = RefAction::from_rule(&on_delete);
        let on_update = RefAction::from_rule(&on_update);
        if on_delete == RefAction::Restrict && on_update == RefAction::Restrict {
            continue;
        }
        let child = TableName::new(db, child);
        match out.last_mut() {
            Some((n, c)) if *n == name && c.child == child => {
                c.child_columns.push(column);
                c.parent_columns.push(referenced);
            }
            _ => out.push((
                name,
                Cascade {
                    child,
                    child_columns: vec![column],
                    parent_columns: vec![referenced],
                    on_delete,
                    on_update,
                },
            )),
        }
    }
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// Quotes a MySQL identifier: backticks around it, embedded backticks doubled.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `db`.`table`, quoted.
pub fn quote_table(name: &TableName) -> String {
    format!("{}.{}", quote_ident(&name.db), quote_ident(&name.table))
}

pub(crate) mod metrics {
    use prometheus::{register_int_counter_vec, IntCounterVec};
    use std::sync::LazyLock;

    pub static REFRESHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register_int_counter_vec!(
            "concord_schema_refreshes_total",
            "Target schema cache entries dropped before their TTL, by reason",
            &["reason"]
        )
        .expect("metric registers once")
    });
    pub static SKIPPED_COLUMNS: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register_int_counter_vec!(
            "concord_skipped_columns_total",
            "Source column values not written because the target table lacks the column",
            &["table", "column"]
        )
        .expect("metric registers once")
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compared_text_takes_the_columns_set_and_collation() {
        let latin1 = Charset::from_name("latin1");
        let col = |cs: &str, coll: &str| TargetColumn {
            name: "k".into(),
            data_type: "varchar".into(),
            nullable: false,
            charset: Charset::from_name(cs),
            collation: Some(coll.into()),
            generated: None,
        };
        assert_eq!(col("latin1", "latin1_bin").compare_placeholder(None), "?");
        assert_eq!(
            col("latin1", "latin1_german1_ci").compare_placeholder(latin1),
            "CONVERT(FROM_BASE64(?) USING latin1) COLLATE latin1_german1_ci"
        );
        assert_eq!(
            col("latin2", "latin2_czech_cs").compare_placeholder(latin1),
            "CONVERT(CONVERT(FROM_BASE64(?) USING latin1) USING latin2) COLLATE latin2_czech_cs"
        );
    }

    #[test]
    fn quoting_doubles_backticks() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_table(&TableName::new("s", "t")), "`s`.`t`");
    }
}
