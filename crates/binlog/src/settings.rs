//! Start-up checks of the source's binlog settings, and where its binlog currently ends.

use crate::BinlogError;
use concord_change::Position;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use std::collections::HashMap;

/// What the reader learned about the source while checking it.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    pub version: String,
    pub is_mariadb: bool,
}

/// Refuses a source whose settings would make replication lossy: without ROW format and
/// FULL images there is nothing to apply, and below FULL row metadata the binlog carries no
/// column names and unsigned integers decode as negative numbers.
pub async fn check_settings(conn: &mut Conn) -> Result<ServerInfo, BinlogError> {
    let conn_err = |source| BinlogError::Connection {
        position: Position::default(),
        source,
    };
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(conn_err)?
        .unwrap_or_default();
    let rows: Vec<(String, String)> = conn
        .query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
             ('log_bin','binlog_format','binlog_row_image','binlog_row_metadata')",
        )
        .await
        .map_err(conn_err)?;
    let vars: HashMap<String, String> = rows
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_ascii_uppercase()))
        .collect();
    let get = |k: &str| {
        vars.get(k)
            .cloned()
            .unwrap_or_else(|| "(not supported)".into())
    };
    let require = |setting: &'static str, required: &'static str, hint: &'static str| {
        let actual = get(setting);
        if actual == required {
            Ok(())
        } else {
            Err(BinlogError::Setting {
                setting,
                actual,
                required,
                hint,
            })
        }
    };
    require(
        "log_bin",
        "ON",
        "start the source with log_bin (e.g. log_bin=mysql-bin)",
    )?;
    require(
        "binlog_format",
        "ROW",
        "SET GLOBAL binlog_format='ROW' and set it in the server config",
    )?;
    require(
        "binlog_row_image",
        "FULL",
        "SET GLOBAL binlog_row_image='FULL' and set it in the server config",
    )?;
    require(
        "binlog_row_metadata",
        "FULL",
        "SET GLOBAL binlog_row_metadata='FULL' (MariaDB 10.5+, MySQL 8.0+) and set it in the server config",
    )?;
    Ok(ServerInfo {
        is_mariadb: version.contains("MariaDB"),
        version,
    })
}

/// The position the next write on the source will be logged at.
pub async fn current_position(conn: &mut Conn) -> Result<Position, mysql_async::Error> {
    // MySQL 8.4 removed SHOW MASTER STATUS; MariaDB 10.11 does not know the new name.
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        Err(_) => conn.query_first("SHOW BINARY LOG STATUS").await?,
    };
    let row = row.ok_or_else(|| {
        mysql_async::Error::Other("SHOW MASTER STATUS returned nothing: is log_bin on?".into())
    })?;
    let file: String = row.get(0).unwrap_or_default();
    let pos: u64 = row.get(1).unwrap_or(4);
    Ok(Position::new(file, pos))
}

/// The start of the oldest binlog file the source still has.
pub async fn earliest_position(conn: &mut Conn) -> Result<Position, mysql_async::Error> {
    let row: Option<mysql_async::Row> = conn.query_first("SHOW BINARY LOGS").await?;
    let file: String = row
        .and_then(|r| r.get(0))
        .ok_or_else(|| mysql_async::Error::Other("SHOW BINARY LOGS returned nothing".into()))?;
    Ok(Position::new(file, 4))
}
