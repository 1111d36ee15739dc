//! Online schema change tools under a write load: a column added the way DBAs do it on big
//! tables — on the target first, then with pt-online-schema-change (or gh-ost's statements)
//! on the source. The tools' helper tables are not replicated and not recorded; the swap
//! leaves the target's table receiving changes as before.

use concord_e2e::concord::{mismatches, missing_tables};
use concord_e2e::pipeline::wait_verified_binlog;
use concord_e2e::writer::{Writer, TABLE_DDL};
use concord_e2e::{Concord, ConcordConfig, TestDb};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const COLUMNS: &str = "id, v, note, amount, updated, extra";

/// A table of `rows` rows (ids far above the writer's), replicated, with a writer on it.
async fn start(name: &str, rows: u32) -> (TestDb, ConcordConfig, Concord, Writer) {
    let db = TestDb::new(name).await;
    db.both(&TABLE_DDL.replace("{t}", "t")).await;
    let mut config = ConcordConfig::new(&db);
    config.extra = "\n[verifier]\ndelay = \"2s\"\nsave_every = \"100ms\"\n".into();
    let concord = Concord::start(&config).await;
    db.source(&format!(
        "INSERT INTO `{{db}}`.t SELECT 10000000 + seq, seq, CONCAT('n', seq), seq / 100, \
         NOW(6) FROM `{{db}}`.seq_1_to_{rows}"
    ))
    .await;
    db.wait_same("t", "id, v", WAIT).await;
    let writer = Writer::start(
        db.servers.source.clone(),
        &db.name,
        &["t"],
        Duration::from_millis(5),
    );
    // The target first, as the DDL-order rules ask.
    db.target("ALTER TABLE `{db}`.t ADD COLUMN extra BIGINT NULL")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    (db, config, concord, writer)
}

async fn finish(db: &TestDb, config: &ConcordConfig, concord: &Concord, writer: Writer) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let committed = writer.stop().await;
    assert!(committed > 50, "the writer kept writing ({committed})");
    db.wait_same("t", COLUMNS, WAIT).await;
    assert_eq!(
        concord.failed_events().await,
        vec![],
        "the helper tables' rows are neither applied nor recorded"
    );
    assert_eq!(
        concord.metric("concord_failed_events_total", &[]).await,
        0.0
    );
    assert_eq!(
        missing_tables(config).await,
        vec![],
        "the helper tables are not missing tables either: they are not replicated"
    );
    wait_verified_binlog(db, config, WAIT).await;
    assert_eq!(mismatches(config).await, vec![], "nothing differs");
    let log = concord.log();
    assert!(
        log.contains("online schema change started")
            && log.contains("online schema change finished"),
        "its run is logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pt_online_schema_change_adds_a_column_without_a_failed_event() {
    let (db, config, concord, writer) = start("osc_pt", 200_000).await;
    let port = db.servers.source_url.rsplit(':').next().unwrap().to_owned();
    let out = tokio::process::Command::new("pt-online-schema-change")
        .args([
            "--alter",
            "ADD COLUMN extra BIGINT NULL",
            &format!("h=127.0.0.1,P={port},u=root,D={},t=t", db.name),
            "--execute",
            "--recursion-method=none",
            "--no-check-alter",
            "--chunk-size=5000",
            "--set-vars=lock_wait_timeout=10",
        ])
        .output()
        .await
        .expect("pt-online-schema-change (Debian package percona-toolkit) runs");
    assert!(
        out.status.success(),
        "pt-online-schema-change failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    writer.set_extra_column(Some("extra"));
    finish(&db, &config, &concord, writer).await;
    assert_eq!(db.count(true, "t").await, db.count(false, "t").await);
}

/// gh-ost's statements, as it runs them: a ghost table altered and filled, a changelog
/// table it writes its state to, then the cut-over rename and the clean-up.
#[tokio::test(flavor = "multi_thread")]
async fn gh_ost_statements_add_a_column_without_a_failed_event() {
    let (db, config, concord, writer) = start("osc_ghost", 50_000).await;
    for sql in [
        "DROP TABLE IF EXISTS `{db}`.`_t_ghc`",
        "CREATE TABLE `{db}`.`_t_ghc` (id BIGINT AUTO_INCREMENT, last_update TIMESTAMP NOT \
         NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, hint VARCHAR(64) NOT NULL, \
         value VARCHAR(4096) NOT NULL, PRIMARY KEY (id), UNIQUE KEY hint_uidx (hint))",
        "CREATE TABLE `{db}`.`_t_gho` LIKE `{db}`.t",
        "ALTER TABLE `{db}`.`_t_gho` ADD COLUMN extra BIGINT NULL",
        "INSERT INTO `{db}`.`_t_ghc` (id, hint, value) VALUES (2, 'state', 'GhostTableMigrated') \
         ON DUPLICATE KEY UPDATE value = VALUES(value)",
    ] {
        db.source(sql).await;
    }
    // The row copy, in chunks, while the application writes.
    for chunk in 0..5 {
        let (from, to) = (
            10_000_001 + chunk * 10_000,
            10_000_000 + (chunk + 1) * 10_000,
        );
        db.source(&format!(
            "INSERT IGNORE INTO `{{db}}`.`_t_gho` (id, v, note, amount, updated) SELECT id, v, \
             note, amount, updated FROM `{{db}}`.t WHERE id BETWEEN {from} AND {to}"
        ))
        .await;
        db.source(&format!(
            "INSERT INTO `{{db}}`.`_t_ghc` (id, hint, value) VALUES (1, 'heartbeat', '{chunk}') \
             ON DUPLICATE KEY UPDATE value = VALUES(value)"
        ))
        .await;
    }
    // Cut-over: writes held (gh-ost locks the table), the rows the application wrote so
    // far copied too (gh-ost applies them from the binlog), then the swap.
    writer.hold().await;
    db.source(
        "REPLACE INTO `{db}`.`_t_gho` (id, v, note, amount, updated) SELECT id, v, note, \
         amount, updated FROM `{db}`.t WHERE id < 10000000",
    )
    .await;
    db.source("DELETE FROM `{db}`.`_t_gho` WHERE id NOT IN (SELECT id FROM `{db}`.t)")
        .await;
    db.source("RENAME TABLE `{db}`.t TO `{db}`.`_t_del`, `{db}`.`_t_gho` TO `{db}`.t")
        .await;
    writer.set_extra_column(Some("extra"));
    writer.go();
    db.source("DROP TABLE IF EXISTS `{db}`.`_t_ghc`").await;
    db.source("DROP TABLE IF EXISTS `{db}`.`_t_del`").await;
    finish(&db, &config, &concord, writer).await;
}
