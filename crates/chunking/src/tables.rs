//! Which source tables a config replicates.

use concord_change::TableName;
use concord_config::TableFilter;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// The source's base tables that `filter` includes, but for `skip_schema` (concord's own
/// schema: the target's checkpoint schema, should the source have one of that name).
pub async fn replicated_tables(
    conn: &mut Conn,
    filter: &TableFilter,
    skip_schema: &str,
) -> Result<Vec<TableName>, mysql_async::Error> {
    let rows: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys') \
             ORDER BY TABLE_SCHEMA, TABLE_NAME",
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(db, t)| TableName::new(db, t))
        .filter(|t| t.db != skip_schema && filter.matches(t))
        .collect())
}
