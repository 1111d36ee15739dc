//! Mismatch records: rows where the target was found to differ from the source, by the
//! verifier or the checksum, with what differed — the work list of recovery and the console.
//!
//! Invariant: a row (table + primary key) has at most one open record. Recording it again
//! while it is open updates that record (kind, columns, position, last seen, occurrences)
//! instead of adding one; the store enforces it with a unique digest that is only set while
//! the record is open.

use crate::{now_ms, text, Backend, ControlError, ControlStore};
use concord_change::{Position, TableName, Value};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

/// How the target row differs from the source row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MismatchKind {
    /// The source has the row, the target does not.
    MissingOnTarget,
    /// The target has a row the source does not.
    ExtraOnTarget,
    /// Both have the row; some shared columns differ.
    ColumnsDiffer,
}

impl MismatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::MissingOnTarget => "missing",
            MismatchKind::ExtraOnTarget => "extra",
            MismatchKind::ColumnsDiffer => "differs",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "missing" => Some(MismatchKind::MissingOnTarget),
            "extra" => Some(MismatchKind::ExtraOnTarget),
            "differs" => Some(MismatchKind::ColumnsDiffer),
            _ => None,
        }
    }
}

/// One differing column. For a missing or extra row every shared column is listed, with
/// `Null` on the side that has no row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnDiff {
    pub column: String,
    pub source: Value,
    pub target: Value,
}

/// Which part of concord found the difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detector {
    Verifier,
    Checksum,
}

impl Detector {
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Verifier => "verifier",
            Detector::Checksum => "checksum",
        }
    }
}

/// A difference to record.
#[derive(Clone, Debug)]
pub struct Mismatch {
    pub table: TableName,
    /// Primary-key columns and values, in key order.
    pub key: Vec<(String, Value)>,
    pub kind: MismatchKind,
    pub columns: Vec<ColumnDiff>,
    /// The change that led to the check (binlog position, or `topic[partition]` + offset);
    /// for the checksum, the source position when the row was read.
    pub position: Position,
    pub detected_by: Detector,
}

/// A mismatch as the store has it.
#[derive(Clone, Debug)]
pub struct MismatchRow {
    pub id: i64,
    pub table: TableName,
    pub key: Vec<(String, Value)>,
    pub kind: MismatchKind,
    pub columns: Vec<ColumnDiff>,
    pub position: Position,
    pub detected_by: String,
    pub state: String,
    pub occurrences: i64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// The state every new record starts in (the recovery service moves it on).
pub const DETECTED: &str = "detected";

fn open_key(table: &TableName, key_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(table.db.as_bytes());
    h.update([0]);
    h.update(table.table.as_bytes());
    h.update([0]);
    h.update(key_json.as_bytes());
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

impl ControlStore {
    /// Records a mismatch, or updates the row's open record if it has one. Returns whether
    /// the record is new (the row's first open record).
    pub async fn record_mismatch(&self, m: &Mismatch) -> Result<bool, ControlError> {
        let key_json = serde_json::to_string(&m.key).expect("values always serialize");
        let columns = serde_json::to_string(&m.columns).expect("values always serialize");
        let upsert = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO mismatches (db, tbl, pk, kind, columns, source_file, source_pos, \
                 detected_by, state, first_seen_ms, last_seen_ms, open_key) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (open_key) DO UPDATE SET kind = excluded.kind, \
                 columns = excluded.columns, source_file = excluded.source_file, \
                 source_pos = excluded.source_pos, last_seen_ms = excluded.last_seen_ms, \
                 occurrences = occurrences + 1"
            }
            Backend::MySql => {
                "INSERT INTO mismatches (db, tbl, pk, kind, columns, source_file, source_pos, \
                 detected_by, state, first_seen_ms, last_seen_ms, open_key) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE kind = VALUES(kind), columns = VALUES(columns), \
                 source_file = VALUES(source_file), source_pos = VALUES(source_pos), \
                 last_seen_ms = VALUES(last_seen_ms), occurrences = occurrences + 1"
            }
        };
        let now = now_ms();
        // The upsert and the read of its count in one transaction: two verifier rounds
        // confirming the same row at once must see 1 and 2, never both 2 (the row would
        // then never be counted as new).
        let open = open_key(&m.table, &key_json);
        let mut tx = self.pool.begin().await?;
        sqlx::query(upsert)
            .bind(&m.table.db)
            .bind(&m.table.table)
            .bind(&key_json)
            .bind(m.kind.as_str())
            .bind(&columns)
            .bind(&*m.position.file)
            .bind(m.position.pos as i64)
            .bind(m.detected_by.as_str())
            .bind(DETECTED)
            .bind(now)
            .bind(now)
            .bind(&open)
            .execute(&mut *tx)
            .await?;
        let occurrences: i64 =
            sqlx::query_scalar("SELECT occurrences FROM mismatches WHERE open_key = ?")
                .bind(&open)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(occurrences == 1)
    }

