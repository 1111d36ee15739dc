//! Repairs racing a writer: a table of versioned rows the writer keeps bumping on the
//! source while something repairs the target, and the check that no repair ever wrote a
//! row older than the one it replaced.

use crate::TestDb;
use mysql_async::prelude::Queryable;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The race's table (`{db}.hot`): `version` only grows on the source.
pub const HOT_DDL: &str =
    "CREATE TABLE `{db}`.hot (id INT PRIMARY KEY, version BIGINT NOT NULL, payload VARCHAR(40))";

/// Creates `hot` on both servers with rows `1..=rows` at version 1.
pub async fn hot_table(db: &TestDb, rows: i64) {
    db.both(HOT_DDL).await;
    let values: Vec<String> = (1..=rows).map(|i| format!("({i}, 1, 'v1')")).collect();
    db.both(&format!(
        "INSERT INTO `{{db}}`.hot VALUES {}",
        values.join(", ")
    ))
    .await;
}

/// Bumps the versions of rows of `hot` (1..=rows, spread) on the source every 20 ms until
/// stopped; `stop` returns how many updates it made.
pub struct HotWriter {
    stop: Arc<AtomicBool>,
    made: Arc<AtomicU64>,
    task: JoinHandle<u64>,
}

impl HotWriter {
    pub fn start(db: &TestDb, rows: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), made.clone());
        let (pool, name) = (db.servers.source.clone(), db.name.clone());
        let task = tokio::spawn(async move {
            let mut conn = pool.get_conn().await.unwrap();
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let id = 1 + (n * 37) % rows;
                conn.query_drop(format!(
                    "UPDATE `{name}`.hot SET version = version + 1, \
                     payload = CONCAT('v', version + 1) WHERE id = {id}"
                ))
                .await
                .unwrap();
                n += 1;
                count.store(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        });
        Self { stop, made, task }
    }

    /// Updates made so far.
    pub fn updates(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Fails unless every repair (its before and after images, as the history keeps them:
/// JSON `[[column, value], …]`) wrote a version at least as new as the one it replaced.
pub fn assert_never_older(repairs: &[(String, String)]) {
    assert!(
        !repairs.is_empty(),
        "some rows were repaired while the writer ran"
    );
    let version = |image: &str| -> i64 {
        let row: Vec<(String, serde_json::Value)> = serde_json::from_str(image).unwrap();
        let v = &row.iter().find(|(c, _)| c == "version").unwrap().1;
        v["value"]
            .as_i64()
            .unwrap_or_else(|| panic!("a version in {image}"))
    };
    for (before, after) in repairs {
        assert!(
            version(after) >= version(before),
            "a repair wrote version {} over version {}",
            version(after),
            version(before)
        );
    }
}
