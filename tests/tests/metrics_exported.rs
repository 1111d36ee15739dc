//! Every metric an alert rule or a dashboard panel names is one a running concord exports:
//! scraped from a real `concord run` and from a real kafka-mode capture and replicator,
//! each driven through the paths that make its labelled series appear (a labelled counter
//! that never counted is absent from `/metrics`): rows applied and verified, a column only
//! the source has, a row the target refuses, a change logged as a statement, a row changed
//! behind concord's back that the verifier finds and recovery repairs.

use concord_e2e::pipeline::{Mode, Pipeline};
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use mysql_async::prelude::Queryable;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The metric names (`concord_…`, `process_…`) that `text` mentions.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["concord_", "process_"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            // Not the middle of a longer word (`x_concord_…`).
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.insert(tail[..end].to_owned());
            }
            rest = &tail[end..];
        }
    }
    out
}

/// What the alert rules and the dashboard's panels query.
fn wanted() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/concord-rules.yaml"))
        .expect("the rules file");
    let exprs: String = rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
        .collect::<Vec<_>>()
        .join("\n");
    let panels = std::process::Command::new("python3")
        .arg(root.join("deploy/grafana/dashboard.py"))
        .arg("--exprs")
        .output()
        .expect("python3 runs the dashboard script");
    assert!(panels.status.success(), "dashboard.py --exprs failed");
    let mut names = names_in(&exprs);
    let from_panels = names_in(&String::from_utf8_lossy(&panels.stdout));
    assert!(
        from_panels.len() > 5,
        "the panels name metrics: {from_panels:?}"
    );
    names.extend(from_panels);
    names
}

/// The sample names on a `/metrics` page.
fn exported(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Scrapes `processes` every 200 ms, adding what they export to `seen`, until every name
/// in `goal` was seen or `timeout` passes; returns the names never seen.
async fn scrape_until(
    processes: &[&Concord],
    seen: &Arc<Mutex<BTreeSet<String>>>,
    goal: &BTreeSet<String>,
    timeout: Duration,
) -> BTreeSet<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        for p in processes {
            let page = p.metrics().await;
            seen.lock().unwrap().extend(exported(&page));
        }
        let missing: BTreeSet<String> = goal.difference(&seen.lock().unwrap()).cloned().collect();
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn kafka_only(name: &str) -> bool {
    name.starts_with("concord_capture_") || name.starts_with("concord_kafka_")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_a_rule_or_panel_names_is_exported_by_a_running_concord() {
    let goal = wanted();
    for name in [
        "concord_open_mismatches",
        "concord_replication_lag_seconds",
        "concord_capture_unpublished_seconds",
        "process_resident_memory_bytes",
    ] {
        assert!(
            goal.contains(name),
            "{name} is among the names read: {goal:?}"
        );
    }
    let seen = Arc::new(Mutex::new(BTreeSet::new()));

    // Direct mode: concord run (replicator, verifier, recovery).
    let db = TestDb::new("metrics_direct").await;
    db.source("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT, extra INT)")
        .await;
    db.target("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT)")
        .await;
    db.source("CREATE TABLE `{db}`.narrow (id INT PRIMARY KEY, s VARCHAR(20))")
        .await;
    db.target("CREATE TABLE `{db}`.narrow (id INT PRIMARY KEY, s VARCHAR(3))")
        .await;
    let mut config = ConcordConfig::new(&db);
    config.extra = "\n[verifier]\ndelay = \"1s\"\nretry_after = \"300ms\"\n\
                    \n[recovery]\nevery = \"200ms\"\ngrace = \"8s\"\n"
        .into();
    let run = Concord::start(&config).await;
    for i in 1..=5 {
        db.source(&format!("INSERT INTO `{{db}}`.t VALUES ({i}, {i}, {i})"))
            .await;
    }
    // Refused by the target: too long for its column.
    db.source("INSERT INTO `{db}`.narrow VALUES (1, 'far too long')")
        .await;
    // A change the binlog carries as SQL, not as rows.
    let mut session = db.servers.source_conn().await;
    session
        .query_drop("SET SESSION binlog_format = 'STATEMENT'")
        .await
        .unwrap();
    session
        .query_drop(format!("INSERT INTO `{}`.t VALUES (100, 1, 1)", db.name))
        .await
        .unwrap();
    drop(session);
    run.wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    // A row changed behind concord's back right after it was replicated: the verifier
    // finds it, recovery repairs it after the grace period.
    db.source("UPDATE `{db}`.t SET v = 20 WHERE id = 2").await;
    run.wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    db.target("UPDATE `{db}`.t SET v = 99 WHERE id = 2").await;

    let direct_goal: BTreeSet<String> = goal.iter().filter(|n| !kafka_only(n)).cloned().collect();
    let missing = scrape_until(&[&run], &seen, &direct_goal, Duration::from_secs(90)).await;
    assert!(
        missing.is_empty(),
        "concord run never exported {missing:?}; log: {}",
        run.log()
    );
    wait_for(
        "the tampered row to be repaired",
        Duration::from_secs(60),
        || async {
            (run.metric("concord_repairs_total", &[("outcome", "repaired")])
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    let repaired: Vec<Vec<mysql_async::Value>> = db
        .rows(true, "t", "id, v")
        .await
        .into_iter()
        .filter(|r| r[0] == mysql_async::Value::Bytes(b"2".to_vec()))
        .collect();
    assert_eq!(
        repaired,
        vec![vec![
            mysql_async::Value::Bytes(b"2".to_vec()),
            mysql_async::Value::Bytes(b"20".to_vec())
        ]],
        "the tampered row holds the source's value again"
    );

    // Kafka mode: the capture and a replicator.
    let kdb = TestDb::new("metrics_kafka").await;
    kdb.both("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT)")
        .await;
    let pipeline = Pipeline::start(&kdb, Mode::Kafka, "1s", true).await;
    for i in 1..=20 {
        kdb.source(&format!("INSERT INTO `{{db}}`.t VALUES ({i}, {i})"))
            .await;
    }
    pipeline.wait_applied(&kdb, &["t"]).await;
    let processes = [
        pipeline.capture.as_ref().expect("kafka mode has a capture"),
        pipeline.replicator(),
        &pipeline.verifier,
    ];
    let missing = scrape_until(&processes, &seen, &goal, Duration::from_secs(60)).await;
    assert!(
        missing.is_empty(),
        "no running concord exported {missing:?} (seen: {:?})",
        seen.lock().unwrap()
    );
}

#[test]
fn names_are_read_whole_from_expressions() {
    let names = names_in(
        "max by (table) (concord_open_mismatches{state=\"x\"}) > 0 and \
         rate(process_cpu_seconds_total[5m]) + histogram_quantile(0.9, \
         concord_apply_batch_seconds_bucket) + my_concord_thing",
    );
    let want: BTreeSet<String> = [
        "concord_open_mismatches",
        "process_cpu_seconds_total",
        "concord_apply_batch_seconds_bucket",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(names, want);
}
