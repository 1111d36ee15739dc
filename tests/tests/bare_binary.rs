//! What the container image relies on (deploy/Dockerfile copies the binary alone into a
//! distroless image): the binary runs from an empty directory with nothing but its config
//! and an empty environment — migrations, templates and the console's files are inside it —
//! says its version with the git revision, and serves a real `concord run` from there.

use concord_e2e::concord::{binary, http_get, wait_readyz};
use concord_e2e::console::{free_port, users_section};
use concord_e2e::{wait_for, ConcordConfig, TestDb};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// `concord ARGS` run in `dir` with an empty environment.
fn bare(bin: &Path, dir: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(bin);
    c.current_dir(dir).env_clear().kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_alone_with_its_config_runs_every_part() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("concord");
    std::fs::copy(binary(), &bin).expect("copy the binary");

    let out = bare(&bin, dir.path())
        .arg("--version")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let version = String::from_utf8(out.stdout).unwrap();
    let rev = version
        .trim()
        .strip_prefix(&format!("concord {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("a version with its revision: {version}"));
    assert!(
        rev.len() >= 7 && rev.chars().all(|c| c.is_ascii_hexdigit()),
        "the git revision, built from a clone: {version}"
    );

    // A config whose control store lives in the bare directory.
    let db = TestDb::new("bare_binary").await;
    db.both("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(20))")
        .await;
    let console = free_port();
    let mut config = ConcordConfig::new(&db);
    config.extra = users_section(console, "");
    let toml = config.toml().replace(
        &format!("sqlite://{}", config.control_db().display()),
        "sqlite://control.db",
    );
    std::fs::write(dir.path().join("concord.toml"), &toml).unwrap();

    let out = bare(&bin, dir.path())
        .args(["check-config", "--config", "concord.toml"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "check-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut run = bare(&bin, dir.path())
        .args(["run", "--config", "concord.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metrics = config.metrics_port;
    wait_readyz(metrics, "the bare run to be ready", Duration::from_secs(60)).await;
    db.source("INSERT INTO `{db}`.t VALUES (1, 'from a bare dir')")
        .await;
    wait_for("the row on the target", Duration::from_secs(30), || {
        let db = &db;
        async move {
            use mysql_async::prelude::Queryable;
            let mut conn = db.servers.target_conn().await;
            conn.query_first::<String, _>(format!("SELECT v FROM `{}`.t WHERE id = 1", db.name))
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    // The console's page and its stylesheet come from inside the binary.
    let (code, page) = http_get(console, "/login")
        .await
        .expect("the console answers");
    assert_eq!(code, 200);
    assert!(page.contains("<form"), "{page}");
    let (code, css) = http_get(console, "/static/console.css").await.unwrap();
    assert_eq!(code, 200);
    assert!(css.contains(".state"), "the stylesheet");
    assert!(
        dir.path().join("control.db").exists(),
        "the control store was made where the config said"
    );
    // What the dashboard's process panels and the readiness alert read.
    let (_, scraped) = http_get(metrics, "/metrics").await.expect("/metrics");
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "concord_role_ready{role=\"replicator\"} 1",
        "concord_role_standby{role=\"replicator\"} 0",
    ] {
        assert!(scraped.contains(name), "{name} in /metrics");
    }
    run.kill().await.ok();
}

/// The configs deploy/kubernetes ships load and validate, with the Secret's files where the
/// pods mount them (here: a temporary directory, through the environment overrides the
/// pods could use as well).
#[tokio::test]
async fn the_kubernetes_configs_are_valid() {
    let secrets = tempfile::tempdir().unwrap();
    for key in ["source-password", "target-password"] {
        std::fs::write(secrets.path().join(key), "not-a-real-password\n").unwrap();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for overlay in ["base", "kafka"] {
        let file = root.join(format!("deploy/kubernetes/{overlay}/concord.toml"));
        let out = tokio::process::Command::new(binary())
            .args(["check-config", "--config"])
            .arg(&file)
            .env(
                "CONCORD_SOURCE__PASSWORD_FILE",
                secrets.path().join("source-password"),
            )
            .env(
                "CONCORD_TARGET__PASSWORD_FILE",
                secrets.path().join("target-password"),
            )
            .output()
            .await
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !printed.contains("not-a-real-password"),
            "secrets are hidden: {printed}"
        );
        if overlay == "kafka" {
            assert!(printed.contains("kafka"), "{printed}");
        }
    }
}

/// `--log-format json`, as the manifests run every role: each line on stderr is one JSON
/// object, and the lines of `concord run` say which role wrote them and, where it matters,
/// the position.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_name_the_role_and_the_position() {
    use concord_e2e::Concord;
    let db = TestDb::new("json_logs").await;
    let mut config = ConcordConfig::new(&db);
    let console = free_port();
    config.extra = format!(
        "\n[verifier]\ndelay = \"1s\"\n{}",
        users_section(console, "")
    );
    let run = Concord::spawn(&config, &["run", "--log-format", "json"]).await;
    let metrics = config.metrics_port;
    wait_readyz(metrics, "concord run to be ready", Duration::from_secs(60)).await;
    // A refused login: a line a console request logs.
    failed_login(console).await;
    let log = wait_for(
        "the console to log the refused login",
        Duration::from_secs(30),
        || async {
            let log = run.log();
            log.contains("console login failed").then_some(log)
        },
    )
    .await;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["timestamp"].is_string()));
    let role_of = |l: &serde_json::Value| l["span"]["role"].as_str().map(str::to_owned);
    for role in ["replicator", "verifier", "recovery", "console"] {
        assert!(
            lines.iter().any(|l| role_of(l).as_deref() == Some(role)),
            "a line from the {role}: {log}"
        );
    }
    let start = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("checkpoint"))
        })
        .unwrap_or_else(|| panic!("the replicator's start: {log}"));
    assert_eq!(role_of(start).as_deref(), Some("replicator"), "{start}");
    assert!(start["position"].is_string(), "{start}");
    let refused = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("console login failed"))
        })
        .expect("the refused login is logged");
    assert_eq!(role_of(refused).as_deref(), Some("console"), "{refused}");
}

/// Posts a login with a wrong password to the console on `port`, as a browser on the same
/// origin would.
async fn failed_login(port: u16) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = "name=nobody&password=wrong";
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n\
         Sec-Fetch-Site: same-origin\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the console listens");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
}
