//! One role's failure never takes down the others: in `concord run` a verifier that keeps
//! failing is restarted with backoff and reported down in `/readyz`, while the replicator
//! goes on applying; once the cause is gone the verifier resumes where it stopped and
//! verifies what it missed.

use concord_e2e::concord::{http_get, mismatches};
use concord_e2e::pipeline::wait_verified_binlog;
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use std::time::Duration;

/// The target user the verifier reads as: SELECT on the test's tables and the checkpoints.
async fn verifier_user(db: &TestDb, user: &str) {
    for host in ["%", "localhost"] {
        db.target(&format!(
            "CREATE OR REPLACE USER '{user}'@'{host}' IDENTIFIED BY 'pw-{user}'"
        ))
        .await;
        for on in ["`{db}`.*", "`concord`.*"] {
            db.target(&format!("GRANT SELECT ON {on} TO '{user}'@'{host}'"))
                .await;
        }
    }
}

/// Locks the verifier's account and ends its sessions (every new connection is refused),
/// or unlocks it.
async fn lock(db: &TestDb, user: &str, locked: bool) {
    let verb = if locked { "LOCK" } else { "UNLOCK" };
    for host in ["%", "localhost"] {
        db.target(&format!("ALTER USER '{user}'@'{host}' ACCOUNT {verb}"))
            .await;
    }
    if locked {
        db.target(&format!("KILL USER '{user}'")).await;
    }
}

async fn readyz(port: u16) -> (u16, String) {
    http_get(port, "/readyz").await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_verifier_is_restarted_while_the_replicator_keeps_applying() {
    let db = TestDb::new("isolation").await;
    db.both("CREATE TABLE `{db}`.a (id INT PRIMARY KEY, v INT NOT NULL)")
        .await;
    db.both("CREATE TABLE `{db}`.b (id INT PRIMARY KEY, v INT NOT NULL)")
        .await;
    let user = format!("v{}", &db.name[db.name.len() - 6..]);
    verifier_user(&db, &user).await;
    let mut config = ConcordConfig::new(&db);
    config.extra = format!(
        "\n[verifier]\ndelay = \"1s\"\nsave_every = \"100ms\"\ntarget_user = \"{user}\"\n\
         target_password = \"pw-{user}\"\n"
    );
    let mut concord = Concord::start(&config).await;
    let port = config.metrics_port;
    assert_eq!(readyz(port).await, (200, "ready\n".to_owned()));

    db.source("INSERT INTO `{db}`.a VALUES (1, 1), (2, 2)")
        .await;
    db.source("INSERT INTO `{db}`.b VALUES (1, 1), (2, 2)")
        .await;
    wait_verified_binlog(&db, &config, Duration::from_secs(30)).await;
    let verified_before = concord.metric("concord_verified_total", &[]).await;
    assert!(verified_before >= 4.0, "{verified_before}");

    // The verifier's target account is locked: its next round cannot connect. (Taking
    // SELECT on one table away would not do: the table then looks missing to that user,
    // which the verifier counts as `no_target_table` and goes on.)
    lock(&db, &user, true).await;
    for i in 3..=12 {
        db.source(&format!("INSERT INTO `{{db}}`.b VALUES ({i}, {i})"))
            .await;
    }
    let (code, body) = wait_for(
        "/readyz to name the verifier down",
        Duration::from_secs(30),
        || async {
            let (code, body) = readyz(port).await;
            (code == 503 && body.contains("verifier: down")).then_some((code, body))
        },
    )
    .await;
    assert_eq!(code, 503);
    assert!(body.contains("replicator: ready"), "{body}");
    assert!(
        body.contains("account is locked"),
        "the reason names the server's error: {body}"
    );

    // Replication goes on meanwhile: changes made while the verifier is down reach the
    // target.
    for i in 13..=20 {
        db.source(&format!("INSERT INTO `{{db}}`.b VALUES ({i}, {i})"))
            .await;
        db.source(&format!("UPDATE `{{db}}`.a SET v = v + {i} WHERE id = 1"))
            .await;
    }
    db.wait_same("a", "*", Duration::from_secs(30)).await;
    db.wait_same("b", "*", Duration::from_secs(30)).await;
    wait_for(
        "the verifier to be restarted",
        Duration::from_secs(30),
        || async {
            let restarts = concord
                .metric("concord_role_restarts_total", &[("role", "verifier")])
                .await;
            (restarts >= 2.0).then_some(())
        },
    )
    .await;
    assert_eq!(
        concord
            .metric("concord_role_restarts_total", &[("role", "replicator")])
            .await,
        0.0,
        "the replicator never stopped"
    );
    assert!(concord.running(), "the process keeps running");
    assert_eq!(
        readyz(port).await.0,
        503,
        "still down while the account is locked"
    );
    let log = concord.log();
    assert!(
        log.contains("verifier stopped; restarting it") && log.contains("account is locked"),
        "the failure is logged with its cause"
    );

    // The account is unlocked: the verifier resumes from its saved position and verifies every
    // change it could not before — none is skipped, none is a mismatch.
    lock(&db, &user, false).await;
    wait_for(
        "/readyz to be ready again",
        Duration::from_secs(90),
        || async { (readyz(port).await == (200, "ready\n".to_owned())).then_some(()) },
    )
    .await;
    wait_verified_binlog(&db, &config, Duration::from_secs(60)).await;
    let verified_after = concord.metric("concord_verified_total", &[]).await;
    assert!(
        verified_after >= verified_before + 18.0,
        "the 18 rows of b inserted since were verified: {verified_before} → \
         {verified_after}"
    );
    assert_eq!(mismatches(&config).await, vec![], "nothing differs");
    assert!(concord.running());
    concord.stop().await;
}
