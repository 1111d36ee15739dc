//! Events that may carry row data and that concord cannot decode stop replication with an
//! error naming them and their position — never passed over. Each test has a source of its
//! own: they change global settings.

use concord_e2e::server::OwnSource;
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn compressed_binlog_events_are_refused_at_start_and_stop_replication_when_met() {
    let db = TestDb::new("compressed").await;
    let source = OwnSource::start(&["--log-bin-compress=ON"]).await;
    let mut config = ConcordConfig::new(&db);
    config.source_url = source.url.clone();

    // Refused at start, naming the setting.
    let mut c = Concord::spawn(&config, &["run"]).await;
    assert_eq!(c.wait_exit(Duration::from_secs(30)).await, Some(1));
    assert!(c.log().contains("log_bin_compress"), "{}", c.log());

    // Turned on while concord runs: the first compressed event stops it, named.
    source.sql("SET GLOBAL log_bin_compress = OFF").await;
    let ddl = "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v TEXT)".replace("{db}", &db.name);
    source.sql(&format!("CREATE DATABASE `{}`", db.name)).await;
    source.sql(&ddl).await;
    db.target("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v TEXT)")
        .await;
    let mut c = Concord::start(&config).await;
    let t = format!("`{}`.t", db.name);
    source
        .sql(&format!("INSERT INTO {t} VALUES (1, 'small')"))
        .await;
    wait_for("the first row", Duration::from_secs(30), || async {
        (db.count(true, "t").await == 1).then_some(())
    })
    .await;
    source.sql("SET GLOBAL log_bin_compress = ON").await;
    // Compression starts above log_bin_compress_min_len (256 bytes).
    source
        .sql(&format!("INSERT INTO {t} VALUES (2, REPEAT('x', 5000))"))
        .await;
    assert_eq!(c.wait_exit(Duration::from_secs(30)).await, Some(1));
    let log = c.log();
    assert!(
        log.contains("compressed ROWS_EVENT") && log.contains("log_bin_compress=OFF"),
        "{log}"
    );
    assert!(
        log.contains("mysql-bin.0000"),
        "the position is named: {log}"
    );
    assert_eq!(db.count(true, "t").await, 1, "nothing after it was applied");

    // A restart meets it again: it is never skipped.
    source.sql("SET GLOBAL log_bin_compress = OFF").await;
    let mut again = Concord::spawn(&config, &["run"]).await;
    assert_eq!(again.wait_exit(Duration::from_secs(30)).await, Some(1));
    assert!(
        again.log().contains("compressed ROWS_EVENT"),
        "{}",
        again.log()
    );
}
