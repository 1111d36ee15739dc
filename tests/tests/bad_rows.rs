//! A row the target rejects is recorded with its event, error and position, and rows
//! after it still arrive.

use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn rejected_rows_are_recorded_and_replication_continues() {
    let db = TestDb::new("badrows").await;
    // The target is stricter than the source: a shorter column and a CHECK constraint.
    db.source("CREATE TABLE `{db}`.orders (id INT PRIMARY KEY, note VARCHAR(100), amount INT)")
        .await;
    db.target(
        "CREATE TABLE `{db}`.orders (id INT PRIMARY KEY, note VARCHAR(10), amount INT, \
         CONSTRAINT amount_positive CHECK (amount >= 0))",
    )
    .await;
    let concord = Concord::start(&ConcordConfig::new(&db)).await;

    db.source("INSERT INTO `{db}`.orders VALUES (1, 'ok', 1)")
        .await;
    db.source("INSERT INTO `{db}`.orders VALUES (2, 'this note is much too long', 2)")
        .await;
    // A multi-row transaction with one bad row: the good rows of it must still land.
    db.source(
        "INSERT INTO `{db}`.orders VALUES (3, 'fine', 3), (4, 'negative', -4), (5, 'fine too', 5)",
    )
    .await;
    db.source("INSERT INTO `{db}`.orders VALUES (6, 'last', 6)")
        .await;

    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    let ids = db.ids(true, "orders").await;
    assert_eq!(ids, [1, 3, 5, 6]);

    let failed = concord.failed_events().await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    let table = format!("{}.orders", db.name);
    assert_eq!(failed[0].0, table);
    assert_eq!(failed[0].1, "rejected");
    assert!(failed[0].2.contains("too long"), "{}", failed[0].2);
    assert!(
        failed[0].3.contains("this note is much too long"),
        "event kept: {}",
        failed[0].3
    );
    assert_eq!(failed[1].1, "rejected");
    assert!(
        failed[1].2.to_lowercase().contains("amount_positive"),
        "{}",
        failed[1].2
    );
    assert!(failed[1].3.contains("negative"));

    let counted = concord
        .metric(
            "concord_failed_events_total",
            &[("table", &table), ("reason", "rejected")],
        )
        .await;
    assert_eq!(counted, 2.0);
    let applied = concord
        .metric(
            "concord_applied_events_total",
            &[("table", &table), ("op", "insert")],
        )
        .await;
    assert_eq!(applied, 4.0, "rejected rows are not counted as applied");
}

/// A row locked on the target is a transient problem: the batch waits, retries and lands;
/// nothing is recorded as a bad row.
#[tokio::test(flavor = "multi_thread")]
async fn lock_wait_timeouts_are_retried_not_recorded() {
    use mysql_async::prelude::Queryable;
    let db = TestDb::new("lockwait").await;
    db.both("CREATE TABLE `{db}`.acct (id INT PRIMARY KEY, balance INT)")
        .await;
    db.both("INSERT INTO `{db}`.acct VALUES (1, 100), (2, 200)")
        .await;
    let mut config = ConcordConfig::new(&db);
    config.replicator = "lock_wait_timeout = \"1s\"".into();
    let concord = Concord::start(&config).await;

    // Another target session holds row 1 for longer than the applier will wait.
    let mut holder = db.servers.target_conn().await;
    holder.query_drop("BEGIN").await.unwrap();
    holder
        .query_drop(format!(
            "SELECT * FROM `{}`.acct WHERE id = 1 FOR UPDATE",
            db.name
        ))
        .await
        .unwrap();
    db.source("UPDATE `{db}`.acct SET balance = 150 WHERE id = 1")
        .await;
    db.source("UPDATE `{db}`.acct SET balance = 250 WHERE id = 2")
        .await;
    // Hold the lock until the applier has timed out on it twice (a wait for the condition, not
    // for a time: a slow start would otherwise let the lock go before anything tried it).
    wait_for(
        "two lock wait timeouts",
        Duration::from_secs(60),
        || async {
            let retries = concord
                .metric("concord_apply_retries_total", &[("cause", "transient")])
                .await;
            (retries >= 2.0).then_some(())
        },
    )
    .await;
    assert_eq!(
        db.rows(true, "acct", "balance").await[0][0],
        mysql_async::Value::Bytes(b"100".to_vec()),
        "the locked row cannot have changed yet"
    );
    holder.query_drop("ROLLBACK").await.unwrap();
    drop(holder);

    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    db.assert_same("acct", "*").await;
    assert!(concord.failed_events().await.is_empty());
}
