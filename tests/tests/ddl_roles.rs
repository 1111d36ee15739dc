//! Schema changes in every order, under a write load, with the verifier close behind the
//! replicator and a checksum running through the DDL (direct and kafka mode): no process
//! stops, an untampered table records no mismatch, the shared columns converge — and a row
//! tampered after the DDL is still flagged.

use concord_e2e::broker::Kind;
use concord_e2e::concord::mismatches;
use concord_e2e::pipeline::{Mode, Pipeline};
use concord_e2e::writer::{Writer, TABLE_DDL};
use concord_e2e::{wait_for, Concord, TestDb};
use mysql_async::prelude::Queryable;
use std::time::Duration;

const SHARED: &str = "id, v, note, amount, updated";

#[derive(Clone, Copy, Debug)]
enum Order {
    AddedOnTargetFirst,
    AddedOnSourceFirst,
    DroppedOnSource,
    DroppedOnTarget,
    TableRecreatedOnTarget,
}

/// Runs `order`'s DDL while the writer goes on; returns the columns to compare after.
async fn apply(db: &TestDb, writer: &Writer, order: Order) -> String {
    let pause = || tokio::time::sleep(Duration::from_millis(1500));
    match order {
        Order::AddedOnTargetFirst => {
            db.target("ALTER TABLE `{db}`.t ADD COLUMN c2 BIGINT NULL")
                .await;
            pause().await;
            db.source("ALTER TABLE `{db}`.t ADD COLUMN c2 BIGINT NULL")
                .await;
            writer.set_extra_column(Some("c2"));
            format!("{SHARED}, c2")
        }
        Order::AddedOnSourceFirst => {
            db.source("ALTER TABLE `{db}`.t ADD COLUMN c2 BIGINT NULL")
                .await;
            pause().await;
            db.target("ALTER TABLE `{db}`.t ADD COLUMN c2 BIGINT NULL")
                .await;
            // Values written into c2 before the replicator sees it on the target (its
            // schema cache trusts an entry for 1 s here) are a real difference, counted as
            // skipped: the writer sets c2 only after that.
            pause().await;
            writer.set_extra_column(Some("c2"));
            format!("{SHARED}, c2")
        }
        // `gone`, which the writer does not write, is on both sides from the start.
        Order::DroppedOnSource => {
            db.source("ALTER TABLE `{db}`.t DROP COLUMN gone").await;
            SHARED.to_owned()
        }
        Order::DroppedOnTarget => {
            db.target("ALTER TABLE `{db}`.t DROP COLUMN gone").await;
            SHARED.to_owned()
        }
        Order::TableRecreatedOnTarget => {
            // Dropped, created again and refilled from the source while the application
            // holds its writes (the writer is held and the target caught up by the caller):
            // a refill under writes would need the guarded write of batch recovery.
            db.target("DROP TABLE `{db}`.t").await;
            pause().await;
            db.target(&TABLE_DDL.replace("{t}", "t")).await;
            // The replicator's cache trusts "no such table" for 1 s here; writes resume
            // after it sees the table again.
            pause().await;
            let rows: Vec<mysql_async::Row> = db
                .servers
                .source_conn()
                .await
                .query(format!("SELECT * FROM `{}`.t", db.name))
                .await
                .expect("source rows");
            let insert = format!("INSERT IGNORE INTO `{}`.t VALUES (?, ?, ?, ?, ?)", db.name);
            db.servers
                .target_conn()
                .await
                .exec_batch(insert, rows.into_iter().map(mysql_async::Row::unwrap))
                .await
                .expect("refill");
            writer.go();
            SHARED.to_owned()
        }
    }
}

