//! What concord refuses at start, and what it serves while it runs.

use concord_e2e::concord::http_get;
use concord_e2e::{Concord, ConcordConfig, TestDb};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_source_without_binlog_is_refused_naming_the_setting() {
    let db = TestDb::new("nobinlog").await;
    let mut config = ConcordConfig::new(&db);
    // The target server runs without log_bin: pointed at as a source it must be refused.
    config.source_url = db.servers.target_url.clone();
    let mut c = Concord::spawn(&config, &["run"]).await;
    let code = c.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(1));
    let log = c.log();
    assert!(log.contains("log_bin") && log.contains("needs ON"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_without_primary_key_are_refused_by_name() {
    let db = TestDb::new("nopk").await;
    db.both("CREATE TABLE `{db}`.keyed (id INT PRIMARY KEY)")
        .await;
    db.both("CREATE TABLE `{db}`.heap (a INT, b INT)").await;
    let mut c = Concord::spawn(&ConcordConfig::new(&db), &["run"]).await;
    assert_eq!(c.wait_exit(Duration::from_secs(30)).await, Some(1));
    let log = c.log();
    assert!(log.contains(&format!("{}.heap", db.name)), "{log}");
    assert!(!log.contains(&format!("{}.keyed", db.name)), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_config_is_refused_naming_the_key() {
    let db = TestDb::new("badcfg").await;
    let mut config = ConcordConfig::new(&db);
    config.server_id = 0;
    let mut c = Concord::spawn(&config, &["check-config"]).await;
    assert_eq!(c.wait_exit(Duration::from_secs(10)).await, Some(1));
    assert!(c.log().contains("source.server_id"), "{}", c.log());

    let mut config = ConcordConfig::new(&db);
    config.extra = "[replikator]\nbatch_rows = 5\n".into();
    let mut c = Concord::spawn(&config, &["check-config"]).await;
    assert_eq!(c.wait_exit(Duration::from_secs(10)).await, Some(1));
    assert!(c.log().contains("replikator"), "{}", c.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_health_readiness_and_metrics() {
    let db = TestDb::new("observe").await;
    db.both("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT)")
        .await;
    let concord = Concord::start(&ConcordConfig::new(&db)).await;
    db.source("INSERT INTO `{db}`.t VALUES (1, 1), (2, 2)")
        .await;
    db.source("UPDATE `{db}`.t SET v = 3 WHERE id = 1").await;
    db.source("DELETE FROM `{db}`.t WHERE id = 2").await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;

    let port = concord.config.metrics_port;
    assert_eq!(http_get(port, "/healthz").await.unwrap().0, 200);
    assert_eq!(http_get(port, "/readyz").await.unwrap().0, 200);
    let table = format!("{}.t", db.name);
    for (op, n) in [("insert", 2.0), ("update", 1.0), ("delete", 1.0)] {
        let got = concord
            .metric(
                "concord_applied_events_total",
                &[("table", &table), ("op", op)],
            )
            .await;
        assert_eq!(got, n, "{op}");
    }
    let text = concord.metrics().await;
    for name in [
        "concord_replication_lag_seconds",
        "concord_apply_batch_rows_bucket",
        "concord_apply_batch_seconds_bucket",
        "concord_binlog_read_position",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(concord.metric("concord_replication_lag_seconds", &[]).await < 60.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn starts_at_a_given_binlog_position_without_a_checkpoint() {
    let db = TestDb::new("startpos").await;
    db.both("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT)")
        .await;
    db.source("INSERT INTO `{db}`.t VALUES (1, 1)").await;
    let from = db.servers.source_position().await;
    db.source("INSERT INTO `{db}`.t VALUES (2, 2), (3, 3)")
        .await;
    let config = ConcordConfig::new(&db);
    let text = config.toml().replace(
        "heartbeat = \"500ms\"",
        &format!("heartbeat = \"500ms\"\nstart = \"{from}\""),
    );
    let concord = Concord::start_with_toml(&config, &text).await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    // Row 1 was written before the start position: not replicated. 2 and 3 were.
    let ids = db.ids(true, "t").await;
    assert_eq!(ids, [2, 3]);
    assert!(concord
        .log()
        .contains(&format!("no checkpoint; starting position={from}")));
}
