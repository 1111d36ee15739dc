//! Positions of roles whose progress is not stored on the target: the capture (a binlog
//! position) and the verifier (a binlog position in direct mode, an offset per partition in
//! kafka mode).
//!
//! Invariant: a position is saved only for work that is finished, so resuming from it may
//! repeat some work but never skips any.

use crate::{now_ms, Backend, ControlError, ControlStore};
use concord_change::Position;
use sqlx::Row;

/// A saved binlog position, and where reading must start again when that is earlier (an
/// XA transaction prepared before the position is still pending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedPosition {
    pub position: Position,
    pub resume_from: Option<Position>,
}

fn resume_point(file: Option<String>, pos: Option<i64>) -> Option<Position> {
    Some(Position::new(file?, pos? as u64))
}

impl ControlStore {
    pub async fn capture_position(
        &self,
        name: &str,
    ) -> Result<Option<SavedPosition>, ControlError> {
        let row = sqlx::query(
            "SELECT binlog_file, binlog_pos, resume_file, resume_pos FROM capture_positions \
             WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SavedPosition {
                position: Position::new(r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? as u64),
                resume_from: resume_point(r.try_get(2)?, r.try_get(3)?),
            })
        })
        .transpose()
        .map_err(ControlError::Query)
    }

    pub async fn save_capture_position(
        &self,
        name: &str,
        saved: &SavedPosition,
    ) -> Result<(), ControlError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO capture_positions (name, binlog_file, binlog_pos, updated_ms, \
                 resume_file, resume_pos) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET binlog_file = excluded.binlog_file, \
                 binlog_pos = excluded.binlog_pos, updated_ms = excluded.updated_ms, \
                 resume_file = excluded.resume_file, resume_pos = excluded.resume_pos"
            }
            Backend::MySql => {
                "INSERT INTO capture_positions (name, binlog_file, binlog_pos, updated_ms, \
                 resume_file, resume_pos) VALUES (?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE binlog_file = VALUES(binlog_file), \
                 binlog_pos = VALUES(binlog_pos), updated_ms = VALUES(updated_ms), \
                 resume_file = VALUES(resume_file), resume_pos = VALUES(resume_pos)"
            }
        };
        let resume = saved.resume_from.as_ref();
        sqlx::query(sql)
            .bind(name)
            .bind(&*saved.position.file)
            .bind(saved.position.pos as i64)
            .bind(now_ms())
            .bind(resume.map(|r| r.file.to_string()))
            .bind(resume.map(|r| r.pos as i64))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Where a verifier resumes: one entry per stream — `binlog` (part 0, a binlog position)
/// in direct mode, or a topic and partition (the next offset to read) in kafka mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierPosition {
    pub stream: String,
    pub part: i32,
    /// The binlog file (direct mode); empty for a Kafka partition.
    pub file: String,
    /// The binlog position, or the next offset.
    pub position: u64,
    /// Direct mode: where reading must start again, when before the position (see
    /// [`SavedPosition`]).
    pub resume_from: Option<Position>,
}

impl ControlStore {
    pub async fn verifier_positions(
        &self,
        name: &str,
    ) -> Result<Vec<VerifierPosition>, ControlError> {
        let rows = sqlx::query(
            "SELECT stream, part, binlog_file, position, resume_file, resume_pos \
             FROM verifier_positions WHERE name = ?",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VerifierPosition {
                    stream: r.try_get(0)?,
                    part: r.try_get::<i64, _>(1)? as i32,
                    file: r.try_get(2)?,
                    position: r.try_get::<i64, _>(3)? as u64,
                    resume_from: resume_point(r.try_get(4)?, r.try_get(5)?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ControlError::from)
    }

    /// Saves several positions of one verifier in one transaction.
    pub async fn save_verifier_positions(
        &self,
        name: &str,
        positions: &[VerifierPosition],
    ) -> Result<(), ControlError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO verifier_positions (name, stream, part, binlog_file, position, updated_ms, \
                 resume_file, resume_pos) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (name, stream, part) DO UPDATE SET \
                 binlog_file = excluded.binlog_file, position = excluded.position, \
                 updated_ms = excluded.updated_ms, resume_file = excluded.resume_file, \
                 resume_pos = excluded.resume_pos"
            }
            Backend::MySql => {
                "INSERT INTO verifier_positions (name, stream, part, binlog_file, position, updated_ms, \
                 resume_file, resume_pos) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
                 binlog_file = VALUES(binlog_file), position = VALUES(position), \
                 updated_ms = VALUES(updated_ms), resume_file = VALUES(resume_file), \
                 resume_pos = VALUES(resume_pos)"
            }
        };
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        for p in positions {
            sqlx::query(sql)
                .bind(name)
                .bind(&p.stream)
                .bind(i64::from(p.part))
                .bind(&*p.file)
                .bind(p.position as i64)
                .bind(now)
                .bind(p.resume_from.as_ref().map(|r| r.file.to_string()))
                .bind(p.resume_from.as_ref().map(|r| r.pos as i64))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capture_positions_are_saved_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        assert_eq!(store.capture_position("main").await.unwrap(), None);
        let pending_xa = SavedPosition {
            position: Position::new("b.000001", 100),
            resume_from: Some(Position::new("b.000001", 40)),
        };
        store
            .save_capture_position("main", &pending_xa)
            .await
            .unwrap();
        assert_eq!(
            store.capture_position("main").await.unwrap(),
            Some(pending_xa)
        );
        let plain = SavedPosition {
            position: Position::new("b.000002", 4),
            resume_from: None,
        };
        store.save_capture_position("main", &plain).await.unwrap();
        assert_eq!(store.capture_position("main").await.unwrap(), Some(plain));
    }

    #[tokio::test]
    async fn verifier_positions_are_kept_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        let p = |part, position| VerifierPosition {
            resume_from: None,
            stream: "changes".into(),
            part,
            file: String::new(),
            position,
        };
        store
            .save_verifier_positions("v", &[p(0, 10), p(1, 20)])
            .await
            .unwrap();
        store
            .save_verifier_positions("v", &[p(1, 25)])
            .await
            .unwrap();
        let mut got = store.verifier_positions("v").await.unwrap();
        got.sort_by_key(|p| p.part);
        assert_eq!(got, vec![p(0, 10), p(1, 25)]);
        assert!(store.verifier_positions("other").await.unwrap().is_empty());
    }
}
