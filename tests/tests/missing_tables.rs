//! Rows of a replicated table the target lacks are kept as one compact record per table —
//! the count and the position range — not one failed event per row, in direct and kafka
//! mode; the other tables' rows go on unaffected.

use concord_e2e::broker::Kind;
use concord_e2e::concord::{failed_events, missing_tables};
use concord_e2e::pipeline::{Mode, Pipeline};
use concord_e2e::{wait_for, Concord, TestDb};
use mysql_async::prelude::Queryable;
use std::time::Duration;

async fn many_rows_of_a_missing_table(mode: Mode, name: &str) {
    let db = TestDb::new(name).await;
    db.both("CREATE TABLE `{db}`.a (id INT PRIMARY KEY, v INT NOT NULL)")
        .await;
    db.source("CREATE TABLE `{db}`.gone (id INT PRIMARY KEY, v INT NOT NULL)")
        .await;
    let pipeline = Pipeline::start_edited(Kind::Tansu, &db, mode, "2s", false, |_| {}).await;
    // 2,000 rows in 20 transactions, a's rows between them.
    for i in 0..20 {
        db.source(&format!(
            "INSERT INTO `{{db}}`.gone SELECT {i} * 100 + seq, seq FROM `{{db}}`.seq_1_to_100"
        ))
        .await;
        db.source(&format!("INSERT INTO `{{db}}`.a VALUES ({i}, {i})"))
            .await;
    }
    db.wait_same("a", "*", Duration::from_secs(60)).await;
    let config = pipeline.config.clone();
    let table = format!("{}.gone", db.name);
    let record = wait_for("the missing rows counted", Duration::from_secs(60), || {
        let config = config.clone();
        async move {
            missing_tables(&config)
                .await
                .into_iter()
                .find(|m| m.1 == 2000)
        }
    })
    .await;
    assert_eq!(record.0, table);
    assert_eq!(record.4, "open");
    assert!(record.2 < record.3, "a position range: {record:?}");
    assert_eq!(missing_tables(&config).await.len(), 1, "one record");
    assert_eq!(
        failed_events(&config).await,
        vec![],
        "no failed event per row"
    );
    assert_eq!(
        pipeline
            .replicator()
            .metric("concord_missing_table_rows_total", &[("table", &table)])
            .await,
        2000.0
    );
    let log = pipeline.replicator().log();
    assert_eq!(
        log.matches("the target has no table for these rows")
            .count(),
        1,
        "warned once a minute at most"
    );

    // What an operator sees, then the documented re-sync: create the table, copy it from
    // the source (rows written meanwhile replicate on top), resolve the record.
    let mut list = Concord::spawn(&config.sibling(), &["missing-tables"]).await;
    assert_eq!(list.wait_exit(Duration::from_secs(30)).await, Some(0));
    let out = list.log();
    assert!(
        out.contains(&table) && out.contains("2000") && out.contains("open"),
        "{out}"
    );
    db.target("CREATE TABLE `{db}`.gone (id INT PRIMARY KEY, v INT NOT NULL)")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // the replicator's schema TTL
    db.source("INSERT INTO `{db}`.gone VALUES (99999, 1)").await;
    let rows: Vec<(i64, i64)> = db
        .servers
        .source_conn()
        .await
        .query(format!("SELECT id, v FROM `{}`.gone", db.name))
        .await
        .unwrap();
    db.servers
        .target_conn()
        .await
        .exec_batch(
            format!("INSERT IGNORE INTO `{}`.gone VALUES (?, ?)", db.name),
            rows,
        )
        .await
        .unwrap();
    db.wait_same("gone", "*", Duration::from_secs(60)).await;
    let args = ["missing-tables", "--resolve", table.as_str()];
    let mut resolve = Concord::spawn(&config.sibling(), &args).await;
    assert_eq!(resolve.wait_exit(Duration::from_secs(30)).await, Some(0));
    assert_eq!(missing_tables(&config).await[0].4, "resolved");
    let mut again = Concord::spawn(&config.sibling(), &args).await;
    assert_eq!(again.wait_exit(Duration::from_secs(30)).await, Some(1));
    assert!(
        again.log().contains("no open missing-table record"),
        "{}",
        again.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_table_is_one_compact_record_direct() {
    many_rows_of_a_missing_table(Mode::Direct, "missing_d").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_table_is_one_compact_record_kafka() {
    many_rows_of_a_missing_table(Mode::Kafka, "missing_k").await;
}
