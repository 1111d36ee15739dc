//! A source `TRUNCATE` of a replicated table empties the target's table in order with the
//! changes around it (direct mode), or is recorded with `replicator.truncate = "record"` —
//! never lost silently. Another table takes a write load throughout.

use concord_e2e::concord::mismatches;
use concord_e2e::pipeline::wait_verified_binlog;
use concord_e2e::writer::{Writer, TABLE_DDL};
use concord_e2e::{Concord, ConcordConfig, TestDb};
use std::time::Duration;

const T: &str = "CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(20))";
const WAIT: Duration = Duration::from_secs(60);

/// The tables, and `concord run` started; then a writer on the other table (started after
/// concord, which begins at the source's current position).
async fn setup(name: &str, replicator: &str) -> (TestDb, ConcordConfig, Concord, Writer) {
    let db = TestDb::new(name).await;
    db.both(T).await;
    db.both(&TABLE_DDL.replace("{t}", "w")).await;
    let mut config = ConcordConfig::new(&db);
    config.replicator = replicator.into();
    config.extra = "\n[verifier]\ndelay = \"1s\"\nsave_every = \"100ms\"\n".into();
    let concord = Concord::start(&config).await;
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &["w"],
        Duration::from_millis(5),
    );
    (db, config, concord, writer)
}

#[tokio::test(flavor = "multi_thread")]
async fn truncate_is_applied_in_order_with_the_changes_around_it() {
    let (db, config, concord, writer) = setup("truncate_apply", "").await;
    let fill = "INSERT INTO `{db}`.t SELECT seq, seq, 'first' FROM `{db}`.seq_1_to_500";
    db.source(fill).await;
    db.source("UPDATE `{db}`.t SET v = v + 1 WHERE id <= 100")
        .await;
    db.wait_same("t", "*", WAIT).await;

    // Inserts and updates just before, the TRUNCATE, and new rows right after — in one
    // go, so they land in the same read-ahead and batches.
    db.source(
        "INSERT INTO `{db}`.t VALUES (1001, 1, 'before'); \
         UPDATE `{db}`.t SET note = 'touched' WHERE id = 7; \
         TRUNCATE TABLE `{db}`.t; \
         INSERT INTO `{db}`.t VALUES (7, 70, 'after'), (2001, 2, 'after'); \
         UPDATE `{db}`.t SET v = 71 WHERE id = 7",
    )
    .await;
    db.wait_same("t", "*", WAIT).await;
    assert_eq!(db.ids(true, "t").await, vec![7, 2001]);

    // Twice in a row, and once on an empty table.
    db.source("TRUNCATE TABLE `{db}`.t").await;
    db.source("TRUNCATE `{db}`.t").await;
    db.source("INSERT INTO `{db}`.t VALUES (3, 3, 'last')")
        .await;
    db.wait_same("t", "*", WAIT).await;
    assert_eq!(db.ids(true, "t").await, vec![3]);

    writer.stop().await;
    db.wait_same("w", "*", WAIT).await;
    assert!(concord.failed_events().await.is_empty());
    assert_eq!(
        concord
            .metric("concord_truncates_total", &[("action", "applied")])
            .await,
        3.0
    );
    wait_verified_binlog(&db, &config, WAIT).await;
    assert_eq!(mismatches(&config).await, vec![], "nothing differs");
}

