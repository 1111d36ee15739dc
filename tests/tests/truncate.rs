//! A source `TRUNCATE` of a replicated table empties the target's table in order with the
//! changes around it (direct and kafka mode), or is recorded with `replicator.truncate =
//! "record"` — never lost silently. Another table takes a write load throughout.

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

/// Kafka mode carries a TRUNCATE as a marker on every partition: the target's table is
/// emptied once every partition has applied what came before it, and nothing after it is
/// applied before — with one replicator, and with two sharing the partitions.
async fn kafka_truncate(name: &str, replicators: usize) {
    use concord_e2e::broker::Kind;
    use concord_e2e::pipeline::{Mode, Pipeline};
    let db = TestDb::new(name).await;
    db.both(T).await;
    db.both(&TABLE_DDL.replace("{t}", "w")).await;
    let pipeline = Pipeline::start_edited(Kind::Tansu, &db, Mode::Kafka, "2s", true, |_| {}).await;
    let mut more = Vec::new();
    for _ in 1..replicators {
        more.push(Concord::start_role(&pipeline.config.sibling(), "replicate").await);
    }
    // The barrier is crossed by several processes only once the group shares the
    // partitions.
    concord_e2e::wait_for("the group to share the partitions", WAIT, || async {
        more.iter()
            .all(|r| {
                r.log()
                    .lines()
                    .any(|l| l.contains("partitions assigned") && !l.ends_with("partitions=0"))
            })
            .then_some(())
    })
    .await;
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &["w"],
        Duration::from_millis(5),
    );
    // Rows on every partition, then changes, the TRUNCATE and new rows in one go.
    db.source("INSERT INTO `{db}`.t SELECT seq, seq, 'first' FROM `{db}`.seq_1_to_500")
        .await;
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
    // Twice in a row, and once more on an empty table.
    db.source("TRUNCATE TABLE `{db}`.t").await;
    db.source("TRUNCATE `{db}`.t").await;
    db.source("INSERT INTO `{db}`.t VALUES (3, 3, 'last')")
        .await;
    db.wait_same("t", "*", WAIT).await;
    assert_eq!(db.ids(true, "t").await, vec![3]);
    writer.stop().await;
    db.wait_same("w", "*", WAIT).await;

    let mut applied = pipeline
        .replicator()
        .metric("concord_truncates_total", &[("action", "applied")])
        .await;
    for r in &more {
        applied += r
            .metric("concord_truncates_total", &[("action", "applied")])
            .await;
    }
    assert_eq!(applied, 3.0, "each TRUNCATE emptied the table once");
    assert!(pipeline.reader().failed_events().await.is_empty());
    pipeline.wait_verified(&db, WAIT).await;
    assert_eq!(
        mismatches(&pipeline.config).await,
        vec![],
        "nothing differs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_mode_carries_a_truncate_to_every_partition() {
    kafka_truncate("truncate_kafka", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_mode_truncate_waits_for_every_replicator_of_the_group() {
    kafka_truncate("truncate_kafka2", 2).await;
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
    assert_eq!(
        db.count(true, "logs").await,
        201,
        "the target keeps its rows"
    );
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

/// The barrier holds while a partition's replicator is stopped, and survives kill -9 of
/// every replicator in the middle: the one started afterwards finds the arrivals on the
/// target and finishes the TRUNCATE exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_truncate_barrier_holds_through_stopped_and_killed_replicators() {
    use concord_e2e::broker::Kind;
    use concord_e2e::pipeline::{Mode, Pipeline};
    let db = TestDb::new("truncate_kafka_kill").await;
    db.both(T).await;
    // Killed group members must be evicted: nisshi.
    let mut pipeline =
        Pipeline::start_edited(Kind::Nisshi, &db, Mode::Kafka, "2s", true, |_| {}).await;
    let mut second = Concord::start_role(&pipeline.config.sibling(), "replicate").await;
    concord_e2e::wait_for("the group to share the partitions", WAIT, || async {
        second
            .log()
            .lines()
            .any(|l| l.contains("partitions assigned") && !l.ends_with("partitions=0"))
            .then_some(())
    })
    .await;
    db.source("INSERT INTO `{db}`.t SELECT seq, seq, 'first' FROM `{db}`.seq_1_to_500")
        .await;
    db.wait_same("t", "*", WAIT).await;

    // The second replicator stops; the first reaches the markers on its partitions and
    // must wait there: the table is not emptied, nothing after the TRUNCATE applied.
    second.pause().await;
    db.source("TRUNCATE TABLE `{db}`.t").await;
    db.source("INSERT INTO `{db}`.t SELECT seq, seq, 'after' FROM `{db}`.seq_1_to_50")
        .await;
    let first = pipeline.replicator.as_mut().expect("kafka mode");
    concord_e2e::wait_for("the first replicator at the barrier", WAIT, || async {
        first
            .log()
            .contains("partition reached a source TRUNCATE")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let notes: Vec<_> = db.rows(true, "t", "note").await;
    assert!(
        notes.len() == 500 && notes.iter().all(|r| r[0] == "first".into()),
        "nothing passed the barrier early: {} rows",
        notes.len()
    );

    first.kill9().await;
    second.kill9().await;
    let third = Concord::start_role(&pipeline.config.sibling(), "replicate").await;
    db.wait_same("t", "*", Duration::from_secs(120)).await;
    assert_eq!(db.count(true, "t").await, 50);
    assert_eq!(
        third
            .metric("concord_truncates_total", &[("action", "applied")])
            .await,
        1.0
    );
}
