//! A Kafka-protocol broker (tansu, SQLite storage) of the test's own, on a free loopback
//! port, so a test may restart it without disturbing others.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// `CONCORD_TANSU`, the cached install of `.ci/run`, or `tansu` on PATH.
pub fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("CONCORD_TANSU") {
        return p.into();
    }
    let cached = PathBuf::from("/var/cache/concord-tools/bin/tansu");
    if cached.exists() {
        return cached;
    }
    "tansu".into()
}

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Broker {
    pub async fn start() -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("concord-broker-")
            .tempdir()
            .unwrap()
            .keep();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut b = Broker {
            child: None,
            port,
            dir,
        };
        b.launch().await;
        b
    }

    async fn launch(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .unwrap();
        let child = Command::new(tansu())
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("tansu broker: install it with `cargo install tansu --features libsql` (see .ci/run)");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("tansu did not listen on {}", self.port);
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub async fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(tansu())
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
            ])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .status()
            .await
            .unwrap();
        assert!(status.success(), "creating topic {name}");
    }

    /// Kills the broker (SIGKILL) and starts it again on the same port and storage.
    pub async fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
        self.launch().await;
    }
}

/// Every partition of `topic` with its high watermark (the offset the next message gets).
pub async fn high_watermarks(brokers: &str, topic: &str) -> Vec<(i32, i64)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("kafka client");
        let timeout = Duration::from_secs(10);
        let metadata = client
            .fetch_metadata(Some(&topic), timeout)
            .expect("topic metadata");
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        partitions
            .into_iter()
            .map(|p| {
                let (_, high) = client
                    .fetch_watermarks(&topic, p, timeout)
                    .expect("watermarks");
                (p, high)
            })
            .collect()
    })
    .await
    .expect("watermark task")
}
