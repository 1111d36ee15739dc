//! The snapshot (docs/SNAPSHOT.md): a source that already holds rows is copied while a
//! write load updates, deletes and re-inserts them, then streamed — the target ends equal
//! to the source row for row; a kill -9 mid-snapshot resumes after the last written chunk;
//! a key range re-copied while writes go on deletes the target rows the source lacks; a
//! table without a key, or without a target table, is refused by name.

use concord_e2e::concord::binary;
use concord_e2e::pipeline::{Mode, Pipeline};
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use rand::Rng;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A table of numbered rows and the statements that fill and change it.
struct Kind {
    name: &'static str,
    ddl: &'static str,
    /// `INSERT … SELECT` of rows 1..=n from `seq_1_to_{n}`.
    fill: &'static str,
    /// Writes row `i` (insert or replace) with value `v`.
    upsert: &'static str,
    delete: &'static str,
}

/// Four shapes of table: an integer key, a composite VARCHAR + INT key in a
/// case-insensitive collation (its values sort differently from their bytes), a BIGINT
/// key with wide text, and a latin1 table.
const KINDS: [Kind; 4] = [
    Kind {
        name: "plain",
        ddl: "CREATE TABLE `{db}`.plain (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(40))",
        fill:
            "INSERT INTO `{db}`.plain SELECT seq, seq, CONCAT('row ', seq) FROM `{db}`.seq_1_to_{n}",
        upsert: "REPLACE INTO `{db}`.plain VALUES ({i}, {v}, CONCAT('again ', {v}))",
        delete: "DELETE FROM `{db}`.plain WHERE id = {i}",
    },
    Kind {
        name: "regional",
        ddl: "CREATE TABLE `{db}`.regional (region VARCHAR(16) COLLATE utf8mb4_general_ci, \
              n INT, v INT NOT NULL, PRIMARY KEY (region, n))",
        fill: "INSERT INTO `{db}`.regional SELECT ELT(1 + seq % 5, 'eu', 'Eu-West', 'ASIA', \
               'americas', 'Ärger'), seq, seq FROM `{db}`.seq_1_to_{n}",
        upsert: "REPLACE INTO `{db}`.regional VALUES (ELT(1 + {i} % 5, 'eu', 'Eu-West', \
                 'ASIA', 'americas', 'Ärger'), {i}, {v})",
        delete: "DELETE FROM `{db}`.regional WHERE region = ELT(1 + {i} % 5, 'eu', \
                 'Eu-West', 'ASIA', 'americas', 'Ärger') AND n = {i}",
    },
    Kind {
        name: "wide",
        ddl: "CREATE TABLE `{db}`.wide (id BIGINT UNSIGNED PRIMARY KEY, body TEXT, \
              amount DECIMAL(14,4), at DATETIME(6))",
        fill:
            "INSERT INTO `{db}`.wide SELECT seq + 9000000000, REPEAT('x', seq % 300), \
               seq / 7, '2026-01-01 00:00:00.000001' + INTERVAL seq SECOND FROM `{db}`.seq_1_to_{n}",
        upsert: "REPLACE INTO `{db}`.wide VALUES ({i} + 9000000000, REPEAT('y', {v} % 200), \
                 {v} / 3, NOW(6))",
        delete: "DELETE FROM `{db}`.wide WHERE id = {i} + 9000000000",
    },
    Kind {
        name: "legacy",
        ddl: "CREATE TABLE `{db}`.legacy (id INT PRIMARY KEY, name VARCHAR(30)) \
              CHARACTER SET latin1",
        fill:
            "INSERT INTO `{db}`.legacy SELECT seq, CONCAT('Müller ', seq) FROM `{db}`.seq_1_to_{n}",
        upsert: "REPLACE INTO `{db}`.legacy VALUES ({i}, CONCAT('Grüße ', {v}))",
        delete: "DELETE FROM `{db}`.legacy WHERE id = {i}",
    },
];

fn sql(template: &str, db: &str, n: u64, i: u64, v: u64) -> String {
    template
        .replace("{db}", db)
        .replace("{n}", &n.to_string())
        .replace("{i}", &i.to_string())
        .replace("{v}", &v.to_string())
}

/// Creates `kinds` on both servers and fills the source's with `n` rows each.
async fn fill(db: &TestDb, kinds: &[&Kind], n: u64) {
    for k in kinds {
        db.both(k.ddl).await;
        db.source(&sql(k.fill, &db.name, n, 0, 0)).await;
    }
}

