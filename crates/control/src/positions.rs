//! Positions of roles whose progress is not stored on the target (the capture today; the
//! verifier later).

use crate::{now_ms, Backend, ControlError, ControlStore};
use concord_change::Position;
use sqlx::Row;

impl ControlStore {
    pub async fn capture_position(&self, name: &str) -> Result<Option<Position>, ControlError> {
        let row =
            sqlx::query("SELECT binlog_file, binlog_pos FROM capture_positions WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(Position::new(
                r.try_get::<String, _>(0)?,
                r.try_get::<i64, _>(1)? as u64,
            ))
        })
        .transpose()
        .map_err(ControlError::Query)
    }

    pub async fn save_capture_position(
        &self,
        name: &str,
        position: &Position,
    ) -> Result<(), ControlError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO capture_positions (name, binlog_file, binlog_pos, updated_ms) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET binlog_file = excluded.binlog_file, \
                 binlog_pos = excluded.binlog_pos, updated_ms = excluded.updated_ms"
            }
            Backend::MySql => {
                "INSERT INTO capture_positions (name, binlog_file, binlog_pos, updated_ms) VALUES (?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE binlog_file = VALUES(binlog_file), \
                 binlog_pos = VALUES(binlog_pos), updated_ms = VALUES(updated_ms)"
            }
        };
        sqlx::query(sql)
            .bind(name)
            .bind(&position.file)
            .bind(position.pos as i64)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
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
        store
            .save_capture_position("main", &Position::new("b.000001", 100))
            .await
            .unwrap();
        store
            .save_capture_position("main", &Position::new("b.000002", 4))
            .await
            .unwrap();
        assert_eq!(
            store.capture_position("main").await.unwrap(),
            Some(Position::new("b.000002", 4))
        );
    }
}
