//! What stops the verifier, as opposed to what it retries.

use crate::check::CheckError;

#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// Could not start: bad settings, unreachable server at start, missing section.
    #[error("{0}")]
    Preflight(String),
    /// One of the verifier's tasks panicked or was cancelled.
    #[error("{0}")]
    Crashed(String),
    #[error(transparent)]
    Binlog(#[from] concord_binlog::BinlogError),
    #[error(transparent)]
    Control(#[from] concord_control::ControlError),
    /// Boxed: a check error carries the table and the server's error, and this type is
    /// returned on every path.
    #[error(transparent)]
    Check(Box<CheckError>),
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