/// Updates, deletes and re-inserts random rows of `kinds` (ids up to `n`) until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    pub done: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(pool: Pool, db: &str, kinds: &'static [Kind], n: u64) -> Load {
        // The load's ids start at 1: avoiding id 0 avoids nothing.
        Self::start_avoiding(pool, db, kinds, n, 0..=0)
    }

    /// As [`Load::start`], never touching the ids in `avoid`.
    fn start_avoiding(
        pool: Pool,
        db: &str,
        kinds: &'static [Kind],
        n: u64,
        avoid: std::ops::RangeInclusive<u64>,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (s, d, db) = (stop.clone(), done.clone(), db.to_owned());
        let handle = tokio::spawn(async move {
            let mut conn = pool.get_conn().await.expect("source");
            // A busy source, not a saturated one: unpaced, the load out-writes a replicator
            // sharing two cores with the rest of the suite, and chunks (written only once
            // the stream reaches their read position) wait on an ever-growing lag.
            let mut pace = tokio::time::interval(Duration::from_millis(4));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !s.load(Ordering::Relaxed) {
                pace.tick().await;
                let (k, i, v, delete) = {
                    let mut r = rand::rng();
                    (
                        &kinds[r.random_range(0..kinds.len())],
                        r.random_range(1..=n + n / 10),
                        r.random_range(0..1_000_000u64),
                        r.random_bool(0.3),
                    )
                };
                if avoid.contains(&i) {
                    continue;
                }
                let statement = if delete { k.delete } else { k.upsert };
                conn.query_drop(sql(statement, &db, n, i, v))
                    .await
                    .expect("the load's statement");
                d.fetch_add(1, Ordering::Relaxed);
            }
        });
        Load { stop, done, handle }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.expect("the load ran");
        self.done.load(Ordering::Relaxed)
    }
}

