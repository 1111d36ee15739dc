//! The `concord` binary as a child process of a test.

use crate::db::{Servers, TestDb};
use crate::wait_for;
use concord_change::Position;
use mysql_async::prelude::Queryable;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Where the binary under test is: `CONCORD_BIN`, or next to the test executable's
/// `deps/` directory (what `cargo build` produces in the same target dir).
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("CONCORD_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let bin = dir.join("concord");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p concord` first (or set CONCORD_BIN)",
        bin.display()
    );
    bin
}

/// A config for one test, with everything unique to it.
#[derive(Clone)]
pub struct ConcordConfig {
    pub dir: PathBuf,
    pub db: String,
    pub name: String,
    pub server_id: u32,
    pub metrics_port: u16,
    pub source_url: String,
    pub target_url: String,
    /// Appended to the generated TOML (extra sections or keys).
    pub extra: String,
    /// Extra keys of the `[replicator]` section.
    pub replicator: String,
    /// Extra keys of the `[source]` section.
    pub source: String,
    /// The SQLite control store file (shared by a test's processes).
    pub control: PathBuf,
    /// Kafka mode: (brokers, topic, group) and extra keys of the `[kafka]` section.
    pub kafka: Option<(String, String, String, String)>,
    pub include: Vec<String>,
    /// `target.schema_ttl`: short in tests, so DDL is seen quickly.
    pub schema_ttl: String,
    /// The keys of the `[snapshot]` section: `mode = "never"` unless a test copies existing
    /// rows (most tests fill both sides themselves, some on purpose differently).
    pub snapshot: String,
}

