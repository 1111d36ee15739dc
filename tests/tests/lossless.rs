//! Binlog edge cases where a change used to be lost or altered silently: data changes a
//! session logged as statements, partial row images, ENUM values outside their labels, XA
//! transactions, and names that need quoting. Each change now arrives exactly or is
//! recorded, counted and warned about.

use concord_e2e::concord::{failed_events, mismatches};
use concord_e2e::pipeline::{Mode, Pipeline};
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use mysql_async::prelude::Queryable;
use std::time::Duration;

/// Runs `statements` in one session of the source (`{db}` replaced).
async fn session(db: &TestDb, statements: &[&str]) {
    let mut c = db.servers.source_conn().await;
    for s in statements {
        c.query_drop(s.replace("{db}", &db.name))
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_and_mixed_format_changes_are_recorded_never_skipped_direct() {
    statement_and_mixed_format_changes_are_recorded(Mode::Direct).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_and_mixed_format_changes_are_recorded_never_skipped_kafka() {
    statement_and_mixed_format_changes_are_recorded(Mode::Kafka).await;
}

fn prefix(mode: Mode, name: &str) -> String {
    match mode {
        Mode::Direct => name.to_owned(),
        Mode::Kafka => format!("k{name}"),
    }
}

async fn statement_and_mixed_format_changes_are_recorded(mode: Mode) {
    let db = TestDb::new(&prefix(mode, "stmt_format")).await;
    db.both("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(40))")
        .await;
    // A schema the included tables (`{db}.*`) leave out.
    db.source("CREATE DATABASE IF NOT EXISTS `{db}_x`").await;
    db.source("CREATE TABLE IF NOT EXISTS `{db}_x`.other (id INT PRIMARY KEY)")
        .await;
    let pipeline = Pipeline::start(&db, mode, "2s", false).await;
    session(
        &db,
        &[
            "SET SESSION binlog_format = 'STATEMENT'",
            "INSERT INTO `{db}`.t VALUES (1, 'one'), (2, 'two')",
            "UPDATE `{db}`.t SET v = 'uno' WHERE id = 1",
            "DELETE FROM `{db}`.t WHERE id = 2",
            // Not replicated: not recorded either.
            "INSERT INTO `{db}_x`.other VALUES (1)",
            // MIXED logs a deterministic statement as SQL and a UUID() as rows, both in one
            // transaction: the rows must not go down with the statement.
            "SET SESSION binlog_format = 'MIXED'",
            "BEGIN",
            "INSERT INTO `{db}`.t VALUES (10, 'mixed statement')",
            "INSERT INTO `{db}`.t VALUES (11, UUID())",
            "COMMIT",
        ],
    )
    .await;
    // Row changes after them still apply.
    db.source("INSERT INTO `{db}`.t VALUES (20, 'rows again')")
        .await;
    let config = pipeline.config.clone();
    wait_for(
        "the rows after the statements",
        Duration::from_secs(30),
        || {
            let db = &db;
            async move { (db.ids(true, "t").await == [11, 20]).then_some(()) }
        },
    )
    .await;
    let failed = wait_for("4 recorded statements", Duration::from_secs(30), || {
        let config = config.clone();
        async move { Some(failed_events(&config).await).filter(|f| f.len() >= 4) }
    })
    .await;
    let concord = pipeline.reader();
    let table = format!("{}.t", db.name);
    assert_eq!(failed.len(), 4, "{failed:?}");
    for (f, sql) in failed
        .iter()
        .zip(["INSERT INTO", "UPDATE", "DELETE FROM", "INSERT INTO"])
    {
        assert_eq!(f.0, table, "{f:?}");
        assert_eq!(f.1, "statement_format");
        assert!(f.2.contains(sql) && f.2.contains(&db.name), "{f:?}");
        assert!(
            f.2.contains("re-sync"),
            "the error says what to do: {}",
            f.2
        );
        let event: serde_json::Value = serde_json::from_str(&f.3).unwrap();
        assert!(event["statement"].as_str().unwrap().starts_with(sql));
        assert!(event["position"]["pos"].as_u64().unwrap() > 4);
    }
    assert_eq!(
        concord
            .metric("concord_statement_events_total", &[("table", &table)])
            .await,
        4.0
    );
    let warnings = concord
        .log()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("logged a data change as an SQL statement"))
        .count();
    assert_eq!(
        warnings, 1,
        "one warning a minute per table, not one per statement"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn minimal_and_noblob_row_images_are_applied_and_verified_direct() {
    minimal_and_noblob_row_images_are_applied_and_verified(Mode::Direct).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn minimal_and_noblob_row_images_are_applied_and_verified_kafka() {
    minimal_and_noblob_row_images_are_applied_and_verified(Mode::Kafka).await;
}

async fn minimal_and_noblob_row_images_are_applied_and_verified(mode: Mode) {
    let db = TestDb::new(&prefix(mode, "row_images")).await;
    db.both(
        "CREATE TABLE `{db}`.m (id INT PRIMARY KEY, a VARCHAR(20), b TEXT, \
         c INT DEFAULT 7, d INT, e ENUM('x','y') DEFAULT 'x')",
    )
    .await;
    let pipeline = Pipeline::start(&db, mode, "2s", false).await;
    pipeline.wait_verified(&db, Duration::from_secs(30)).await;
    session(
        &db,
        &[
            "SET SESSION binlog_row_image = 'MINIMAL'",
            // A minimal insert carries only what it set: the rest takes its defaults.
            "INSERT INTO `{db}`.m (id, a) VALUES (1, 'one'), (2, 'two'), (3, 'three')",
            "UPDATE `{db}`.m SET a = 'uno' WHERE id = 1",
            // Two updates of one row in one transaction, each of other columns.
            "BEGIN",
            "UPDATE `{db}`.m SET a = 'dos' WHERE id = 2",
            "UPDATE `{db}`.m SET d = 22, b = 'blob two' WHERE id = 2",
            "COMMIT",
            // A key change. In kafka mode the row at its new key needs a whole image on
            // that key's partition: the old key's row is deleted, the new one recorded.
            "UPDATE `{db}`.m SET id = 30 WHERE id = 3",
            "DELETE FROM `{db}`.m WHERE id = 1",
            "SET SESSION binlog_row_image = 'NOBLOB'",
            "INSERT INTO `{db}`.m VALUES (4, 'four', 'a blob', 4, 4, 'y')",
            // The blob is not in these images: it must survive them.
            "UPDATE `{db}`.m SET a = 'cuatro' WHERE id = 4",
            "UPDATE `{db}`.m SET b = 'new blob', d = 44 WHERE id = 2",
            "INSERT INTO `{db}`.m VALUES (5, 'five', 'blob five', 5, 5, 'x')",
            "DELETE FROM `{db}`.m WHERE id = 5",
        ],
    )
    .await;
    let all = "id, a, b, c, d, e";
    let moved = mode == Mode::Kafka;
    wait_for("the target to follow", Duration::from_secs(30), || {
        let db = &db;
        async move {
            let mut source = db.rows(false, "m", all).await;
            if moved {
                source.retain(|r| r[0] != mysql_async::Value::Bytes(b"30".to_vec()));
            }
            (source == db.rows(true, "m", all).await).then_some(())
        }
    })
    .await;
    let failed = failed_events(&pipeline.config).await;
    let expected: &[&str] = if moved { &["partial_image"] } else { &[] };
    let reasons: Vec<&str> = failed.iter().map(|f| f.1.as_str()).collect();
    assert_eq!(reasons, expected, "{failed:?}");
    // A partial update of a row the target lost: its other columns are unknown.
    db.target("DELETE FROM `{db}`.m WHERE id = 4").await;
    session(
        &db,
        &[
            "SET SESSION binlog_row_image = 'MINIMAL'",
            "UPDATE `{db}`.m SET a = 'gone' WHERE id = 4",
        ],
    )
    .await;
    let config = pipeline.config.clone();
    let failed = wait_for("the missing row recorded", Duration::from_secs(30), || {
        let config = config.clone();
        async move {
            Some(failed_events(&config).await).filter(|f| f.iter().any(|f| f.1 == "missing_row"))
        }
    })
    .await;
    assert_eq!(failed.len(), expected.len() + 1, "{failed:?}");
    pipeline.wait_verified(&db, Duration::from_secs(60)).await;
    let mut found = mismatches(&pipeline.config).await;
    // The verifier compares what the partial images carry: only the rows that are not on
    // the target differ.
    found.sort_by(|a, b| a.key.cmp(&b.key));
    let missing: Vec<&str> = found.iter().map(|m| m.kind.as_str()).collect();
    // (In kafka mode the moved row's change reached no topic: it is the failed event.)
    assert_eq!(missing.len(), 1, "{found:?}");
    assert!(missing.iter().all(|k| *k == "missing"), "{found:?}");
    assert!(found.iter().any(|m| m.key.contains(":4}")), "{found:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn enum_index_zero_arrives_as_the_stored_value_and_is_verified_direct() {
    enum_index_zero_arrives_as_the_stored_value_and_is_verified(Mode::Direct).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn enum_index_zero_arrives_as_the_stored_value_and_is_verified_kafka() {
    enum_index_zero_arrives_as_the_stored_value_and_is_verified(Mode::Kafka).await;
}

async fn enum_index_zero_arrives_as_the_stored_value_and_is_verified(mode: Mode) {
    let db = TestDb::new(&prefix(mode, "enum_zero")).await;
    db.both(
        "CREATE TABLE `{db}`.e (id INT PRIMARY KEY, e1 ENUM('', 'a'), \
         e2 ENUM('x', 'y') NOT NULL, s SET('a', 'b'))",
    )
    .await;
    let pipeline = Pipeline::start(&db, mode, "6s", false).await;
    pipeline.wait_verified(&db, Duration::from_secs(30)).await;
    // In a non-strict session an invalid value stores index 0, the empty "error value",
    // which reads as '' like the label '' (index 1) does.
    session(
        &db,
        &[
            "SET SESSION sql_mode = ''",
            "INSERT INTO `{db}`.e VALUES (1, 'bogus', 'bogus', 'a'), (2, '', 'y', ''), \
             (3, 'a', 'x', 'a,b')",
            "UPDATE `{db}`.e SET e2 = 'nope' WHERE id = 3",
            "INSERT INTO `{db}`.e VALUES (4, 'bogus', 'y', 'b')",
        ],
    )
    .await;
    let stored = "id, e1 + 0, e2 + 0, s + 0, e1, e2, s";
    db.wait_same("e", stored, Duration::from_secs(30)).await;
    let t = db.rows(true, "e", "id, e1 + 0, e2 + 0").await;
    let index = |r: usize, c: usize| mysql_async::from_value::<i64>(t[r][c].clone());
    assert_eq!((index(0, 1), index(0, 2)), (0, 0), "row 1: both index 0");
    assert_eq!(index(1, 1), 1, "row 2: the label ''");
    assert_eq!(index(2, 2), 0, "row 3: updated to index 0");
    // The target's row 4 gets the label '' (index 1) instead of index 0: a difference
    // only the stored index shows, and the verifier must see it.
    db.target("UPDATE `{db}`.e SET e1 = '' WHERE id = 4").await;
    assert!(failed_events(&pipeline.config).await.is_empty());
    let config = pipeline.config.clone();
    wait_for("the index mismatch", Duration::from_secs(60), || {
        let config = config.clone();
        async move { Some(mismatches(&config).await).filter(|m| !m.is_empty()) }
    })
    .await;
    pipeline.wait_verified(&db, Duration::from_secs(60)).await;
    let found = mismatches(&pipeline.config).await;
    assert_eq!(found.len(), 1, "only row 4 differs: {found:?}");
    assert_eq!(found[0].columns, ["e1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn xa_transactions_arrive_at_commit_and_vanish_at_rollback_across_a_restart() {
    let db = TestDb::new("xa").await;
    db.both("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(20))")
        .await;
    let config = ConcordConfig::new(&db);
    let mut concord = Concord::start(&config).await;
    let xid = |n: &str| format!("'{}-{n}'", db.name);
    let prepare = |n: &str, id: i64| {
        let x = xid(n);
        vec![
            format!("XA START {x}"),
            format!("INSERT INTO `{{db}}`.t VALUES ({id}, 'xa {n}')"),
            format!("XA END {x}"),
            format!("XA PREPARE {x}"),
        ]
    };
    // A connection of its own, closed afterwards: a prepared XA transaction stays with
    // the server (MariaDB 10.5+), not with a pooled connection.
    let run = |stmts: Vec<String>| {
        let db = &db;
        async move {
            let opts = mysql_async::Opts::from_url(&db.servers.source_url).unwrap();
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            for s in stmts {
                c.query_drop(s.replace("{db}", &db.name)).await.unwrap();
            }
            c.disconnect().await.unwrap();
        }
    };
    // Prepared, then rolled back from another session: never on the target.
    run(prepare("rolled", 1)).await;
    db.source("INSERT INTO `{db}`.t VALUES (2, 'plain')").await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    assert_eq!(
        db.ids(true, "t").await,
        [2],
        "a prepared XA is not applied yet"
    );
    run(vec![format!("XA ROLLBACK {}", xid("rolled"))]).await;
    // Prepared, committed later.
    run(prepare("later", 3)).await;
    db.source("INSERT INTO `{db}`.t VALUES (4, 'plain')").await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    assert_eq!(db.ids(true, "t").await, [2, 4]);
    run(vec![format!("XA COMMIT {}", xid("later"))]).await;
    db.wait_same("t", "*", Duration::from_secs(30)).await;
    assert_eq!(db.ids(true, "t").await, [2, 3, 4]);

    // Prepared while concord restarts: the checkpoint moves past the prepare, but the
    // resume point stays at it, so the rows are still there at the commit.
    run(prepare("restart", 5)).await;
    db.source("INSERT INTO `{db}`.t VALUES (6, 'plain')").await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    let mut c = db.servers.target_conn().await;
    let resume: Option<Option<String>> = c
        .exec_first(
            "SELECT resume_file FROM concord.checkpoints WHERE replicator = ?",
            (&config.name,),
        )
        .await
        .unwrap();
    assert!(resume.flatten().is_some(), "the resume point is saved");
    concord.stop().await;
    concord = Concord::start(&config).await;
    run(vec![format!("XA COMMIT {}", xid("restart"))]).await;
    db.wait_same("t", "*", Duration::from_secs(30)).await;
    assert_eq!(db.ids(true, "t").await, [2, 3, 4, 5, 6]);
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    let resume: Option<Option<String>> = c
        .exec_first(
            "SELECT resume_file FROM concord.checkpoints WHERE replicator = ?",
            (&config.name,),
        )
        .await
        .unwrap();
    assert_eq!(resume, Some(None), "nothing pending any more");
    assert!(concord.failed_events().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn names_that_need_quoting_and_non_ascii_names_keep_working() {
    let db = TestDb::new("names").await;
    db.both(
        "CREATE TABLE `{db}`.`tàble ``wïth`` quötes` (`ïd` INT PRIMARY KEY, \
         `cöl``umn` VARCHAR(20) CHARACTER SET latin1, `select` INT, `名前` TEXT)",
    )
    .await;
    let concord = Concord::start(&ConcordConfig::new(&db)).await;
    let t = "`{db}`.`tàble ``wïth`` quötes`";
    db.source(&format!(
        "INSERT INTO {t} VALUES (1, 'é', 1, '日本'), (2, 'x', 2, NULL), (3, 'y', 3, 'z')"
    ))
    .await;
    db.source(&format!(
        "UPDATE {t} SET `cöl``umn` = 'ü', `名前` = '名' WHERE `ïd` = 2"
    ))
    .await;
    db.source(&format!("UPDATE {t} SET `ïd` = 30 WHERE `ïd` = 3"))
        .await;
    db.source(&format!("DELETE FROM {t} WHERE `ïd` = 1")).await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    // The harness quotes the name with backticks around it: inner ones doubled here.
    let name = "tàble ``wïth`` quötes";
    db.assert_same(name, "`ïd`, HEX(`cöl``umn`), `select`, `名前`")
        .await;
    assert_eq!(db.count(true, name).await, 2);
    assert!(concord.failed_events().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_the_binlog_parser_cannot_decode_is_recorded_and_replication_goes_on() {
    let db = TestDb::new("time_frac").await;
    db.both("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, t TIME(2))")
        .await;
    let concord = Concord::start(&ConcordConfig::new(&db)).await;
    db.source("INSERT INTO `{db}`.t VALUES (1, '-01:02:03.45')")
        .await;
    db.source("INSERT INTO `{db}`.t VALUES (2, '01:02:03.45'), (3, '-01:02:03')")
        .await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    assert_eq!(db.ids(true, "t").await, [2, 3], "the rest arrives");
    let failed = concord.failed_events().await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].1, "undecodable");
    assert!(failed[0].2.contains("TIME(1) or TIME(2)"), "{failed:?}");
    // (Counted by each reader of the process: `concord run` has two.)
    assert!(
        concord
            .metric("concord_binlog_undecodable_rows_total", &[])
            .await
            >= 1.0
    );
}
