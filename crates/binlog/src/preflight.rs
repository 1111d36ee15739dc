//! What every role that reads the binlog checks before it starts, and where it starts.

use crate::{check_settings, current_position, earliest_position, BinlogError, ServerInfo};
use concord_change::{Position, TableName};
use concord_config::{StartFrom, TableFilter};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// Checks the source's settings, then refuses included tables without a primary key:
/// updates and deletes need a key to find their row on the target, so such a table would
/// silently diverge. Warns about tables skipped only because their names look like an
/// online schema change tool's helper tables: a real table so named is not replicated
/// unless `tables.include` names it exactly.
pub async fn preflight(
    source: &mut Conn,
    filter: &TableFilter,
    skip_schema: &str,
) -> Result<ServerInfo, BinlogError> {
    let server = check_settings(source).await?;
    warn_skipped_helpers(source, filter).await?;
    let rows: Vec<(String, String)> = source
        .query(
            "SELECT t.TABLE_SCHEMA, t.TABLE_NAME FROM information_schema.TABLES t \
             WHERE t.TABLE_TYPE = 'BASE TABLE' AND NOT EXISTS ( \
               SELECT 1 FROM information_schema.TABLE_CONSTRAINTS c \
               WHERE c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME \
                 AND c.CONSTRAINT_TYPE = 'PRIMARY KEY')",
        )
        .await
        .map_err(|source| BinlogError::Connection {
            position: Position::default(),
            source,
        })?;
    let keyless: Vec<String> = rows
        .into_iter()
        .map(|(db, t)| TableName::new(db, t))
        .filter(|t| t.db != skip_schema && filter.matches(t))
        .map(|t| t.to_string())
        .collect();
    if keyless.is_empty() {
        Ok(server)
    } else {
        Err(BinlogError::KeylessTables(keyless))
    }
}

async fn warn_skipped_helpers(source: &mut Conn, filter: &TableFilter) -> Result<(), BinlogError> {
    let rows: Vec<(String, String)> = source
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_NAME LIKE '\\_%'",
        )
        .await
        .map_err(|source| BinlogError::Connection {
            position: Position::default(),
            source,
        })?;
    let skipped: Vec<String> = rows
        .into_iter()
        .map(|(db, t)| TableName::new(db, t))
        .filter(|t| filter.skipped_as_osc_helper(t))
        .map(|t| t.to_string())
        .collect();
    if !skipped.is_empty() {
        tracing::warn!(tables = %skipped.join(", "),
            "not replicated: these tables are named like the helper tables of an online schema \
             change tool (pt-online-schema-change, gh-ost); if they are real tables, name each \
             in tables.include exactly, or set tables.online_schema_change = \"off\"");
    }
    Ok(())
}

/// Where reading starts when there is no checkpoint.
pub async fn start_position(source: &mut Conn, start: &StartFrom) -> Result<Position, BinlogError> {
    let conn_err = |source| BinlogError::Connection {
        position: Position::default(),
        source,
    };
    match start {
        StartFrom::Current => current_position(source).await.map_err(conn_err),
        StartFrom::Earliest => earliest_position(source).await.map_err(conn_err),
        StartFrom::At(p) => Ok(p.clone()),
    }
}
