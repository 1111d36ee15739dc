//! Snapshot jobs (docs/SNAPSHOT.md): what a stream owner is asked to copy, how far every
//! chunk up to a key has been written, and how each job ended.
//!
//! Invariant: `after_key` only moves forward and is saved only after the chunks up to it
//! were written (committed on the target, or acknowledged by the broker), so a job resumed
//! after a crash never skips a chunk.

use crate::mismatches::opt_text;
use crate::{now_ms, text, ControlError, ControlStore};
use concord_change::TableName;
use sqlx::Row;

/// What a job copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotKind {
    /// The whole table, because it had never been copied (`snapshot.mode = "initial"`).
    Initial,
    /// The whole table, asked for.
    Table,
    /// A key range (`pk_from`/`pk_to`, either end may be open).
    Range,
    /// Listed keys.
    Keys,
}

impl SnapshotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Initial => "initial",
            SnapshotKind::Table => "table",
            SnapshotKind::Range => "range",
            SnapshotKind::Keys => "keys",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "initial" => SnapshotKind::Initial,
            "range" => SnapshotKind::Range,
            "keys" => SnapshotKind::Keys,
            _ => SnapshotKind::Table,
        }
    }
}

/// Job states.
pub mod snapshot_state {
    pub const QUEUED: &str = "queued";
    pub const RUNNING: &str = "running";
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
    pub const CANCELLED: &str = "cancelled";
    /// A table the deployment streamed before it knew snapshots: never copied, never due.
    pub const STREAMED: &str = "streamed";
}

/// A job as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotJob {
    pub id: i64,
    /// The stream owner that runs it (`replicator:<name>`, `capture:<name>`).
    pub stream: String,
    pub table: TableName,
    pub kind: SnapshotKind,
    /// The range's ends as given (JSON of key values); `None`: open.
    pub pk_from: Option<String>,
    pub pk_to: Option<String>,
    /// `Keys`: a JSON array of keys (each a JSON array of values).
    pub keys_json: Option<String>,
    pub state: String,
    /// JSON of the key up to which every chunk is written; `None`: nothing yet.
    pub after_key: Option<String>,
    pub rows_copied: i64,
    pub rows_deleted: i64,
    pub rows_estimate: i64,
    pub chunks: i64,
    pub actor: String,
    pub error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub finished_ms: Option<i64>,
}

impl SnapshotJob {
    pub fn is_finished(&self) -> bool {
        !matches!(
            self.state.as_str(),
            snapshot_state::QUEUED | snapshot_state::RUNNING
        )
    }
}

/// What a new job is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub stream: String,
    pub table: TableName,
    pub kind: SnapshotKind,
    pub pk_from: Option<String>,
    pub pk_to: Option<String>,
    pub keys_json: Option<String>,
    pub rows_estimate: i64,
    pub actor: String,
}

const COLUMNS: &str = "id, stream, db, tbl, kind, pk_from, pk_to, keys_json, state, after_key, \
    rows_copied, rows_deleted, rows_estimate, chunks, actor, error, created_ms, updated_ms, \
    finished_ms";

fn job(r: &sqlx::any::AnyRow) -> Result<SnapshotJob, sqlx::Error> {
    Ok(SnapshotJob {
        id: r.try_get(0)?,
        stream: text(r, 1)?,
        table: TableName::new(text(r, 2)?, text(r, 3)?),
        kind: SnapshotKind::parse(&text(r, 4)?),
        pk_from: opt_text(r, 5)?,
        pk_to: opt_text(r, 6)?,
        keys_json: opt_text(r, 7)?,
        state: text(r, 8)?,
        after_key: opt_text(r, 9)?,
        rows_copied: r.try_get(10)?,
        rows_deleted: r.try_get(11)?,
        rows_estimate: r.try_get(12)?,
        chunks: r.try_get(13)?,
        actor: text(r, 14)?,
        error: opt_text(r, 15)?,
        created_ms: r.try_get(16)?,
        updated_ms: r.try_get(17)?,
        finished_ms: r.try_get(18)?,
    })
}

impl ControlStore {
    /// Queues a job; returns it.
    pub async fn queue_snapshot(&self, r: &SnapshotRequest) -> Result<SnapshotJob, ControlError> {
        self.insert_snapshot(r, snapshot_state::QUEUED).await
    }

    /// Records that `table` was streamed before this deployment knew snapshots: it is not
    /// copied by `snapshot.mode = "initial"`.
    pub async fn mark_streamed(&self, stream: &str, table: &TableName) -> Result<(), ControlError> {
        let r = SnapshotRequest {
            stream: stream.to_owned(),
            table: table.clone(),
            kind: SnapshotKind::Initial,
            pk_from: None,
            pk_to: None,
            keys_json: None,
            rows_estimate: 0,
            actor: "system".into(),
        };
        self.insert_snapshot(&r, snapshot_state::STREAMED).await?;
        Ok(())
    }