#[tokio::test(flavor = "multi_thread")]
async fn truncate_can_be_recorded_instead() {
    let (db, _config, concord, writer) = setup("truncate_record", "truncate = \"record\"").await;
    db.source("INSERT INTO `{db}`.t VALUES (1, 1, 'a'), (2, 2, 'b')")
        .await;
    db.source("TRUNCATE TABLE `{db}`.t").await;
    db.source("INSERT INTO `{db}`.t VALUES (3, 3, 'c')").await;
    // The rows around it are applied; the target keeps the rows the source emptied.
    let want = vec![1, 2, 3];
    concord_e2e::wait_for("rows after the TRUNCATE", WAIT, || async {
        (db.ids(true, "t").await == want).then_some(())
    })
    .await;
    writer.stop().await;
    db.wait_same("w", "*", WAIT).await;
    let failed = concord.failed_events().await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (table, reason, error, event) = &failed[0];
    assert_eq!(table, &format!("{}.t", db.name));
    assert_eq!(reason, "truncate");
    assert!(error.contains("replicator.truncate"), "{error}");
    assert!(
        event.contains("TRUNCATE TABLE"),
        "the statement is kept: {event}"
    );
    assert_eq!(
        concord
            .metric("concord_truncates_total", &[("action", "recorded")])
            .await,
        1.0
    );
    assert!(concord
        .log()
        .contains("source TRUNCATE recorded as a failed event"));
}

/// Kafka mode does not carry TRUNCATE yet: the capture records it, never drops it silently.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_mode_records_a_truncate_it_cannot_carry() {
    use concord_e2e::broker::Kind;
    use concord_e2e::pipeline::{Mode, Pipeline};
    let db = TestDb::new("truncate_kafka").await;
    db.both(T).await;
    let pipeline = Pipeline::start_edited(Kind::Tansu, &db, Mode::Kafka, "2s", false, |_| {}).await;
    db.source("INSERT INTO `{db}`.t VALUES (1, 1, 'a'), (2, 2, 'b')")
        .await;
    db.source("TRUNCATE TABLE `{db}`.t").await;
    db.source("INSERT INTO `{db}`.t VALUES (3, 3, 'c')").await;
    let config = pipeline.config.clone();
    let failed =
        concord_e2e::wait_for("the TRUNCATE recorded", WAIT, || {
            let config = config.clone();
            async move {
                Some(concord_e2e::concord::failed_events(&config).await).filter(|f| !f.is_empty())
            }
        })
        .await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].1, "truncate");
    assert!(
        failed[0].2.contains("kafka mode does not carry"),
        "{}",
        failed[0].2
    );
    let want = vec![1, 2, 3];
    concord_e2e::wait_for("the rows around it", WAIT, || async {
        (db.ids(true, "t").await == want).then_some(())
    })
    .await;
}

/// `ALTER TABLE … TRUNCATE PARTITION` (and DROP, EXCHANGE) removes rows without row
/// events: the target cannot be told which, so it is recorded for a re-sync — never lost
/// silently — and the rows after it go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_partition_truncated_on_the_source_is_recorded_for_a_resync() {
    let db = TestDb::new("truncate_partition").await;
    db.both(
        "CREATE TABLE `{db}`.logs (id INT PRIMARY KEY, v INT NOT NULL) \
         PARTITION BY RANGE (id) (PARTITION p1 VALUES LESS THAN (100), \
         PARTITION p2 VALUES LESS THAN MAXVALUE)",
    )
    .await;
    let config = ConcordConfig::new(&db);
    let concord = Concord::start(&config).await;
    db.source("INSERT INTO `{db}`.logs SELECT seq, seq FROM `{db}`.seq_1_to_200")
        .await;
    db.wait_same("logs", "*", WAIT).await;
    db.source("ALTER TABLE `{db}`.logs TRUNCATE PARTITION p1")
        .await;
    db.source("INSERT INTO `{db}`.logs VALUES (300, 3)").await;
    concord_e2e::wait_for("the row after it", WAIT, || async {
        db.ids(true, "logs").await.contains(&300).then_some(())
    })
    .await;
    assert_eq!(db.count(true, "logs").await, 201, "the target keeps its rows");
    let failed = concord.failed_events().await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (table, reason, error, event) = &failed[0];
    assert_eq!(table, &format!("{}.logs", db.name));
    assert_eq!(reason, "truncate");
    assert!(error.contains("by partition"), "{error}");
    assert!(event.contains("TRUNCATE PARTITION"), "{event}");
    assert_eq!(
        concord
            .metric("concord_truncates_total", &[("action", "recorded")])
            .await,
        1.0
    );
}
