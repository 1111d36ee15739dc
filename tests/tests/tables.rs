//! Table selection, renames and the audit columns, end to end.

use concord_e2e::{Concord, ConcordConfig, TestDb};
use mysql_async::Value;
use std::time::Duration;

fn text(v: &Value) -> String {
    match v {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::NULL => "NULL".into(),
        v => format!("{v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn include_exclude_and_rename() {
    let db = TestDb::new("tables").await;
    db.source("CREATE TABLE `{db}`.orders (id INT PRIMARY KEY, v INT)")
        .await;
    db.source("CREATE TABLE `{db}`.tmp_scratch (id INT PRIMARY KEY, v INT)")
        .await;
    db.source("CREATE TABLE `{db}`.people (id INT PRIMARY KEY, v INT)")
        .await;
    db.target("CREATE TABLE `{db}`.orders_v2 (id INT PRIMARY KEY, v INT)")
        .await;
    db.target("CREATE TABLE `{db}`.tmp_scratch (id INT PRIMARY KEY, v INT)")
        .await;
    db.target("CREATE TABLE `{db}`.people (id INT PRIMARY KEY, v INT)")
        .await;
    let mut config = ConcordConfig::new(&db);
    config.extra = format!(
        "[tables.rename]\n\"{db}.orders\" = \"{db}.orders_v2\"\n",
        db = db.name
    );
    let text_cfg = config.toml().replace(
        "[replicator]",
        &format!("exclude = [\"{}.tmp_*\"]\n\n[replicator]", db.name),
    );
    let concord = Concord::start_with_toml(&config, &text_cfg).await;
    for t in ["orders", "tmp_scratch", "people"] {
        db.source(&format!("INSERT INTO `{{db}}`.{t} VALUES (1, 10), (2, 20)"))
            .await;
    }
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    assert_eq!(
        db.count(true, "orders_v2").await,
        2,
        "renamed table received the rows"
    );
    assert_eq!(db.count(true, "people").await, 2);
    assert_eq!(
        db.count(true, "tmp_scratch").await,
        0,
        "excluded table untouched"
    );
    assert!(concord.failed_events().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_columns_mark_replicated_rows_with_source_commit_time() {
    let db = TestDb::new("audit").await;
    db.source("CREATE TABLE `{db}`.pay (id INT PRIMARY KEY, amount DECIMAL(10,2))")
        .await;
    db.target(
        "CREATE TABLE `{db}`.pay (id INT PRIMARY KEY, amount DECIMAL(10,2), \
         concord_replicated TINYINT NOT NULL DEFAULT 0, concord_source_ts DATETIME NULL)",
    )
    .await;
    let concord = Concord::start(&ConcordConfig::new(&db)).await;
    db.target("INSERT INTO `{db}`.pay (id, amount) VALUES (99, 1.00)")
        .await;
    db.source("INSERT INTO `{db}`.pay VALUES (1, 10.50), (2, 20.00)")
        .await;
    db.source("UPDATE `{db}`.pay SET amount = 11.00 WHERE id = 1")
        .await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;

    let rows = db
        .rows(
            true,
            "pay",
            "id, amount, concord_replicated, \
             ABS(TIMESTAMPDIFF(SECOND, concord_source_ts, UTC_TIMESTAMP())) < 60",
        )
        .await;
    let got: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(text).collect()).collect();
    assert_eq!(
        got,
        vec![
            vec!["1", "11.00", "1", "1"],
            vec!["2", "20.00", "1", "1"],
            vec!["99", "1.00", "0", "NULL"],
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line() {
    let db = TestDb::new("jsonlog").await;
    let config = ConcordConfig::new(&db);
    let mut c = Concord::spawn(&config, &["run", "--log-format", "json"]).await;
    let port = config.metrics_port;
    concord_e2e::wait_for("readiness", Duration::from_secs(30), || async move {
        concord_e2e::concord::http_get(port, "/readyz")
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await;
    c.stop().await;
    let log = c.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 3, "{log}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{line}"
        );
    }
    assert!(log.contains("\"message\":\"reading binlog\""), "{log}");
}