impl ConcordConfig {
    pub fn new(db: &TestDb) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("concord-{}-", db.name))
            .tempdir()
            .expect("temp dir")
            .keep();
        Self {
            control: dir.join("control.db"),
            dir,
            db: db.name.clone(),
            name: db.name.clone(),
            server_id: 10_000 + rand::random::<u32>() % 1_000_000,
            metrics_port: free_port(),
            source_url: db.servers.source_url.clone(),
            target_url: db.servers.target_url.clone(),
            extra: String::new(),
            replicator: String::new(),
            source: String::new(),
            kafka: None,
            include: vec![format!("{}.*", db.name)],
            schema_ttl: "1s".into(),
            snapshot: "mode = \"never\"".into(),
        }
    }

    pub fn control_db(&self) -> PathBuf {
        self.control.clone()
    }

    /// The same settings for another process of the test: its own directory (log,
    /// config) and metrics port, the same control store.
    pub fn sibling(&self) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("concord-{}-", self.db))
            .tempdir()
            .expect("temp dir")
            .keep();
        Self {
            dir,
            metrics_port: free_port(),
            ..self.clone()
        }
    }

    pub fn toml(&self) -> String {
        let include: Vec<String> = self.include.iter().map(|p| format!("{p:?}")).collect();
        format!(
            r#"
[source]
url = "{source}"
server_id = {server_id}
heartbeat = "500ms"
{source_extra}

[target]
url = "{target}"
schema_ttl = "{schema_ttl}"

[tables]
include = [{include}]

[replicator]
name = "{name}"
max_backoff = "1s"
{replicator}

[control]
url = "sqlite://{control}"

[metrics]
listen = "127.0.0.1:{port}"

[snapshot]
{snapshot}
{extra}
"#,
            source = self.source_url,
            target = self.target_url,
            server_id = self.server_id,
            schema_ttl = self.schema_ttl,
            include = include.join(", "),
            name = self.name,
            control = self.control_db().display(),
            port = self.metrics_port,
            extra = self.extra,
            replicator = self.replicator,
            source_extra = self.source,
            snapshot = self.snapshot,
        ) + &match &self.kafka {
            Some((brokers, topic, group, more)) => format!(
                "\n[transport]\nkind = \"kafka\"\n\n[kafka]\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\ngroup = \"{group}\"\n{more}\n"
            ),
            None => String::new(),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct Concord {
    child: Child,
    pub config: ConcordConfig,
    log: PathBuf,
}

impl Concord {
    /// Starts `concord run` and waits until it reports ready.
    pub async fn start(config: &ConcordConfig) -> Concord {
        Self::start_with_toml(config, &config.toml()).await
    }

    /// Starts one role (`capture`, `replicate`, …) and waits until it reports ready.
    pub async fn start_role(config: &ConcordConfig, role: &str) -> Concord {
        let mut c = Self::spawn(config, &[role]).await;
        c.wait_ready().await;
        c
    }

    async fn wait_ready(&mut self) {
        let port = self.config.metrics_port;
        let child = &mut self.child;
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = child.try_wait().ok().flatten() {
                panic!(
                    "concord exited with {status} before it was ready; log:\n{}",
                    self.log()
                );
            }
            if http_get(port, "/readyz")
                .await
                .is_some_and(|(c, _)| c == 200)
            {
                return;
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!("concord not ready after 30s; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Like [`Concord::start`], with a hand-edited config text.
    pub async fn start_with_toml(config: &ConcordConfig, toml: &str) -> Concord {
        let mut c = Self::spawn_with_toml(config, toml, &["run"]).await;
        let port = config.metrics_port;
        let ready = wait_for("concord /readyz", Duration::from_secs(30), || {
            let exited = c.child.try_wait().ok().flatten();
            async move {
                if let Some(status) = exited {
                    return Some(Err(status));
                }
                http_get(port, "/readyz")
                    .await
                    .filter(|(code, _)| *code == 200)
                    .map(|_| Ok(()))
            }
        })
        .await;
        if let Err(status) = ready {
            panic!(
                "concord exited with {status} before it was ready; log:\n{}",
                c.log()
            );
        }
        c
    }

    /// Spawns the binary with `args` + `--config`, without waiting for anything.
    pub async fn spawn(config: &ConcordConfig, args: &[&str]) -> Concord {
        Self::spawn_with_toml(config, &config.toml(), args).await
    }

    async fn spawn_with_toml(config: &ConcordConfig, toml: &str, args: &[&str]) -> Concord {
        let path = config.dir.join("concord.toml");
        std::fs::write(&path, toml).expect("write config");
        let log = config.dir.join("concord.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn concord");
        Concord {
            child,
            config: config.clone(),
            log,
        }
    }

    /// Waits for the process to exit on its own and returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("concord did not exit in time")
            .expect("wait")
            .code()
    }

    /// Whether the process is still running (it has not exited on its own).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no shutdown path runs at all.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("kill -9");
        let _ = self.child.wait().await;
    }

    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY-free: `kill` the command, to send SIGTERM without a libc dependency.
            let _ = Command::new("kill").arg(pid.to_string()).status().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.start_kill();
    }

    /// SIGTERM, as Kubernetes sends it: returns how the process exited and how long it
    /// took, or `None` when it was still running after `within` (then it is killed).
    pub async fn terminate(
        &mut self,
        within: Duration,
    ) -> Option<(std::process::ExitStatus, Duration)> {
        let started = std::time::Instant::now();
        self.signal("-TERM").await;
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => Some((status.expect("wait for concord"), started.elapsed())),
            Err(_) => {
                let _ = self.child.start_kill();
                None
            }
        }
    }

    /// SIGSTOP: the process stays, does nothing (a replicator that falls behind).
    pub async fn pause(&self) {
        self.signal("-STOP").await;
    }

    /// SIGCONT after [`Concord::pause`].
    pub async fn resume(&self) {
        self.signal("-CONT").await;
    }

    async fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .await
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    }

    /// The peak resident set size of the process so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kib * 1024
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        http_get(self.config.metrics_port, "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Sum of a metric's samples whose label set contains every `labels` pair.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter(|l| {
                let key = l.split_whitespace().next().unwrap_or("");
                (key == name || key.starts_with(&format!("{name}{{")))
                    && labels
                        .iter()
                        .all(|(k, v)| key.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn checkpoint(&self, servers: &Servers) -> Option<Position> {
        checkpoint(servers, &self.config.name).await
    }

    /// Waits until everything the source has logged so far is applied.
    pub async fn wait_caught_up(&self, servers: &Servers, timeout: Duration) {
        let goal = servers.source_position().await;
        let name = self.config.name.clone();
        wait_for(&format!("checkpoint to reach {goal}"), timeout, || {
            let (servers, name, goal) = (servers.clone(), name.clone(), goal.clone());
            async move { checkpoint(&servers, &name).await.filter(|p| *p >= goal) }
        })
        .await;
    }

    /// The failed events in this test's control store: (table, reason, error, event JSON).
    pub async fn failed_events(&self) -> Vec<(String, String, String, String)> {
        failed_events(&self.config).await
    }
}

/// A failing test shows what its concord processes logged last: CI keeps no other trace
/// of a run, and a flaky failure is understood only from the processes' own words.
impl Drop for Concord {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_ON_FAILURE)..];
        eprintln!(
            "---- last {} lines of {} ----\n{}",
            tail.len(),
            self.log.display(),
            tail.join("\n")
        );
    }
}

const LOG_TAIL_ON_FAILURE: usize = 80;

pub async fn checkpoint(servers: &Servers, name: &str) -> Option<Position> {
    let mut c = servers.target_conn().await;
    let row: Option<(String, u64)> = c
        .exec_first(
            "SELECT binlog_file, binlog_pos FROM concord.checkpoints WHERE replicator = ?",
            (name,),
        )
        .await
        .ok()
        .flatten();
    row.map(|(f, p)| Position::new(f, p))
}