    /// Mismatch records, newest first, optionally of one table.
    pub async fn mismatches(
        &self,
        table: Option<&TableName>,
        limit: i64,
    ) -> Result<Vec<MismatchRow>, ControlError> {
        let base = "SELECT id, db, tbl, pk, kind, columns, source_file, source_pos, detected_by, \
                    state, occurrences, first_seen_ms, last_seen_ms FROM mismatches";
        let query = match table {
            Some(_) => format!("{base} WHERE db = ? AND tbl = ? ORDER BY id DESC LIMIT ?"),
            None => format!("{base} ORDER BY id DESC LIMIT ?"),
        };
        let mut q = sqlx::query(&query);
        if let Some(t) = table {
            q = q.bind(&t.db).bind(&t.table);
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(mismatch_row).collect()
    }

    /// Open records per (table, state), for the `concord_open_mismatches` gauge.
    pub async fn open_mismatch_counts(
        &self,
    ) -> Result<Vec<(TableName, String, i64)>, ControlError> {
        let rows = sqlx::query(
            "SELECT db, tbl, state, COUNT(*) FROM mismatches WHERE open_key IS NOT NULL \
             GROUP BY db, tbl, state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    TableName::new(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?),
                    r.try_get::<String, _>(2)?,
                    r.try_get::<i64, _>(3)?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ControlError::from)
    }
}

fn mismatch_row(r: &sqlx::any::AnyRow) -> Result<MismatchRow, ControlError> {
    let bad = |what: &str, e: serde_json::Error| {
        ControlError::Query(sqlx::Error::Decode(
            format!("mismatch {what} is not valid JSON: {e}").into(),
        ))
    };
    let kind: String = r.try_get(4)?;
    Ok(MismatchRow {
        id: r.try_get(0)?,
        table: TableName::new(r.try_get::<String, _>(1)?, r.try_get::<String, _>(2)?),
        key: serde_json::from_str(&text(r, 3)?).map_err(|e| bad("key", e))?,
        kind: MismatchKind::parse(&kind).ok_or_else(|| {
            ControlError::Query(sqlx::Error::Decode(
                format!("unknown mismatch kind {kind:?}").into(),
            ))
        })?,
        columns: serde_json::from_str(&text(r, 5)?).map_err(|e| bad("columns", e))?,
        position: Position::new(r.try_get::<String, _>(6)?, r.try_get::<i64, _>(7)? as u64),
        detected_by: r.try_get(8)?,
        state: r.try_get(9)?,
        occurrences: r.try_get(10)?,
        first_seen_ms: r.try_get(11)?,
        last_seen_ms: r.try_get(12)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch(id: i64, kind: MismatchKind) -> Mismatch {
        Mismatch {
            table: TableName::new("shop", "orders"),
            key: vec![("id".into(), Value::Int(id))],
            kind,
            columns: vec![ColumnDiff {
                column: "total".into(),
                source: Value::Decimal("10.00".into()),
                target: Value::Decimal("9.00".into()),
            }],
            position: Position::new("mysql-bin.000001", 400),
            detected_by: Detector::Verifier,
        }
    }

    #[tokio::test]
    async fn a_row_that_keeps_differing_is_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        let mut new = Vec::new();
        for m in [
            mismatch(1, MismatchKind::ColumnsDiffer),
            mismatch(1, MismatchKind::MissingOnTarget),
            mismatch(2, MismatchKind::ColumnsDiffer),
        ] {
            new.push(store.record_mismatch(&m).await.unwrap());
        }
        assert_eq!(
            new,
            vec![true, false, true],
            "only a row's first record is new"
        );
        let rows = store.mismatches(None, 10).await.unwrap();
        assert_eq!(rows.len(), 2);
        let one = rows.iter().find(|r| r.key[0].1 == Value::Int(1)).unwrap();
        assert_eq!(one.occurrences, 2);
        assert_eq!(one.kind, MismatchKind::MissingOnTarget);
        assert_eq!(one.state, DETECTED);
        assert_eq!(one.columns[0].source, Value::Decimal("10.00".into()));
        let counts = store.open_mismatch_counts().await.unwrap();
        assert_eq!(
            counts,
            vec![(TableName::new("shop", "orders"), DETECTED.to_owned(), 2)]
        );
    }

    #[tokio::test]
    async fn the_same_row_recorded_at_once_is_new_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        for round in 0..5 {
            let m = mismatch(100 + round, MismatchKind::ColumnsDiffer);
            let calls: Vec<_> = (0..6)
                .map(|_| {
                    let (store, m) = (store.clone(), m.clone());
                    tokio::spawn(async move { store.record_mismatch(&m).await.unwrap() })
                })
                .collect();
            let mut new = Vec::new();
            for call in calls {
                new.push(call.await.unwrap());
            }
            assert_eq!(
                new.iter().filter(|n| **n).count(),
                1,
                "row {round}: one call saw its record created: {new:?}"
            );
        }
    }
}
