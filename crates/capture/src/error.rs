use concord_change::Position;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("capture needs transport.kind = \"kafka\" and a [kafka] section")]
    NotKafka,
    #[error("cannot connect to the {server}")]
    Connect {
        /// Which server, with its address (password hidden).
        server: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("the capture's {task} task crashed")]
    Crashed {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error(transparent)]
    Binlog(#[from] concord_binlog::BinlogError),
    #[error(transparent)]
    Control(#[from] concord_control::ControlError),
    /// Planning the snapshot's jobs (listing tables, the control store) failed.
    #[error("snapshot")]
    Snapshot(#[from] concord_snapshot::SnapshotError),
    #[error("kafka: creating the producer")]
    Kafka(#[source] rdkafka::error::KafkaError),
    /// The broker did not say how many partitions a topic has (a TRUNCATE marker goes to
    /// each of them); the capture stops before its position passes the TRUNCATE.
    #[error("kafka: reading the partitions of {topic}")]
    Metadata {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The broker refused a message for good (after the producer's own retries); the
    /// capture stops so that its position never passes an unpublished change.
    #[error("publishing the change at {position} to {topic}")]
    Delivery {
        position: Position,
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

impl CaptureError {
    /// Errors no restart can get past (see `ReplicatorError::is_fatal`): the process exits
    /// with them rather than retry forever.
    pub fn is_fatal(&self) -> bool {
        match self {
            CaptureError::NotKafka => true,
            CaptureError::Binlog(e) => e.is_fatal(),
            CaptureError::Control(e) => !e.is_transient(),
            _ => false,
        }
    }
}
