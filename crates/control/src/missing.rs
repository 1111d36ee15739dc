//! Rows of replicated tables the target does not have. A table missing on the target would
//! otherwise make a failed event of every row (a tool's shadow table, a table created on
//! the source first): instead each table has one record per episode — the rows' count and
//! the source position range — which is what a re-sync of the table needs once it exists.
//!
//! Invariant: the position range always covers every row recorded, and the count is never
//! below the true one. In one ordered stream (direct mode) a batch retried whole is not
//! counted again (it does not reach past the recorded last position); a retry that reaches
//! further counts all its rows, so overlaps may be counted twice.

use crate::{now_ms, text, Backend, ControlError, ControlStore};
use concord_change::{Position, TableName};
use sqlx::Row;

/// Rows of one table that one target transaction could not write: the table was missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingRows {
    pub table: TableName,
    pub target: TableName,
    pub first: Position,
    pub last: Position,
    pub rows: u64,
}

/// A missing-table record as the store has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingTable {
    pub table: TableName,
    pub target: TableName,
    pub first: Position,
    pub last: Position,
    pub rows: u64,
    /// `open` until an operator (or recovery) re-synced the table and resolved it.
    pub status: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// Sorts as positions do: the file name, then the offset zero-padded.
fn key(p: &Position) -> String {
    format!("{}:{:020}", p.file, p.pos)
}

