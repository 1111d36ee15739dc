//! The two servers and a per-test schema on both.

use concord_change::Position;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Pool, Row, Value};
use rand::Rng;

#[derive(Clone)]
pub struct Servers {
    pub source_url: String,
    pub target_url: String,
    pub source: Pool,
    pub target: Pool,
}

impl Servers {
    /// `CONCORD_TEST_SOURCE` / `CONCORD_TEST_TARGET`, defaulting to the ports
    /// `scripts/services.sh` uses.
    pub fn from_env() -> Self {
        let source_url = std::env::var("CONCORD_TEST_SOURCE")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3307".into());
        let target_url = std::env::var("CONCORD_TEST_TARGET")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3308".into());
        let pool = |url: &str| Pool::new(Opts::from_url(url).expect("test server URL"));
        Self {
            source: pool(&source_url),
            target: pool(&target_url),
            source_url,
            target_url,
        }
    }

    pub async fn source_conn(&self) -> Conn {
        self.source
            .get_conn()
            .await
            .expect("source server is not running: start it with scripts/services.sh start")
    }

    pub async fn target_conn(&self) -> Conn {
        self.target
            .get_conn()
            .await
            .expect("target server is not running: start it with scripts/services.sh start")
    }

    /// Where the source's binlog ends now.
    pub async fn source_position(&self) -> Position {
        let mut c = self.source_conn().await;
        let row: Row = c.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        Position::new(
            row.get::<String, _>(0).unwrap(),
            row.get::<u64, _>(1).unwrap(),
        )
    }
}

/// A schema of the same name on source and target, dropped and created fresh.
pub struct TestDb {
    pub servers: Servers,
    pub name: String,
}

impl TestDb {
    pub async fn new(prefix: &str) -> Self {
        let servers = Servers::from_env();
        let name = format!("{prefix}_{:06}", rand::rng().random_range(0..1_000_000));
        for mut c in [servers.source_conn().await, servers.target_conn().await] {
            c.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                .await
                .unwrap();
            c.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
                .await
                .unwrap();
        }
        Self { servers, name }
    }

    /// Runs DDL (with `{db}` replaced by the schema) on both servers.
    pub async fn both(&self, sql: &str) {
        self.source(sql).await;
        self.target(sql).await;
    }

    pub async fn source(&self, sql: &str) {
        let mut c = self.servers.source_conn().await;
        c.query_drop(sql.replace("{db}", &self.name)).await.unwrap();
    }

    pub async fn target(&self, sql: &str) {
        let mut c = self.servers.target_conn().await;
        c.query_drop(sql.replace("{db}", &self.name)).await.unwrap();
    }

    /// Every row of `table` on one side, ordered by the first column, as the server
    /// prints the values (text protocol), restricted to `columns` (`*` for all).
    pub async fn rows(&self, target: bool, table: &str, columns: &str) -> Vec<Vec<Value>> {
        let mut c = if target {
            self.servers.target_conn().await
        } else {
            self.servers.source_conn().await
        };
        let rows: Vec<Row> = c
            .query(format!(
                "SELECT {columns} FROM `{}`.`{table}` ORDER BY 1",
                self.name
            ))
            .await
            .unwrap();
        rows.into_iter().map(|r| r.unwrap()).collect()
    }

    /// Asserts that source and target hold the same rows of `table` over `columns`.
    pub async fn assert_same(&self, table: &str, columns: &str) {
        let s = self.rows(false, table, columns).await;
        let t = self.rows(true, table, columns).await;
        if s != t {
            let diff: Vec<_> = s
                .iter()
                .zip(t.iter())
                .filter(|(a, b)| a != b)
                .take(5)
                .collect();
            panic!(
                "{}.{table} differs: source {} rows, target {} rows; first differing pairs: {diff:?}",
                self.name,
                s.len(),
                t.len()
            );
        }
    }

    /// Waits until source and target hold the same rows of `table`, then returns; fails
    /// the test with the difference after `timeout`.
    pub async fn wait_same(&self, table: &str, columns: &str, timeout: std::time::Duration) {
        let start = std::time::Instant::now();
        loop {
            if self.rows(false, table, columns).await == self.rows(true, table, columns).await {
                return;
            }
            if start.elapsed() > timeout {
                self.assert_same(table, columns).await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// The integer ids (first column `id`) of `table` on one side, in order.
    pub async fn ids(&self, target: bool, table: &str) -> Vec<i64> {
        self.rows(target, table, "id")
            .await
            .into_iter()
            .map(|r| mysql_async::from_value(r[0].clone()))
            .collect()
    }

    pub async fn count(&self, target: bool, table: &str) -> usize {
        self.rows(target, table, "1").await.len()
    }
}
