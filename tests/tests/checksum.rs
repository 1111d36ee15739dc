//! `concord checksum`: whole tables compared chunk by chunk while writes go on; only rows
//! the source confirms are recorded, and an interrupted run resumes.

use concord_e2e::concord::{checksum_runs, mismatches};
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use mysql_async::prelude::Queryable;
use rand::Rng;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LEDGER: &str = "CREATE TABLE `{db}`.ledger (id BIGINT PRIMARY KEY, \
    amount DECIMAL(12,2) NOT NULL, note VARCHAR(40), kind ENUM('in','out'), \
    tag VARBINARY(16), at DATETIME(6), score DOUBLE, doc JSON)";
const CLEAN: &str =
    "CREATE TABLE `{db}`.clean (id INT PRIMARY KEY, label VARCHAR(20), qty INT NOT NULL)";

/// `n` ledger rows from the SEQUENCE engine, every column filled; ids are `step` apart
/// (a step of 1 gives dense keys, whose chunk ends the checksum computes; wider steps make
/// it walk the key).
fn fill_ledger(n: u32, step: u32) -> String {
    format!(
        "INSERT INTO `{{db}}`.ledger SELECT seq * {step}, seq * 1.25, CONCAT('note ', seq), \
         IF(seq % 2, 'in', 'out'), UNHEX(LPAD(HEX(seq), 8, '0')), \
         '2024-03-01 10:00:00.000001' + INTERVAL seq SECOND, seq / 7, \
         CONCAT('{{\"n\": ', seq, '}}') FROM `{{db}}`.seq_1_to_{n}"
    )
}

fn checksum_config(db: &TestDb, more: &str) -> ConcordConfig {
    let mut config = ConcordConfig::new(db);
    config.extra = format!(
        "\n[verifier]\nretry_after = \"300ms\"\n\n[checksum]\nchunk_time = \"20ms\"\n\
         first_chunk_rows = 500\n{more}\n"
    );
    config
}

async fn checksum(config: &ConcordConfig, args: &[&str]) -> (Option<i32>, String) {
    let mut run = Concord::spawn(&config.sibling(), &[&["checksum"], args].concat()).await;
    let code = run.wait_exit(Duration::from_secs(240)).await;
    (code, run.log())
}

