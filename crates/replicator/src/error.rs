//! What stops the replicator, as opposed to what it retries or records. How a target error
//! is classified is the target library's (`concord_target::classify`).

/// Errors that stop the replicator (everything else is retried or recorded). The process
/// restarts a stopped replicator with backoff unless [`ReplicatorError::is_fatal`]: the
/// cause is kept as the error's source, so the log names the server's own words.
#[derive(Debug, thiserror::Error)]
pub enum ReplicatorError {
    #[error(transparent)]
    Binlog(#[from] concord_binlog::BinlogError),
    /// A statement of the replicator's own bookkeeping (checkpoints, offsets) failed.
    #[error("target: {what}")]
    Target {
        what: &'static str,
        #[source]
        source: mysql_async::Error,
    },
    #[error("cannot connect to the {server}")]
    Connect {
        /// Which server, with its address (password hidden).
        server: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error(transparent)]
    Schema(#[from] concord_schema_cache::SchemaError),
    #[error("kafka: {what}")]
    Kafka {
        what: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The config lacks what this mode needs.
    #[error("{0}")]
    NotConfigured(&'static str),
    #[error(transparent)]
    Control(#[from] concord_control::ControlError),
    /// A source transaction applied in fragments met an error before its last part was
    /// committed: its target transaction was rolled back, and the run ends so that the
    /// next one reads it again from the checkpoint (its parts cannot be retried alone).
    #[error(
        "a large source transaction, applied in fragments, was interrupted at {position}; \
         rolled back, to be read again from the checkpoint"
    )]
    Interrupted {
        position: concord_change::Position,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `replicator.target_triggers = "refuse"` and replicated target tables have triggers.
    #[error(
        "replicated target tables have triggers, which would fire on concord's writes \
         (replicator.target_triggers = \"refuse\"): {}; drop them on the target, exclude the \
         tables, or set replicator.target_triggers = \"warn\"",
        .0.join(", ")
    )]
    TargetTriggers(Vec<String>),
    /// A writer that may give up (a snapshot's chunk writer) did, after this many
    /// attempts the target refused for a transient reason.
    #[error("gave up after {attempts} attempts")]
    GaveUp {
        attempts: u32,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Planning the snapshot's jobs (listing tables, the control store) failed.
    #[error("snapshot")]
    Snapshot(#[from] concord_snapshot::SnapshotError),
    #[error("the replicator's {task} task crashed")]
    Crashed {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl ReplicatorError {
    /// For `map_err` on a connection to `side` ("source" or "target") at `url`.
    pub fn connecting(
        side: &str,
        url: &concord_config::DbUrl,
    ) -> impl FnOnce(mysql_async::Error) -> Self {
        let server = format!("{side} {}", url.redacted());
        move |source| ReplicatorError::Connect { server, source }
    }

    /// Errors no restart can get past — the config or the source's setup must change
    /// first, or the binlog holds an event this version cannot read: the process exits
    /// with them rather than retry forever.
    pub fn is_fatal(&self) -> bool {
        match self {
            ReplicatorError::Binlog(e) => e.is_fatal(),
            ReplicatorError::NotConfigured(_) | ReplicatorError::TargetTriggers(_) => true,
            ReplicatorError::Control(e) => !e.is_transient(),
            _ => false,
        }
    }
}
