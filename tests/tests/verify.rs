//! The verifier, in direct and in kafka mode: changes are checked again after
//! `verifier.delay` against the target and the source; only confirmed differences become
//! mismatch records.

use concord_e2e::broker::Kind;
use concord_e2e::concord::{mismatches, verifier_positions, MismatchRecord};
use concord_e2e::pipeline::{wait_verified_binlog, Mode, Pipeline};
use concord_e2e::writer::{Writer, TABLE_DDL};
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use mysql_async::prelude::Queryable;
use rand::Rng;
use std::collections::BTreeSet;
use std::time::Duration;

const ACCOUNTS: &str = "CREATE TABLE `{db}`.accounts (id BIGINT PRIMARY KEY, \
    balance DECIMAL(14,2) NOT NULL, owner VARCHAR(40), opened DATETIME(6), \
    touched TIMESTAMP(6) NULL, doc JSON)";
const EVENTS: &str = "CREATE TABLE `{db}`.events (id INT UNSIGNED PRIMARY KEY, \
    kind ENUM('a','b','c'), payload BLOB, score DOUBLE, flags SET('x','y','z'))";
const CODES: &str =
    "CREATE TABLE `{db}`.codes (code CHAR(8) PRIMARY KEY, label VARCHAR(40), qty INT)";

fn account(id: i64) -> String {
    format!(
        "({id}, {id}.25, 'owner {id}', '2024-01-0{} 10:00:00.000001', '2024-05-01 12:00:00.5', \
         '{{\"n\": {id}, \"tags\": [\"a\"]}}')",
        id % 9 + 1
    )
}
fn event(id: i64) -> String {
    format!("({id}, 'b', x'00ff{id:02x}', {id}.5, 'x,z')")
}
fn code(i: i64) -> String {
    format!("('C{i:03}', 'label {i}', {i})")
}
fn rows(f: fn(i64) -> String, ids: std::ops::RangeInclusive<i64>) -> String {
    ids.map(f).collect::<Vec<_>>().join(", ")
}

/// The key of a record as plain text: `5`, or `C007`.
/// A background write load on `table` of the source: a small transaction every 5 ms.
fn write_load(db: &TestDb, table: &str) -> Writer {
    Writer::start(
        mysql_async::Pool::new(db.servers.source_url.as_str()),
        &db.name,
        &[table],
        Duration::from_millis(5),
    )
}

