//! Production schemas replicate like a native replica: generated columns are left to the
//! target to compute (and stored ones verified as data, virtual ones not), and triggers on
//! replicated target tables are named at start — or refused.

use concord_e2e::concord::mismatches;
use concord_e2e::pipeline::wait_verified_binlog;
use concord_e2e::writer::{Writer, TABLE_DDL};
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

const LINES: &str = "CREATE TABLE `{db}`.lines (id INT PRIMARY KEY, qty INT NOT NULL, \
    price DECIMAL(10,2) NOT NULL, \
    total DECIMAL(12,2) AS (qty * price) STORED, \
    vtotal DECIMAL(12,2) AS (qty * price) VIRTUAL, \
    doc JSON, \
    sku VARCHAR(20) AS (JSON_VALUE(doc, '$.sku')) VIRTUAL, KEY (sku))";

/// `concord run` with a short verifier delay, and a write load on a table `w` of its own.
async fn start_under_load(db: &TestDb) -> (ConcordConfig, Concord, Writer) {
    db.both(&TABLE_DDL.replace("{t}", "w")).await;
    let mut config = ConcordConfig::new(db);
    config.extra = "\n[verifier]\ndelay = \"1s\"\nsave_every = \"100ms\"\n".into();
    let concord = Concord::start(&config).await;
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &["w"],
        Duration::from_millis(5),
    );
    (config, concord, writer)
}

