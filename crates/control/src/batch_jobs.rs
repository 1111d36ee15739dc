//! `concord recovery batch` jobs: one table's key range re-checked and repaired, resumable
//! after a crash — the job's range check is a checksum run of scope `batch:<id>`, its
//! repairs are mismatch records, both kept here.
//!
//! Invariant: a job that did not finish is found again by the same request (table, range,
//! dry run) and resumed, never started twice.

use crate::mismatches::opt_text;
use crate::{now_ms, text, ControlError, ControlStore};
use concord_change::TableName;
use sqlx::Row;

/// A batch job as stored: what it was asked, how far it got, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchJob {
    pub id: i64,
    pub table: TableName,
    /// The range's ends as given (JSON of key values), `None`: open.
    pub pk_from: Option<String>,
    pub pk_to: Option<String>,
    /// The time window as given (`--since`, `--until`).
    pub since_text: Option<String>,
    pub until_text: Option<String>,
    /// The time window (commit times, milliseconds since the epoch, both ends included) as
    /// resolved when the job started; `None`: a key range job.
    pub window: Option<(i64, i64)>,
    pub dry_run: bool,
    /// `running`, `done`, `failed`, `cancelled`.
    pub state: String,
    pub checked: i64,
    pub differing: i64,
    pub repaired: i64,
    pub superseded: i64,
    pub failed: i64,
    pub actor: String,
    pub error: Option<String>,
    pub started_ms: i64,
    pub updated_ms: i64,
}

/// The columns [`batch_job`] reads, in its order.
pub(crate) const BATCH_COLUMNS: &str = "id, db, tbl, pk_from, pk_to, since_text, until_text, \
    since_ms, until_ms, dry_run, state, checked, differing, repaired, superseded, failed, \
    actor, error, started_ms, updated_ms";

/// A row of [`BATCH_COLUMNS`].
pub(crate) fn batch_job(r: &sqlx::any::AnyRow) -> Result<BatchJob, sqlx::Error> {
    let since: Option<i64> = r.try_get(7)?;
    let until: Option<i64> = r.try_get(8)?;
    Ok(BatchJob {
        id: r.try_get(0)?,
        table: TableName::new(text(r, 1)?, text(r, 2)?),
        pk_from: opt_text(r, 3)?,
        pk_to: opt_text(r, 4)?,
        since_text: opt_text(r, 5)?,
        until_text: opt_text(r, 6)?,
        window: since.zip(until),
        dry_run: r.try_get::<i64, _>(9)? != 0,
        state: text(r, 10)?,
        checked: r.try_get(11)?,
        differing: r.try_get(12)?,
        repaired: r.try_get(13)?,
        superseded: r.try_get(14)?,
        failed: r.try_get(15)?,
        actor: text(r, 16)?,
        error: opt_text(r, 17)?,
        started_ms: r.try_get(18)?,
        updated_ms: r.try_get(19)?,
    })
}

/// What a job is asked to do; the same request finds an unfinished job again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRequest {
    pub table: TableName,
    pub pk_from: Option<String>,
    pub pk_to: Option<String>,
    /// A time window as given (`--since`, `--until`), and as resolved now; a resumed job
    /// keeps the window it resolved when it started.
    pub since_text: Option<String>,
    pub until_text: Option<String>,
    pub window: Option<(i64, i64)>,
    pub dry_run: bool,
    pub actor: String,
}

const RUNNING: &str = "running";

