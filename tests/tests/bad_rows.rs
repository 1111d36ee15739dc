//! A row the target rejects is recorded with its event, error and position, and rows
//! after it still arrive.

use concord_e2e::{Concord, ConcordConfig, TestDb};
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

    db.source("INSERT INTO `{db}`.orders VALUES (1, 'ok', 1)").await;
    db.source("INSERT INTO `{db}`.orders VALUES (2, 'this note is much too long', 2)")
        .await;
    // A multi-row transaction with one bad row: the good rows of it must still land.
    db.source(
        "INSERT INTO `{db}`.orders VALUES (3, 'fine', 3), (4, 'negative', -4), (5, 'fine too', 5)",
    )
    .await;
    db.source("INSERT INTO `{db}`.orders VALUES (6, 'last', 6)").await;

    concord.wait_caught_up(&db.servers, Duration::from_secs(30)).await;
    let ids: Vec<i64> = db
        .rows(true, "orders", "id")
        .await
        .into_iter()
        .map(|r| mysql_async::from_value(r[0].clone()))
        .collect();
    assert_eq!(ids, [1, 3, 5, 6]);

    let failed = concord.failed_events().await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    let table = format!("{}.orders", db.name);
    assert_eq!(failed[0].0, table);
    assert_eq!(failed[0].1, "rejected");
    assert!(failed[0].2.contains("too long"), "{}", failed[0].2);
    assert!(failed[0].3.contains("this note is much too long"), "event kept: {}", failed[0].3);
    assert_eq!(failed[1].1, "rejected");
    assert!(failed[1].2.to_lowercase().contains("amount_positive"), "{}", failed[1].2);
    assert!(failed[1].3.contains("negative"));

    let counted = concord
        .metric("concord_failed_events_total", &[("table", &table), ("reason", "rejected")])
        .await;
    assert_eq!(counted, 2.0);
    let applied = concord
        .metric("concord_applied_events_total", &[("table", &table), ("op", "insert")])
        .await;
    assert_eq!(applied, 4.0, "rejected rows are not counted as applied");
}
