//! Restarts resume from the checkpoint stored on the target, and kill -9 at any moment
//! loses nothing and applies nothing twice.

use concord_e2e::writer::{create_tables, Writer, TABLE_DDL};
use concord_e2e::{Concord, ConcordConfig, TestDb};
use rand::Rng;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn restart_resumes_from_the_checkpoint_not_the_start() {
    let db = TestDb::new("resume").await;
    db.both(&TABLE_DDL.replace("{t}", "items")).await;
    let config = ConcordConfig::new(&db);
    let mut concord = Concord::start(&config).await;
    let first_file = db.servers.source_position().await.file;
    for id in 1..=50 {
        db.source(&format!(
            "INSERT INTO `{{db}}`.items (id, v, note) VALUES ({id}, {id}, 'first run')"
        ))
        .await;
        if id == 25 {
            // A rotation mid-stream: the reader must follow it to the next file.
            db.source("FLUSH BINARY LOGS").await;
        }
    }
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    concord.stop().await;
    let checkpoint = concord
        .checkpoint(&db.servers)
        .await
        .expect("checkpoint written");
    assert!(
        checkpoint.file > first_file,
        "the checkpoint followed the rotation"
    );

    // Behind concord's back: remove a row it applied before. Re-reading the binlog from
    // the start would bring it back; resuming from the checkpoint must not.
    db.target("DELETE FROM `{db}`.items WHERE id = 7").await;
    db.source("INSERT INTO `{db}`.items (id, v, note) VALUES (51, 51, 'second run')")
        .await;

    let concord = Concord::start(&config).await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    assert!(
        concord
            .log()
            .contains(&format!("resuming from checkpoint position={checkpoint}")),
        "second start must say it resumes from {checkpoint}; log:\n{}",
        concord.log()
    );
    assert_eq!(
        db.count(true, "items").await,
        50,
        "51 arrived, 7 stayed gone"
    );
    let ids = db.ids(true, "items").await;
    assert!(!ids.contains(&7));
    assert!(ids.contains(&51));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_during_load_loses_nothing() {
    let db = TestDb::new("kill9").await;
    let tables = ["a", "b", "c"];
    create_tables(&db, &tables).await;
    let config = ConcordConfig::new(&db);
    let mut concord = Concord::start(&config).await;
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &tables,
        Duration::from_millis(2),
    );

    let kills = 12;
    for _ in 0..kills {
        let wait = rand::rng().random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        concord.kill9().await;
        // Sometimes restart at once, sometimes after the source has moved on.
        let down = rand::rng().random_range(0..500);
        tokio::time::sleep(Duration::from_millis(down)).await;
        concord = Concord::start(&config).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let committed = writer.stop().await;
    assert!(committed > 200, "the load ran ({committed} transactions)");

    concord
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    for t in tables {
        db.assert_same(t, "*").await;
    }
    assert!(db.count(true, "a").await > 10);
    assert!(concord.failed_events().await.is_empty());
    let restarts = concord.log().matches("resuming from checkpoint").count();
    assert_eq!(restarts, kills, "every restart resumed from a checkpoint");
}