    async fn insert_snapshot(
        &self,
        r: &SnapshotRequest,
        state: &str,
    ) -> Result<SnapshotJob, ControlError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO snapshot_jobs (stream, db, tbl, kind, pk_from, pk_to, keys_json, state, \
             rows_estimate, actor, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.stream)
        .bind(&r.table.db)
        .bind(&r.table.table)
        .bind(r.kind.as_str())
        .bind(r.pk_from.as_deref())
        .bind(r.pk_to.as_deref())
        .bind(r.keys_json.as_deref())
        .bind(state)
        .bind(r.rows_estimate)
        .bind(&r.actor)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM snapshot_jobs WHERE stream = ? AND db = ? AND tbl = ? \
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(&r.stream)
        .bind(&r.table.db)
        .bind(&r.table.table)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(job(&row)?)
    }

    pub async fn snapshot_job(&self, id: i64) -> Result<Option<SnapshotJob>, ControlError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM snapshot_jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(job).transpose()?)
    }

    /// The stream's unfinished jobs (queued or running), oldest first.
    pub async fn open_snapshots(&self, stream: &str) -> Result<Vec<SnapshotJob>, ControlError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM snapshot_jobs WHERE stream = ? AND state IN (?, ?) ORDER BY id"
        ))
        .bind(stream)
        .bind(snapshot_state::QUEUED)
        .bind(snapshot_state::RUNNING)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(job).collect::<Result<_, _>>()?)
    }

    /// The tables of `stream` that ever had an initial job (in any state).
    pub async fn initial_snapshot_tables(
        &self,
        stream: &str,
    ) -> Result<Vec<TableName>, ControlError> {
        let rows =
            sqlx::query("SELECT DISTINCT db, tbl FROM snapshot_jobs WHERE stream = ? AND kind = ?")
                .bind(stream)
                .bind(SnapshotKind::Initial.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok(TableName::new(text(r, 0)?, text(r, 1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The newest jobs, for the console and `concord snapshot`'s listing.
    pub async fn recent_snapshots(&self, limit: i64) -> Result<Vec<SnapshotJob>, ControlError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM snapshot_jobs WHERE state <> ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(snapshot_state::STREAMED)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(job).collect::<Result<_, _>>()?)
    }

    /// Marks a queued job running (a no-op for one already running).
    pub async fn start_snapshot(&self, id: i64) -> Result<(), ControlError> {
        sqlx::query(
            "UPDATE snapshot_jobs SET state = ?, updated_ms = ? WHERE id = ? AND state = ?",
        )
        .bind(snapshot_state::RUNNING)
        .bind(now_ms())
        .bind(id)
        .bind(snapshot_state::QUEUED)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Saves a running job's progress: every chunk up to `after_key` is written. Returns
    /// `false` when the job is no longer running (cancelled meanwhile).
    pub async fn save_snapshot_progress(
        &self,
        id: i64,
        after_key: Option<&str>,
        copied: i64,
        deleted: i64,
        chunks: i64,
    ) -> Result<bool, ControlError> {
        let done = sqlx::query(
            "UPDATE snapshot_jobs SET after_key = ?, rows_copied = ?, rows_deleted = ?, \
             chunks = ?, updated_ms = ? WHERE id = ? AND state = ?",
        )
        .bind(after_key)
        .bind(copied)
        .bind(deleted)
        .bind(chunks)
        .bind(now_ms())
        .bind(id)
        .bind(snapshot_state::RUNNING)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends an unfinished job: `done`, `failed` (with `error`), or `cancelled`.
    pub async fn finish_snapshot(
        &self,
        id: i64,
        state: &str,
        error: Option<&str>,
    ) -> Result<(), ControlError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE snapshot_jobs SET state = ?, error = ?, updated_ms = ?, finished_ms = ? \
             WHERE id = ? AND state IN (?, ?)",
        )
        .bind(state)
        .bind(error)
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(snapshot_state::QUEUED)
        .bind(snapshot_state::RUNNING)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(table: &str, kind: SnapshotKind) -> SnapshotRequest {
        SnapshotRequest {
            stream: "replicator:r1".into(),
            table: TableName::new("shop", table),
            kind,
            pk_from: None,
            pk_to: None,
            keys_json: None,
            rows_estimate: 100,
            actor: "alice".into(),
        }
    }

    #[tokio::test]
    async fn jobs_move_from_queued_to_done_and_keep_their_progress() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        let a = store
            .queue_snapshot(&request("a", SnapshotKind::Initial))
            .await
            .unwrap();
        store
            .mark_streamed("replicator:r1", &TableName::new("shop", "b"))
            .await
            .unwrap();
        let open = store.open_snapshots("replicator:r1").await.unwrap();
        assert_eq!(open.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a.id]);
        assert!(store
            .open_snapshots("replicator:other")
            .await
            .unwrap()
            .is_empty());
        let initial = store
            .initial_snapshot_tables("replicator:r1")
            .await
            .unwrap();
        assert_eq!(initial.len(), 2, "queued and streamed tables both had one");

        assert!(
            !store
                .save_snapshot_progress(a.id, Some("[5]"), 5, 0, 1)
                .await
                .unwrap(),
            "a queued job is not running yet"
        );
        store.start_snapshot(a.id).await.unwrap();
        assert!(store
            .save_snapshot_progress(a.id, Some("[5]"), 5, 1, 1)
            .await
            .unwrap());
        let saved = store.snapshot_job(a.id).await.unwrap().unwrap();
        assert_eq!(
            (
                saved.state.as_str(),
                saved.after_key.as_deref(),
                saved.rows_copied,
                saved.rows_deleted
            ),
            ("running", Some("[5]"), 5, 1)
        );
        store
            .finish_snapshot(a.id, snapshot_state::DONE, None)
            .await
            .unwrap();
        let done = store.snapshot_job(a.id).await.unwrap().unwrap();
        assert!(done.is_finished() && done.finished_ms.is_some());
        store
            .finish_snapshot(a.id, snapshot_state::FAILED, Some("late"))
            .await
            .unwrap();
        assert_eq!(
            store.snapshot_job(a.id).await.unwrap().unwrap().state,
            "done",
            "a finished job stays as it ended"
        );
        let recent = store.recent_snapshots(10).await.unwrap();
        assert_eq!(recent.len(), 1, "streamed markers are not listed");
    }
}