impl ControlStore {
    /// Adds `m` to its table's open record, or opens one; the record's range grows to
    /// cover `m`'s. With `ordered` (one binlog stream, read in order), a range that ends
    /// no later than the recorded one is a replay and not counted again. Without (kafka
    /// mode: partitions interleave their positions), every call counts. Either way the
    /// count is at least the true one.
    pub async fn record_missing(&self, m: &MissingRows, ordered: bool) -> Result<(), ControlError> {
        // MySQL applies the assignments in order, each seeing the ones before: every
        // column is set before the keys and the status that the others test.
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO missing_tables (db, tbl, target_db, target_tbl, first_file, \
                 first_pos, first_key, last_file, last_pos, last_key, row_count, \
                 first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (db, tbl) DO UPDATE SET \
                 row_count = CASE WHEN status <> 'open' THEN excluded.row_count \
                   WHEN ? OR excluded.last_key > last_key THEN row_count + excluded.row_count \
                   ELSE row_count END, \
                 first_file = CASE WHEN status <> 'open' OR excluded.first_key < first_key \
                   THEN excluded.first_file ELSE first_file END, \
                 first_pos = CASE WHEN status <> 'open' OR excluded.first_key < first_key \
                   THEN excluded.first_pos ELSE first_pos END, \
                 last_file = CASE WHEN status <> 'open' OR excluded.last_key > last_key \
                   THEN excluded.last_file ELSE last_file END, \
                 last_pos = CASE WHEN status <> 'open' OR excluded.last_key > last_key \
                   THEN excluded.last_pos ELSE last_pos END, \
                 first_key = CASE WHEN status <> 'open' OR excluded.first_key < first_key \
                   THEN excluded.first_key ELSE first_key END, \
                 last_key = CASE WHEN status <> 'open' OR excluded.last_key > last_key \
                   THEN excluded.last_key ELSE last_key END, \
                 status = 'open', last_seen_ms = excluded.last_seen_ms"
            }
            Backend::MySql => {
                "INSERT INTO missing_tables (db, tbl, target_db, target_tbl, first_file, \
                 first_pos, first_key, last_file, last_pos, last_key, row_count, \
                 first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE \
                 row_count = CASE WHEN status <> 'open' THEN VALUES(row_count) \
                   WHEN ? OR VALUES(last_key) > last_key THEN row_count + VALUES(row_count) \
                   ELSE row_count END, \
                 first_file = IF(status <> 'open' OR VALUES(first_key) < first_key, \
                   VALUES(first_file), first_file), \
                 first_pos = IF(status <> 'open' OR VALUES(first_key) < first_key, \
                   VALUES(first_pos), first_pos), \
                 last_file = IF(status <> 'open' OR VALUES(last_key) > last_key, \
                   VALUES(last_file), last_file), \
                 last_pos = IF(status <> 'open' OR VALUES(last_key) > last_key, \
                   VALUES(last_pos), last_pos), \
                 first_key = IF(status <> 'open' OR VALUES(first_key) < first_key, \
                   VALUES(first_key), first_key), \
                 last_key = IF(status <> 'open' OR VALUES(last_key) > last_key, \
                   VALUES(last_key), last_key), \
                 status = 'open', last_seen_ms = VALUES(last_seen_ms)"
            }
        };
        let now = now_ms();
        sqlx::query(sql)
            .bind(&m.table.db)
            .bind(&m.table.table)
            .bind(&m.target.db)
            .bind(&m.target.table)
            .bind(m.first.file.to_string())
            .bind(m.first.pos as i64)
            .bind(key(&m.first))
            .bind(m.last.file.to_string())
            .bind(m.last.pos as i64)
            .bind(key(&m.last))
            .bind(m.rows as i64)
            .bind(now)
            .bind(now)
            .bind(i64::from(!ordered))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every missing-table record, open ones first.
    pub async fn missing_tables(&self) -> Result<Vec<MissingTable>, ControlError> {
        let rows = sqlx::query(
            "SELECT db, tbl, target_db, target_tbl, first_file, first_pos, last_file, \
             last_pos, row_count, status, first_seen_ms, last_seen_ms FROM missing_tables \
             ORDER BY status <> 'open', db, tbl",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MissingTable {
                    table: TableName::new(text(r, 0)?, text(r, 1)?),
                    target: TableName::new(text(r, 2)?, text(r, 3)?),
                    first: Position::new(text(r, 4)?, r.try_get::<i64, _>(5)? as u64),
                    last: Position::new(text(r, 6)?, r.try_get::<i64, _>(7)? as u64),
                    rows: r.try_get::<i64, _>(8)? as u64,
                    status: text(r, 9)?,
                    first_seen_ms: r.try_get(10)?,
                    last_seen_ms: r.try_get(11)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ControlError::Query)
    }

    /// Marks a table's record resolved (it was re-synced); its next missing rows open a
    /// new episode. Returns whether an open record was there.
    pub async fn resolve_missing(&self, table: &TableName) -> Result<bool, ControlError> {
        let done = sqlx::query(
            "UPDATE missing_tables SET status = 'resolved' WHERE db = ? AND tbl = ? \
             AND status = 'open'",
        )
        .bind(&table.db)
        .bind(&table.table)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(first: u64, last: u64, rows: u64) -> MissingRows {
        MissingRows {
            table: TableName::new("shop", "_orders_new"),
            target: TableName::new("shop", "_orders_new"),
            first: Position::new("mysql-bin.000002", first),
            last: Position::new("mysql-bin.000002", last),
            rows,
        }
    }

    #[tokio::test]
    async fn one_record_per_table_counted_once_per_range() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        store
            .record_missing(&rows(100, 900, 50), true)
            .await
            .unwrap();
        store
            .record_missing(&rows(1000, 99_000, 70), true)
            .await
            .unwrap();
        // The second batch again (a retry): not counted again.
        store
            .record_missing(&rows(1000, 99_000, 70), true)
            .await
            .unwrap();
        let got = store.missing_tables().await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (
                got[0].rows,
                got[0].first.pos,
                got[0].last.pos,
                got[0].status.as_str()
            ),
            (120, 100, 99_000, "open"),
            "positions compare as numbers, not text"
        );

        assert!(store.resolve_missing(&got[0].table).await.unwrap());
        assert!(!store.resolve_missing(&got[0].table).await.unwrap());
        store
            .record_missing(&rows(200_000, 200_500, 3), true)
            .await
            .unwrap();
        let got = store.missing_tables().await.unwrap();
        assert_eq!(
            (got[0].rows, got[0].first.pos, got[0].status.as_str()),
            (3, 200_000, "open"),
            "a new episode after the re-sync"
        );
        // Unordered (kafka partitions): an earlier range widens the record and counts.
        store
            .record_missing(&rows(150_000, 150_100, 4), false)
            .await
            .unwrap();
        let got = store.missing_tables().await.unwrap();
        assert_eq!(
            (got[0].rows, got[0].first.pos, got[0].last.pos),
            (7, 150_000, 200_500)
        );
    }
}
