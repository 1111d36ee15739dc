//! What stops the verifier, as opposed to what it retries.

use concord_compare::CompareError;

#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// The config lacks what this mode needs.
    #[error("{0}")]
    NotConfigured(&'static str),
    #[error("cannot connect to the {server}")]
    Connect {
        /// Which server, with its address (password hidden).
        server: String,
        #[source]
        source: mysql_async::Error,
    },
    /// A statement of the verifier's own setup failed on the source or the target.
    #[error("{side}: {what}")]
    Setup {
        side: &'static str,
        what: &'static str,
        #[source]
        source: mysql_async::Error,
    },
    #[error("kafka: {what}")]
    Kafka {
        what: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// One of the verifier's tasks panicked or was cancelled.
    #[error("the verifier's {task} task crashed")]
    Crashed {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error(transparent)]
    Binlog(#[from] concord_binlog::BinlogError),
    #[error(transparent)]
    Control(#[from] concord_control::ControlError),
    /// Boxed: a comparison error carries the table and the server's error, and this type
    /// is returned on every path.
    #[error(transparent)]
    Compare(Box<CompareError>),
}

impl VerifierError {
    /// Errors no restart can get past (see `ReplicatorError::is_fatal`): the process exits
    /// with them rather than retry forever.
    pub fn is_fatal(&self) -> bool {
        match self {
            VerifierError::NotConfigured(_) => true,
            VerifierError::Binlog(e) => e.is_fatal(),
            VerifierError::Control(e) => !e.is_transient(),
            VerifierError::Compare(e) => e.is_fatal(),
            _ => false,
        }
    }
}

impl From<CompareError> for VerifierError {
    fn from(e: CompareError) -> Self {
        VerifierError::Compare(Box::new(e))
    }
}
