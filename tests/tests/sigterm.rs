//! SIGTERM, as Kubernetes sends it before a pod goes: under a write load, every role exits
//! cleanly (status 0) within 10 s, and a restart resumes where it stopped — the target ends
//! equal to the source, nothing refused, nothing verified as different.

use concord_e2e::pipeline::{Mode, Pipeline};
use concord_e2e::writer::{create_tables, Writer};
use concord_e2e::{Concord, ConcordConfig, TestDb};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(10);
const TABLES: [&str; 2] = ["a", "b"];

/// SIGTERMs `role` and checks it went in time and cleanly.
async fn term(role: &mut Concord, what: &str) {
    let (status, took) = role
        .terminate(WITHIN)
        .await
        .unwrap_or_else(|| panic!("{what} still ran {WITHIN:?} after SIGTERM"));
    assert!(status.success(), "{what} exited {status} on SIGTERM");
    assert!(took < WITHIN, "{what} took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_mode_run_ends_cleanly_on_sigterm_and_resumes() {
    let db = TestDb::new("sigterm_run").await;
    create_tables(&db, &TABLES).await;
    let mut config = ConcordConfig::new(&db);
    config.extra = "\n[verifier]\ndelay = \"1s\"\nsave_every = \"200ms\"\n".into();
    let mut run = Concord::start(&config).await;
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &TABLES,
        Duration::from_millis(2),
    );
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(700 + 300 * round)).await;
        term(&mut run, "concord run").await;
        run = Concord::start(&config).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let committed = writer.stop().await;
    assert!(committed > 100, "the load ran ({committed} transactions)");
    run.wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    for t in TABLES {
        db.assert_same(t, "*").await;
    }
    assert!(run.failed_events().await.is_empty());
    concord_e2e::pipeline::wait_verified_binlog(&db, &config, Duration::from_secs(60)).await;
    let mismatches = concord_e2e::concord::mismatches(&config).await;
    assert!(
        mismatches.is_empty(),
        "restarts made the verifier see differences: {mismatches:?}"
    );
    term(&mut run, "concord run, idle").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_mode_roles_end_cleanly_on_sigterm_and_resume() {
    let db = TestDb::new("sigterm_kafka").await;
    create_tables(&db, &TABLES).await;
    let mut p = Pipeline::start(&db, Mode::Kafka, "1s", true).await;
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &TABLES,
        Duration::from_millis(3),
    );
    for role in ["capture", "replicate", "verify"] {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let process = match role {
            "capture" => p.capture.as_mut().unwrap(),
            "replicate" => p.replicator.as_mut().unwrap(),
            _ => &mut p.verifier,
        };
        term(process, role).await;
        let again = Concord::start_role(&p.config.sibling(), role).await;
        match role {
            "capture" => p.capture = Some(again),
            "replicate" => p.replicator = Some(again),
            _ => p.verifier = again,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let committed = writer.stop().await;
    assert!(committed > 50, "the load ran ({committed} transactions)");
    p.wait_applied(&db, &TABLES).await;
    for t in TABLES {
        db.assert_same(t, "*").await;
    }
    p.wait_verified(&db, Duration::from_secs(60)).await;
    let mismatches = concord_e2e::concord::mismatches(&p.config).await;
    assert!(
        mismatches.is_empty(),
        "restarts made the verifier see differences: {mismatches:?}"
    );
    assert!(concord_e2e::concord::failed_events(&p.config)
        .await
        .is_empty());
}