impl ControlStore {
    /// The unfinished job for this request, or a new one; `resumed` says which.
    pub async fn start_batch(&self, r: &BatchRequest) -> Result<(BatchJob, bool), ControlError> {
        let blank = |t: &Option<String>| t.clone().unwrap_or_default();
        let sql = format!(
            "SELECT {BATCH_COLUMNS} FROM batch_jobs WHERE db = ? AND tbl = ? AND state = ? \
             AND dry_run = ? AND COALESCE(pk_from, '') = ? AND COALESCE(pk_to, '') = ? \
             AND COALESCE(since_text, '') = ? AND COALESCE(until_text, '') = ? \
             ORDER BY id DESC LIMIT 1"
        );
        let find = || {
            sqlx::query(&sql)
                .bind(&r.table.db)
                .bind(&r.table.table)
                .bind(RUNNING)
                .bind(i64::from(r.dry_run))
                .bind(blank(&r.pk_from))
                .bind(blank(&r.pk_to))
                .bind(blank(&r.since_text))
                .bind(blank(&r.until_text))
        };
        if let Some(row) = find().fetch_optional(&self.pool).await? {
            return Ok((batch_job(&row)?, true));
        }
        let now = now_ms();
        sqlx::query(
            "INSERT INTO batch_jobs (db, tbl, pk_from, pk_to, since_text, until_text, since_ms, \
             until_ms, dry_run, state, actor, started_ms, updated_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.table.db)
        .bind(&r.table.table)
        .bind(r.pk_from.as_deref())
        .bind(r.pk_to.as_deref())
        .bind(r.since_text.as_deref())
        .bind(r.until_text.as_deref())
        .bind(r.window.map(|w| w.0))
        .bind(r.window.map(|w| w.1))
        .bind(i64::from(r.dry_run))
        .bind(RUNNING)
        .bind(&r.actor)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let row = find().fetch_one(&self.pool).await?;
        Ok((batch_job(&row)?, false))
    }

    /// Marks a running job cancelled (its process stops at its next page); returns whether
    /// it was running. A cancelled job keeps its counts and is never resumed.
    pub async fn cancel_batch(&self, id: i64, actor: &str) -> Result<bool, ControlError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE batch_jobs SET state = 'cancelled', error = ?, updated_ms = ? \
             WHERE id = ? AND state = ?",
        )
        .bind(format!("cancelled by {actor}"))
        .bind(now_ms())
        .bind(id)
        .bind(RUNNING)
        .execute(&mut *tx)
        .await?;
        let cancelled = done.rows_affected() == 1;
        if cancelled {
            crate::console::audit_in(
                &mut tx,
                crate::Subject::BatchJob,
                id,
                actor,
                "cancel",
                "cancelled from the console",
            )
            .await?;
        }
        tx.commit().await?;
        Ok(cancelled)
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
             superseded = ?, failed = ?, error = ?, updated_ms = ? WHERE id = ? \
             AND state <> 'cancelled'",
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

    fn request(
        pk_to: Option<&str>,
        since: Option<&str>,
        window: Option<(i64, i64)>,
    ) -> BatchRequest {
        BatchRequest {
            table: TableName::new("shop", "orders"),
            pk_from: Some("[1]".into()),
            pk_to: pk_to.map(str::to_owned),
            since_text: since.map(str::to_owned),
            until_text: None,
            window,
            dry_run: false,
            actor: "alice".into(),
        }
    }

    #[tokio::test]
    async fn an_unfinished_job_is_resumed_by_the_same_request_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        let (mut job, resumed) = store
            .start_batch(&request(Some("[9]"), None, None))
            .await
            .unwrap();
        assert!(!resumed);
        job.checked = 40;
        store.save_batch(&job, "running", None).await.unwrap();
        let (again, resumed) = store
            .start_batch(&request(Some("[9]"), None, None))
            .await
            .unwrap();
        assert!(resumed);
        assert_eq!((again.id, again.checked), (job.id, 40));
        let (other, resumed) = store.start_batch(&request(None, None, None)).await.unwrap();
        assert!(
            !resumed && other.id != job.id,
            "another range is another job"
        );
        store.save_batch(&again, "done", None).await.unwrap();
        let (fresh, resumed) = store
            .start_batch(&request(Some("[9]"), None, None))
            .await
            .unwrap();
        assert!(
            !resumed && fresh.id != job.id,
            "a finished job is not resumed"
        );
        // A window asked for as "2h" keeps the window it resolved when it started.
        let (first, _) = store
            .start_batch(&request(None, Some("2h"), Some((1_000, 2_000))))
            .await
            .unwrap();
        let (later, resumed) = store
            .start_batch(&request(None, Some("2h"), Some((5_000, 6_000))))
            .await
            .unwrap();
        assert!(resumed);
        assert_eq!((later.id, later.window), (first.id, Some((1_000, 2_000))));
    }
}