/// (state, rows copied, rows deleted) of every snapshot job, oldest first.
async fn jobs(config: &ConcordConfig) -> Vec<(String, i64, i64, Option<String>)> {
    let url = format!("sqlite://{}?mode=ro", config.control_db().display());
    let Ok(mut conn) = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await else {
        return Vec::new();
    };
    use sqlx::Row;
    sqlx::query("SELECT state, rows_copied, rows_deleted, after_key FROM snapshot_jobs ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

async fn wait_jobs_done(config: &ConcordConfig, n: usize, timeout: Duration) {
    wait_for(&format!("{n} snapshot jobs done"), timeout, || async {
        let j = jobs(config).await;
        (j.len() == n && j.iter().all(|j| j.0 == "done")).then_some(())
    })
    .await;
}

fn snapshot_config(db: &TestDb) -> ConcordConfig {
    let mut c = ConcordConfig::new(db);
    c.snapshot = "mode = \"initial\"\nthreads = 3\nchunk_rows = 2000\n".into();
    c
}

/// The columns compared, the first unique (rows are ordered by it).
const COLUMNS: [&str; 4] = ["*", "n, region, v", "*", "*"];

/// The rows of `table` matching `filter` on one side, in key order.
async fn rows_where(db: &TestDb, target: bool, table: &str, filter: &str) -> Vec<mysql_async::Row> {
    let pool = if target {
        &db.servers.target
    } else {
        &db.servers.source
    };
    let mut c = pool.get_conn().await.unwrap();
    c.query(format!(
        "SELECT * FROM `{}`.`{table}` WHERE {filter} ORDER BY 1",
        db.name
    ))
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_with_rows_is_copied_under_writes_then_streamed_row_for_row() {
    let db = TestDb::new("snapshot_initial").await;
    let kinds: Vec<&Kind> = KINDS.iter().collect();
    let n = 100_000;
    fill(&db, &kinds, n).await;
    // Rows only the target has: an exact copy removes them.
    db.target("INSERT INTO `{db}`.plain VALUES (5000000, 1, 'planted'), (12, 1, 'stale')")
        .await;
    let load = Load::start(db.servers.source.clone(), &db.name, &KINDS, n);
    let config = snapshot_config(&db);
    let concord = Concord::start(&config).await;
    wait_jobs_done(&config, 4, Duration::from_secs(240)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = load.stop().await;
    assert!(
        writes > 500,
        "the load ran during the snapshot ({writes} writes)"
    );
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    for (k, columns) in KINDS.iter().zip(COLUMNS) {
        db.assert_same(k.name, columns).await;
    }
    let copied: i64 = jobs(&config).await.iter().map(|j| j.1).sum();
    assert!(
        copied >= 4 * n as i64 * 8 / 10,
        "rows were copied: {copied}"
    );
    assert!(concord.failed_events().await.is_empty());
    assert!(
        concord.metric("concord_snapshot_rows_total", &[]).await >= copied as f64 * 0.9,
        "the rows are counted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_killed_three_times_resumes_after_its_last_chunk_and_converges() {
    let db = TestDb::new("snapshot_kill").await;
    let kinds: Vec<&Kind> = KINDS[..2].iter().collect();
    let n = 30_000;
    fill(&db, &kinds, n).await;
    let load = Load::start(db.servers.source.clone(), &db.name, &KINDS[..2], n);
    let mut config = snapshot_config(&db);
    config.snapshot = "mode = \"initial\"\nthreads = 2\nchunk_rows = 500\n".into();
    let mut progress_seen = Vec::new();
    for round in 0..3 {
        let mut concord = Concord::start(&config).await;
        let before: i64 = jobs(&config).await.iter().map(|j| j.1).sum();
        let at = wait_for(
            &format!("round {round}: more chunks written"),
            Duration::from_secs(120),
            || async {
                let copied: i64 = jobs(&config).await.iter().map(|j| j.1).sum();
                (copied > before + 3000).then_some(copied)
            },
        )
        .await;
        concord.kill9().await;
        progress_seen.push(at);
    }
    let concord = Concord::start(&config).await;
    assert!(
        concord.log().contains("resume_after=Some"),
        "a restarted job resumes after its saved key: {}",
        concord.log()
    );
    wait_jobs_done(&config, 2, Duration::from_secs(240)).await;
    let writes = load.stop().await;
    assert!(writes > 100, "the load ran ({writes} writes)");
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    for (k, columns) in KINDS[..2].iter().zip(COLUMNS) {
        db.assert_same(k.name, columns).await;
    }
    // Resumed, not restarted: never more copied in all than the table holds and what the
    // kills cost (a few chunks in flight each time).
    let copied: i64 = jobs(&config).await.iter().map(|j| j.1).sum();
    assert!(
        copied < 2 * n as i64 + 3 * 4 * 500 + n as i64 / 5,
        "copied {copied} rows for {} (progress seen {progress_seen:?})",
        2 * n
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_range_copied_again_under_writes_equals_the_source_and_loses_planted_rows() {
    let db = TestDb::new("snapshot_range").await;
    let n = 20_000;
    fill(&db, &[&KINDS[0]], n).await;
    let config = snapshot_config(&db);
    let concord = Concord::start(&config).await;
    wait_jobs_done(&config, 1, Duration::from_secs(120)).await;
    // Damage the target inside the range 5000..=9000 and outside it.
    db.target(
        "INSERT INTO `{db}`.plain VALUES (5000, 0, 'x') ON DUPLICATE KEY UPDATE note = 'wrong'",
    )
    .await;
    db.target("DELETE FROM `{db}`.plain WHERE id BETWEEN 6000 AND 6100")
        .await;
    db.target("UPDATE `{db}`.plain SET note = 'stale' WHERE id BETWEEN 7000 AND 7010")
        .await;
    db.target("DELETE FROM `{db}`.plain WHERE id BETWEEN 8000 AND 8200")
        .await;
    db.source("DELETE FROM `{db}`.plain WHERE id BETWEEN 8000 AND 8200")
        .await;
    // Replicated before the planting, so the stream's delete cannot take the planted rows.
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    // Rows the source does not have, planted inside the range (its gap) and outside it.
    db.target("INSERT INTO `{db}`.plain VALUES (8100, 1, 'planted in range'), (8150, 1, 'x')")
        .await;
    db.target("UPDATE `{db}`.plain SET note = 'outside' WHERE id = 15000")
        .await;
    // The planted rows' ids stay the target's alone.
    let load = Load::start_avoiding(
        db.servers.source.clone(),
        &db.name,
        &KINDS[..1],
        n,
        8000..=8200,
    );
    let mut run = Concord::spawn(
        &config.sibling(),
        &[
            "snapshot",
            "--table",
            &format!("{}.plain", db.name),
            "--pk-from",
            "5000",
            "--pk-to",
            "9000",
        ],
    )
    .await;
    let code = run.wait_exit(Duration::from_secs(180)).await;
    assert_eq!(code, Some(0), "{}", run.log());
    assert!(
        run.log().contains("following its progress"),
        "the running replicator did the work: {}",
        run.log()
    );
    let writes = load.stop().await;
    assert!(writes > 100, "the load ran ({writes} writes)");
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    let range = "id BETWEEN 5000 AND 9000";
    let source: Vec<Vec<mysql_async::Value>> = rows_where(&db, false, "plain", range)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let target: Vec<Vec<mysql_async::Value>> = rows_where(&db, true, "plain", range)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(source.len(), target.len(), "the range holds the same rows");
    assert!(source == target, "the range equals the source");
    let outside = rows_where(&db, true, "plain", "id = 15000").await;
    assert_eq!(
        outside[0].get::<String, _>(2).as_deref(),
        Some("outside"),
        "rows outside the range are left alone"
    );
    let last = jobs(&config).await.pop().unwrap();
    assert!(last.2 >= 2, "the planted rows were deleted: {last:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_without_a_key_or_a_target_are_refused_by_name() {
    let db = TestDb::new("snapshot_refuse").await;
    db.source("CREATE TABLE `{db}`.keyless (a INT, b INT)")
        .await;
    db.source("CREATE TABLE `{db}`.fresh (id INT PRIMARY KEY, v VARCHAR(10))")
        .await;
    db.source("INSERT INTO `{db}`.fresh VALUES (1, 'one'), (2, 'two')")
        .await;
    let all = ConcordConfig::new(&db);
    // The replicator refuses keyless tables it replicates: the later runs, which stream,
    // replicate only `fresh`.
    let mut fresh_only = all.clone();
    fresh_only.include = vec![format!("{}.fresh", db.name)];
    let snapshot = |config: &ConcordConfig, table: &str, more: &[&str]| {
        let path = config.dir.join("cli.toml");
        std::fs::write(&path, config.toml()).unwrap();
        let mut args = vec![
            "snapshot".to_owned(),
            "--config".into(),
            path.display().to_string(),
            "--table".into(),
            format!("{}.{table}", db.name),
        ];
        args.extend(more.iter().map(|s| s.to_string()));
        async move {
            let out = tokio::process::Command::new(binary())
                .args(&args)
                .output()
                .await
                .unwrap();
            (
                out.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        }
    };
    let (code, out) = snapshot(&all, "keyless", &[]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!("{}.keyless", db.name)) && out.contains("no primary key"),
        "{out}"
    );
    let (code, out) = snapshot(&all, "fresh", &[]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!("{}.fresh", db.name)) && out.contains("--create-tables"),
        "{out}"
    );
    let (code, out) = snapshot(&fresh_only, "fresh", &["--create-tables"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("CREATE TABLE"), "the DDL is shown: {out}");
    db.assert_same("fresh", "*").await;
    let (code, out) = snapshot(&fresh_only, "fresh", &["--pk-from", "not-a-number"]).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("not a whole number"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_kafka_mode_the_capture_publishes_snapshot_rows_in_order_with_changes() {
    let db = TestDb::new("snapshot_kafka").await;
    let n = 8_000;
    fill(&db, &[&KINDS[0], &KINDS[1]], n).await;
    let load = Load::start(db.servers.source.clone(), &db.name, &KINDS[..2], n);
    let p = Pipeline::start_edited(
        concord_e2e::broker::Kind::Tansu,
        &db,
        Mode::Kafka,
        "2s",
        true,
        |c| c.snapshot = "mode = \"initial\"\nthreads = 2\nchunk_rows = 1000\n".into(),
    )
    .await;
    wait_jobs_done(&p.config, 2, Duration::from_secs(180)).await;
    let writes = load.stop().await;
    assert!(writes > 100, "the load ran ({writes} writes)");
    p.wait_applied(&db, &["plain", "regional"]).await;
    let capture = p.capture.as_ref().unwrap();
    assert!(
        capture.metric("concord_snapshot_rows_total", &[]).await > 0.0,
        "the capture published the snapshot"
    );
    // The topic holds snapshot reads as Debezium names them.
    let (brokers, topic, ..) = p.config.kafka.clone().unwrap();
    let reads = count_reads(&brokers, &topic).await;
    assert!(reads > 0, "op = \"r\" envelopes on the topic");
}

/// How many of the topic's first messages are snapshot reads (`"op":"r"`).
async fn count_reads(brokers: &str, topic: &str) -> usize {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::Message;
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reads-{}", rand::random::<u32>()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut reads = 0;
    for _ in 0..2000 {
        let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(10), consumer.recv()).await else {
            break;
        };
        if m.payload()
            .is_some_and(|p| String::from_utf8_lossy(p).contains("\"op\":\"r\""))
        {
            reads += 1;
            if reads >= 10 {
                break;
            }
        }
    }
    reads
}

/// `concord recovery batch --copy --since`: the rows a time window changed are copied again
/// (keys read back from the binlogs); with no replicator running, the command streams
/// itself until the copy is done.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_copy_of_a_window_copies_the_rows_it_changed() {
    let db = TestDb::new("snapshot_window").await;
    fill(&db, &[&KINDS[0]], 2_000).await;
    db.target(&sql(KINDS[0].fill, &db.name, 2_000, 0, 0)).await;
    let config = ConcordConfig::new(&db);
    // Changed on the source while no replicator ran; lost on the target.
    db.source("UPDATE `{db}`.plain SET note = 'changed' WHERE id IN (3, 30, 300)")
        .await;
    db.source("DELETE FROM `{db}`.plain WHERE id = 4").await;
    let path = config.dir.join("cli.toml");
    std::fs::write(&path, config.toml()).unwrap();
    let out = tokio::process::Command::new(binary())
        .args(["recovery", "batch", "--copy", "--since", "10m", "--table"])
        .arg(format!("{}.plain", db.name))
        .arg("--config")
        .arg(&path)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("(keys)"), "a job of listed keys: {text}");
    db.assert_same("plain", "*").await;
}

/// A text key in a case-insensitive collation: the target's `'ABC'` is the source's row
/// `'abc'` — copied over, never deleted as a row the source lacks; a row only the target
/// has is deleted.
#[tokio::test(flavor = "multi_thread")]
async fn keys_equal_under_the_collation_are_the_same_row() {
    let db = TestDb::new("snapshot_collation").await;
    db.both(
        "CREATE TABLE `{db}`.named (name VARCHAR(20) COLLATE utf8mb4_general_ci PRIMARY KEY, \
         v INT)",
    )
    .await;
    db.source("INSERT INTO `{db}`.named VALUES ('abc', 1), ('def', 2), ('ghi ', 3)")
        .await;
    db.target("INSERT INTO `{db}`.named VALUES ('ABC', 9), ('def', 2), ('ghi', 3), ('zzz', 4)")
        .await;
    let mut config = snapshot_config(&db);
    config.snapshot = "mode = \"initial\"\nthreads = 1\nchunk_rows = 100\n".into();
    let concord = Concord::start(&config).await;
    wait_jobs_done(&config, 1, Duration::from_secs(60)).await;
    let target: Vec<(String, i64)> = {
        let mut c = db.servers.target_conn().await;
        c.query(format!(
            "SELECT CONCAT('[', name, ']'), v FROM `{}`.named ORDER BY name",
            db.name
        ))
        .await
        .unwrap()
    };
    assert_eq!(
        target,
        vec![
            ("[abc]".to_owned(), 1),
            ("[def]".to_owned(), 2),
            ("[ghi ]".to_owned(), 3)
        ],
        "the row kept, its key and value the source's; the target-only row gone"
    );
    drop(concord);
}

/// A DDL of the table while it is being copied: the job describes the table again and goes
/// on from its last written chunk; the copy ends equal, with the new column's values.
#[tokio::test(flavor = "multi_thread")]
async fn a_ddl_during_the_copy_is_followed() {
    let db = TestDb::new("snapshot_ddl").await;
    let n = 30_000;
    fill(&db, &[&KINDS[0]], n).await;
    let mut config = snapshot_config(&db);
    config.snapshot = "mode = \"initial\"\nthreads = 2\nchunk_rows = 500\n".into();
    let concord = Concord::start(&config).await;
    wait_for(
        "a part of the table copied",
        Duration::from_secs(60),
        || async {
            let copied: i64 = jobs(&config).await.iter().map(|j| j.1).sum();
            (copied > 3000).then_some(())
        },
    )
    .await;
    db.target("ALTER TABLE `{db}`.plain ADD COLUMN extra INT NOT NULL DEFAULT 7")
        .await;
    db.source("ALTER TABLE `{db}`.plain ADD COLUMN extra INT NOT NULL DEFAULT 7")
        .await;
    db.source("UPDATE `{db}`.plain SET extra = id % 10 WHERE id % 3 = 0")
        .await;
    wait_jobs_done(&config, 1, Duration::from_secs(180)).await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    db.assert_same("plain", "*").await;
    assert!(
        concord.log().contains("definition changed"),
        "the job noticed: {}",
        concord.log()
    );
}
