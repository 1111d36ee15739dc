//! Recovery: mismatch records found by the checksum (or the verifier) are looked at again
//! after the grace period and end resolved, repaired, waiting for a person, or ignored —
//! with every move in the history, and nothing written over a replicator that lags.

use concord_e2e::concord::http_get;
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use std::time::Duration;

/// Rows with several types, so repairs write each kind of value back.
const TABLE: &str = "CREATE TABLE `{db}`.{t} (id INT PRIMARY KEY, name VARCHAR(40), \
     amount DECIMAL(12,2), at DATETIME(6), blob_col VARBINARY(64), note TEXT NULL)";

fn config(db: &TestDb, recovery: &str) -> ConcordConfig {
    let mut c = ConcordConfig::new(db);
    c.extra = format!(
        "\n[verifier]\nretry_after = \"300ms\"\n\n[checksum]\nchunk_time = \"20ms\"\n\
         \n[recovery]\nevery = \"200ms\"\n{recovery}\n"
    );
    c
}

async fn fill(db: &TestDb, t: &str, n: i64) {
    db.both(&TABLE.replace("{t}", t)).await;
    let rows: Vec<String> = (1..=n)
        .map(|i| {
            format!(
                "({i}, 'name {i}', {i}.25, '2026-01-02 03:04:05.{i:06}', X'{:08x}', \
                 IF({i} % 7 = 0, NULL, 'note {i}'))",
                i * 31
            )
        })
        .collect();
    // The same rows on both sides, as a copy made before concord started would be.
    db.both(&format!(
        "INSERT INTO `{{db}}`.{t} VALUES {}",
        rows.join(", ")
    ))
    .await;
}

async fn checksum(config: &ConcordConfig, table: &str) -> Option<i32> {
    let mut run = Concord::spawn(&config.sibling(), &["checksum", "--table", table]).await;
    run.wait_exit(Duration::from_secs(240)).await
}

