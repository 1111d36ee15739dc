//! Progress of `concord checksum`, one run per table, so that an interrupted run resumes
//! after its last finished chunk instead of starting over.
//!
//! Invariant: `last_key` is the primary key of the last row of a chunk whose comparison —
//! including recording its mismatches — is finished.

use crate::{now_ms, text, ControlError, ControlStore};
use concord_change::TableName;
use sqlx::{Row, ValueRef};

/// One table's checksum run and its totals so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChecksumRun {
    pub id: i64,
    pub table: TableName,
    /// The key (JSON, the change model's form) the next chunk starts after; `None` at the
    /// start of the table.
    pub last_key: Option<String>,
    pub chunks: i64,
    pub rows: i64,
    pub chunks_differ: i64,
    pub mismatches: i64,
}

const RUNNING: &str = "running";

impl ControlStore {
    /// The table's unfinished run, or a new one. With `restart`, an unfinished run is
    /// marked abandoned and a new one starts at the beginning of the table.
    pub async fn checksum_run(
        &self,
        table: &TableName,
        restart: bool,
    ) -> Result<ChecksumRun, ControlError> {
        self.checksum_run_in(table, "", restart).await
    }

    /// As [`ControlStore::checksum_run`], for the runs of `scope` (`""`: whole-table runs
    /// of `concord checksum`; `batch:<id>`: a batch recovery job's range).
    pub async fn checksum_run_in(
        &self,
        table: &TableName,
        scope: &str,
        restart: bool,
    ) -> Result<ChecksumRun, ControlError> {
        let open = sqlx::query(
            "SELECT id, last_key, chunks, rows_checked, chunks_differ, mismatches FROM checksum_runs \
             WHERE db = ? AND tbl = ? AND state = ? AND scope = ? ORDER BY id DESC LIMIT 1",
        )
        .bind(&table.db)
        .bind(&table.table)
        .bind(RUNNING)
        .bind(scope)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = open {
            let id: i64 = r.try_get(0)?;
            if !restart {
                let last_key = if r.try_get_raw(1)?.is_null() {
                    None
                } else {
                    Some(text(&r, 1)?)
                };
                return Ok(ChecksumRun {
                    id,
                    table: table.clone(),
                    last_key,
                    chunks: r.try_get(2)?,
                    rows: r.try_get(3)?,
                    chunks_differ: r.try_get(4)?,
                    mismatches: r.try_get(5)?,
                });
            }
            sqlx::query(
                "UPDATE checksum_runs SET state = 'abandoned', updated_ms = ? WHERE id = ?",
            )
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        }
        let now = now_ms();
        sqlx::query(
            "INSERT INTO checksum_runs (db, tbl, state, started_ms, updated_ms, scope) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&table.db)
        .bind(&table.table)
        .bind(RUNNING)
        .bind(now)
        .bind(now)
        .bind(scope)
        .execute(&self.pool)
        .await?;
        let id: i64 = sqlx::query(
            "SELECT id FROM checksum_runs WHERE db = ? AND tbl = ? AND state = ? AND scope = ? \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(&table.db)
        .bind(&table.table)
        .bind(RUNNING)
        .bind(scope)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(ChecksumRun {
            id,
            table: table.clone(),
            last_key: None,
            chunks: 0,
            rows: 0,
            chunks_differ: 0,
            mismatches: 0,
        })
    }

    /// Saves the run's totals and where the next chunk starts.
    pub async fn save_checksum_progress(&self, run: &ChecksumRun) -> Result<(), ControlError> {
        sqlx::query(
            "UPDATE checksum_runs SET last_key = ?, chunks = ?, rows_checked = ?, \
             chunks_differ = ?, mismatches = ?, updated_ms = ? WHERE id = ?",
        )
        .bind(run.last_key.as_deref())
        .bind(run.chunks)
        .bind(run.rows)
        .bind(run.chunks_differ)
        .bind(run.mismatches)
        .bind(now_ms())
        .bind(run.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn finish_checksum(&self, run: &ChecksumRun) -> Result<(), ControlError> {
        self.save_checksum_progress(run).await?;
        sqlx::query("UPDATE checksum_runs SET state = 'done', updated_ms = ? WHERE id = ?")
            .bind(now_ms())
            .bind(run.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unfinished_run_resumes_and_a_finished_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        let t = TableName::new("shop", "orders");
        let mut run = store.checksum_run(&t, false).await.unwrap();
        assert_eq!(run.last_key, None);
        run.last_key = Some(r#"[["id",{"Int":500}]]"#.into());
        run.chunks = 3;
        run.rows = 500;
        store.save_checksum_progress(&run).await.unwrap();

        let resumed = store.checksum_run(&t, false).await.unwrap();
        assert_eq!(resumed, run);

        let restarted = store.checksum_run(&t, true).await.unwrap();
        assert_ne!(restarted.id, run.id);
        assert_eq!(restarted.last_key, None);

        store.finish_checksum(&restarted).await.unwrap();
        let fresh = store.checksum_run(&t, false).await.unwrap();
        assert_ne!(fresh.id, restarted.id);
        assert_eq!(fresh.chunks, 0);
    }
}
