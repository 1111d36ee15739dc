//! The source side of a snapshot: whether the server can tell a consistent snapshot's
//! binlog position, where the next chunks end, and reading one chunk inside its own
//! consistent snapshot.
//!
//! Invariant: a chunk's rows and its position come from the same `START TRANSACTION WITH
//! CONSISTENT SNAPSHOT`: the rows are the table exactly as the binlog stands at that
//! position (MariaDB's `binlog_snapshot_file`/`binlog_snapshot_position`).

use crate::error::SnapshotError;
use crate::notes::{ChunkSpec, Read, Scope};
use crate::shape::Shape;
use concord_change::{Position, Value};
use concord_chunking::KeyRange;
use concord_compare::rows::{fetch_by, stored_values};
use concord_compare::sql_value::from_sql;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row};

/// Refuses a source that cannot tell which binlog position a consistent snapshot has.
pub async fn check(conn: &mut Conn) -> Result<(), SnapshotError> {
    let source = |what| {
        move |e| SnapshotError::Source {
            table: concord_change::TableName::new("", ""),
            what,
            source: Box::new(e),
        }
    };
    let position: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'binlog_snapshot_position'")
        .await
        .map_err(source("reading binlog_snapshot_position"))?;
    if position.is_none() {
        return Err(SnapshotError::Unsupported(
            "the server has no binlog_snapshot_position status (MySQL): a chunk's rows could \
             not be lined up with the binlog without a global read lock; snapshots need a \
             MariaDB source"
                .into(),
        ));
    }
    let order: Option<(String, String)> = conn
        .query_first("SHOW GLOBAL VARIABLES LIKE 'binlog_order_commits'")
        .await
        .map_err(source("reading binlog_order_commits"))?;
    if order.is_some_and(|(_, v)| v.eq_ignore_ascii_case("OFF")) {
        return Err(SnapshotError::Unsupported(
            "binlog_order_commits is OFF: commits may become visible in another order than \
             the binlog's, so a consistent snapshot has no binlog position; set it ON"
                .into(),
        ));
    }
    Ok(())
}

/// The ranges of the next chunks (at most `count`) after `from` — `from.after` is where the
/// previous chunk ended — each of about `rows` rows; the last one is left open above
/// (bounded by `from.until`) when the range has no more than that.
pub async fn next_ranges(
    conn: &mut Conn,
    shape: &Shape,
    from: &KeyRange,
    rows: u64,
    count: usize,
) -> Result<Vec<KeyRange>, SnapshotError> {
    let mut out = Vec::with_capacity(count);
    let mut range = from.clone();
    while out.len() < count {
        let (sql, params) = shape.walk.boundary(&range, rows);
        let end: Option<Row> = conn
            .exec_first(sql, Params::Positional(params))
            .await
            .map_err(|source| SnapshotError::Source {
                table: shape.name.clone(),
                what: "finding where a chunk ends",
                source: Box::new(source),
            })?;
        let through = end.map(|row| key_values(row, shape));
        let chunk = KeyRange {
            through: through.clone(),
            ..range.clone()
        };
        out.push(chunk);
        match through {
            Some(t) => range.after = Some(t),
            None => break,
        }
    }
    Ok(out)
}

/// A key read with the walk's key list, as values of the key columns' types.
fn key_values(row: Row, shape: &Shape) -> Vec<Value> {
    row.unwrap()
        .into_iter()
        .zip(shape.key_types())
        .map(|(v, ty)| from_sql(v, &ty))
        .collect()
}

/// Reads a chunk inside its own consistent snapshot.
pub async fn read(conn: &mut Conn, spec: &ChunkSpec) -> Result<Read, SnapshotError> {
    let shape = &spec.shape;
    let fail = |what| {
        move |source| SnapshotError::Source {
            table: shape.name.clone(),
            what,
            source: Box::new(source),
        }
    };
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(fail("setting the isolation level"))?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(fail("starting a consistent snapshot"))?;
    let read = async {
        let status: Vec<(String, String)> = conn
            .query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            .await
            .map_err(fail("reading the snapshot's binlog position"))?;
        let at = snapshot_position(&status).ok_or_else(|| {
            SnapshotError::Unsupported(format!(
                "the server reported no binlog position for a consistent snapshot: {status:?}"
            ))
        })?;
        let rows = match &spec.scope {
            Scope::Range(range) => {
                let (sql, params) = shape.walk.rows(&shape.select, range, None);
                let rows: Vec<Row> = conn
                    .exec(sql, Params::Positional(params))
                    .await
                    .map_err(fail("reading a chunk"))?;
                rows.into_iter()
                    .map(|r| stored_values(r, &shape.source))
                    .collect()
            }
            Scope::Keys(keys) => fetch_by(conn, &shape.source, &shape.source.primary_key, keys)
                .await
                .map_err(fail("reading listed keys"))?
                .into_values()
                .collect(),
        };
        // A DDL committed before the rows were read is seen here (one after it waits for
        // this transaction's end): rows read under another definition are not used.
        if !shape.fingerprint.is_empty() {
            let now = crate::shape::fingerprint(conn, &shape.name)
                .await
                .map_err(fail("reading the table's definition"))?;
            if now != shape.fingerprint {
                return Err(SnapshotError::TableChanged {
                    table: shape.name.clone(),
                    why: "its columns differ from when the job described it".into(),
                });
            }
        }
        Ok(Read { rows, at })
    }
    .await;
    // A read-only transaction: ending it cannot lose anything; a failure to end it shows
    // on the connection's next use.
    let _ = conn.query_drop("COMMIT").await;
    read
}

fn snapshot_position(status: &[(String, String)]) -> Option<Position> {
    let get = |name: &str| {
        status
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let file = get("binlog_snapshot_file").filter(|f| !f.is_empty())?;
    let pos = get("binlog_snapshot_position")?.parse().ok()?;
    Some(Position::new(file, pos))
}

/// The source's estimate of a table's rows (`information_schema.TABLES.TABLE_ROWS`).
pub async fn estimate(conn: &mut Conn, shape: &Shape) -> u64 {
    estimate_table(conn, &shape.name).await
}

/// As [`estimate`], by name.
pub async fn estimate_table(conn: &mut Conn, table: &concord_change::TableName) -> u64 {
    conn.exec_first::<Option<u64>, _, _>(
        "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
        (&table.db, &table.table),
    )
    .await
    .ok()
    .flatten()
    .flatten()
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_position_comes_from_the_two_status_variables() {
        let status = vec![
            (
                "binlog_snapshot_file".to_owned(),
                "mysql-bin.000007".to_owned(),
            ),
            ("binlog_snapshot_position".to_owned(), "1234".to_owned()),
        ];
        assert_eq!(
            snapshot_position(&status),
            Some(Position::new("mysql-bin.000007", 1234))
        );
        assert_eq!(snapshot_position(&status[1..]), None);
    }
}
