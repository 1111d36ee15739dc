//! The control store on a real MariaDB server (the target started by
//! `scripts/services.sh`), as deployments with several pods use it.

use concord_change::{Position, TableName};
use concord_control::{ControlStore, FailedEvent, FailureReason, MissingRows};
use sqlx::Connection;

#[tokio::test]
async fn mariadb_store_migrates_records_and_dedups() {
    let server = std::env::var("CONCORD_TEST_TARGET")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3308".into());
    let db = format!("concord_control_{}", std::process::id());
    let mut admin = sqlx::MySqlConnection::connect(&server)
        .await
        .expect("target server is not running: scripts/services.sh start");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .unwrap();

    let url = format!("{server}/{db}");
    let store = ControlStore::connect(&url, &url).await.unwrap();
    let event = FailedEvent {
        position: Position::new("mysql-bin.000009", 777),
        row_index: 3,
        table: TableName::new("shop", "orders"),
        op: "update".into(),
        reason: FailureReason::Rejected,
        error: "Out of range value for column 'qty'".into(),
        event: r#"{"op":"u"}"#.into(),
    };
    store.record_failed(&event).await.unwrap();
    store.record_failed(&event).await.unwrap();
    let rows = store
        .failed_events(Some(&TableName::new("shop", "orders")), 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].occurrences, 2);
    assert_eq!(rows[0].position, Position::new("mysql-bin.000009", 777));
    assert_eq!(rows[0].row_index, 3);
    assert_eq!(rows[0].event, r#"{"op":"u"}"#);
    assert!(store
        .failed_events(Some(&TableName::new("shop", "other")), 10)
        .await
        .unwrap()
        .is_empty());

    // Missing tables: one record, a replayed range not counted twice, then a new episode
    // after it was resolved (MySQL applies the upsert's assignments in order).
    let missing = |first: u64, last: u64, rows: u64| MissingRows {
        table: TableName::new("shop", "_orders_new"),
        target: TableName::new("shop", "_orders_new"),
        first: Position::new("mysql-bin.000002", first),
        last: Position::new("mysql-bin.000002", last),
        rows,
    };
    store
        .record_missing(&missing(100, 900, 50), true)
        .await
        .unwrap();
    store
        .record_missing(&missing(1000, 99_000, 70), true)
        .await
        .unwrap();
    store
        .record_missing(&missing(1000, 99_000, 70), true)
        .await
        .unwrap();
    let got = store.missing_tables().await.unwrap();
    assert_eq!(
        (got.len(), got[0].rows, got[0].first.pos, got[0].last.pos),
        (1, 120, 100, 99_000)
    );
    assert!(store.resolve_missing(&got[0].table).await.unwrap());
    store
        .record_missing(&missing(200_000, 200_500, 3), true)
        .await
        .unwrap();
    let got = store.missing_tables().await.unwrap();
    assert_eq!(
        (got[0].rows, got[0].first.pos, got[0].status.as_str()),
        (3, 200_000, "open")
    );
    store
        .record_missing(&missing(150_000, 150_100, 4), false)
        .await
        .unwrap();
    let got = store.missing_tables().await.unwrap();
    assert_eq!(
        (got[0].rows, got[0].first.pos, got[0].last.pos),
        (7, 150_000, 200_500)
    );

    // A second process connecting to the same store finds the schema in place.
    let again = ControlStore::connect(&url, &url).await.unwrap();
    assert_eq!(again.failed_events(None, 10).await.unwrap().len(), 1);
    sqlx::query(&format!("DROP DATABASE {db}"))
        .execute(&mut admin)
        .await
        .unwrap();
}