fn key_text(r: &MismatchRecord) -> String {
    let key: serde_json::Value = serde_json::from_str(&r.key).expect("key JSON");
    key.as_array().expect("key list")[0][1]["value"]
        .to_string()
        .trim_matches('"')
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn corruption_is_recorded_row_by_row_with_the_right_kind_direct() {
    corruption_is_recorded_row_by_row_with_the_right_kind(Mode::Direct).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corruption_is_recorded_row_by_row_with_the_right_kind_kafka() {
    corruption_is_recorded_row_by_row_with_the_right_kind(Mode::Kafka).await;
}

/// The target is changed behind concord's back while writes continue.
async fn corruption_is_recorded_row_by_row_with_the_right_kind(mode: Mode) {
    let db = TestDb::new(if mode == Mode::Direct {
        "verify_corrupt"
    } else {
        "kverify_corrupt"
    })
    .await;
    for ddl in [ACCOUNTS, EVENTS, CODES] {
        db.both(ddl).await;
    }
    db.both(&TABLE_DDL.replace("{t}", "load")).await;
    // The corruption must land inside the delay; under a full parallel test run the steps
    // below took longer than 4 s once, so the window is generous and checked.
    let pipeline = Pipeline::start(&db, mode, "15s", false).await;
    let config = pipeline.config.clone();
    db.source(&format!(
        "INSERT INTO `{{db}}`.accounts VALUES {}",
        rows(account, 1..=60)
    ))
    .await;
    db.source(&format!(
        "INSERT INTO `{{db}}`.events VALUES {}",
        rows(event, 1..=60)
    ))
    .await;
    db.source(&format!(
        "INSERT INTO `{{db}}`.codes VALUES {}",
        rows(code, 1..=60)
    ))
    .await;
    pipeline
        .wait_applied(&db, &["accounts", "events", "codes"])
        .await;
    let writer = write_load(&db, "load");

    // Source changes, replicated; then, inside the verifier's delay, the target is
    // changed behind concord's back.
    let window = std::time::Instant::now();
    db.source("UPDATE `{db}`.accounts SET balance = balance + 1 WHERE id <= 40")
        .await;
    db.source("UPDATE `{db}`.events SET score = score + 1 WHERE id <= 20")
        .await;
    db.source("DELETE FROM `{db}`.events WHERE id BETWEEN 21 AND 40")
        .await;
    db.source("DELETE FROM `{db}`.codes WHERE code <= 'C020'")
        .await;
    db.source("UPDATE `{db}`.codes SET qty = qty + 1 WHERE code BETWEEN 'C021' AND 'C040'")
        .await;
    pipeline
        .wait_applied(&db, &["accounts", "events", "codes"])
        .await;
    db.target("UPDATE `{db}`.accounts SET owner = 'mallory' WHERE id <= 20")
        .await;
    db.target(
        "UPDATE `{db}`.accounts SET balance = balance + 100, doc = '{\"n\": 0}' \
         WHERE id BETWEEN 21 AND 40",
    )
    .await;
    db.target("DELETE FROM `{db}`.events WHERE id <= 20").await;
    db.target(&format!(
        "INSERT INTO `{{db}}`.events VALUES {}",
        rows(event, 21..=40)
    ))
    .await;
    db.target(&format!(
        "INSERT INTO `{{db}}`.codes VALUES {}",
        rows(code, 1..=20)
    ))
    .await;
    db.target("DELETE FROM `{db}`.codes WHERE code BETWEEN 'C021' AND 'C040'")
        .await;
    assert!(
        window.elapsed() < Duration::from_secs(14),
        "the corruption took {:?}, longer than the verifier's delay: the test proves nothing",
        window.elapsed()
    );

    let found = wait_for("120 mismatch records", Duration::from_secs(90), || {
        let config = config.clone();
        async move {
            let m = mismatches(&config).await;
            (m.len() >= 120).then_some(m)
        }
    })
    .await;
    writer.stop().await;
    pipeline.wait_applied(&db, &["load"]).await;
    pipeline.wait_verified(&db, Duration::from_secs(60)).await;
    let found = {
        let again = mismatches(&config).await;
        assert_eq!(
            again.len(),
            found.len(),
            "no record after the expected ones"
        );
        again
    };

    let db_name = &db.name;
    let mut expected: BTreeSet<(String, String, String, Vec<String>)> = BTreeSet::new();
    let all = |cols: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cols.iter().map(|c| c.to_string()).collect();
        v.sort();
        v
    };
    for id in 1..=20 {
        expected.insert((
            format!("{db_name}.accounts"),
            id.to_string(),
            "differs".into(),
            all(&["owner"]),
        ));
        expected.insert((
            format!("{db_name}.events"),
            id.to_string(),
            "missing".into(),
            all(&["id", "kind", "payload", "score", "flags"]),
        ));
        expected.insert((
            format!("{db_name}.codes"),
            format!("C{id:03}"),
            "extra".into(),
            all(&["code", "label", "qty"]),
        ));
    }
    for id in 21..=40 {
        expected.insert((
            format!("{db_name}.accounts"),
            id.to_string(),
            "differs".into(),
            all(&["balance", "doc"]),
        ));
        expected.insert((
            format!("{db_name}.events"),
            id.to_string(),
            "extra".into(),
            all(&["id", "kind", "payload", "score", "flags"]),
        ));
        expected.insert((
            format!("{db_name}.codes"),
            format!("C{id:03}"),
            "missing".into(),
            all(&["code", "label", "qty"]),
        ));
    }
    let got: BTreeSet<(String, String, String, Vec<String>)> = found
        .iter()
        .map(|r| {
            (
                r.table.clone(),
                key_text(r),
                r.kind.clone(),
                r.columns.clone(),
            )
        })
        .collect();
    assert_eq!(got.len(), found.len(), "one record per row: {found:#?}");
    let missing: Vec<_> = expected.difference(&got).collect();
    let unexpected: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "not recorded: {missing:#?}\nrecorded but not corrupted: {unexpected:#?}"
    );
    assert!(found.iter().all(|r| r.state == "detected"));

    // The differing values themselves: source's and target's, for one row.
    let owner = found
        .iter()
        .find(|r| r.table.ends_with(".accounts") && key_text(r) == "7")
        .expect("account 7");
    assert!(
        owner.detail.contains("owner 7") && owner.detail.contains("mallory"),
        "{}",
        owner.detail
    );
    let balance = found
        .iter()
        .find(|r| r.table.ends_with(".accounts") && key_text(r) == "30")
        .expect("account 30");
    assert!(
        balance.detail.contains("31.25") && balance.detail.contains("131.25"),
        "{}",
        balance.detail
    );

    let concord = &pipeline.verifier;
    let detected = concord
        .metric("concord_mismatches_detected_total", &[])
        .await;
    assert_eq!(detected, 120.0);
    wait_for("open mismatches gauge", Duration::from_secs(15), || {
        let c = concord;
        async move {
            (c.metric("concord_open_mismatches", &[("state", "detected")])
                .await
                == 120.0)
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_rows_without_corruption_record_nothing_direct() {
    hot_rows_without_corruption_record_nothing(Mode::Direct).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_rows_without_corruption_record_nothing_kafka() {
    hot_rows_without_corruption_record_nothing(Mode::Kafka).await;
}

/// Many concurrent updates of a few rows, rows deleted and inserted again.
async fn hot_rows_without_corruption_record_nothing(mode: Mode) {
    let db = TestDb::new(if mode == Mode::Direct {
        "verify_hot"
    } else {
        "kverify_hot"
    })
    .await;
    db.both("CREATE TABLE `{db}`.hot (id INT PRIMARY KEY, n BIGINT NOT NULL, note VARCHAR(20))")
        .await;
    db.source("INSERT INTO `{db}`.hot VALUES (1,0,'a'),(2,0,'a'),(3,0,'a'),(4,0,'a'),(5,0,'a')")
        .await;
    let pipeline = Pipeline::start(&db, mode, "2s", false).await;
    let config = pipeline.config.clone();
    let concord = &pipeline.verifier;

    let pool = mysql_async::Pool::new(db.servers.source_url.as_str());
    let mut workers = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(15);
    for w in 0..4 {
        let pool = pool.clone();
        let name = db.name.clone();
        workers.push(tokio::spawn(async move {
            let mut conn = pool.get_conn().await.unwrap();
            let mut done = 0u32;
            while std::time::Instant::now() < until {
                let id = rand::rng().random_range(1..=5);
                let r: u32 = rand::rng().random_range(0..10);
                let sql = if r == 0 {
                    // Deleted and inserted again, in one transaction.
                    format!(
                        "BEGIN; DELETE FROM `{name}`.hot WHERE id = {id}; \
                         INSERT INTO `{name}`.hot VALUES ({id}, {done}, 'back {w}'); COMMIT"
                    )
                } else if r == 1 {
                    format!("DELETE FROM `{name}`.hot WHERE id = {id}")
                } else if r == 2 {
                    format!("INSERT IGNORE INTO `{name}`.hot VALUES ({id}, 0, 'new {w}')")
                } else {
                    format!(
                        "UPDATE `{name}`.hot SET n = n + 1, note = 'w{w} {done}' WHERE id = {id}"
                    )
                };
                // Deadlocks between the workers are part of a hot-row load.
                if conn.query_drop(&sql).await.is_ok() {
                    done += 1;
                } else {
                    let _ = conn.query_drop("ROLLBACK").await;
                }
            }
            done
        }));
    }
    let mut writes = 0;
    for w in workers {
        writes += w.await.unwrap();
    }
    assert!(writes > 500, "the load wrote {writes} times");
    pipeline.wait_applied(&db, &["hot"]).await;
    pipeline.wait_verified(&db, Duration::from_secs(60)).await;
    db.wait_same("hot", "*", Duration::from_secs(5)).await;

    assert_eq!(
        mismatches(&config).await,
        vec![],
        "no corruption, no mismatch"
    );
    let verified = concord.metric("concord_verified_total", &[]).await;
    let matched = concord
        .metric("concord_verified_total", &[("result", "match")])
        .await;
    assert!(
        verified >= 100.0 && matched > 0.0,
        "verified {verified}, of them matched {matched}"
    );
    assert_eq!(
        concord
            .metric("concord_verified_total", &[("result", "mismatch")])
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replicator_behind_by_more_than_the_delay_is_not_a_mismatch_direct() {
    a_replicator_behind_by_more_than_the_delay_is_not_a_mismatch(Mode::Direct).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replicator_behind_by_more_than_the_delay_is_not_a_mismatch_kafka() {
    a_replicator_behind_by_more_than_the_delay_is_not_a_mismatch(Mode::Kafka).await;
}

async fn a_replicator_behind_by_more_than_the_delay_is_not_a_mismatch(mode: Mode) {
    let db = TestDb::new(if mode == Mode::Direct {
        "verify_lag"
    } else {
        "kverify_lag"
    })
    .await;
    db.both(&TABLE_DDL.replace("{t}", "items")).await;
    let pipeline = Pipeline::start(&db, mode, "2s", true).await;
    let config = pipeline.config.clone();
    let (replicator, verifier) = (pipeline.replicator(), &pipeline.verifier);
    let writer = write_load(&db, "items");
    tokio::time::sleep(Duration::from_secs(3)).await;
    replicator.pause().await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during_pause = verifier.metric("concord_verified_total", &[]).await;
    replicator.resume().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let committed = writer.stop().await;
    assert!(
        committed > 100,
        "the writer committed {committed} transactions"
    );
    pipeline.wait_applied(&db, &["items"]).await;
    pipeline.wait_verified(&db, Duration::from_secs(60)).await;

    assert_eq!(mismatches(&config).await, vec![], "lag is not a mismatch");
    let after = verifier.metric("concord_verified_total", &[]).await;
    assert!(
        after > during_pause,
        "verification caught up once the replicator resumed ({during_pause} → {after})"
    );
    db.assert_same("items", "*").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_verifier_resumes_from_its_saved_position_direct() {
    the_verifier_resumes_from_its_saved_position(Mode::Direct).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_verifier_resumes_from_its_saved_position_kafka() {
    the_verifier_resumes_from_its_saved_position(Mode::Kafka).await;
}

async fn the_verifier_resumes_from_its_saved_position(mode: Mode) {
    let db = TestDb::new(if mode == Mode::Direct {
        "verify_resume"
    } else {
        "kverify_resume"
    })
    .await;
    db.both(&TABLE_DDL.replace("{t}", "items")).await;
    // The verifier is SIGKILLed below: in kafka mode on nisshi, which evicts the dead group
    // member (tansu 0.6.0 would hold its partitions until the rebalance timeout).
    let mut pipeline = Pipeline::start_on(Kind::Nisshi, &db, mode, "1s", true).await;
    for id in 1..=300 {
        db.source(&format!(
            "INSERT INTO `{{db}}`.items (id, v, note) VALUES ({id}, {id}, 'first')"
        ))
        .await;
    }
    pipeline.wait_applied(&db, &["items"]).await;
    pipeline.wait_verified(&db, Duration::from_secs(30)).await;
    let first = pipeline
        .verifier
        .metric("concord_verified_total", &[])
        .await;
    assert!(first >= 300.0, "first run verified {first}");
    pipeline.verifier.kill9().await;

    for id in 301..=330 {
        db.source(&format!(
            "INSERT INTO `{{db}}`.items (id, v, note) VALUES ({id}, {id}, 'second')"
        ))
        .await;
    }
    pipeline.wait_applied(&db, &["items"]).await;
    pipeline.verifier = pipeline.new_verifier().await;
    pipeline.wait_verified(&db, Duration::from_secs(30)).await;
    let verifier = &pipeline.verifier;
    let second = verifier.metric("concord_verified_total", &[]).await;
    assert!(
        (30.0..300.0).contains(&second),
        "after the restart only the new changes are verified, not all again: {second}"
    );
    assert!(
        verifier
            .log()
            .contains("verifier resuming from its saved position"),
        "{}",
        verifier.log()
    );
}

/// A backlog in which every row changes again in every round, verified after the target
/// already holds the end state: each round's differences are superseded by the next
/// round's changes of the same rows (parked, not read from the source), and the last round
/// matches. Parking off, the same backlog costs a source read per row and round.
#[tokio::test(flavor = "multi_thread")]
async fn rows_that_change_again_are_superseded_without_reading_the_source() {
    for (parking, name) in [(true, "verify_parked"), (false, "verify_unparked")] {
        let db = TestDb::new(name).await;
        db.both("CREATE TABLE `{db}`.counters (id INT PRIMARY KEY, v INT NOT NULL)")
            .await;
        let mut config = ConcordConfig::new(&db);
        // One transaction per round (50 rows each), verified 3 s after its commit: by then
        // the replicator has applied all of them.
        config.extra =
            "\n[verifier]\ndelay = \"3s\"\nbatch_rows = 50\nsave_every = \"100ms\"\n".to_owned();
        if !parking {
            config.extra.push_str("park_rows = 0\n");
        }
        let _replicator = Concord::start_role(&config, "replicate").await;
        let verifier = Concord::start_role(&config.sibling(), "verify").await;
        // One multi-statement call, so no pause between the 21 transactions lets the
        // source's heartbeat in: a verifier that caught up in between would recheck the
        // rows parked so far (as it should), and the count below would not be 0.
        let ids: Vec<String> = (1..=50).map(|i| format!("({i}, 0)")).collect();
        let mut sql = format!("INSERT INTO `{{db}}`.counters VALUES {};", ids.join(", "));
        for _ in 0..20 {
            sql.push_str("UPDATE `{db}`.counters SET v = v + 1;");
        }
        db.source(&sql).await;
        wait_verified_binlog(&db, &config, Duration::from_secs(60)).await;

        let verified = |result: &'static str| {
            let v = &verifier;
            async move {
                v.metric("concord_verified_total", &[("result", result)])
                    .await
            }
        };
        let (matched, superseded, resolved) = (
            verified("match").await,
            verified("superseded").await,
            verified("resolved").await,
        );
        let rechecks = verifier.metric("concord_source_rechecks_total", &[]).await;
        let counts = format!(
            "match {matched}, superseded {superseded}, resolved {resolved}, rechecks {rechecks}"
        );
        assert_eq!(matched + superseded + resolved, 1050.0, "{counts}");
        assert_eq!(
            verifier
                .metric("concord_mismatches_detected_total", &[])
                .await,
            0.0
        );
        if parking {
            // Only a row of the round before the last can still be parked when the last
            // round arrives, and that round supersedes it: nothing is read from the source.
            assert_eq!(rechecks, 0.0, "{counts}");
            assert!(superseded >= 950.0, "{counts}");
            assert_eq!(
                verifier.metric("concord_verifier_parked_rows", &[]).await,
                0.0
            );
        } else {
            assert!(rechecks >= 950.0, "{counts}");
        }
    }
}

/// A row parked by one of several rounds verified at once holds the saved position back:
/// while the row waits for a later change, the verifier's saved position stays before the
/// change that made it differ; once `park_for` has passed, the source recheck records the
/// corruption and the position moves on.
#[tokio::test(flavor = "multi_thread")]
async fn a_parked_row_holds_the_saved_position_back_until_it_is_rechecked() {
    let db = TestDb::new("verify_holdback").await;
    db.both("CREATE TABLE `{db}`.counters (id INT PRIMARY KEY, v INT NOT NULL)")
        .await;
    db.both(&TABLE_DDL.replace("{t}", "load")).await;
    let mut config = ConcordConfig::new(&db);
    config.extra = "\n[verifier]\ndelay = \"2s\"\nsave_every = \"100ms\"\npark_for = \"6s\"\n\
                    rounds_in_flight = 3\nbatch_rows = 100\n"
        .to_owned();
    let replicator = Concord::start_role(&config, "replicate").await;
    let verifier = Concord::start_role(&config.sibling(), "verify").await;
    db.source("INSERT INTO `{db}`.counters VALUES (1, 0), (2, 0)")
        .await;
    replicator
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    // Rounds keep coming while the row is parked.
    let writer = write_load(&db, "load");
    db.source("UPDATE `{db}`.counters SET v = 1 WHERE id = 1")
        .await;
    let after_change = db.servers.source_position().await;
    replicator
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    db.target("UPDATE `{db}`.counters SET v = 99 WHERE id = 1")
        .await;

    wait_for("the row to be parked", Duration::from_secs(30), || {
        let v = &verifier;
        async move { (v.metric("concord_verifier_parked_rows", &[]).await >= 1.0).then_some(()) }
    })
    .await;
    let saved = || async {
        verifier_positions(&config, "verifier")
            .await
            .into_iter()
            .find(|(stream, ..)| stream == "binlog")
            .map(|(_, _, file, pos)| concord_change::Position::new(file, pos as u64))
    };
    // Three seconds of rounds (of the writer's rows) while the row stays parked.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if mismatches(&config).await.is_empty() {
            let at = saved().await;
            assert!(
                at.as_ref().is_none_or(|p| *p < after_change),
                "saved position {at:?} passed the parked change ending at {after_change}"
            );
        }
    }

    let found = wait_for("the mismatch record", Duration::from_secs(60), || {
        let config = config.clone();
        async move {
            let m = mismatches(&config).await;
            (!m.is_empty()).then_some(m)
        }
    })
    .await;
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        (found[0].kind.as_str(), found[0].columns.clone()),
        ("differs", vec!["v".to_owned()])
    );
    writer.stop().await;
    wait_verified_binlog(&db, &config, Duration::from_secs(60)).await;
    assert!(saved().await.is_some_and(|p| p >= after_change));
}