/// Runs an operator command with the test's config; returns its exit code and output.
async fn cli(config: &ConcordConfig, args: &[&str]) -> (Option<i32>, String) {
    let path = config.dir.join("cli.toml");
    std::fs::write(&path, config.toml()).unwrap();
    let out = tokio::process::Command::new(concord_e2e::concord::binary())
        .args(args)
        .arg("--config")
        .arg(&path)
        .env("USER", "alice")
        .output()
        .await
        .expect("run concord");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// (id, state) of every mismatch record of `table`, oldest first.
async fn states(config: &ConcordConfig, table: &str) -> Vec<(i64, String)> {
    let (db, t) = table.split_once('.').unwrap();
    control(
        config,
        &format!("SELECT id, state FROM mismatches WHERE db = '{db}' AND tbl = '{t}' ORDER BY id"),
    )
    .await
    .into_iter()
    .map(|r| {
        use sqlx::Row;
        (r.get(0), r.get(1))
    })
    .collect()
}

async fn control(config: &ConcordConfig, sql: &str) -> Vec<sqlx::sqlite::SqliteRow> {
    let url = format!("sqlite://{}?mode=ro", config.control_db().display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(sql).fetch_all(&mut conn).await.unwrap()
}

async fn wait_states(config: &ConcordConfig, table: &str, state: &str, n: usize) {
    wait_for(
        &format!("{n} records of {table} {state}"),
        Duration::from_secs(120),
        || async {
            let s = states(config, table).await;
            (s.iter().filter(|(_, st)| st == state).count() >= n).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_difference_put_back_within_the_grace_is_resolved_and_nothing_is_written() {
    let db = TestDb::new("recovery_transient").await;
    let config = config(&db, "grace = \"6s\"");
    fill(&db, "t", 20).await;
    let concord = Concord::start(&config).await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    db.target("UPDATE `{db}`.t SET name = 'behind concord''s back' WHERE id = 3")
        .await;
    let table = format!("{}.t", db.name);
    assert_eq!(
        checksum(&config, &table).await,
        Some(3),
        "a mismatch recorded"
    );
    assert_eq!(states(&config, &table).await.len(), 1);
    db.target("UPDATE `{db}`.t SET name = 'name 3' WHERE id = 3")
        .await;
    wait_states(&config, &table, "resolved", 1).await;
    db.assert_same("t", "*").await;
    let history = control(
        &config,
        "SELECT to_state, statement FROM recovery_history ORDER BY id",
    )
    .await;
    use sqlx::Row;
    let moves: Vec<(String, Option<String>)> =
        history.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        moves,
        vec![("rechecking".into(), None), ("resolved".into(), None)],
        "resolved without a write"
    );
    let repaired = concord
        .metric(
            "concord_repairs_total",
            &[("table", &table), ("mode", "auto"), ("outcome", "repaired")],
        )
        .await;
    assert_eq!(repaired, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_rows_are_repaired_after_the_grace_with_their_sql_in_the_history() {
    let db = TestDb::new("recovery_auto").await;
    let config = config(&db, "grace = \"1s\"");
    fill(&db, "t", 600).await;
    let concord = Concord::start(&config).await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    // 100 rows changed, 60 deleted, 50 extra: 210 differences of every kind.
    db.target(
        "UPDATE `{db}`.t SET name = CONCAT(name, ' (bad)'), amount = amount + 1, \
         blob_col = X'00', note = NULL WHERE id <= 100",
    )
    .await;
    db.target("DELETE FROM `{db}`.t WHERE id BETWEEN 201 AND 260")
        .await;
    let extra: Vec<String> = (1001..=1050)
        .map(|i| format!("({i}, 'extra', 1, NOW(6), NULL, NULL)"))
        .collect();
    db.target(&format!(
        "INSERT INTO `{{db}}`.t VALUES {}",
        extra.join(", ")
    ))
    .await;
    let table = format!("{}.t", db.name);
    assert_eq!(checksum(&config, &table).await, Some(3));
    wait_states(&config, &table, "repaired", 210).await;
    db.assert_same("t", "*").await;
    use sqlx::Row;
    let repairs = control(
        &config,
        "SELECT h.before_image, h.after_image, h.statement, h.mode, h.actor, m.kind \
         FROM recovery_history h JOIN mismatches m ON m.id = h.subject_id \
         WHERE h.to_state = 'repaired' ORDER BY h.id",
    )
    .await;
    assert_eq!(repairs.len(), 210);
    for r in &repairs {
        let before: Option<String> = r.get(0);
        let after: Option<String> = r.get(1);
        let sql: String = r.get(2);
        let kind: String = r.get(5);
        assert_eq!(r.get::<String, _>(3), "auto");
        assert_eq!(r.get::<String, _>(4), "system");
        match kind.as_str() {
            "missing" => {
                assert!(before.is_none() && after.is_some(), "{kind}: {sql}");
                assert!(sql.starts_with("INSERT INTO"), "{sql}");
            }
            "extra" => {
                assert!(before.is_some() && after.is_none(), "{kind}: {sql}");
                assert!(sql.starts_with("DELETE FROM"), "{sql}");
            }
            _ => {
                assert!(before.unwrap().contains("(bad)"));
                assert!(!after.unwrap().contains("(bad)"));
                assert!(sql.contains("-- with:"), "the values are kept: {sql}");
            }
        }
    }
    let counted = concord
        .metric(
            "concord_repairs_total",
            &[("table", &table), ("mode", "auto"), ("outcome", "repaired")],
        )
        .await;
    assert_eq!(counted, 210.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_without_auto_repair_waits_for_a_person_who_repairs_or_ignores_with_a_reason() {
    let db = TestDb::new("recovery_manual").await;
    let rules = format!(
        "grace = \"1s\"\n\n[recovery.tables.\"{}.ledger\"]\nauto_repair = false",
        db.name
    );
    let config = config(&db, &rules);
    fill(&db, "ledger", 50).await;
    fill(&db, "other", 50).await;
    let concord = Concord::start(&config).await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    for t in ["ledger", "other"] {
        db.target(&format!("UPDATE `{{db}}`.{t} SET amount = 0 WHERE id <= 5"))
            .await;
    }
    let ledger = format!("{}.ledger", db.name);
    let other = format!("{}.other", db.name);
    assert_eq!(checksum(&config, &ledger).await, Some(3));
    assert_eq!(checksum(&config, &other).await, Some(3));
    wait_states(&config, &other, "repaired", 5).await;
    wait_states(&config, &ledger, "needs_manual", 5).await;
    let ids: Vec<String> = states(&config, &ledger)
        .await
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();

    // A dry run shows the SQL and changes nothing.
    let (code, out) = cli(&config, &["repair", "--dry-run", &ids[0]]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("INSERT INTO"), "{out}");
    assert_eq!(
        db.rows(true, "ledger", "amount").await[0][0],
        mysql_async::Value::Bytes(b"0.00".to_vec())
    );

    // Manual repair of four; the fifth is ignored, which needs a reason.
    let four: Vec<&str> = ids[..4].iter().map(String::as_str).collect();
    let (code, out) = cli(&config, &[&["repair"], four.as_slice()].concat()).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = cli(&config, &["ignore", &ids[4]]).await;
    assert_eq!(code, Some(2), "a reason is required: {out}");
    assert!(out.contains("--reason"), "{out}");
    let (code, out) = cli(
        &config,
        &[
            "ignore",
            &ids[4],
            "--reason",
            "agreed with finance: known test row",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    let s = states(&config, &ledger).await;
    assert_eq!(
        s.iter().map(|(_, st)| st.as_str()).collect::<Vec<_>>(),
        vec!["repaired", "repaired", "repaired", "repaired", "ignored"]
    );
    use sqlx::Row;
    let who = control(
        &config,
        &format!(
            "SELECT actor, mode, reason FROM recovery_history WHERE subject_id = {} \
             AND to_state = 'ignored'",
            ids[4]
        ),
    )
    .await;
    assert_eq!(who[0].get::<String, _>(0), "alice");
    assert_eq!(
        who[0].get::<String, _>(2),
        "agreed with finance: known test row"
    );
    let manual = control(
        &config,
        &format!(
            "SELECT actor, mode FROM recovery_history WHERE subject_id = {} \
             AND to_state = 'repaired'",
            ids[0]
        ),
    )
    .await;
    assert_eq!(manual[0].get::<String, _>(0), "alice");
    assert_eq!(manual[0].get::<String, _>(1), "manual");

    // Unknown names in a filter are refused, naming them.
    let (code, out) = cli(&config, &["mismatches", "list", "--state", "fixed"]).await;
    assert_eq!(code, Some(2));
    assert!(out.contains("unknown state `fixed`"), "{out}");
    let (code, out) = cli(
        &config,
        &[
            "mismatches",
            "list",
            "--table",
            &format!("{}.nope", db.name),
        ],
    )
    .await;
    assert_eq!(code, Some(2));
    assert!(out.contains("nope"), "{out}");
    drop(concord);
}

/// Manual repairs of many records run as one page (one guarded transaction); a row the
/// target refuses fails that page's statement, and the page is written again row by row, so
/// only that row waits for a person.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_the_target_refuses_fails_alone_and_the_rest_of_its_page_is_repaired() {
    let db = TestDb::new("recovery_page").await;
    let rules = format!(
        "grace = \"1s\"\n\n[recovery.tables.\"{}.ledger\"]\nauto_repair = false",
        db.name
    );
    let config = config(&db, &rules);
    fill(&db, "ledger", 50).await;
    db.target("ALTER TABLE `{db}`.ledger ADD CONSTRAINT no_negative CHECK (amount >= 0)")
        .await;
    let concord = Concord::start(&config).await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    db.target("UPDATE `{db}`.ledger SET amount = 0 WHERE id <= 5")
        .await;
    // The target refuses this row (a failed event), so it differs too — and a repair of it
    // is refused the same way.
    db.source("UPDATE `{db}`.ledger SET amount = -1 WHERE id = 6")
        .await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    let ledger = format!("{}.ledger", db.name);
    assert_eq!(checksum(&config, &ledger).await, Some(3));
    wait_states(&config, &ledger, "needs_manual", 6).await;
    let ids: Vec<String> = states(&config, &ledger)
        .await
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    assert_eq!(ids.len(), 6);
    let args: Vec<&str> = ["repair"]
        .into_iter()
        .chain(ids.iter().map(String::as_str))
        .collect();
    let (code, out) = cli(&config, &args).await;
    assert_eq!(code, Some(3), "one row was not repaired: {out}");
    let s = states(&config, &ledger).await;
    assert_eq!(
        s.iter().filter(|(_, st)| st == "repaired").count(),
        5,
        "{s:?}"
    );
    let amounts = |source: bool| {
        let db = &db;
        async move {
            db.rows(!source, "ledger", "id, amount")
                .await
                .into_iter()
                .take(6)
                .collect::<Vec<_>>()
        }
    };
    let (source, target) = (amounts(true).await, amounts(false).await);
    assert_eq!(source[..5], target[..5], "rows 1-5 repaired");
    assert_ne!(source[5], target[5], "row 6 refused, left as it was");
    use sqlx::Row;
    let refused = s
        .iter()
        .find(|(_, st)| st == "needs_manual")
        .expect("one left")
        .0;
    let why = control(
        &config,
        &format!(
            "SELECT reason FROM recovery_history WHERE subject_id = {refused} \
             ORDER BY id DESC LIMIT 1"
        ),
    )
    .await;
    let why: String = why[0].get(0);
    assert!(why.contains("the repair failed"), "{why}");
    assert!(why.contains("no_negative"), "names the constraint: {why}");
    drop(concord);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mass_difference_opens_the_circuit_and_nothing_is_written_until_resumed() {
    let db = TestDb::new("recovery_circuit").await;
    let config = config(&db, "grace = \"1s\"\nmax_auto_repairs_per_minute = 20");
    fill(&db, "t", 100).await;
    let replicator = Concord::start_role(&config, "replicate").await;
    replicator
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    db.target("UPDATE `{db}`.t SET amount = -1 WHERE id <= 25")
        .await;
    let table = format!("{}.t", db.name);
    assert_eq!(checksum(&config, &table).await, Some(3));
    // Recovery starts with all 25 due at once, above the limit.
    let recovery = Concord::start_role(&config.sibling(), "recovery").await;
    let port = recovery.config.metrics_port;
    wait_for("the circuit open", Duration::from_secs(60), || async move {
        let (_, body) = http_get(port, "/metrics").await?;
        body.lines()
            .any(|l| l == "concord_recovery_circuit_open 1")
            .then_some(())
    })
    .await;
    // Open, so nothing was written: every record is still detected, every row corrupted.
    let s = states(&config, &table).await;
    assert_eq!(s.len(), 25);
    assert!(s.iter().all(|(_, st)| st == "detected"), "{s:?}");
    let bad = db
        .rows(true, "t", "amount")
        .await
        .iter()
        .filter(|r| r[0] == mysql_async::Value::Bytes(b"-1.00".to_vec()))
        .count();
    assert_eq!(bad, 25);
    let (code, out) = cli(&config, &["recovery", "resume", "--reason", "checked"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("closed"), "{out}");
    // Accepted by the operator: paced at 20 a minute, never opening the circuit again.
    wait_for("every row repaired", Duration::from_secs(150), || async {
        let s = states(&config, &table).await;
        s.iter().all(|(_, st)| st == "repaired").then_some(())
    })
    .await;
    db.assert_same("t", "*").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_repaired_while_the_replicator_lags_beyond_the_grace() {
    let db = TestDb::new("recovery_lag").await;
    let config = config(&db, "grace = \"2s\"");
    fill(&db, "t", 50).await;
    let replicator = Concord::start_role(&config, "replicate").await;
    replicator
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    db.target("UPDATE `{db}`.t SET amount = 0 WHERE id <= 10")
        .await;
    let table = format!("{}.t", db.name);
    assert_eq!(checksum(&config, &table).await, Some(3));
    replicator.pause().await;
    db.source("UPDATE `{db}`.t SET name = 'moved on' WHERE id > 40")
        .await;
    let recovery = Concord::start_role(&config.sibling(), "recovery").await;
    let port = recovery.config.metrics_port;
    wait_for(
        "a lag above the grace",
        Duration::from_secs(60),
        || async move {
            let (_, body) = http_get(port, "/metrics").await?;
            let lag: f64 = body
                .lines()
                .find_map(|l| l.strip_prefix("concord_recovery_replicator_lag_seconds "))?
                .parse()
                .ok()?;
            (lag > 3.0).then_some(())
        },
    )
    .await;
    let s = states(&config, &table).await;
    assert!(
        s.iter().all(|(_, st)| st == "detected"),
        "nothing moved: {s:?}"
    );
    assert_eq!(
        db.rows(true, "t", "amount").await[0][0],
        mysql_async::Value::Bytes(b"0.00".to_vec()),
        "nothing written while the replicator lags"
    );
    replicator.resume().await;
    wait_for("every row repaired", Duration::from_secs(60), || async {
        let s = states(&config, &table).await;
        s.iter().all(|(_, st)| st == "repaired").then_some(())
    })
    .await;
    db.assert_same("t", "*").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repairs_racing_a_hot_row_writer_never_write_an_older_row_over_a_newer_one() {
    use concord_e2e::race::{assert_never_older, hot_table, HotWriter};
    let db = TestDb::new("recovery_race").await;
    let config = config(&db, "grace = \"1s\"");
    hot_table(&db, 200).await;
    let concord = Concord::start(&config).await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    db.target("UPDATE `{db}`.hot SET payload = 'corrupt'").await;
    let table = format!("{}.hot", db.name);
    assert_eq!(checksum(&config, &table).await, Some(3));

    // The writer bumps random rows' versions while the repairs run.
    let writer = HotWriter::start(&db, 200);
    wait_for("every record settled", Duration::from_secs(120), || async {
        let s = states(&config, &table).await;
        s.iter()
            .all(|(_, st)| st == "repaired" || st == "resolved")
            .then_some(())
    })
    .await;
    let updates = writer.stop().await;
    assert!(
        updates > 100,
        "the writer raced the repairs ({updates} updates)"
    );
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    db.assert_same("hot", "*").await;

    use sqlx::Row;
    let repairs: Vec<(String, String)> = control(
        &config,
        "SELECT before_image, after_image FROM recovery_history \
         WHERE statement IS NOT NULL ORDER BY id",
    )
    .await
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_never_older(&repairs);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_primary_key_round_trips_through_list_show_and_repair() {
    let db = TestDb::new("recovery_hostile").await;
    let config = config(&db, "grace = \"1s\"\nauto_repair = false");
    db.both("CREATE TABLE `{db}`.k (code VARCHAR(64) PRIMARY KEY, v INT)")
        .await;
    db.both(
        "INSERT INTO `{db}`.k VALUES \
         (CONCAT('it''s \"q\" \\\\ ', CHAR(0), ' <script>alert(1)</script>'), 1), ('plain', 2)",
    )
    .await;
    let concord = Concord::start(&config).await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    db.target("UPDATE `{db}`.k SET v = 99").await;
    let table = format!("{}.k", db.name);
    assert_eq!(checksum(&config, &table).await, Some(3));
    wait_states(&config, &table, "needs_manual", 2).await;
    let (code, out) = cli(
        &config,
        &[
            "mismatches",
            "list",
            "--key-contains",
            "<script>",
            "--format",
            "json",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    let listed: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let items = listed["mismatches"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{out}");
    assert_eq!(
        items[0]["key"]["code"]["value"].as_str(),
        Some("it's \"q\" \\ \0 <script>alert(1)</script>"),
        "the key is what the table holds: {out}"
    );
    let id = items[0]["id"].as_i64().unwrap().to_string();
    let (code, out) = cli(&config, &["mismatches", "show", &id, "--format", "json"]).await;
    assert_eq!(code, Some(0), "{out}");
    let shown: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(shown["record"]["key"], items[0]["key"]);
    assert!(shown["repair_sql"][0]
        .as_str()
        .unwrap()
        .starts_with("INSERT INTO"));
    let (code, out) = cli(&config, &["repair", &id]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("{id}: repaired")), "{out}");
    let s = states(&config, &table).await;
    assert_eq!(
        s.iter().filter(|(_, st)| st == "repaired").count(),
        1,
        "only the hostile row was repaired: {s:?}"
    );
    let v = db.rows(true, "k", "v").await;
    assert!(
        v.contains(&vec![mysql_async::Value::Bytes(b"1".to_vec())]),
        "{v:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_rows_are_retried_after_a_fix_repaired_from_the_source_or_ignored() {
    let db = TestDb::new("recovery_failed").await;
    let config = config(&db, "grace = \"1s\"");
    db.source("CREATE TABLE `{db}`.people (id INT PRIMARY KEY, name VARCHAR(40))")
        .await;
    db.target("CREATE TABLE `{db}`.people (id INT PRIMARY KEY, name VARCHAR(5))")
        .await;
    let concord = Concord::start(&config).await;
    db.source(
        "INSERT INTO `{db}`.people VALUES (1, 'Alexandra'), (2, 'Bartholomew'), \
         (3, 'Constantine'), (4, 'Dee')",
    )
    .await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    // Row 2 changes again while it cannot be written (a later batch: a batch keeps only a
    // row's last change): its first event is no longer its latest change.
    db.source("UPDATE `{db}`.people SET name = 'Bartholomew II' WHERE id = 2")
        .await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    use sqlx::Row;
    let events = control(
        &config,
        "SELECT id, op FROM failed_events WHERE reason = 'rejected' ORDER BY source_pos, row_index",
    )
    .await;
    let ids: Vec<String> = events
        .iter()
        .map(|r| r.get::<i64, _>(0).to_string())
        .collect();
    assert_eq!(ids.len(), 4, "three inserts and one update refused");

    // Still too long: a retry keeps the event open with the target's error.
    let (code, out) = cli(&config, &["failed", "retry", &ids[0]]).await;
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("still refused"), "{out}");

    db.target("ALTER TABLE `{db}`.people MODIFY name VARCHAR(40)")
        .await;
    let (code, out) = cli(&config, &["failed", "retry", &ids[0]]).await;
    assert_eq!(code, Some(0), "{out}");
    // Row 2's insert is behind its update: a retry is refused, a repair writes the row now.
    let (code, out) = cli(&config, &["failed", "retry", &ids[1]]).await;
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("no longer the row's latest change"), "{out}");
    let (code, out) = cli(&config, &["failed", "repair", &ids[1]]).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = cli(&config, &["failed", "ignore", &ids[2]]).await;
    assert_eq!(code, Some(2), "a reason is required: {out}");
    let (code, out) = cli(
        &config,
        &[
            "failed",
            "ignore",
            &ids[2],
            &ids[3],
            "--reason",
            "re-synced by hand",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{out}");

    let status: Vec<String> = control(
        &config,
        "SELECT status FROM failed_events ORDER BY source_pos, row_index",
    )
    .await
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(status, vec!["retried", "repaired", "ignored", "ignored"]);
    let names: Vec<Vec<mysql_async::Value>> = db.rows(true, "people", "id, name").await;
    let text = |v: &mysql_async::Value| match v {
        mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    };
    let names: Vec<String> = names
        .iter()
        .map(|r| format!("{}:{}", text(&r[0]), text(&r[1])))
        .collect();
    assert_eq!(names, vec!["1:Alexandra", "2:Bartholomew II", "4:Dee"]);
    let history = control(
        &config,
        &format!(
            "SELECT to_state, actor, statement FROM recovery_history \
             WHERE subject = 'failed_event' AND subject_id = {} ORDER BY id",
            ids[0]
        ),
    )
    .await;
    let moves: Vec<String> = history.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        moves,
        vec!["open", "retried"],
        "the refused attempt is in the history"
    );
    assert_eq!(history[1].get::<String, _>(1), "alice");
    assert!(history[1].get::<String, _>(2).starts_with("INSERT INTO"));
}

/// Kafka mode: the look and the lag wait for the table's topic (every partition) instead
/// of the binlog checkpoint; recovery runs as its own process beside capture and replicators.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_mode_repairs_after_the_replicators_applied_the_topic() {
    use concord_e2e::pipeline::{Mode, Pipeline};
    let db = TestDb::new("recovery_kafka").await;
    fill(&db, "t", 200).await;
    db.both("CREATE TABLE `{db}`.tick (id INT PRIMARY KEY)")
        .await;
    let pipeline = Pipeline::start(&db, Mode::Kafka, "2s", true).await;
    // A change through the whole pipeline, so the capture and the replicators have saved
    // positions and offsets to be asked about.
    db.source("INSERT INTO `{db}`.tick VALUES (1)").await;
    pipeline.wait_applied(&db, &["tick"]).await;
    db.target("UPDATE `{db}`.t SET name = 'corrupt' WHERE id <= 30")
        .await;
    db.target("DELETE FROM `{db}`.t WHERE id BETWEEN 31 AND 40")
        .await;
    let mut config = pipeline.config.sibling();
    config.extra = "\n[verifier]\nretry_after = \"300ms\"\n\n[checksum]\nchunk_time = \"20ms\"\n\
                    \n[recovery]\nevery = \"200ms\"\ngrace = \"1s\"\n"
        .into();
    let table = format!("{}.t", db.name);
    assert_eq!(checksum(&config, &table).await, Some(3));
    let recovery = Concord::start_role(&config, "recovery").await;
    wait_states(&config, &table, "repaired", 40).await;
    db.assert_same("t", "*").await;
    drop(recovery);
}
