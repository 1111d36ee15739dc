//! Source transactions of any size are applied, verified and published in bounded memory
//! (the reader hands them on in fragments of `source.fragment_rows`), exactly once: a
//! kill -9 or a lost source connection in the middle of one loses nothing and applies
//! nothing twice, and an XA transaction stays whole until its commit.
//!
//! The sizes come from the environment so the full-size run (a 5,000,000-row UPDATE and a
//! 2,000,000-row INSERT … SELECT, docs/BENCHMARKS.md) is the same test as CI's smaller
//! one: `CONCORD_BIG_UPDATE_ROWS`, `CONCORD_BIG_INSERT_ROWS`.

use concord_e2e::broker::Kind;
use concord_e2e::concord::mismatches;
use concord_e2e::pipeline::{wait_verified_binlog, Mode, Pipeline};
use concord_e2e::proxy::{host_port, Proxy};
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use mysql_async::prelude::Queryable;
use std::time::Duration;

/// sysbench's table shape: about 190 bytes a row.
const T: &str = "CREATE TABLE `{db}`.{t} (id INT PRIMARY KEY, k INT NOT NULL, \
                 c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL)";
/// What `concord run` may hold at its peak, whatever the transaction size — in this test's
/// debug build, whose peak varied from 128 to 151 MiB between runs of the same code. The
/// 150 MiB target is the release build's, checked by `bench/bigtxn.sh` (docs/BENCHMARKS.md);
/// this guards the bound itself: a transaction held whole took ten times as much.
const PEAK_RSS_LIMIT: u64 = 200 * 1024 * 1024;

