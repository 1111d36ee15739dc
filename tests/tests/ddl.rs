//! Schema changes reach the source and the target in either order while writes go on;
//! replication never stops and the shared columns converge.

use concord_e2e::writer::{Writer, TABLE_DDL};
use concord_e2e::{Concord, ConcordConfig, TestDb};
use std::time::Duration;

const SHARED: &str = "id, v, note, amount, updated";

async fn setup(prefix: &str) -> (TestDb, Concord, Writer) {
    let db = TestDb::new(prefix).await;
    db.both(&TABLE_DDL.replace("{t}", "t")).await;
    let concord = Concord::start(&ConcordConfig::new(&db)).await;
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &["t"],
        Duration::from_millis(3),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    (db, concord, writer)
}

async fn finish(db: &TestDb, concord: &Concord, writer: Writer, columns: &str) {
    tokio::time::sleep(Duration::from_millis(800)).await;
    let committed = writer.stop().await;
    assert!(committed > 50, "the writer kept writing ({committed})");
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    db.assert_same("t", columns).await;
    assert!(
        concord.failed_events().await.is_empty(),
        "no row may be lost to a schema change: {:?}",
        concord.failed_events().await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn column_added_on_target_first_then_source() {
    let (db, concord, writer) = setup("ddl_tfirst").await;
    db.target("ALTER TABLE `{db}`.t ADD COLUMN c2 BIGINT NULL")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    db.source("ALTER TABLE `{db}`.t ADD COLUMN c2 BIGINT NULL")
        .await;
    writer.set_extra_column(Some("c2"));
    // Every row the writer touches from now on carries c2 = id * 3.
    finish(&db, &concord, writer, &format!("{SHARED}, c2")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn column_added_on_source_first_then_target() {
    let (db, concord, writer) = setup("ddl_sfirst").await;
    db.source("ALTER TABLE `{db}`.t ADD COLUMN c2 BIGINT NULL")
        .await;
    writer.set_extra_column(Some("c2"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let skipped_before = concord
        .metric("concord_skipped_columns_total", &[("column", "c2")])
        .await;
    assert!(
        skipped_before > 0.0,
        "source-only values are counted as skipped"
    );
    db.target("ALTER TABLE `{db}`.t ADD COLUMN c2 BIGINT NULL")
        .await;
    // The schema cache trusts an entry for 1 s in this test; after that, c2 flows.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let first_after = writer.max_id(0) + 1;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let last = writer.max_id(0);
    assert!(
        last > first_after,
        "the writer inserted rows after the target gained c2"
    );
    finish(&db, &concord, writer, SHARED).await;
    let src = db.rows(false, "t", "id, c2").await;
    let tgt = db.rows(true, "t", "id, c2").await;
    let after = |rows: Vec<Vec<mysql_async::Value>>| -> Vec<Vec<mysql_async::Value>> {
        rows.into_iter()
            .filter(|r| {
                let id: i64 = mysql_async::from_value(r[0].clone());
                id >= first_after && id <= last
            })
            .collect()
    };
    let (src, tgt) = (after(src), after(tgt));
    assert!(!src.is_empty());
    assert_eq!(
        src, tgt,
        "values written after the target gained the column arrived"
    );
    assert!(
        concord
            .log()
            .matches("source column is not on the target")
            .count()
            == 1,
        "one warning per table+column, not per row"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn column_dropped_on_source() {
    let (db, concord, writer) = setup("ddl_sdrop").await;
    db.both("ALTER TABLE `{db}`.t ADD COLUMN gone INT NULL")
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    db.source("ALTER TABLE `{db}`.t DROP COLUMN gone").await;
    finish(&db, &concord, writer, SHARED).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn column_dropped_on_target() {
    let (db, concord, writer) = setup("ddl_tdrop").await;
    db.both("ALTER TABLE `{db}`.t ADD COLUMN gone INT NULL")
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    db.target("ALTER TABLE `{db}`.t DROP COLUMN gone").await;
    finish(&db, &concord, writer, SHARED).await;
    assert!(
        concord.metric("concord_schema_refreshes_total", &[]).await >= 1.0,
        "an unknown-column error refreshed the schema cache"
    );
}
