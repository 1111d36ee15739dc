//! What stops the verifier, as opposed to what it retries.

use crate::check::CheckError;

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
    /// The checksum compares the target with what the replicator applied: it needs one.
    #[error(
        "no checkpoint of replicator `{replicator}` in {schema}: the checksum compares the \
         target with what the replicator applied, so the replicator must run (or have run)"
    )]
    NoReplicator { replicator: String, schema: String },
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
    /// Boxed: a check error carries the table and the server's error, and this type is
    /// returned on every path.
    #[error(transparent)]
    Check(Box<CheckError>),
}

impl VerifierError {
    /// Errors no restart can get past (see `ReplicatorError::is_fatal`): the process exits
    /// with them rather than retry forever.
    pub fn is_fatal(&self) -> bool {
        match self {
            VerifierError::NotConfigured(_) => true,
            VerifierError::Binlog(e) => e.is_fatal(),
            VerifierError::Control(e) => !e.is_transient(),
            _ => false,
        }
    }
}

impl From<CheckError> for VerifierError {
    fn from(e: CheckError) -> Self {
        VerifierError::Check(Box::new(e))
    }
}

impl CheckError {
    /// Connection trouble, a lock wait, a server going away: retry the round. Anything
    /// else (a statement the server refuses) would fail again the same way.
    pub fn is_transient(&self) -> bool {
        match self {
            CheckError::Sql { source, .. } => matches!(
                concord_replicator::classify(source),
                concord_replicator::ErrorClass::Transient
            ),
            CheckError::Schema(e) => matches!(
                concord_replicator::classify(&e.source),
                concord_replicator::ErrorClass::Transient
            ),
            CheckError::SchemaMoved { .. } => true,
            CheckError::Progress(_) => true,
            CheckError::Control(e) => e.is_transient(),
        }
    }
}
