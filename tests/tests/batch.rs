//! `concord recovery batch`: a key range re-synced while replication and writes go on —
//! exactly the differing rows of the range repaired, resumable after kill -9, and a dry run
//! that prints the SQL and changes nothing.

use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use mysql_async::prelude::Queryable;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const RANGE: (i64, i64) = (100_001, 120_000);

async fn control(config: &ConcordConfig, sql: &str) -> Vec<sqlx::sqlite::SqliteRow> {
    let url = format!("sqlite://{}?mode=ro", config.control_db().display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(sql).fetch_all(&mut conn).await.unwrap()
}

/// Row count and a checksum of the range's rows on one side.
async fn fingerprint(db: &TestDb, target: bool, where_: &str) -> (i64, i64) {
    let mut c = if target {
        db.servers.target_conn().await
    } else {
        db.servers.source_conn().await
    };
    c.query_first(format!(
        "SELECT COUNT(*), CAST(COALESCE(SUM(CRC32(CONCAT_WS('|', id, k, pad))), 0) AS SIGNED) \
         FROM `{}`.t WHERE {where_}",
        db.name
    ))
    .await
    .unwrap()
    .unwrap()
}

fn batch_args(from: i64, to: i64, dry_run: bool) -> Vec<String> {
    let mut a: Vec<String> = ["recovery", "batch", "--table"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.push(String::new()); // the table, filled in by the caller
    a.extend([
        "--pk-from".into(),
        from.to_string(),
        "--pk-to".into(),
        to.to_string(),
    ]);
    if dry_run {
        a.push("--dry-run".into());
    }
    a
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_range_is_resynced_exactly_resumably_and_a_dry_run_changes_nothing() {
    let db = TestDb::new("batch_range").await;
    let mut config = ConcordConfig::new(&db);
    config.extra = "\n[verifier]\nretry_after = \"200ms\"\n\n[checksum]\nchunk_time = \"10ms\"\n\
                    first_chunk_rows = 200\n\n[recovery]\ngrace = \"5s\"\n"
        .into();
    db.both("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, k INT NOT NULL, pad VARCHAR(60))")
        .await;
    // 200,000 rows with even ids on both sides: the odd ids are free for extra rows.
    db.both(
        "SET STATEMENT max_recursive_iterations = 1000000 FOR \
         INSERT INTO `{db}`.t WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s \
         WHERE n < 200000) SELECT 2 * n, n % 1000, CONCAT('pad-', n) FROM s",
    )
    .await;
    let replicator = Concord::start_role(&config, "replicate").await;
    replicator
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    let (lo, hi) = RANGE;
    // 1,000 differences inside the range: 600 changed, 200 missing, 200 extra; and one
    // outside it, which the batch must leave alone.
    db.target(&format!(
        "UPDATE `{{db}}`.t SET pad = 'corrupt' WHERE id BETWEEN {lo} AND {hi} AND id % 20 = 0 \
         LIMIT 600"
    ))
    .await;
    db.target(&format!(
        "DELETE FROM `{{db}}`.t WHERE id BETWEEN {lo} AND {hi} AND id % 20 = 6 LIMIT 200"
    ))
    .await;
    db.target(&format!(
        "INSERT INTO `{{db}}`.t WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s \
         WHERE n < 199) SELECT {lo} + 2 * n, 0, 'extra' FROM s"
    ))
    .await;
    db.target("UPDATE `{db}`.t SET pad = 'outside' WHERE id = 300000")
        .await;
    let in_range = format!("id BETWEEN {lo} AND {hi}");
    // The rows the writer below changes are left out of "did anything else change".
    let untouched = format!("{in_range} AND id % 20 <> 8");
    let corrupted = fingerprint(&db, true, &untouched).await;
    assert_ne!(corrupted, fingerprint(&db, false, &in_range).await);

    // Writes go on meanwhile, on rows the corruption did not touch (inside the range too).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, pool, name) = (stop.clone(), db.servers.source.clone(), db.name.clone());
        tokio::spawn(async move {
            let mut conn = pool.get_conn().await.unwrap();
            let mut n: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = 2 * ((n * 7919) % 200_000 + 1);
                let id = id - id % 20 + 8; // ids ≡ 8 (mod 20): never corrupted
                conn.query_drop(format!("UPDATE `{name}`.t SET k = k + 1 WHERE id = {id}"))
                    .await
                    .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };
    let table = format!("{}.t", db.name);
    let run = |dry_run: bool| {
        let mut args = batch_args(lo, hi, dry_run);
        args[3] = table.clone();
        args
    };

    // The dry run: SQL printed, nothing written, nothing recorded.
    let args = run(true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut dry = Concord::spawn(&config.sibling(), &args).await;
    assert_eq!(
        dry.wait_exit(Duration::from_secs(240)).await,
        Some(0),
        "{}",
        dry.log()
    );
    let log = dry.log();
    assert!(
        log.contains("INSERT INTO") && log.contains("DELETE FROM"),
        "{log}"
    );
    assert!(log.contains("differing 1000"), "{log}");
    assert_eq!(
        fingerprint(&db, true, &untouched).await,
        corrupted,
        "a dry run writes nothing"
    );
    assert!(control(&config, "SELECT id FROM mismatches")
        .await
        .is_empty());

    // The real run, killed once its range check is under way, then run again: it resumes.
    let args = run(false);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut first = Concord::spawn(&config.sibling(), &args).await;
    wait_for(
        "the batch's range check under way",
        Duration::from_secs(120),
        || async {
            let runs = control(
            &config,
            "SELECT chunks FROM checksum_runs WHERE scope LIKE 'batch:%' AND state = 'running' \
             AND chunks >= 2",
        )
        .await;
            (!runs.is_empty()).then_some(())
        },
    )
    .await;
    first.kill9().await;
    let mut second = Concord::spawn(&config.sibling(), &args).await;
    let code = second.wait_exit(Duration::from_secs(300)).await;
    let log = second.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("resumed=true"),
        "the second run resumed the job: {log}"
    );
    stop.store(true, Ordering::Relaxed);
    assert!(
        writer.await.unwrap() > 50,
        "writes went on during the batch"
    );
    replicator
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;

    assert_eq!(
        fingerprint(&db, true, &in_range).await,
        fingerprint(&db, false, &in_range).await,
        "the range is re-synced"
    );
    let mut target = db.servers.target_conn().await;
    let outside: Option<String> = target
        .query_first(format!("SELECT pad FROM `{}`.t WHERE id = 300000", db.name))
        .await
        .unwrap();
    assert_eq!(
        outside.as_deref(),
        Some("outside"),
        "rows outside the range are left alone"
    );
    use sqlx::Row;
    let repaired = control(
        &config,
        "SELECT COUNT(DISTINCT subject_id) FROM recovery_history WHERE mode = 'batch' \
         AND to_state = 'repaired'",
    )
    .await;
    assert_eq!(
        repaired[0].get::<i64, _>(0),
        1000,
        "exactly the differing rows were repaired"
    );
    let jobs = control(&config, "SELECT state FROM batch_jobs ORDER BY id").await;
    let states: Vec<String> = jobs.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        states,
        vec!["done", "done"],
        "the dry run and one resumed job"
    );
}

/// The rows of one table that transactions committed in a window changed, read back from
/// the source's binlogs: exactly those of them that differ are repaired (a dry run first
/// shows the SQL); rows that differ but were not changed in the window are left alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_time_window_resyncs_exactly_the_rows_changed_in_it() {
    let db = TestDb::new("batch_window").await;
    let mut config = ConcordConfig::new(&db);
    config.extra = "\n[verifier]\nretry_after = \"200ms\"\n\n[recovery]\ngrace = \"5s\"\n".into();
    db.both("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, k INT NOT NULL, pad VARCHAR(60))")
        .await;
    db.both(
        "INSERT INTO `{db}`.t SELECT seq, seq % 100, CONCAT('pad-', seq) FROM `{db}`.seq_1_to_5000",
    )
    .await;
    db.both("CREATE TABLE `{db}`.other (id INT PRIMARY KEY, k INT NOT NULL)")
        .await;
    let replicator = Concord::start_role(&config, "replicate").await;
    // Before the window: a change, then a difference on the target.
    db.source("UPDATE `{db}`.t SET k = k + 1 WHERE id = 10")
        .await;
    replicator
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    db.target("UPDATE `{db}`.t SET pad = 'before' WHERE id = 10")
        .await;
    let now = |db: &TestDb| {
        let pool = db.servers.source.clone();
        async move {
            let mut c = pool.get_conn().await.unwrap();
            let t: String = c
                .query_first("SELECT DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%d %H:%i:%s')")
                .await
                .unwrap()
                .unwrap();
            t
        }
    };
    // Commit times are whole seconds: the window starts on the next one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = now(&db).await;
    // In the window: 51 rows changed, 10 inserted, 6 deleted, and another table's rows.
    db.source("UPDATE `{db}`.t SET k = k + 1 WHERE id BETWEEN 100 AND 150")
        .await;
    db.source("INSERT INTO `{db}`.t SELECT 5000 + seq, seq, 'new' FROM `{db}`.seq_1_to_10")
        .await;
    db.source("DELETE FROM `{db}`.t WHERE id BETWEEN 200 AND 205")
        .await;
    db.source("INSERT INTO `{db}`.other VALUES (1, 1), (2, 2)")
        .await;
    replicator
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    // Differences among them: 11 changed, 3 missing, 1 extra (a deleted row back); and
    // one of a row not changed in the window, which the batch must leave alone.
    db.target("UPDATE `{db}`.t SET pad = 'corrupt' WHERE id BETWEEN 100 AND 110")
        .await;
    db.target("DELETE FROM `{db}`.t WHERE id BETWEEN 5001 AND 5003")
        .await;
    db.target("INSERT INTO `{db}`.t VALUES (203, 0, 'extra')")
        .await;
    db.target("UPDATE `{db}`.t SET pad = 'outside' WHERE id = 3000")
        .await;
    let table = format!("{}.t", db.name);
    let args = |dry_run: bool| {
        let mut a = vec![
            "recovery".to_owned(),
            "batch".into(),
            "--table".into(),
            table.clone(),
            "--since".into(),
            since.clone(),
        ];
        if dry_run {
            a.push("--dry-run".into());
        }
        a
    };
    let window = "id BETWEEN 100 AND 110 OR id BETWEEN 5001 AND 5003 OR id = 203";
    let corrupted = fingerprint(&db, true, window).await;
    // A whole-table checksum found every difference first (rows 10 and 3000 too): the
    // batch still repairs exactly the window's, and leaves the others' records open.
    let mut checksum = Concord::spawn(&config.sibling(), &["checksum", "--table", &table]).await;
    assert_eq!(
        checksum.wait_exit(Duration::from_secs(120)).await,
        Some(3),
        "{}",
        checksum.log()
    );

    let a = args(true);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut dry = Concord::spawn(&config.sibling(), &a).await;
    assert_eq!(
        dry.wait_exit(Duration::from_secs(120)).await,
        Some(0),
        "{}",
        dry.log()
    );
    let log = dry.log();
    assert!(log.contains("differing 15"), "{log}");
    assert!(
        log.contains("INSERT INTO") && log.contains("DELETE FROM"),
        "{log}"
    );
    assert_eq!(
        fingerprint(&db, true, window).await,
        corrupted,
        "a dry run writes nothing"
    );

    let a = args(false);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut run = Concord::spawn(&config.sibling(), &a).await;
    assert_eq!(
        run.wait_exit(Duration::from_secs(120)).await,
        Some(0),
        "{}",
        run.log()
    );
    let log = run.log();
    assert!(log.contains("repaired 15"), "{log}");
    assert!(
        !log.contains("binlogs begin after --since"),
        "the binlogs reach back to the window: {log}"
    );
    assert_eq!(
        fingerprint(&db, true, window).await,
        fingerprint(&db, false, window).await,
        "the window's differing rows are re-synced"
    );
    let mut target = db.servers.target_conn().await;
    for (id, pad) in [(10, "before"), (3000, "outside")] {
        let now: Option<String> = target
            .query_first(format!("SELECT pad FROM `{}`.t WHERE id = {id}", db.name))
            .await
            .unwrap();
        assert_eq!(
            now.as_deref(),
            Some(pad),
            "row {id}, not changed in the window, is left alone"
        );
    }
    use sqlx::Row;
    let repaired = control(
        &config,
        "SELECT COUNT(DISTINCT subject_id) FROM recovery_history WHERE mode = 'batch' \
         AND to_state = 'repaired'",
    )
    .await;
    assert_eq!(repaired[0].get::<i64, _>(0), 15);
    let open = control(
        &config,
        "SELECT COUNT(*) FROM mismatches WHERE state IN ('detected', 'rechecking', 'needs_manual')",
    )
    .await;
    assert_eq!(open[0].get::<i64, _>(0), 2, "rows 10 and 3000 stay open");
}

/// A window job killed with SIGKILL mid-check and asked for again the same way (with a
/// relative `--since`) resumes the same window after its last finished page.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_window_job_resumes_its_window_after_its_last_page() {
    let db = TestDb::new("batch_window_kill").await;
    let mut config = ConcordConfig::new(&db);
    config.extra = "\n[verifier]\nretry_after = \"200ms\"\n".into();
    db.both("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, k INT NOT NULL, pad VARCHAR(60))")
        .await;
    db.both("INSERT INTO `{db}`.t SELECT seq, 0, CONCAT('pad-', seq) FROM `{db}`.seq_1_to_60000")
        .await;
    let replicator = Concord::start_role(&config, "replicate").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // 60,000 keys changed in the window (60 pages), 300 of them corrupted on the target.
    db.source("UPDATE `{db}`.t SET k = 1").await;
    replicator
        .wait_caught_up(&db.servers, Duration::from_secs(120))
        .await;
    db.target("UPDATE `{db}`.t SET pad = 'corrupt' WHERE id % 200 = 0")
        .await;
    let table = format!("{}.t", db.name);
    let args = ["recovery", "batch", "--table", &table, "--since", "10m"];
    let mut first = Concord::spawn(&config.sibling(), &args).await;
    wait_for(
        "the window's check under way",
        Duration::from_secs(120),
        || async {
            let runs = control(
            &config,
            "SELECT chunks FROM checksum_runs WHERE scope LIKE 'batch:%' AND state = 'running' \
             AND chunks >= 2",
        )
        .await;
            (!runs.is_empty()).then_some(())
        },
    )
    .await;
    first.kill9().await;
    let mut second = Concord::spawn(&config.sibling(), &args).await;
    let code = second.wait_exit(Duration::from_secs(300)).await;
    let log = second.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("resumed=true"),
        "the second run resumed the job: {log}"
    );
    assert!(log.contains("repaired 300"), "{log}");
    let all = "id > 0";
    assert_eq!(
        fingerprint(&db, true, all).await,
        fingerprint(&db, false, all).await,
        "the window's rows are re-synced"
    );
    use sqlx::Row;
    let jobs = control(&config, "SELECT state FROM batch_jobs ORDER BY id").await;
    let states: Vec<String> = jobs.iter().map(|r| r.get(0)).collect();
    assert_eq!(states, vec!["done"], "one job, resumed");
    let resumed_at = control(
        &config,
        "SELECT rows_checked FROM checksum_runs WHERE scope LIKE 'batch:%'",
    )
    .await;
    assert_eq!(
        resumed_at[0].get::<i64, _>(0),
        60_000,
        "every key checked once"
    );
}
