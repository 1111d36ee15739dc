//! What stops a checksum run as a whole (a table's own problems are reported with the
//! table, and the run goes on).

use concord_compare::CompareError;

#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    #[error("cannot connect to the {server}")]
    Connect {
        /// Which server, with its address (password hidden).
        server: String,
        #[source]
        source: mysql_async::Error,
    },
    /// A statement of the run's own setup failed on the source or the target.
    #[error("{side}: {what}")]
    Setup {
        side: &'static str,
        what: &'static str,
        #[source]
        source: mysql_async::Error,
    },
    /// The checksum compares the target with what the replicator applied: it needs one.
    #[error(
        "no checkpoint of replicator `{replicator}` in {schema}: the checksum compares the \
         target with what the replicator applied, so the replicator must run (or have run)"
    )]
    NoReplicator { replicator: String, schema: String },
    #[error(transparent)]
    Control(#[from] concord_control::ControlError),
    /// Boxed: a comparison error carries the table and the server's error.
    #[error(transparent)]
    Compare(Box<CompareError>),
}

impl From<CompareError> for ChecksumError {
    fn from(e: CompareError) -> Self {
        ChecksumError::Compare(Box::new(e))
    }
}