fn rows(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Time for `rows` rows to go through, on a slow machine.
fn timeout_for(rows: u64) -> Duration {
    Duration::from_secs(60 + rows / 2_000)
}

fn fill(table: &str, rows: u64) -> String {
    format!(
        "INSERT INTO `{{db}}`.{table} SELECT seq, seq % 1000, LPAD(seq, 120, 'c'), \
         LPAD(seq, 60, 'p') FROM `{{db}}`.seq_1_to_{rows}"
    )
}

async fn setup(name: &str, tables: &[&str], filled: u64) -> TestDb {
    let db = TestDb::new(name).await;
    for t in tables {
        db.both(&T.replace("{t}", t)).await;
    }
    if filled > 0 {
        db.both(&fill(tables[0], filled)).await;
    }
    db
}

/// `CHECKSUM TABLE` on one side.
async fn checksum(db: &TestDb, target: bool, table: &str) -> Option<i64> {
    let mut c = if target {
        db.servers.target_conn().await
    } else {
        db.servers.source_conn().await
    };
    let row: Option<(String, Option<i64>)> = c
        .query_first(format!("CHECKSUM TABLE `{}`.{table}", db.name))
        .await
        .unwrap();
    row.and_then(|(_, sum)| sum)
}

async fn assert_same(db: &TestDb, table: &str) {
    assert_eq!(
        checksum(db, true, table).await,
        checksum(db, false, table).await,
        "{table}: target and source differ"
    );
}

/// Waits until `concord`'s checkpoint has passed everything the source has now.
async fn wait_applied(db: &TestDb, concord: &Concord, timeout: Duration) {
    let goal = db.servers.source_position().await;
    wait_for(&format!("checkpoint at {goal}"), timeout, || async {
        concord.checkpoint(&db.servers).await.filter(|p| *p >= goal)
    })
    .await;
}

async fn applied(concord: &Concord, db: &TestDb, table: &str, op: &str) -> f64 {
    let table = format!("{}.{table}", db.name);
    concord
        .metric(
            "concord_applied_events_total",
            &[("table", &table), ("op", op)],
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn large_transactions_are_applied_and_verified_in_bounded_memory() {
    let update_rows = rows("CONCORD_BIG_UPDATE_ROWS", 300_000);
    let insert_rows = rows("CONCORD_BIG_INSERT_ROWS", 200_000).min(update_rows);
    let db = setup("big_txn", &["t", "copy"], update_rows).await;
    let mut config = ConcordConfig::new(&db);
    config.extra = "\n[verifier]\ndelay = \"1s\"\nsave_every = \"200ms\"\n".into();
    let concord = Concord::start(&config).await;
    let timeout = timeout_for(update_rows + insert_rows);

    db.source("UPDATE `{db}`.t SET k = k + 1").await;
    db.source(&format!(
        "INSERT INTO `{{db}}`.copy SELECT * FROM `{{db}}`.t WHERE id <= {insert_rows}"
    ))
    .await;
    wait_applied(&db, &concord, timeout).await;
    assert_same(&db, "t").await;
    assert_same(&db, "copy").await;
    wait_verified_binlog(&db, &config, timeout).await;

    // VmHWM: the peak over the process's whole life, reading and verifying included.
    let peak = concord.peak_rss();
    eprintln!(
        "peak RSS of concord run: {:.1} MiB for a {update_rows}-row UPDATE and a \
         {insert_rows}-row INSERT … SELECT",
        peak as f64 / 1048576.0
    );
    assert!(
        peak <= PEAK_RSS_LIMIT,
        "peak RSS {peak} bytes is over {PEAK_RSS_LIMIT}"
    );
    assert_eq!(
        applied(&concord, &db, "t", "update").await,
        update_rows as f64
    );
    assert_eq!(
        applied(&concord, &db, "copy", "insert").await,
        insert_rows as f64
    );
    let verified = concord.metric("concord_verified_total", &[]).await;
    assert!(
        verified >= (update_rows + insert_rows) as f64,
        "every change verified: {verified}"
    );
    assert_eq!(mismatches(&config).await, vec![], "nothing differs");
    assert!(concord.failed_events().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_the_middle_of_a_large_transaction_loses_nothing_and_applies_nothing_twice() {
    let n = rows("CONCORD_BIG_KILL_ROWS", 200_000);
    let db = setup("big_kill", &["t"], n).await;
    let mut config = ConcordConfig::new(&db);
    config.source = "fragment_rows = 1000\n".into();
    let mut concord = Concord::start_role(&config, "replicate").await;
    let before = checksum(&db, true, "t").await;

    db.source("UPDATE `{db}`.t SET k = k + 1, c = CONCAT('updated ', id)")
        .await;
    let goal = db.servers.source_position().await;
    // Some parts written into the open target transaction, not all.
    wait_for("a tenth of the update applied", timeout_for(n), || async {
        (applied(&concord, &db, "t", "update").await >= (n / 10) as f64).then_some(())
    })
    .await;
    concord.kill9().await;
    let checkpoint = concord.checkpoint(&db.servers).await.expect("checkpoint");
    assert!(checkpoint < goal, "killed before the transaction committed");
    assert_eq!(
        checksum(&db, true, "t").await,
        before,
        "none of the interrupted transaction is visible on the target"
    );

    let concord = Concord::start_role(&config, "replicate").await;
    wait_applied(&db, &concord, timeout_for(n)).await;
    assert_same(&db, "t").await;
    assert_eq!(
        applied(&concord, &db, "t", "update").await,
        n as f64,
        "the restarted run applied the whole transaction once"
    );
    assert!(concord.failed_events().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_source_connection_in_the_middle_of_a_large_transaction_hands_on_no_row_twice() {
    let n = 100_000;
    let db = setup("big_reconnect", &["t"], 0).await;
    let proxy = Proxy::start(&host_port(&db.servers.source_url)).await;
    let mut config = ConcordConfig::new(&db);
    config.source_url = proxy.url();
    // Small fragments, and a read-ahead of a fragment or two: the reader stays inside
    // the transaction while the applier works through it.
    config.source = "fragment_rows = 500\n".into();
    config.replicator = "queue_transactions = 2\nqueue_bytes = \"64 KiB\"\n".into();
    let concord = Concord::start_role(&config, "replicate").await;

    db.source(&fill("t", n)).await;
    wait_for("a tenth of the insert applied", timeout_for(n), || async {
        (applied(&concord, &db, "t", "insert").await >= (n / 10) as f64).then_some(())
    })
    .await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.restore();
    wait_applied(&db, &concord, timeout_for(n)).await;
    assert_same(&db, "t").await;
    assert!(concord.metric("concord_binlog_reconnects_total", &[]).await >= 1.0);
    assert_eq!(
        concord
            .metric("concord_role_restarts_total", &[("role", "replicator")])
            .await,
        0.0,
        "the reader reconnected; the run went on"
    );
    assert_eq!(
        applied(&concord, &db, "t", "insert").await,
        n as f64,
        "no row was handed on twice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_xa_transaction_larger_than_the_bound_stays_whole_until_its_commit() {
    let db = setup("big_xa", &["t"], 0).await;
    let mut config = ConcordConfig::new(&db);
    config.source = "fragment_rows = 100\n".into();
    let mut concord = Concord::start_role(&config, "replicate").await;
    let xa = |name: &str, from: u64, end: &str| {
        let x = format!("'{}-{name}'", db.name);
        vec![
            format!("XA START {x}"),
            format!(
                "INSERT INTO `{{db}}`.t SELECT seq, 0, 'xa', 'xa' FROM `{{db}}`.seq_{from}_to_{}",
                from + 999
            ),
            format!("XA END {x}"),
            format!("XA PREPARE {x}"),
            format!("XA {end} {x}"),
        ]
    };
    for stmts in [xa("rolled", 1, "ROLLBACK"), xa("kept", 1001, "COMMIT")] {
        let mut c = db.servers.source_conn().await;
        for s in stmts {
            c.query_drop(s.replace("{db}", &db.name)).await.unwrap();
        }
    }
    db.source("INSERT INTO `{db}`.t VALUES (5000, 1, 'plain', 'plain')")
        .await;
    wait_applied(&db, &concord, Duration::from_secs(60)).await;
    assert!(concord.running(), "log:\n{}", concord.log());
    assert_same(&db, "t").await;
    assert_eq!(
        db.count(true, "t").await,
        1001,
        "the rolled-back rows never came"
    );
    assert!(concord.failed_events().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_mode_publishes_a_large_transaction_as_it_is_read() {
    let n = 30_000;
    let db = setup("big_kafka", &["t"], 0).await;
    let pipeline = Pipeline::start_edited(Kind::Tansu, &db, Mode::Kafka, "1s", true, |c| {
        c.source = "fragment_rows = 1000\n".into();
    })
    .await;
    db.source(&fill("t", n)).await;
    db.source("UPDATE `{db}`.t SET k = k + 1 WHERE id % 3 = 0")
        .await;
    wait_for("the target to converge", timeout_for(n), || async {
        (checksum(&db, true, "t").await == checksum(&db, false, "t").await).then_some(())
    })
    .await;
    pipeline.wait_verified(&db, timeout_for(n)).await;
    assert_eq!(
        mismatches(&pipeline.config).await,
        vec![],
        "nothing differs"
    );
    assert!(pipeline.reader().failed_events().await.is_empty());
}