/// The test's control store, read-only; `None` while concord has not created it yet.
/// The rows `sql` (with `binds` for its placeholders) returns from the test's control
/// store; none while the store does not exist yet.
async fn control_rows(
    config: &ConcordConfig,
    sql: &str,
    binds: &[&str],
) -> Vec<sqlx::sqlite::SqliteRow> {
    let url = format!("sqlite://{}?mode=ro", config.control_db().display());
    let Ok(mut conn) = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await else {
        return Vec::new();
    };
    let mut query = sqlx::query(sql);
    for b in binds {
        query = query.bind(*b);
    }
    query.fetch_all(&mut conn).await.unwrap_or_default()
}

pub async fn failed_events(config: &ConcordConfig) -> Vec<(String, String, String, String)> {
    use sqlx::Row;
    let rows = control_rows(
        config,
        "SELECT db || '.' || tbl, reason, error, event FROM failed_events \
         ORDER BY source_pos, row_index",
        &[],
    )
    .await;
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .filter(|e: &(String, String, String, String)| !another_tests_xa(config, &e.0))
        .collect()
}

/// The tests share one source server: an XA transaction another test prepared before this
/// test's replicator started, and committed after, is rightly recorded here as a commit
/// whose rows are unknown (its tables cannot be told). Its XID names the test that ran it
/// (`'<db>-…'`, hex in the record), so such a record is left out unless it is this test's.
fn another_tests_xa(config: &ConcordConfig, table: &str) -> bool {
    let Some(hex) = table
        .strip_prefix(".XA X'")
        .and_then(|t| t.split('\'').next())
    else {
        return false;
    };
    let own: String = config.db.bytes().map(|b| format!("{b:02x}")).collect();
    !hex.starts_with(&own)
}

/// Missing-table records: (`db.table`, rows, first position, last position, status).
pub async fn missing_tables(config: &ConcordConfig) -> Vec<(String, i64, String, String, String)> {
    use sqlx::Row;
    let rows = control_rows(
        config,
        "SELECT db || '.' || tbl, row_count, first_file || ':' || first_pos, \
         last_file || ':' || last_pos, status FROM missing_tables ORDER BY db, tbl",
        &[],
    )
    .await;
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// A minimal HTTP/1.0 GET against the metrics endpoint: (status, body).
/// Waits until the process whose metrics endpoint is on `port` answers `/readyz` with 200.
pub async fn wait_readyz(port: u16, what: &str, timeout: Duration) {
    crate::wait_for(what, timeout, || async move {
        http_get(port, "/readyz")
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await;
}

pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// A mismatch record as a test reads it from the control store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MismatchRecord {
    /// `db.table` (the source table).
    pub table: String,
    /// The key as the change model's JSON (`[["id",{"Int":5}]]`).
    pub key: String,
    pub kind: String,
    /// Names of the differing columns, sorted.
    pub columns: Vec<String>,
    /// The whole column list as JSON (source and target values).
    pub detail: String,
    pub state: String,
    pub occurrences: i64,
    /// `verifier` or `checksum`.
    pub detected_by: String,
}

pub async fn mismatches(config: &ConcordConfig) -> Vec<MismatchRecord> {
    use sqlx::Row;
    let rows = control_rows(
        config,
        "SELECT db || '.' || tbl, pk, kind, columns, state, occurrences, detected_by \
         FROM mismatches ORDER BY id",
        &[],
    )
    .await;
    rows.iter()
        .map(|r| {
            let detail: String = r.get(3);
            let parsed: serde_json::Value = serde_json::from_str(&detail).expect("columns JSON");
            let mut columns: Vec<String> = parsed
                .as_array()
                .expect("a list of columns")
                .iter()
                .map(|c| c["column"].as_str().expect("column name").to_owned())
                .collect();
            columns.sort();
            MismatchRecord {
                table: r.get(0),
                key: r.get(1),
                kind: r.get(2),
                columns,
                detail,
                state: r.get(4),
                occurrences: r.get(5),
                detected_by: r.get(6),
            }
        })
        .collect()
}

/// A verifier's saved positions: (stream, part, file, position).
pub async fn verifier_positions(
    config: &ConcordConfig,
    name: &str,
) -> Vec<(String, i64, String, i64)> {
    use sqlx::Row;
    let rows = control_rows(
        config,
        "SELECT stream, part, binlog_file, position FROM verifier_positions WHERE name = ?",
        &[name],
    )
    .await;
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// A table's checksum runs, oldest first: (state, chunks, rows checked, mismatches).
pub async fn checksum_runs(config: &ConcordConfig, table: &str) -> Vec<(String, i64, i64, i64)> {
    use sqlx::Row;
    let rows = control_rows(
        config,
        "SELECT state, chunks, rows_checked, mismatches FROM checksum_runs \
         WHERE db || '.' || tbl = ? ORDER BY id",
        &[table],
    )
    .await;
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}