/// Updates, deletes and re-inserts even ids of the ledger until stopped.
fn write_even_rows(pool: mysql_async::Pool, db: String, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    let done = Arc::new(AtomicU64::new(0));
    let count = done.clone();
    tokio::spawn(async move {
        let mut conn = pool.get_conn().await.unwrap();
        while !stop.load(Ordering::Relaxed) {
            let id = 2 * rand::rng().random_range(1..=15_000i64);
            let sql = if id % 10 == 0 {
                format!(
                    "DELETE FROM `{db}`.ledger WHERE id = {id}; \
                     INSERT INTO `{db}`.ledger (id, amount, note) VALUES ({id}, 1, 'again')"
                )
            } else {
                format!("UPDATE `{db}`.ledger SET amount = amount + 1, at = NOW(6) WHERE id = {id}")
            };
            if conn.query_drop(sql).await.is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    done
}

#[tokio::test(flavor = "multi_thread")]
async fn checksum_records_exactly_the_corrupted_rows_while_writes_continue() {
    let db = TestDb::new("checksum_corrupt").await;
    db.both(LEDGER).await;
    db.both(CLEAN).await;
    let config = checksum_config(&db, "");
    let mut replicator = Concord::start_role(&config, "replicate").await;
    db.source(&fill_ledger(30_000, 1)).await;
    db.source(
        "INSERT INTO `{db}`.clean SELECT seq, CONCAT('c', seq), seq FROM `{db}`.seq_1_to_5000",
    )
    .await;
    replicator
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    assert_eq!(db.count(true, "ledger").await, 30_000);

    // Writes on even ids keep going; the target's odd ids are changed behind concord's
    // back: 40 changed (10 of them to NULL), 30 deleted, 30 extra (two before the first
    // source key, the rest after the last).
    let stop = Arc::new(AtomicBool::new(false));
    let writes = write_even_rows(
        mysql_async::Pool::new(db.servers.source_url.as_str()),
        db.name.clone(),
        stop.clone(),
    );
    let changed: Vec<i64> = (0..40).map(|i| 1 + 2 * (i * 373 % 15_000)).collect();
    let deleted: Vec<i64> = (0..30).map(|i| 3 + 2 * (i * 491 % 14_000)).collect();
    let changed: Vec<i64> = changed
        .into_iter()
        .filter(|id| !deleted.contains(id))
        .collect();
    let extra: Vec<i64> = [-3, -1]
        .into_iter()
        .chain((0..28).map(|i| 40_001 + 2 * i))
        .collect();
    let list = |ids: &[i64]| {
        ids.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    db.target(&format!(
        "UPDATE `{{db}}`.ledger SET amount = amount + 0.01 WHERE id IN ({})",
        list(&changed[10..])
    ))
    .await;
    db.target(&format!(
        "UPDATE `{{db}}`.ledger SET note = NULL WHERE id IN ({})",
        list(&changed[..10])
    ))
    .await;
    db.target(&format!(
        "DELETE FROM `{{db}}`.ledger WHERE id IN ({})",
        list(&deleted)
    ))
    .await;
    db.target(&format!(
        "INSERT INTO `{{db}}`.ledger (id, amount, note) VALUES {}",
        extra
            .iter()
            .map(|id| format!("({id}, 9.99, 'extra')"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .await;

    let table = format!("{}.ledger", db.name);
    let clean = format!("{}.clean", db.name);
    let (code, log) = checksum(&config, &["--table", &table, "--table", &clean]).await;
    stop.store(true, Ordering::Relaxed);
    assert!(
        writes.load(Ordering::Relaxed) > 50,
        "writes went on during the checksum"
    );
    assert_eq!(code, Some(3), "mismatches found → exit 3; log:\n{log}");

    let found = mismatches(&config).await;
    let by_kind = |kind: &str| -> BTreeSet<i64> {
        found
            .iter()
            .filter(|m| m.kind == kind)
            .map(|m| {
                let key: serde_json::Value = serde_json::from_str(&m.key).unwrap();
                key[0][1]["value"].as_i64().expect("integer key")
            })
            .collect()
    };
    assert_eq!(
        by_kind("differs"),
        changed.iter().copied().collect(),
        "{found:#?}"
    );
    assert_eq!(by_kind("missing"), deleted.iter().copied().collect());
    assert_eq!(by_kind("extra"), extra.iter().copied().collect());
    assert_eq!(
        found.len(),
        changed.len() + deleted.len() + extra.len(),
        "nothing else recorded (even ids were written throughout)"
    );
    assert!(found
        .iter()
        .all(|m| m.detected_by == "checksum" && m.table == table));
    let nulled = found
        .iter()
        .find(|m| m.key.contains(&format!("\"value\":{}}}", changed[0])))
        .expect("the NULLed row");
    assert_eq!(nulled.columns, vec!["note".to_owned()], "{}", nulled.detail);
    let amount = found
        .iter()
        .find(|m| m.key.contains(&format!("\"value\":{}}}", changed[10])))
        .expect("a changed amount");
    assert_eq!(
        amount.columns,
        vec!["amount".to_owned()],
        "{}",
        amount.detail
    );

    // The summary: the clean table had no differing chunk.
    let line = log
        .lines()
        .find(|l| l.starts_with(&clean))
        .unwrap_or_else(|| panic!("no summary line for {clean}:\n{log}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[1..6], &["5000", fields[2], "0", "0", "0"], "{line}");
    let runs = checksum_runs(&config, &table).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].0, "done");
    assert_eq!(runs[0].3 as usize, found.len());
    assert!(runs[0].1 > 3, "several chunks: {runs:?}");

    // Checked again, the clean table alone: nothing found, exit 0, nothing new recorded.
    let (code, log) = checksum(&config, &["--table", &clean]).await;
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(mismatches(&config).await.len(), found.len());
    replicator.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_checksum_resumes_after_its_last_chunk() {
    let db = TestDb::new("checksum_resume").await;
    db.both(LEDGER).await;
    let config = checksum_config(&db, "");
    let mut replicator = Concord::start_role(&config, "replicate").await;
    // Ids ten apart: chunk ends are found by walking the key (the other tests use dense
    // keys, whose ends are computed).
    db.source(&fill_ledger(30_000, 10)).await;
    replicator
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    // Every 1000th row changed on the target: every chunk differs and is rechecked (at
    // least `retry_after` each), so the run is long enough to interrupt. The same edit on
    // rows of one chunk must not cancel out in the chunk's hash.
    db.target("UPDATE `{db}`.ledger SET amount = amount + 1 WHERE id % 10000 = 70")
        .await;
    let corrupted: BTreeSet<i64> = (0..30).map(|i| i * 10_000 + 70).collect();
    let table = format!("{}.ledger", db.name);

    let mut first = Concord::spawn(&config.sibling(), &["checksum", "--table", &table]).await;
    let at = wait_for("some chunks saved", Duration::from_secs(60), || {
        let config = config.clone();
        let table = table.clone();
        async move {
            let runs = checksum_runs(&config, &table).await;
            runs.first().filter(|r| r.1 >= 2).map(|r| r.1)
        }
    })
    .await;
    first.kill9().await;
    let saved = checksum_runs(&config, &table).await[0].clone();
    assert_eq!(saved.0, "running", "interrupted before the end: {saved:?}");
    assert!(saved.1 >= at && saved.2 < 30_000, "{saved:?}");

    let (code, log) = checksum(&config, &["--table", &table]).await;
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("resuming checksum run"), "{log}");
    let runs = checksum_runs(&config, &table).await;
    assert_eq!(runs.len(), 1, "the same run, resumed: {runs:?}");
    assert_eq!(runs[0].0, "done");
    // Every row counted once: no chunk skipped or counted twice across the interruption.
    assert_eq!(runs[0].2, 30_000, "{runs:?}");
    assert!(runs[0].1 > saved.1);
    // Each corrupted row recorded once; a chunk interrupted between recording and saving
    // is done again, so the run may count a row twice, never miss one.
    let found: BTreeSet<i64> = mismatches(&config)
        .await
        .iter()
        .map(|m| {
            let key: serde_json::Value = serde_json::from_str(&m.key).unwrap();
            key[0][1]["value"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(found, corrupted);
    assert!(runs[0].3 >= 30, "{runs:?}");

    // --restart starts over: the finished run stays, a new one covers the table again.
    db.target("UPDATE `{db}`.ledger SET amount = amount - 1 WHERE id % 10000 = 70")
        .await;
    let (code, log) = checksum(&config, &["--table", &table, "--restart"]).await;
    assert_eq!(code, Some(0), "repaired by hand, equal again: {log}");
    let runs = checksum_runs(&config, &table).await;
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[1].0.as_str(), runs[1].2, runs[1].3),
        ("done", 30_000, 0)
    );
    replicator.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_source_holds_the_checksum_and_a_missing_replicator_is_refused() {
    let db = TestDb::new("checksum_throttle").await;
    db.both(CLEAN).await;
    let table = format!("{}.clean", db.name);

    // No replicator has ever run for this config: refused with the reason.
    let config = checksum_config(&db, "max_threads_running = 4");
    let (code, log) = checksum(&config, &["--table", &table]).await;
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("no checkpoint of replicator"), "{log}");

    let mut replicator = Concord::start_role(&config, "replicate").await;
    db.source(
        "INSERT INTO `{db}`.clean SELECT seq, CONCAT('c', seq), seq FROM `{db}`.seq_1_to_1000",
    )
    .await;
    replicator
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    // Six statements running on the source: busier than `max_threads_running = 4`.
    let busy: Vec<_> = (0..6)
        .map(|_| {
            let pool = db.servers.source.clone();
            tokio::spawn(async move {
                let mut c = pool.get_conn().await.unwrap();
                c.query_drop("SELECT SLEEP(6)").await.unwrap();
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Concord::spawn(&config.sibling(), &["checksum", "--table", &table]).await;
    let log = wait_for(
        "the checksum to report a busy source",
        Duration::from_secs(5),
        || {
            let log = held.log();
            async move { log.contains("source busy; checksum waiting").then_some(log) }
        },
    )
    .await;
    assert!(log.contains("threads_running="), "{log}");
    let runs = checksum_runs(&config, &table).await;
    assert!(
        runs.iter().all(|r| r.1 == 0),
        "no chunk while the source is busy: {runs:?}"
    );
    // Rows added past the largest key the run saw when it started are chunked too: the
    // computed chunk ends read the largest key again before running to the end.
    db.source(
        "INSERT INTO `{db}`.clean SELECT seq, CONCAT('c', seq), seq \
         FROM `{db}`.seq_1001_to_3000",
    )
    .await;
    for b in busy {
        b.await.unwrap();
    }
    // Quiet again: the checksum goes on and finds the table equal.
    let code = held.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(code, Some(0), "{}", held.log());
    let runs = checksum_runs(&config, &table).await;
    assert_eq!((runs[0].0.as_str(), runs[0].2), ("done", 3000));
    // 500 rows, then at most four times as many, then the rest: without the second look
    // at the largest key, the second chunk would have run to the end.
    assert!(runs[0].1 >= 3, "{runs:?}");
    replicator.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arguments_are_named() {
    let db = TestDb::new("checksum_args").await;
    let config = checksum_config(&db, "");
    let (code, log) = checksum(&config, &["--table", "nodot"]).await;
    assert_eq!(code, Some(2), "clap usage error; {log}");
    assert!(log.contains("expected db.table, got `nodot`"), "{log}");
    let (code, log) = checksum(&config, &[]).await;
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("--table") && log.contains("--all"), "{log}");
}
