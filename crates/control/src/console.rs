//! What the web console keeps: login sessions (shared by every console replica), bulk
//! actions and their progress, role heartbeats, and the audit rows of actions that are not
//! a record's move (a bulk action, the circuit, a job started).
//!
//! Invariant: a session is found only by the digest of its token — the token itself is
//! never stored — and a bulk job's audit row is written in the same transaction as the job.

use crate::lifecycle::{HistoryRow, Subject};
use crate::{now_ms, text, ControlError, ControlStore};
use sqlx::Row;

/// A console login session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSession {
    pub user: String,
    pub role: String,
    /// The token every form of this session carries.
    pub csrf: String,
    pub created_ms: i64,
    pub seen_ms: i64,
}

/// A bulk action of the console and how far it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkJob {
    pub id: i64,
    pub actor: String,
    /// `repair` or `ignore`.
    pub action: String,
    /// What was selected, as a person reads it (the filter, or the ids).
    pub selection: String,
    pub reason: String,
    pub total: i64,
    pub done: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// `running`, `finished` or `failed`.
    pub state: String,
    pub error: Option<String>,
    pub started_ms: i64,
    pub updated_ms: i64,
}

/// A role's last sign of life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub role: String,
    pub name: String,
    pub at_ms: i64,
    pub detail: String,
}

/// The name a process beats under: its host (a pod's name) and its pid.
pub fn process_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

const BULK_COLUMNS: &str = "id, actor, action, selection, reason, total, done, succeeded, \
                            failed, state, error, started_ms, updated_ms";

