//! A background write load on the source: small transactions of inserts, updates and
//! deletes over a set of tables shaped like [`TABLE_DDL`].

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Value};
use rand::Rng;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The shape of a writer table; `{db}` and `{t}` are replaced.
pub const TABLE_DDL: &str = "CREATE TABLE `{db}`.`{t}` (id BIGINT PRIMARY KEY, v INT NOT NULL, \
     note VARCHAR(64), amount DECIMAL(12,2), updated DATETIME(6)) ENGINE=InnoDB";

/// Creates writer tables `names` on both servers.
pub async fn create_tables(db: &crate::TestDb, names: &[&str]) {
    for t in names {
        db.both(&TABLE_DDL.replace("{t}", t)).await;
    }
}

#[derive(Default)]
pub struct WriterShared {
    stop: AtomicBool,
    /// Committed transactions.
    pub committed: AtomicU64,
    /// Statements the source refused (e.g. during a DDL test); the writer goes on.
    pub errors: AtomicU64,
    /// An extra column the writer also fills (`id * 3`) once a test sets it.
    pub extra_column: Mutex<Option<String>>,
    /// Highest id inserted so far, per table index.
    pub max_ids: Mutex<Vec<i64>>,
    /// Asked to hold between transactions, and whether it does.
    held: AtomicBool,
    idle: AtomicBool,
}

pub struct Writer {
    pub shared: Arc<WriterShared>,
    handle: JoinHandle<()>,
}

impl Writer {
    /// Starts writing to `tables` of `db`; `pause` between transactions.
    pub fn start(pool: Pool, db: &str, tables: &[&str], pause: Duration) -> Writer {
        let shared = Arc::new(WriterShared {
            max_ids: Mutex::new(vec![0; tables.len()]),
            ..Default::default()
        });
        let db = db.to_owned();
        let tables: Vec<String> = tables.iter().map(|s| s.to_string()).collect();
        let s = shared.clone();
        let handle = tokio::spawn(async move {
            let mut next_id = vec![1i64; tables.len()];
            while !s.stop.load(Ordering::Relaxed) {
                if s.held.load(Ordering::SeqCst) {
                    s.idle.store(true, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                s.idle.store(false, Ordering::SeqCst);
                let Ok(mut conn) = pool.get_conn().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let extra = s.extra_column.lock().unwrap().clone();
                let ok =
                    one_transaction(&mut conn, &db, &tables, &mut next_id, extra.as_deref()).await;
                if ok {
                    s.committed.fetch_add(1, Ordering::Relaxed);
                    *s.max_ids.lock().unwrap() = next_id.iter().map(|n| n - 1).collect();
                } else {
                    s.errors.fetch_add(1, Ordering::Relaxed);
                    let _ = conn.query_drop("ROLLBACK").await;
                }
                tokio::time::sleep(pause).await;
            }
        });
        Writer { shared, handle }
    }

    /// Holds the writer between transactions; returns once no transaction is open.
    pub async fn hold(&self) {
        self.shared.idle.store(false, Ordering::SeqCst);
        self.shared.held.store(true, Ordering::SeqCst);
        while !self.shared.idle.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Lets a held writer go on.
    pub fn go(&self) {
        self.shared.held.store(false, Ordering::SeqCst);
    }

    pub fn set_extra_column(&self, column: Option<&str>) {
        *self.shared.extra_column.lock().unwrap() = column.map(str::to_owned);
    }

    pub fn committed(&self) -> u64 {
        self.shared.committed.load(Ordering::Relaxed)
    }

    pub fn max_id(&self, table: usize) -> i64 {
        self.shared.max_ids.lock().unwrap()[table]
    }

    pub async fn stop(self) -> u64 {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.handle.await.expect("writer task");
        self.shared.committed.load(Ordering::Relaxed)
    }
}

async fn one_transaction(
    conn: &mut mysql_async::Conn,
    db: &str,
    tables: &[String],
    next_id: &mut [i64],
    extra: Option<&str>,
) -> bool {
    let mut ids = next_id.to_vec();
    let plan = plan_transaction(db, tables, &mut ids, extra);
    if conn.query_drop("BEGIN").await.is_err() {
        return false;
    }
    for (sql, params) in plan {
        if conn.exec_drop(sql, params).await.is_err() {
            return false;
        }
    }
    if conn.query_drop("COMMIT").await.is_err() {
        return false;
    }
    next_id.copy_from_slice(&ids);
    true
}

fn plan_transaction(
    db: &str,
    tables: &[String],
    ids: &mut [i64],
    extra: Option<&str>,
) -> Vec<(String, Vec<Value>)> {
    let mut rng = rand::rng();
    let statements = rng.random_range(1..=4);
    let mut plan = Vec::new();
    for _ in 0..statements {
        let t = rng.random_range(0..tables.len());
        let table = format!("`{db}`.`{}`", tables[t]);
        let roll: u8 = rng.random_range(0..10);
        let note: String = (0..rng.random_range(0..20))
            .map(|_| rng.random_range('a'..='z'))
            .collect();
        let amount = format!(
            "{}.{:02}",
            rng.random_range(0..100_000),
            rng.random_range(0..100)
        );
        if roll < 5 || ids[t] < 3 {
            let id = ids[t];
            ids[t] += 1;
            let (cols, vals, mut params) = (
                "id, v, note, amount, updated",
                "?, ?, ?, ?, NOW(6)",
                vec![Value::Int(id), Value::Int(0), note.into(), amount.into()],
            );
            let sql = match extra {
                Some(c) => {
                    params.push(Value::Int(id * 3));
                    format!("INSERT INTO {table} ({cols}, `{c}`) VALUES ({vals}, ?)")
                }
                None => format!("INSERT INTO {table} ({cols}) VALUES ({vals})"),
            };
            plan.push((sql, params));
        } else if roll < 9 {
            let id = rng.random_range(1..ids[t]);
            let sql = match extra {
                Some(c) => format!("UPDATE {table} SET v = v + 1, note = ?, amount = ?, updated = NOW(6), `{c}` = id * 3 WHERE id = ?"),
                None => format!("UPDATE {table} SET v = v + 1, note = ?, amount = ?, updated = NOW(6) WHERE id = ?"),
            };
            plan.push((sql, vec![note.into(), amount.into(), Value::Int(id)]));
        } else {
            let id = rng.random_range(1..ids[t]);
            plan.push((
                format!("DELETE FROM {table} WHERE id = ?"),
                vec![Value::Int(id)],
            ));
        }
    }
    plan
}