fn line(id: i64) -> String {
    format!("({id}, {}, {id}.25, '{{\"sku\": \"S{id}\"}}')", id % 7 + 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_columns_are_computed_by_the_target_and_stored_ones_verified() {
    let db = TestDb::new("generated").await;
    db.both(LINES).await;
    let (config, concord, writer) = start_under_load(&db).await;
    let values: Vec<String> = (1..=40).map(line).collect();
    db.source(&format!(
        "INSERT INTO `{{db}}`.lines (id, qty, price, doc) VALUES {}",
        values.join(", ")
    ))
    .await;
    db.source("UPDATE `{db}`.lines SET qty = qty + 10 WHERE id % 3 = 0")
        .await;
    db.source("UPDATE `{db}`.lines SET doc = '{\"sku\": \"moved\"}' WHERE id = 4")
        .await;
    db.source("DELETE FROM `{db}`.lines WHERE id > 35").await;
    db.wait_same("lines", "*", WAIT).await;
    wait_verified_binlog(&db, &config, WAIT).await;
    assert_eq!(mismatches(&config).await, vec![], "nothing differs");
    assert!(concord.failed_events().await.is_empty());

    // The target computes its columns its own way from now on: the stored one is data
    // and differs from the source's; the virtual ones are not compared.
    db.target(
        "ALTER TABLE `{db}`.lines \
         MODIFY total DECIMAL(12,2) AS (qty * price + 1) STORED, \
         MODIFY vtotal DECIMAL(12,2) AS (qty * price + 1) VIRTUAL",
    )
    .await;
    db.source("UPDATE `{db}`.lines SET qty = 100 WHERE id IN (5, 6)")
        .await;
    writer.stop().await;
    db.wait_same("w", "*", WAIT).await;
    wait_for("the tampered stored column flagged", WAIT, || async {
        (mismatches(&config).await.len() >= 2).then_some(())
    })
    .await;
    wait_verified_binlog(&db, &config, WAIT).await;
    let found = mismatches(&config).await;
    assert_eq!(found.len(), 2, "rows 5 and 6 only: {found:?}");
    for m in &found {
        assert_eq!(m.table, format!("{}.lines", db.name));
        assert_eq!(
            m.columns,
            ["total"],
            "virtual columns are not compared: {m:?}"
        );
    }
    assert!(concord.failed_events().await.is_empty());
}

const AUDITED: &str = "CREATE TABLE `{db}`.orders (id INT PRIMARY KEY, v INT)";
const AUDIT_LOG: &str =
    "CREATE TABLE `{db}`.audit_log (n INT AUTO_INCREMENT PRIMARY KEY, order_id INT)";
const TRIGGER: &str = "CREATE TRIGGER `{db}`.audit_orders AFTER INSERT ON `{db}`.orders \
    FOR EACH ROW INSERT INTO `{db}`.audit_log (order_id) VALUES (NEW.id)";

#[tokio::test(flavor = "multi_thread")]
async fn triggers_on_replicated_target_tables_are_named_at_start_or_refused() {
    let db = TestDb::new("triggers").await;
    db.both(AUDITED).await;
    db.both(AUDIT_LOG).await;
    db.target(TRIGGER).await;
    let mut config = ConcordConfig::new(&db);
    // Only the orders are replicated: the audit table is the target's own.
    config.include = vec![format!("{}.orders", db.name)];
    let concord = Concord::start(&config).await;
    let named = format!("{}.orders: audit_orders (AFTER INSERT)", db.name);
    assert!(
        concord.log().contains(&named) && concord.log().contains("fires on every change"),
        "the warning names the trigger; log:\n{}",
        concord.log()
    );
    db.source("INSERT INTO `{db}`.orders VALUES (1, 1), (2, 2)")
        .await;
    db.wait_same("orders", "*", WAIT).await;
    assert_eq!(
        db.count(true, "audit_log").await,
        2,
        "the trigger fired on concord's writes"
    );
    drop(concord);

    let mut refusing = config.sibling();
    refusing.replicator = "target_triggers = \"refuse\"".into();
    let mut c = Concord::spawn(&refusing, &["replicate"]).await;
    let code = c.wait_exit(WAIT).await;
    assert_ne!(code, Some(0), "refused to start; log:\n{}", c.log());
    assert!(
        c.log().contains(&named) && c.log().contains("target_triggers"),
        "{}",
        c.log()
    );
}

const FEATURES: &str = "CREATE TABLE `{db}`.features (id INT AUTO_INCREMENT PRIMARY KEY, \
    a INT NOT NULL CHECK (a >= 0), \
    made DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6), \
    label VARCHAR(20) DEFAULT (CONCAT('lbl-', 1 + 1)), \
    hidden INT INVISIBLE DEFAULT 7, \
    u1 INT UNIQUE, u2 VARCHAR(10) UNIQUE)";
const HISTORY: &str = "CREATE TABLE `{db}`.history (id INT PRIMARY KEY, v INT NOT NULL)";

/// CHECK constraints, DEFAULT expressions, AUTO_INCREMENT, invisible columns, several
/// UNIQUE keys (values swapped between rows in one transaction) and a table the target
/// keeps with system versioning: every change arrives and nothing differs.
#[tokio::test(flavor = "multi_thread")]
async fn other_table_features_keep_working() {
    let db = TestDb::new("features").await;
    db.both(FEATURES).await;
    db.source(HISTORY).await;
    db.target(&format!("{HISTORY} WITH SYSTEM VERSIONING"))
        .await;
    let (config, concord, writer) = start_under_load(&db).await;
    for i in 1..=20 {
        db.source(&format!(
            "INSERT INTO `{{db}}`.features (a, u1, u2) VALUES ({i}, {i}, 'u{i}')"
        ))
        .await;
    }
    db.source("INSERT INTO `{db}`.features (a, hidden, u1, u2) VALUES (99, 70, 100, 'h')")
        .await;
    // Unique values move between rows inside one transaction.
    db.source(
        "START TRANSACTION; \
         UPDATE `{db}`.features SET u1 = 1000, u2 = 'tmp' WHERE id = 1; \
         UPDATE `{db}`.features SET u1 = 1, u2 = 'u1' WHERE id = 2; \
         UPDATE `{db}`.features SET u1 = 2, u2 = 'u2' WHERE id = 1; \
         COMMIT",
    )
    .await;
    db.source("DELETE FROM `{db}`.features WHERE id BETWEEN 10 AND 12")
        .await;
    db.source("INSERT INTO `{db}`.history SELECT seq, seq FROM `{db}`.seq_1_to_30")
        .await;
    db.wait_same("history", "*", WAIT).await;
    db.source("UPDATE `{db}`.history SET v = v * 10 WHERE id <= 10")
        .await;
    db.source("DELETE FROM `{db}`.history WHERE id > 25").await;
    writer.stop().await;

    let columns = "id, a, made, label, hidden, u1, u2";
    db.wait_same("features", columns, WAIT).await;
    db.wait_same("history", "*", WAIT).await;
    db.wait_same("w", "*", WAIT).await;
    let all: Vec<mysql_async::Row> = {
        use mysql_async::prelude::Queryable;
        let mut c = db.servers.target_conn().await;
        c.query(format!(
            "SELECT id FROM `{}`.history FOR SYSTEM_TIME ALL",
            db.name
        ))
        .await
        .unwrap()
    };
    assert_eq!(
        all.len(),
        40,
        "the target kept its history: 25 current rows, 10 older versions, 5 deleted"
    );
    wait_verified_binlog(&db, &config, WAIT).await;
    assert_eq!(mismatches(&config).await, vec![], "nothing differs");
    assert!(concord.failed_events().await.is_empty());
}

const PARENT: &str = "CREATE TABLE `{db}`.parent (id INT PRIMARY KEY, name VARCHAR(20))";
const CHILD: &str = "CREATE TABLE `{db}`.child (id INT PRIMARY KEY, parent_id INT NOT NULL, \
    note VARCHAR(20), FOREIGN KEY (parent_id) REFERENCES `{db}`.parent (id) \
    ON DELETE CASCADE ON UPDATE CASCADE)";
const GRANDCHILD: &str = "CREATE TABLE `{db}`.grandchild (id INT PRIMARY KEY, child_id INT, \
    FOREIGN KEY (child_id) REFERENCES `{db}`.child (id) ON DELETE SET NULL ON UPDATE CASCADE)";

/// One round of parent changes the source cascades: deletes, key updates, a child's key
/// update, and a parent deleted and made again with new children in one transaction.
fn cascade_round(round: i64) -> String {
    let base = round * 100;
    format!(
        "START TRANSACTION; \
         INSERT INTO `{{db}}`.parent VALUES ({p}, 'p{p}'), ({q}, 'p{q}'), ({r}, 'p{r}'); \
         INSERT INTO `{{db}}`.child VALUES ({c1}, {p}, 'a'), ({c2}, {p}, 'b'), ({c3}, {q}, 'c'), \
           ({c4}, {r}, 'd'); \
         INSERT INTO `{{db}}`.grandchild VALUES ({g1}, {c1}), ({g2}, {c3}), ({g3}, {c4}); \
         COMMIT; \
         DELETE FROM `{{db}}`.parent WHERE id = {p}; \
         UPDATE `{{db}}`.parent SET id = {q2} WHERE id = {q}; \
         UPDATE `{{db}}`.child SET id = {c5} WHERE id = {c4}; \
         START TRANSACTION; \
         DELETE FROM `{{db}}`.parent WHERE id = {r}; \
         INSERT INTO `{{db}}`.parent VALUES ({r}, 'again'); \
         INSERT INTO `{{db}}`.child VALUES ({c6}, {r}, 'new'); \
         COMMIT",
        p = base + 1,
        q = base + 2,
        r = base + 3,
        q2 = base + 52,
        c1 = base + 10,
        c2 = base + 11,
        c3 = base + 12,
        c4 = base + 13,
        c5 = base + 63,
        c6 = base + 14,
        g1 = base + 20,
        g2 = base + 21,
        g3 = base + 22,
    )
}

/// Cascading foreign keys two levels deep (CASCADE, SET NULL, ON UPDATE CASCADE): the
/// binlog carries only the parent's changes; the target's engine cascades them because
/// concord applies such batches in source order with its checks on — through a kill -9
/// in the middle.
#[tokio::test(flavor = "multi_thread")]
async fn cascading_foreign_keys_cascade_on_the_target_too() {
    let db = TestDb::new("cascades").await;
    db.both(PARENT).await;
    db.both(CHILD).await;
    db.both(GRANDCHILD).await;
    let (config, mut concord, writer) = start_under_load(&db).await;
    for round in 0..10 {
        db.source(&cascade_round(round)).await;
    }
    // While it is still applying those rounds.
    concord.kill9().await;
    for round in 10..20 {
        db.source(&cascade_round(round)).await;
    }
    let concord = Concord::start(&config).await;
    for round in 20..30 {
        db.source(&cascade_round(round)).await;
    }
    writer.stop().await;
    for t in ["parent", "child", "grandchild", "w"] {
        db.wait_same(t, "*", WAIT).await;
    }
    // What the cascades did, on the source (and so on the target).
    assert_eq!(db.count(false, "parent").await, 60);
    assert_eq!(
        db.count(false, "child").await,
        60,
        "two of each round's children cascaded away"
    );
    let orphans = db.rows(true, "grandchild", "child_id").await;
    assert_eq!(orphans.len(), 90);
    assert_eq!(
        orphans
            .iter()
            .filter(|r| r[0] == mysql_async::Value::NULL)
            .count(),
        60,
        "each round's deleted children left two grandchildren with NULL"
    );
    assert!(concord.failed_events().await.is_empty());
    wait_verified_binlog(&db, &config, WAIT).await;
    assert_eq!(mismatches(&config).await, vec![], "nothing differs");

    // A child tampered on the target is flagged once a cascade reaches it: the source
    // moves its parent's key, and the verifier compares the children now under it.
    db.target("UPDATE `{db}`.child SET note = 'tampered' WHERE id = 2912")
        .await;
    db.source("UPDATE `{db}`.parent SET id = 9999 WHERE id = 2952")
        .await;
    wait_for("the tampered child flagged", WAIT, || async {
        (!mismatches(&config).await.is_empty()).then_some(())
    })
    .await;
    wait_verified_binlog(&db, &config, WAIT).await;
    let found = mismatches(&config).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].table, format!("{}.child", db.name));
    assert_eq!(found[0].columns, ["note"]);
    assert!(found[0].key.contains("2912"), "{}", found[0].key);
}

