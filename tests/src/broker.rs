//! A Kafka-protocol broker (tansu or nisshi, SQLite storage) of the test's own, on a free
//! loopback port, so a test may restart it without disturbing others.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Which Kafka-protocol broker a test runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// tansu 0.6.0: the default.
    Tansu,
    /// nisshi 0.6.0 (tansu renamed): its group coordinator evicts a member whose session
    /// expired, which tansu 0.6.0 never does — for tests that SIGKILL group members. Its
    /// fetches can be held for seconds, so it is slower under load (docs/NOTES.md).
    Nisshi,
}

/// The broker binary: `CONCORD_TANSU` / `CONCORD_NISSHI`, the cached install of
/// `scripts/services.sh`, or the name on PATH.
pub fn broker_bin(kind: Kind) -> PathBuf {
    let (var, name) = match kind {
        Kind::Tansu => ("CONCORD_TANSU", "tansu"),
        Kind::Nisshi => ("CONCORD_NISSHI", "nisshi"),
    };
    if let Ok(p) = std::env::var(var) {
        return p.into();
    }
    let cached = PathBuf::from(format!("/var/cache/concord-tools/bin/{name}"));
    if cached.exists() {
        return cached;
    }
    name.into()
}

pub struct Broker {
    kind: Kind,
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Broker {
    pub async fn start() -> Broker {
        Self::start_kind(Kind::Tansu).await
    }

    pub async fn start_kind(kind: Kind) -> Broker {
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
            kind,
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
        let child = Command::new(broker_bin(self.kind))
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://broker.db"])
            .current_dir(&self.dir)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("broker: install it with `scripts/services.sh start` (cargo install nisshi)");
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
        panic!("the broker did not listen on {}", self.port);
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub async fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(broker_bin(self.kind))
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

    /// A consumer of `topic` in its own `group`, reading from the earliest message (for
    /// tests that look at what was published).
    pub fn reader(&self, group: &str, topic: &str) -> rdkafka::consumer::StreamConsumer {
        use rdkafka::consumer::Consumer;
        let consumer: rdkafka::consumer::StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("kafka consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        consumer
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