async fn ddl_under_load(mode: Mode, order: Order) {
    let tag = match mode {
        Mode::Direct => "d",
        Mode::Kafka => "k",
    };
    let db = TestDb::new(&format!("ddlr_{tag}_{order:?}").to_lowercase()).await;
    db.both(&TABLE_DDL.replace("{t}", "t")).await;
    let drops = matches!(order, Order::DroppedOnSource | Order::DroppedOnTarget);
    if drops {
        db.both("ALTER TABLE `{db}`.t ADD COLUMN gone INT NULL")
            .await;
    }
    // A short delay: the verifier reads rows while the DDL lands.
    // Drops: every role's cached column set is stale when it next reads (the default
    // TTL is 5 s, the tests' 1 s would hide it), so each must refresh on the server's
    // error. The other orders need the replicator to see target DDL quickly.
    let ttl = if drops { "60s" } else { "1s" };
    let mut pipeline = Pipeline::start_edited(Kind::Tansu, &db, mode, "4s", false, |c| {
        c.schema_ttl = ttl.into()
    })
    .await;
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &["t"],
        Duration::from_millis(3),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Every role has read the table's columns (with `gone`) before the DDL.
    pipeline.wait_verified(&db, Duration::from_secs(60)).await;
    if let Order::TableRecreatedOnTarget = order {
        writer.hold().await;
        pipeline.wait_applied(&db, &["t"]).await;
        // Verified too: a change checked while the table is gone or not yet refilled
        // would be a real (if deliberate) difference.
        pipeline.wait_verified(&db, Duration::from_secs(60)).await;
    }
    // A checksum holds mid-table while the source is busy (six sleeping sessions, above
    // its `max_threads_running`); the DDL lands meanwhile, and the rest of the table is
    // checked over the columns as they are then.
    let mut checksum_config = pipeline.config.sibling();
    checksum_config.extra.push_str(
        "\n[checksum]\nchunk_time = \"10ms\"\nfirst_chunk_rows = 20\nmax_threads_running = 4\n",
    );
    let table = format!("{}.t", db.name);
    let busy: Vec<_> = (0..6)
        .map(|_| {
            let pool = db.servers.source.clone();
            tokio::spawn(async move {
                let mut c = pool.get_conn().await.unwrap();
                c.query_drop("SELECT SLEEP(7)").await.unwrap();
            })
        })
        .collect();
    let mut checksum =
        Concord::spawn(&checksum_config, &["checksum", "--table", table.as_str()]).await;
    wait_for("the checksum to hold", Duration::from_secs(10), || {
        let log = checksum.log();
        async move { log.contains("source busy; checksum waiting").then_some(()) }
    })
    .await;
    let columns = apply(&db, &writer, order).await;
    // Long enough for the verifier to compare rows changed across the DDL.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let committed = writer.stop().await;
    assert!(committed > 50, "the writer kept writing ({committed})");
    pipeline.wait_applied(&db, &[]).await;
    db.wait_same("t", &columns, Duration::from_secs(60)).await;
    for b in busy {
        b.await.expect("busy session");
    }
    let code = checksum.wait_exit(Duration::from_secs(120)).await;
    let log = checksum.log();
    match order {
        // The table may be missing on the target when the checksum goes on: reported,
        // naming it.
        Order::TableRecreatedOnTarget if code == Some(1) => {
            assert!(log.contains("does not exist on the target"), "{log}")
        }
        _ => assert_eq!(
            code,
            Some(0),
            "{order:?}: the checksum went through the DDL: {log}"
        ),
    }
    if drops {
        // Its statements named the dropped column: the server's error made it read the
        // columns again and resume the table.
        assert!(
            log.contains("checksum interrupted; resuming the table"),
            "{log}"
        );
    }
    pipeline.wait_verified(&db, Duration::from_secs(90)).await;
    let found = mismatches(&pipeline.config).await;
    assert!(found.is_empty(), "{order:?}: no mismatch: {found:?}");
    // Checked again once all is quiet: every row equal.
    let mut again = Concord::spawn(
        &checksum_config.sibling(),
        &["checksum", "--table", table.as_str(), "--restart"],
    )
    .await;
    let code = again.wait_exit(Duration::from_secs(120)).await;
    assert_eq!(code, Some(0), "{order:?}: {}", again.log());

    // A row changed on the source and then, inside the delay, behind concord's back on
    // the target: still flagged.
    let id = db.ids(false, "t").await[0];
    db.source(&format!("UPDATE `{{db}}`.t SET v = v + 1 WHERE id = {id}"))
        .await;
    db.wait_same("t", "id, v", Duration::from_secs(30)).await;
    db.target(&format!(
        "UPDATE `{{db}}`.t SET v = v + 1000 WHERE id = {id}"
    ))
    .await;
    let config = pipeline.config.clone();
    let flagged = wait_for("the tampered row", Duration::from_secs(60), || {
        let config = config.clone();
        async move { Some(mismatches(&config).await).filter(|m| !m.is_empty()) }
    })
    .await;
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert!(
        pipeline.verifier.running(),
        "{order:?}: the verifier kept running"
    );
    for p in [pipeline.replicator.as_mut(), pipeline.capture.as_mut()]
        .into_iter()
        .flatten()
    {
        assert!(p.running(), "{order:?}: every role kept running");
    }
}

macro_rules! orders {
    ($($name:ident: $mode:expr, $order:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            ddl_under_load($mode, $order).await;
        }
    )*};
}

orders! {
    added_on_target_first_direct: Mode::Direct, Order::AddedOnTargetFirst;
    added_on_source_first_direct: Mode::Direct, Order::AddedOnSourceFirst;
    dropped_on_source_direct: Mode::Direct, Order::DroppedOnSource;
    dropped_on_target_direct: Mode::Direct, Order::DroppedOnTarget;
    table_recreated_on_target_direct: Mode::Direct, Order::TableRecreatedOnTarget;
    added_on_target_first_kafka: Mode::Kafka, Order::AddedOnTargetFirst;
    added_on_source_first_kafka: Mode::Kafka, Order::AddedOnSourceFirst;
    dropped_on_source_kafka: Mode::Kafka, Order::DroppedOnSource;
    dropped_on_target_kafka: Mode::Kafka, Order::DroppedOnTarget;
    table_recreated_on_target_kafka: Mode::Kafka, Order::TableRecreatedOnTarget;
}
