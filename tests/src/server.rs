//! A MariaDB source of a test's own, for tests that change global settings (which would
//! disturb every other test on the shared source): a fresh datadir, a free port, stopped
//! when dropped. Started the way `scripts/services.sh` starts the shared one.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub struct OwnSource {
    pub url: String,
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

fn mariadbd() -> PathBuf {
    ["/usr/sbin/mariadbd", "/usr/bin/mariadbd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| "mariadbd".into())
}

impl OwnSource {
    /// A source with a binlog in concord's required format, plus `extra` server options.
    pub async fn start(extra: &[&str]) -> OwnSource {
        let dir = tempfile::Builder::new()
            .prefix("concord-own-source-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let status = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--user={user}"))
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("mariadb-install-db");
        assert!(status.success(), "mariadb-install-db failed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let d = dir.path().display().to_string();
        let child = Command::new(mariadbd())
            .arg("--no-defaults")
            .arg(format!("--user={user}"))
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={d}/s.sock"))
            .arg(format!("--pid-file={d}/s.pid"))
            .arg(format!("--log-error={d}/s.err"))
            .arg("--server-id=1")
            .arg(format!("--log-bin={d}/mysql-bin"))
            .args([
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--binlog-row-metadata=FULL",
                "--innodb-buffer-pool-size=64M",
                "--character-set-server=utf8mb4",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mariadbd");
        let url = format!("mysql://root@127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let socket = format!("{d}/s.sock");
            let grant = Command::new("mariadb")
                .args(["-uroot", &format!("--socket={socket}"), "-e"])
                .arg(
                    "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; \
                     GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;",
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success());
            if grant {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "own source did not start; see {d}/s.err"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        OwnSource {
            url,
            port,
            _dir: dir,
            child,
        }
    }

    /// Runs SQL on this source.
    pub async fn sql(&self, sql: &str) {
        use mysql_async::prelude::Queryable;
        let opts = mysql_async::Opts::from_url(&self.url).expect("url");
        let mut c = mysql_async::Conn::new(opts).await.expect("own source");
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        c.disconnect().await.ok();
    }
}

impl Drop for OwnSource {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
