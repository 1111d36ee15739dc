//! What every role that reads the binlog checks before it starts, and where it starts.

use crate::{check_settings, current_position, earliest_position, BinlogError, ServerInfo};
use concord_change::{Position, TableName};
use concord_config::{StartFrom, TableFilter};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// Checks the source's settings, then refuses included tables without a primary key:
/// updates and deletes need a key to find their row on the target, so such a table would
/// silently diverge.
pub async fn preflight(
    source: &mut Conn,
    filter: &TableFilter,
    skip_schema: &str,
) -> Result<ServerInfo, BinlogError> {
    let server = check_settings(source).await?;
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
