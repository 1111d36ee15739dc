//! Start-up checks of the source's binlog settings, and where its binlog currently ends.

use crate::decode::Collations;
use crate::BinlogError;
use concord_change::{Charset, Position};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use std::collections::HashMap;
use std::sync::Arc;

/// What the reader learned about the source while checking it.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    pub version: String,
    pub is_mariadb: bool,
    /// The character set of each collation id (table maps name collations by id).
    pub collations: Arc<Collations>,
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
             ('log_bin','binlog_format','binlog_row_image','binlog_row_metadata', \
              'log_bin_compress','binlog_transaction_compression')",
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
    // Compressed events cannot be decoded; refused here rather than met mid-stream.
    let off = |setting: &'static str, hint: &'static str| match vars.get(setting) {
        Some(v) if v != "OFF" => Err(BinlogError::Setting {
            setting,
            actual: v.clone(),
            required: "OFF",
            hint,
        }),
        _ => Ok(()),
    };
    off(
        "log_bin_compress",
        "concord cannot decode MariaDB's compressed binlog events: SET GLOBAL log_bin_compress=OFF \
         and set it in the server config",
    )?;
    off(
        "binlog_transaction_compression",
        "concord cannot decode MySQL's compressed transactions: SET GLOBAL \
         binlog_transaction_compression=OFF and set it in the server config",
    )?;
    Ok(ServerInfo {
        is_mariadb: version.contains("MariaDB"),
        version,
        collations: Arc::new(collations(conn).await.map_err(conn_err)?),
    })
}

/// Every collation id the source knows, with its character set. Ids of sets concord does
/// not know by name are left out (their columns are then refused, not guessed).
async fn collations(conn: &mut Conn) -> Result<Collations, mysql_async::Error> {
    // MariaDB 10.10+ also lists collations without an id of their own here (the UCA 14.0.0
    // ones, which apply to several character sets).
    let rows: Vec<(u64, String)> = conn
        .query(
            "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS \
             WHERE ID IS NOT NULL AND CHARACTER_SET_NAME IS NOT NULL",
        )
        .await?;
    let mut all: Collations = rows
        .into_iter()
        .filter_map(|(id, charset)| Some((u16::try_from(id).ok()?, Charset::from_name(&charset)?)))
        .collect();
    // MariaDB 10.10+ lists those per character set, with their ids, here (MySQL has no
    // such column: then there is nothing to add).
    let applicable: Result<Vec<(u64, String)>, _> = conn
        .query(
            "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATION_CHARACTER_SET_APPLICABILITY \
             WHERE ID IS NOT NULL",
        )
        .await;
    for (id, charset) in applicable.unwrap_or_default() {
        if let (Ok(id), Some(cs)) = (u16::try_from(id), Charset::from_name(&charset)) {
            all.entry(id).or_insert(cs);
        }
    }
    Ok(all)
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
