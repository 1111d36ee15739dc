use concord_change::Position;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("capture needs transport.kind = \"kafka\" and a [kafka] section")]
    NotKafka,
    #[error("{0}")]
    Connect(String),
    #[error(transparent)]
    Binlog(#[from] concord_binlog::BinlogError),
    #[error(transparent)]
    Control(#[from] concord_control::ControlError),
    #[error("kafka: {0}")]
    Kafka(#[source] rdkafka::error::KafkaError),
    /// The broker refused a message for good (after the producer's own retries); the
    /// capture stops so that its position never passes an unpublished change.
    #[error("publishing the change at {position} to {topic}: {error}")]
    Delivery {
        position: Position,
        topic: String,
        error: String,
    },
}