/// Kafka mode cannot keep cross-table order, so it does not cascade: the verifier's child
/// probe finds the children a source cascade deleted and records them, never silently.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_mode_flags_the_children_a_source_cascade_deleted() {
    use concord_e2e::broker::Kind;
    use concord_e2e::pipeline::{Mode, Pipeline};
    let db = TestDb::new("cascades_kafka").await;
    db.both(PARENT).await;
    db.both(CHILD).await;
    let pipeline = Pipeline::start_edited(Kind::Tansu, &db, Mode::Kafka, "1s", true, |_| {}).await;
    db.source("INSERT INTO `{db}`.parent VALUES (1, 'a'), (2, 'b')")
        .await;
    db.source("INSERT INTO `{db}`.child VALUES (10, 1, 'x'), (11, 1, 'y'), (12, 2, 'z')")
        .await;
    db.wait_same("child", "*", WAIT).await;
    db.source("DELETE FROM `{db}`.parent WHERE id = 1").await;
    db.wait_same("parent", "*", WAIT).await;
    let config = pipeline.config.clone();
    let found = wait_for("the children left behind flagged", WAIT, || {
        let config = config.clone();
        async move {
            let m = mismatches(&config).await;
            (m.len() >= 2).then_some(m)
        }
    })
    .await;
    assert_eq!(found.len(), 2, "{found:?}");
    for m in &found {
        assert_eq!(m.table, format!("{}.child", db.name));
    }
    assert_eq!(
        db.ids(true, "child").await,
        [10, 11, 12],
        "not cascaded in kafka mode"
    );
}
