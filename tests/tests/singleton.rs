//! The singleton guard: a second capture of a topic, or a second direct-mode replicator of
//! a `replicator.name`, waits as a hot standby — not ready, writing nothing — and takes
//! over within seconds when the active one is killed (kill -9) under load, or cut off from
//! the server that keeps its lock; the target ends equal to the source.

use concord_e2e::concord::{http_get, wait_readyz};
use concord_e2e::pipeline::{Mode, Pipeline};
use concord_e2e::proxy::{host_port, Proxy};
use concord_e2e::writer::{create_tables, Writer};
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use std::time::{Duration, Instant};

const TABLES: [&str; 2] = ["a", "b"];

/// Waits until `standby` says on /readyz that it is the standby; returns what it says.
async fn wait_standby(standby: &Concord) -> String {
    let port = standby.config.metrics_port;
    wait_for(
        "the second process to wait as the standby",
        Duration::from_secs(30),
        || async move {
            http_get(port, "/readyz")
                .await
                .filter(|(code, body)| *code == 503 && body.contains("standby"))
                .map(|(_, body)| body)
        },
    )
    .await
}

/// Kills the active process and returns how long the standby took to be ready.
async fn fail_over(active: &mut Concord, standby: &Concord) -> Duration {
    let port = standby.config.metrics_port;
    active.kill9().await;
    let killed = Instant::now();
    wait_readyz(port, "the standby to take over", Duration::from_secs(30)).await;
    killed.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_direct_replicator_waits_and_takes_over_when_the_first_dies() {
    let db = TestDb::new("singleton_direct").await;
    create_tables(&db, &TABLES).await;
    let config = ConcordConfig::new(&db);
    let mut active = Concord::start_role(&config, "replicate").await;
    let standby = Concord::spawn(&config.sibling(), &["replicate"]).await;
    let said = wait_standby(&standby).await;
    assert!(
        said.contains("another process is the active replicator"),
        "{said}"
    );
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &TABLES,
        Duration::from_millis(2),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !standby.log().contains("checkpoint"),
        "the standby read nothing while the active one ran: {}",
        standby.log()
    );
    let took = fail_over(&mut active, &standby).await;
    assert!(took < Duration::from_secs(10), "took over after {took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let committed = writer.stop().await;
    assert!(committed > 100, "the load ran ({committed} transactions)");
    standby
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    for t in TABLES {
        db.assert_same(t, "*").await;
    }
    assert!(standby.failed_events().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_capture_waits_and_takes_over_when_the_first_dies() {
    let db = TestDb::new("singleton_capture").await;
    create_tables(&db, &TABLES).await;
    let mut p = Pipeline::start(&db, Mode::Kafka, "1s", true).await;
    let standby = Concord::spawn(&p.config.sibling(), &["capture"]).await;
    let said = wait_standby(&standby).await;
    assert!(
        said.contains("another process is the active capture"),
        "{said}"
    );
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &TABLES,
        Duration::from_millis(3),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let took = fail_over(p.capture.as_mut().unwrap(), &standby).await;
    assert!(took < Duration::from_secs(10), "took over after {took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let committed = writer.stop().await;
    assert!(committed > 50, "the load ran ({committed} transactions)");
    p.wait_applied(&db, &TABLES).await;
    for t in TABLES {
        db.assert_same(t, "*").await;
    }
    assert!(concord_e2e::concord::failed_events(&p.config)
        .await
        .is_empty());
}

/// The active replicator cut off from the server that keeps its lock — a network
/// partition: nothing arrives and nothing is closed, so the server does not know — gives the
/// lock up within seconds, before the server frees it for the standby, which then takes
/// over; the target ends equal to the source once the cut-off writer's open transaction
/// has been ended by the server.
#[tokio::test(flavor = "multi_thread")]
async fn a_holder_cut_off_from_the_lock_stops_before_the_standby_takes_over() {
    let db = TestDb::new("singleton_partition").await;
    create_tables(&db, &TABLES).await;
    // The lock lives on the target (the control store is SQLite); the active process
    // reaches the target through the proxy, the standby directly.
    let proxy = Proxy::start(&host_port(&db.servers.target_url)).await;
    let config = ConcordConfig::new(&db);
    let mut cut_off = config.sibling();
    cut_off.target_url = proxy.url();
    let active = Concord::start_role(&cut_off, "replicate").await;
    let standby = Concord::spawn(&config.sibling(), &["replicate"]).await;
    wait_standby(&standby).await;
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &TABLES,
        Duration::from_millis(2),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.stall();
    let stalled = Instant::now();
    let gave_up = wait_for(
        "the cut-off process to give the lock up",
        Duration::from_secs(30),
        || async {
            active
                .log()
                .contains("the singleton lock was lost")
                .then(|| stalled.elapsed())
        },
    )
    .await;
    let port = standby.config.metrics_port;
    let took = wait_for(
        "the standby to take over",
        Duration::from_secs(60),
        || async move {
            http_get(port, "/readyz")
                .await
                .filter(|(code, _)| *code == 200)
                .map(|_| stalled.elapsed())
        },
    )
    .await;
    assert!(
        gave_up < concord_lease::SERVER_GIVES_UP,
        "the holder gave up after {gave_up:?}, before the server frees its lock"
    );
    assert!(
        gave_up < took,
        "never two writers: gave up after {gave_up:?}, taken over after {took:?}"
    );
    let committed = writer.stop().await;
    assert!(committed > 100, "the load ran ({committed} transactions)");
    // The cut-off writer's open transaction holds its rows until the server ends the
    // silent session; then the standby's batches land.
    standby
        .wait_caught_up(&db.servers, Duration::from_secs(120))
        .await;
    for t in TABLES {
        db.assert_same(t, "*").await;
    }
    assert!(standby.failed_events().await.is_empty());
    drop(active);
}