impl ControlStore {
    pub async fn create_session(
        &self,
        token_hash: &str,
        user: &str,
        role: &str,
        csrf: &str,
    ) -> Result<(), ControlError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, user_name, role, csrf, created_ms, \
             seen_ms) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(user)
        .bind(role)
        .bind(csrf)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session(&self, token_hash: &str) -> Result<Option<ConsoleSession>, ControlError> {
        let row = sqlx::query(
            "SELECT user_name, role, csrf, created_ms, seen_ms FROM console_sessions \
             WHERE token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ConsoleSession {
                user: text(&r, 0)?,
                role: text(&r, 1)?,
                csrf: text(&r, 2)?,
                created_ms: r.try_get(3)?,
                seen_ms: r.try_get(4)?,
            })
        })
        .transpose()
    }

    /// Marks a session used now.
    pub async fn touch_session(&self, token_hash: &str) -> Result<(), ControlError> {
        sqlx::query("UPDATE console_sessions SET seen_ms = ? WHERE token_hash = ?")
            .bind(now_ms())
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn end_session(&self, token_hash: &str) -> Result<(), ControlError> {
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends the sessions unused since `before_ms`; returns how many.
    pub async fn end_idle_sessions(&self, before_ms: i64) -> Result<u64, ControlError> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE seen_ms < ?")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Starts a bulk job of `total` records, with its audit row; returns its id.
    pub async fn start_bulk(
        &self,
        actor: &str,
        action: &str,
        selection: &str,
        reason: &str,
        total: i64,
    ) -> Result<i64, ControlError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO console_bulk_jobs (actor, action, selection, reason, total, state, \
             started_ms, updated_ms) VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
        )
        .bind(actor)
        .bind(action)
        .bind(selection)
        .bind(reason)
        .bind(total)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // The id this connection inserted (sqlx's `Any` does not carry it for SQLite).
        let id: i64 = match inserted.last_insert_id() {
            Some(id) => id,
            None => {
                let sql = match self.backend {
                    crate::Backend::Sqlite => "SELECT last_insert_rowid()",
                    crate::Backend::MySql => "SELECT CAST(LAST_INSERT_ID() AS SIGNED)",
                };
                sqlx::query_scalar(sql).fetch_one(&mut *tx).await?
            }
        };
        let why = format!("{action} of {total} records: {selection}; {reason}");
        audit_in(&mut tx, Subject::Bulk, id, actor, action, &why).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn save_bulk(&self, job: &BulkJob) -> Result<(), ControlError> {
        sqlx::query(
            "UPDATE console_bulk_jobs SET done = ?, succeeded = ?, failed = ?, state = ?, \
             error = ?, updated_ms = ? WHERE id = ?",
        )
        .bind(job.done)
        .bind(job.succeeded)
        .bind(job.failed)
        .bind(job.state.clone())
        .bind(job.error.clone())
        .bind(now_ms())
        .bind(job.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends as `interrupted` every running bulk job with no progress saved since
    /// `updated_before_ms`: the console that ran it stopped (a job saves its progress after
    /// every few hundred records). Returns how many. The records it had not reached are as
    /// they were; each one it did reach has its own audit row.
    pub async fn end_stalled_bulk_jobs(&self, updated_before_ms: i64) -> Result<u64, ControlError> {
        let done = sqlx::query(
            "UPDATE console_bulk_jobs SET state = 'interrupted', error = ?, updated_ms = ? \
             WHERE state = 'running' AND updated_ms < ?",
        )
        .bind(
            "no progress saved for minutes: the console running it stopped; the records it \
             had not reached are as they were — start it again to finish them",
        )
        .bind(now_ms())
        .bind(updated_before_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn bulk_job(&self, id: i64) -> Result<Option<BulkJob>, ControlError> {
        let row = sqlx::query(&format!(
            "SELECT {BULK_COLUMNS} FROM console_bulk_jobs WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(bulk_row).transpose()
    }

    /// The newest bulk jobs.
    pub async fn bulk_jobs(&self, limit: i64) -> Result<Vec<BulkJob>, ControlError> {
        let rows = sqlx::query(&format!(
            "SELECT {BULK_COLUMNS} FROM console_bulk_jobs ORDER BY id DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(bulk_row).collect()
    }

    /// Keeps one audit row for an action that is not a record's move.
    pub async fn audit(
        &self,
        subject: Subject,
        id: i64,
        actor: &str,
        action: &str,
        reason: &str,
    ) -> Result<(), ControlError> {
        let mut tx = self.begin_write().await?;
        audit_in(&mut tx, subject, id, actor, action, reason).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Says role `role` (instance `name`) is alive now.
    pub async fn beat(&self, role: &str, name: &str, detail: &str) -> Result<(), ControlError> {
        self.beat_with(role, name, detail, None).await
    }

    /// Says process `name` (running `role`) is alive now, with its counters (JSON) for
    /// consoles in other processes.
    pub async fn publish(
        &self,
        role: &str,
        name: &str,
        detail: &str,
        counters: &str,
    ) -> Result<(), ControlError> {
        self.beat_with(role, name, detail, Some(counters)).await
    }

    async fn beat_with(
        &self,
        role: &str,
        name: &str,
        detail: &str,
        counters: Option<&str>,
    ) -> Result<(), ControlError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE role_heartbeats SET at_ms = ?, detail = ?, counters = ? \
             WHERE role = ? AND name = ?",
        )
        .bind(now)
        .bind(detail)
        .bind(counters)
        .bind(role)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO role_heartbeats (role, name, at_ms, detail, counters) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(role)
            .bind(name)
            .bind(now)
            .bind(detail)
            .bind(counters)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The counters published since `since_ms`: (process, when, JSON), newest first.
    pub async fn published_counters(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, i64, String)>, ControlError> {
        let rows = sqlx::query(
            "SELECT name, at_ms, counters FROM role_heartbeats \
             WHERE counters IS NOT NULL AND at_ms >= ? ORDER BY at_ms DESC",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((text(r, 0)?, r.try_get(1)?, text(r, 2)?)))
            .collect()
    }

    /// Every role's heartbeat, the ones kept in their positions included (the capture's,
    /// the verifiers'), newest first.
    pub async fn heartbeats(&self) -> Result<Vec<Heartbeat>, ControlError> {
        let rows = sqlx::query(
            "SELECT role, name, at_ms, detail FROM role_heartbeats \
             UNION ALL SELECT 'capture', name, updated_ms, \
               binlog_file || ':' || CAST(binlog_pos AS CHAR) FROM capture_positions \
             UNION ALL SELECT 'verifier', name, MAX(updated_ms), stream FROM verifier_positions \
               GROUP BY name, stream \
             ORDER BY 3 DESC",
        );
        let rows = match self.backend {
            crate::Backend::Sqlite => rows,
            // `||` is OR on MariaDB unless PIPES_AS_CONCAT is set.
            crate::Backend::MySql => sqlx::query(
                "SELECT role, name, at_ms, detail FROM role_heartbeats \
                 UNION ALL SELECT 'capture', name, updated_ms, \
                   CONCAT(binlog_file, ':', binlog_pos) FROM capture_positions \
                 UNION ALL SELECT 'verifier', name, MAX(updated_ms), stream \
                   FROM verifier_positions GROUP BY name, stream \
                 ORDER BY 3 DESC",
            ),
        };
        rows.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(Heartbeat {
                    role: text(r, 0)?,
                    name: text(r, 1)?,
                    at_ms: r.try_get(2)?,
                    detail: text(r, 3)?,
                })
            })
            .collect()
    }
}

pub(crate) async fn audit_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    subject: Subject,
    id: i64,
    actor: &str,
    action: &str,
    reason: &str,
) -> Result<(), ControlError> {
    sqlx::query(
        "INSERT INTO recovery_history (subject, subject_id, at_ms, actor, from_state, \
         to_state, reason) VALUES (?, ?, ?, ?, '', ?, ?)",
    )
    .bind(subject.as_str())
    .bind(id)
    .bind(now_ms())
    .bind(actor)
    .bind(action)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn bulk_row(r: &sqlx::any::AnyRow) -> Result<BulkJob, ControlError> {
    Ok(BulkJob {
        id: r.try_get(0)?,
        actor: text(r, 1)?,
        action: text(r, 2)?,
        selection: text(r, 3)?,
        reason: text(r, 4)?,
        total: r.try_get(5)?,
        done: r.try_get(6)?,
        succeeded: r.try_get(7)?,
        failed: r.try_get(8)?,
        state: text(r, 9)?,
        error: crate::mismatches::opt_text(r, 10)?,
        started_ms: r.try_get(11)?,
        updated_ms: r.try_get(12)?,
    })
}

/// One audit row: a history row with what it is about.
#[derive(Clone, Debug)]
pub struct AuditRow {
    pub subject: String,
    pub subject_id: i64,
    /// The record's table and key (JSON), for mismatches and failed events.
    pub table: Option<concord_change::TableName>,
    pub key: Option<String>,
    pub history: HistoryRow,
}
