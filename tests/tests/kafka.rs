//! Kafka mode end to end: source → capture → broker → replicators → target.

use concord_e2e::broker::{Broker, Kind};
use concord_e2e::writer::{Writer, TABLE_DDL};
use concord_e2e::{Concord, ConcordConfig, TestDb};
use rand::Rng;
use std::time::Duration;

const TOPIC: &str = "concord.changes";
const PARTITIONS: u32 = 4;

async fn setup(
    prefix: &str,
    tables: &[&str],
    kafka_extra: &str,
) -> (TestDb, Broker, ConcordConfig) {
    setup_on(Kind::Tansu, prefix, tables, kafka_extra).await
}

async fn setup_on(
    kind: Kind,
    prefix: &str,
    tables: &[&str],
    kafka_extra: &str,
) -> (TestDb, Broker, ConcordConfig) {
    let db = TestDb::new(prefix).await;
    for t in tables {
        db.both(&TABLE_DDL.replace("{t}", t)).await;
    }
    let broker = Broker::start_kind(kind).await;
    broker.create_topic(TOPIC, PARTITIONS).await;
    broker.create_topic(&format!("{TOPIC}.dlq"), 1).await;
    let mut config = ConcordConfig::new(&db);
    config.kafka = Some((
        broker.brokers(),
        TOPIC.into(),
        format!("{}-group", db.name),
        kafka_extra.into(),
    ));
    (db, broker, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_and_two_replicators_copy_every_row() {
    let tables = ["a", "b", "c"];
    // A small acknowledgement window: the capture keeps waiting for the broker, and still
    // nothing may be lost or reordered.
    let (db, _broker, config) = setup("kpipe", &tables, "max_unacked = 100").await;
    let capture = Concord::start_role(&config, "capture").await;
    let r1 = Concord::start_role(&config.sibling(), "replicate").await;
    // Group members joining at the very same moment can stall on tansu: stagger them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r2 = Concord::start_role(&config.sibling(), "replicate").await;

    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &tables,
        Duration::from_millis(2),
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    let committed = writer.stop().await;
    assert!(committed > 200, "the load ran ({committed})");
    for t in tables {
        db.wait_same(t, "*", Duration::from_secs(60)).await;
    }
    let a1 = r1.metric("concord_applied_events_total", &[]).await;
    let a2 = r2.metric("concord_applied_events_total", &[]).await;
    assert!(
        a1 > 0.0 && a2 > 0.0,
        "both replicators applied changes: {a1} and {a2}"
    );
    let published = capture
        .metric("concord_capture_published_total", &[("topic", TOPIC)])
        .await;
    assert!(
        published >= a1 + a2,
        "capture published {published}, replicators applied {a1} + {a2}"
    );
    // librdkafka reports per-partition lag every 5 s; caught up, it is 0 everywhere.
    concord_e2e::wait_for(
        "consumer lag of 0 reported",
        Duration::from_secs(20),
        || {
            let r1 = &r1;
            async move {
                let reported = r1.metrics().await.contains("concord_kafka_consumer_lag{");
                let lag = r1.metric("concord_kafka_consumer_lag", &[]).await;
                (reported && lag == 0.0).then_some(())
            }
        },
    )
    .await;
    assert!(r1.failed_events().await.is_empty());
}

/// How many non-empty assignments a replicator's log shows so far.
fn assignments(c: &Concord) -> usize {
    c.log()
        .lines()
        .filter(|l| l.contains("partitions assigned") && !l.ends_with("partitions=0"))
        .count()
}

/// Runs a write load while `victims` (0 = the capture, 1 and 2 = the replicators) are
/// killed with SIGKILL and restarted, the broker restarted once midway; then checks that
/// the target equals the source.
async fn chaos(prefix: &str, victims: Vec<usize>) {
    let tables = ["a", "b"];
    // Killed replicators need a broker that evicts dead group members (nisshi).
    let kind = if victims.iter().any(|&v| v > 0) {
        Kind::Nisshi
    } else {
        Kind::Tansu
    };
    let (db, mut broker, config) = setup_on(kind, prefix, &tables, "").await;
    let cap_cfg = config.sibling();
    // When replicators are killed they get stable identities (static membership), as
    // StatefulSet pods would, so a restarted one reclaims its partitions.
    let kills_replicators = victims.iter().any(|&v| v > 0);
    let r_cfgs = ["r1", "r2"].map(|id| {
        let mut c = config.sibling();
        if let (true, Some(k)) = (kills_replicators, c.kafka.as_mut()) {
            k.3 = format!("instance_id = \"{id}\"");
        }
        c
    });
    let mut capture = Concord::start_role(&cap_cfg, "capture").await;
    let mut reps = vec![Concord::start_role(&r_cfgs[0], "replicate").await];
    tokio::time::sleep(Duration::from_secs(3)).await;
    reps.push(Concord::start_role(&r_cfgs[1], "replicate").await);
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &tables,
        Duration::from_millis(3),
    );

    let rounds = victims.len();
    for (round, victim) in victims.into_iter().enumerate() {
        let pause = rand::rng().random_range(400..1200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        match victim {
            0 => {
                capture.kill9().await;
                capture = Concord::start_role(&cap_cfg, "capture").await;
            }
            r => {
                let before = assignments(&reps[r - 1]);
                reps[r - 1].kill9().await;
                reps[r - 1] = Concord::start_role(&r_cfgs[r - 1], "replicate").await;
                let rep = &reps[r - 1];
                concord_e2e::wait_for(
                    "the restarted replicator's assignment",
                    Duration::from_secs(60),
                    || async move { (assignments(rep) > before).then_some(()) },
                )
                .await;
            }
        }
        if round == rounds / 2 {
            broker.restart().await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let committed = writer.stop().await;
    assert!(committed > 200, "the load ran ({committed})");
    for t in tables {
        db.wait_same(t, "*", Duration::from_secs(90)).await;
    }
    assert!(capture.log().contains("resuming capture from its position"));
    assert!(reps[0].failed_events().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_the_capture_and_restart_the_broker_under_load() {
    chaos("kcapkill", vec![0; 6]).await;
}

/// Each of capture and both replicators killed 5 times in random order, on nisshi: tansu
/// 0.6.0 never evicts a SIGKILLed group member (docs/NOTES.md).
#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_capture_and_replicators_and_restart_the_broker() {
    let mut victims: Vec<usize> = [0, 1, 2]
        .iter()
        .flat_map(|&v| std::iter::repeat_n(v, 5))
        .collect();
    {
        let mut rng = rand::rng();
        for i in (1..victims.len()).rev() {
            victims.swap(i, rng.random_range(0..=i));
        }
    }
    chaos("kkill", victims).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_messages_are_dead_lettered_and_recorded() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::ClientConfig;
    use rdkafka::Message;

    let (db, broker, config) = setup("kpoison", &["a"], "").await;
    let _capture = Concord::start_role(&config, "capture").await;
    let rep = Concord::start_role(&config.sibling(), "replicate").await;
    db.source("INSERT INTO `{db}`.a (id, v) VALUES (1, 1)")
        .await;
    db.wait_same("a", "*", Duration::from_secs(30)).await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    let poison: [&[u8]; 3] = [
        b"this is not json",
        br#"{"version": 42, "op": "c"}"#,
        br#"{"version":1,"op":"c","ts_ms":1,"before":null,"after":{"id":"x"},"source":{"file":"f","pos":4,"row":0,"gtid":null,"ts_ms":0,"db":"nodb","table":"t","server_id":1,"txn":{"end_file":"f","end_pos":9,"index":0,"total":1}},"schema":{"columns":["id"],"types":["int"],"primary_key":["id"]}}"#,
    ];
    for p in poison {
        producer
            .send(
                FutureRecord::to(TOPIC).key("poison").payload(p),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    db.source("INSERT INTO `{db}`.a (id, v) VALUES (2, 2)")
        .await;
    db.wait_same("a", "*", Duration::from_secs(30)).await;

    let failed = concord_e2e::wait_for("three failed events", Duration::from_secs(30), || {
        let rep = &rep;
        async move {
            let f = rep.failed_events().await;
            (f.iter().filter(|f| f.1 == "malformed").count() == 3).then_some(f)
        }
    })
    .await;
    assert!(
        failed.iter().any(|f| f.2.contains("not a change envelope")),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|f| f.2.contains("version 42")),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|f| f.2.contains("column `id`")),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|f| f.3 == "this is not json"),
        "the message is kept: {failed:?}"
    );

    let dlq = broker.reader("dlq-reader", &format!("{TOPIC}.dlq"));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(30), dlq.recv())
            .await
            .expect("dead letters arrive")
            .unwrap();
        seen.push(m.payload().unwrap_or_default().to_vec());
    }
    assert!(seen.contains(&b"this is not json".to_vec()));
    assert_eq!(rep.metric("concord_dead_lettered_total", &[]).await, 3.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_replicator_resumes_from_the_offsets_stored_in_the_target() {
    // Broker-side commits off: only the target's offsets can tell the replicator where
    // to resume; without them it would start again from the beginning of the topic.
    let (db, _broker, config) = setup("kresume", &["a"], "commit_broker_offsets = false").await;
    let _capture = Concord::start_role(&config, "capture").await;
    let rep_cfg = config.sibling();
    let mut rep = Concord::start_role(&rep_cfg, "replicate").await;
    for id in 1..=30 {
        db.source(&format!(
            "INSERT INTO `{{db}}`.a (id, v) VALUES ({id}, {id})"
        ))
        .await;
    }
    db.wait_same("a", "*", Duration::from_secs(30)).await;
    rep.stop().await;

    db.target("DELETE FROM `{db}`.a WHERE id = 7").await;
    db.source("INSERT INTO `{db}`.a (id, v) VALUES (31, 31)")
        .await;
    let rep = Concord::start_role(&rep_cfg, "replicate").await;
    concord_e2e::wait_for("row 31", Duration::from_secs(30), || {
        let db = &db;
        async move { (db.count(true, "a").await == 30).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids = db.ids(true, "a").await;
    assert!(
        !ids.contains(&7),
        "row 7 was not re-applied: the replicator did not start over"
    );
    assert!(ids.contains(&31));
    assert!(rep.failed_events().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_per_table() {
    let db = TestDb::new("kpertable").await;
    for t in ["a", "b"] {
        db.both(&TABLE_DDL.replace("{t}", t)).await;
    }
    let broker = Broker::start().await;
    for t in ["a", "b"] {
        broker
            .create_topic(&format!("{TOPIC}.{}.{t}", db.name), 2)
            .await;
    }
    broker.create_topic(&format!("{TOPIC}.dlq"), 1).await;
    let mut config = ConcordConfig::new(&db);
    config.kafka = Some((
        broker.brokers(),
        TOPIC.into(),
        format!("{}-group", db.name),
        "topic_mode = \"per_table\"".into(),
    ));
    let capture = Concord::start_role(&config, "capture").await;
    let _rep = Concord::start_role(&config.sibling(), "replicate").await;
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &["a", "b"],
        Duration::from_millis(3),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    writer.stop().await;
    for t in ["a", "b"] {
        db.wait_same(t, "*", Duration::from_secs(60)).await;
        let topic = format!("{TOPIC}.{}.{t}", db.name);
        let published = capture
            .metric("concord_capture_published_total", &[("topic", &topic)])
            .await;
        assert!(published > 0.0, "{topic} carried {t}'s changes");
    }
}

/// Every envelope names its source transaction's GTID (`domain-server-sequence`, what
/// `@@last_gtid` said on the source right after the commit); the rows of one transaction
/// share it. A transaction with savepoints, one rolled back to, arrives whole and right.
#[tokio::test(flavor = "multi_thread")]
async fn envelopes_carry_the_source_gtid_and_savepoints_keep_the_transaction() {
    use mysql_async::prelude::Queryable;
    use rdkafka::message::Message;

    let (db, broker, config) = setup("kgtid", &["a"], "").await;
    let _capture = Concord::start_role(&config, "capture").await;
    let _rep = Concord::start_role(&config.sibling(), "replicate").await;
    let mut conn = db.servers.source_conn().await;
    let mut gtids = Vec::new();
    for (first, second) in [(1, 2), (3, 4)] {
        conn.query_drop(format!(
            "BEGIN; INSERT INTO `{db}`.a (id, v) VALUES ({first}, 1); \
             SAVEPOINT s1; INSERT INTO `{db}`.a (id, v) VALUES (100{first}, 9); \
             ROLLBACK TO SAVEPOINT s1; RELEASE SAVEPOINT s1; \
             INSERT INTO `{db}`.a (id, v) VALUES ({second}, 2); COMMIT",
            db = db.name
        ))
        .await
        .unwrap();
        let gtid: String = conn
            .query_first("SELECT @@last_gtid")
            .await
            .unwrap()
            .unwrap();
        gtids.push(gtid);
    }
    db.wait_same("a", "*", Duration::from_secs(30)).await;
    assert_eq!(
        db.ids(true, "a").await,
        vec![1, 2, 3, 4],
        "savepoint rows rolled back"
    );

    let reader = broker.reader("gtid-reader", TOPIC);
    let mut by_id = std::collections::BTreeMap::new();
    while by_id.len() < 4 {
        let m = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .expect("envelopes arrive")
            .unwrap();
        let env: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        if env["source"]["db"] != db.name.as_str() {
            continue;
        }
        let id = env["after"]["id"].as_i64().expect("an insert's id");
        by_id.insert(id, env["source"]["gtid"].as_str().map(str::to_owned));
    }
    let got: Vec<Option<String>> = by_id.into_values().collect();
    let want: Vec<Option<String>> = [&gtids[0], &gtids[0], &gtids[1], &gtids[1]]
        .iter()
        .map(|g| Some(g.to_string()))
        .collect();
    assert_eq!(got, want);
}

/// A capture that died while publishing a TRUNCATE's markers publishes it again, with the
/// changes before it, under another attempt. The replicators pass the interrupted
/// attempt's copies (some partitions never got one) and empty the table at the complete
/// one: the target ends as the source did. The messages are written here by hand, exactly
/// as that capture would have left them.
#[tokio::test(flavor = "multi_thread")]
async fn a_truncate_published_again_after_an_interrupted_attempt_is_applied_exactly() {
    use concord_change::envelope::{message_key, Envelope, SourceInfo, Truncate, TxnInfo};
    use concord_change::{Op, Position, RowChange, SourceTable, TableName, Value};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use std::sync::Arc;

    let (db, broker, config) = setup("ktrunc_again", &["t"], "").await;
    let table = Arc::new(SourceTable {
        name: TableName::new(db.name.clone(), "t"),
        columns: ["id", "v", "note", "amount", "updated"]
            .map(String::from)
            .to_vec(),
        primary_key: vec![0],
    });
    let source = |pos: u64| SourceInfo {
        file: "mysql-bin.000001".into(),
        pos,
        row: 0,
        gtid: None,
        ts_ms: 1_700_000_000_000,
        db: db.name.clone(),
        table: "t".into(),
        server_id: 1,
        txn: TxnInfo {
            end_file: "mysql-bin.000001".into(),
            end_pos: 5000,
            index: 0,
            total: 0,
        },
    };
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    let send = |partition: i32, key: Vec<u8>, payload: Vec<u8>| {
        let producer = producer.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(TOPIC)
                        .partition(partition)
                        .key(&key)
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .expect("delivered");
        }
    };
    // Row `id` lives on partition id % 4, as a key hash would put it on one partition.
    let insert = |id: i64| {
        let change = RowChange {
            table: table.clone(),
            op: Op::Insert,
            before: None,
            after: Some(vec![
                Value::Int(id),
                Value::Int(id),
                Value::Text("x".into()),
                Value::Null,
                Value::Null,
            ]),
            position: Position::new("mysql-bin.000001", 100 + id as u64),
            row_index: 0,
            commit_ts: 1_700_000_000,
        };
        let payload = Envelope::encode(&change, &source(100 + id as u64), 1);
        ((id % 4) as i32, message_key(&change), payload)
    };
    let marker = |attempt: u64| Truncate::encode(&source(5000), 4, attempt, 1);
    let key = format!("{}.t", db.name).into_bytes();

    for id in 1..=8 {
        let (p, k, v) = insert(id);
        send(p, k, v).await;
    }
    // The first attempt's markers reached partitions 0 and 1 only.
    for p in [0, 1] {
        send(p, key.clone(), marker(11)).await;
    }
    // Published again: the changes before the TRUNCATE, all markers, then new rows.
    for id in 1..=8 {
        let (p, k, v) = insert(id);
        send(p, k, v).await;
    }
    for p in 0..4 {
        send(p, key.clone(), marker(22)).await;
    }
    for id in 20..=23 {
        let (p, k, v) = insert(id);
        send(p, k, v).await;
    }

    let replicator = Concord::start_role(&config, "replicate").await;
    concord_e2e::wait_for(
        "the rows after the TRUNCATE, and only them",
        Duration::from_secs(60),
        || async { (db.ids(true, "t").await == vec![20, 21, 22, 23]).then_some(()) },
    )
    .await;
    assert_eq!(
        replicator
            .metric("concord_truncates_total", &[("action", "applied")])
            .await,
        1.0,
        "emptied at the complete attempt only"
    );
    assert!(replicator.failed_events().await.is_empty());
}
