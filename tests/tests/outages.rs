//! The source or the target going away — connections dropped, new ones refused — holds
//! replication back; it never skips or records a change. When the server is back,
//! replication resumes and converges.

use concord_e2e::proxy::{host_port, Proxy};
use concord_e2e::writer::{Writer, TABLE_DDL};
use concord_e2e::{Concord, ConcordConfig, TestDb};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn source_and_target_outages_are_waited_out() {
    let db = TestDb::new("outage").await;
    db.both(&TABLE_DDL.replace("{t}", "t")).await;
    let source = Proxy::start(&host_port(&db.servers.source_url)).await;
    let target = Proxy::start(&host_port(&db.servers.target_url)).await;
    let mut config = ConcordConfig::new(&db);
    config.source_url = source.url();
    config.target_url = target.url();
    let concord = Concord::start(&config).await;
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &["t"],
        Duration::from_millis(3),
    );

    tokio::time::sleep(Duration::from_millis(700)).await;
    target.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = db.count(true, "t").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        db.count(true, "t").await,
        during,
        "nothing reaches a target that is down"
    );
    target.restore();
    // Two outages, one after the other: the roles are back (with a SQLite control store the
    // replicator's singleton lock lives on the target, so its outage stopped them) before
    // the source goes, so the source's outage meets a running binlog reader.
    let metrics = config.metrics_port;
    concord_e2e::concord::wait_readyz(metrics, "concord ready again", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    source.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    source.restore();
    tokio::time::sleep(Duration::from_millis(700)).await;

    let committed = writer.stop().await;
    assert!(committed > 100, "the writer kept writing ({committed})");
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    db.assert_same("t", "*").await;
    assert!(
        concord.failed_events().await.is_empty(),
        "an outage is not a bad row"
    );
    // The target's outage shows as retried batches, or — when the singleton lock (on the
    // target here) is found gone before the applier next writes — as the roles stopped
    // until the lock is held again; which comes first is a matter of milliseconds.
    let retried = concord
        .metric("concord_apply_retries_total", &[("cause", "transient")])
        .await;
    assert!(
        retried >= 1.0 || concord.log().contains("the singleton lock was lost"),
        "the target's outage was noticed: {}",
        concord.log()
    );
    assert!(concord.metric("concord_binlog_reconnects_total", &[]).await >= 1.0);
    assert!(source.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}
