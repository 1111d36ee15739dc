//! `concord recovery batch` jobs: one table's key range re-checked and repaired, resumable
//! after a crash — the job's range check is a checksum run of scope `batch:<id>`, its
//! repairs are mismatch records, both kept here.
//!
//! Invariant: a job that did not finish is found again by the same request (table, range,
//! dry run) and resumed, never started twice.

use crate::{now_ms, ControlError, ControlStore};
use concord_change::TableName;
use sqlx::Row;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchJob {
    pub id: i64,
    pub table: TableName,
    /// The range's ends as given (JSON of key values), `None`: open.
    pub pk_from: Option<String>,
    pub pk_to: Option<String>,
    pub dry_run: bool,
    pub state: String,
    pub checked: i64,
    pub differing: i64,
    pub repaired: i64,
    pub superseded: i64,
    pub failed: i64,
    pub started_ms: i64,
}

impl BatchJob {
    /// The scope of the job's checksum run.
    pub fn scope(&self) -> String {
        format!("batch:{}", self.id)
    }
}

const RUNNING: &str = "running";

impl ControlStore {
    /// The unfinished job for this request, or a new one; `resumed` says which.
    pub async fn start_batch(
        &self,
        table: &TableName,
        pk_from: Option<&str>,
        pk_to: Option<&str>,
        dry_run: bool,
        actor: &str,
    ) -> Result<(BatchJob, bool), ControlError> {
        let find = || {
            sqlx::query(
                "SELECT id, checked, differing, repaired, superseded, failed, started_ms \
                 FROM batch_jobs WHERE db = ? AND tbl = ? AND state = ? AND dry_run = ? \
                 AND COALESCE(pk_from, '') = ? AND COALESCE(pk_to, '') = ? \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(&table.db)
            .bind(&table.table)
            .bind(RUNNING)
            .bind(i64::from(dry_run))
            .bind(pk_from.unwrap_or(""))
            .bind(pk_to.unwrap_or(""))
        };
        let job = |r: &sqlx::any::AnyRow| -> Result<BatchJob, sqlx::Error> {
            Ok(BatchJob {
                id: r.try_get(0)?,
                table: table.clone(),
                pk_from: pk_from.map(str::to_owned),
                pk_to: pk_to.map(str::to_owned),
                dry_run,
                state: RUNNING.into(),
                checked: r.try_get(1)?,
                differing: r.try_get(2)?,
                repaired: r.try_get(3)?,
                superseded: r.try_get(4)?,
                failed: r.try_get(5)?,
                started_ms: r.try_get(6)?,
            })
        };
        if let Some(r) = find().fetch_optional(&self.pool).await? {
            return Ok((job(&r)?, true));
        }
        let now = now_ms();
        sqlx::query(
            "INSERT INTO batch_jobs (db, tbl, pk_from, pk_to, dry_run, state, actor, \
             started_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&table.db)
        .bind(&table.table)
        .bind(pk_from)
        .bind(pk_to)
        .bind(i64::from(dry_run))
        .bind(RUNNING)
        .bind(actor)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let r = find().fetch_one(&self.pool).await?;
        Ok((job(&r)?, false))
    }

    /// Saves the job's counts; `state` other than running ends it (`done`, `failed`,
    /// `cancelled`), with `error` saying why when it failed.
    pub async fn save_batch(
        &self,
        job: &BatchJob,
        state: &str,
        error: Option<&str>,
    ) -> Result<(), ControlError> {
        sqlx::query(
            "UPDATE batch_jobs SET state = ?, checked = ?, differing = ?, repaired = ?, \
             superseded = ?, failed = ?, error = ?, updated_ms = ? WHERE id = ?",
        )
        .bind(state)
        .bind(job.checked)
        .bind(job.differing)
        .bind(job.repaired)
        .bind(job.superseded)
        .bind(job.failed)
        .bind(error)
        .bind(now_ms())
        .bind(job.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unfinished_job_is_resumed_by_the_same_request_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        let t = TableName::new("shop", "orders");
        let (mut job, resumed) = store
            .start_batch(&t, Some("[1]"), Some("[9]"), false, "alice")
            .await
            .unwrap();
        assert!(!resumed);
        job.checked = 40;
        store.save_batch(&job, "running", None).await.unwrap();
        let (again, resumed) = store
            .start_batch(&t, Some("[1]"), Some("[9]"), false, "alice")
            .await
            .unwrap();
        assert!(resumed);
        assert_eq!((again.id, again.checked), (job.id, 40));
        let (other, resumed) = store
            .start_batch(&t, Some("[1]"), None, false, "alice")
            .await
            .unwrap();
        assert!(
            !resumed && other.id != job.id,
            "another range is another job"
        );
        store.save_batch(&again, "done", None).await.unwrap();
        let (fresh, resumed) = store
            .start_batch(&t, Some("[1]"), Some("[9]"), false, "alice")
            .await
            .unwrap();
        assert!(
            !resumed && fresh.id != job.id,
            "a finished job is not resumed"
        );
    }
}
