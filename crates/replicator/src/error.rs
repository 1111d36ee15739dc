//! How the applier reacts to a target error: retry, refresh the schema, or record the row.

use mysql_async::Error as MyError;

/// What a target error means for the change that caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The target or the connection is in trouble, not the row: retry the whole batch
    /// with backoff, forever. Never skipped, never recorded as a bad row.
    Transient,
    /// The target's schema moved under the cached column set: refresh and retry.
    UnknownColumn,
    MissingTable,
    /// The target refuses this row's content: record it and go on.
    Rejected,
}

/// MariaDB/MySQL server error codes by what they mean for a replicated row.
mod codes {
    pub const LOCK_DEADLOCK: u16 = 1213;
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub const CON_COUNT: u16 = 1040;
    pub const TOO_MANY_USER_CONNECTIONS: u16 = 1203;
    pub const SERVER_SHUTDOWN: u16 = 1053;
    pub const QUERY_INTERRUPTED: u16 = 1317;
    pub const CONNECTION_KILLED: u16 = 1927;
    pub const OPTION_PREVENTS_STATEMENT: u16 = 1290; // e.g. --read-only during a failover
    pub const LOCK_TABLE_FULL: u16 = 1206;
    pub const NET_READ_ERROR: u16 = 1158;
    pub const NET_READ_INTERRUPTED: u16 = 1159;
    pub const NET_ERROR_ON_WRITE: u16 = 1160;
    pub const NET_WRITE_INTERRUPTED: u16 = 1161;
    pub const DISK_FULL: u16 = 1021;
    pub const OUT_OF_MEMORY: u16 = 1037;
    pub const OUT_OF_RESOURCES: u16 = 1041;
    pub const BAD_FIELD: u16 = 1054;
    pub const NO_SUCH_TABLE: u16 = 1146;
    pub const BAD_DB: u16 = 1049;
    pub const UNKNOWN_TABLE: u16 = 1109;
}

/// Classifies a target error. Server errors about the statement's *data* (SQLSTATE classes
/// 22 and 23, and the listed codes) are the row's fault; anything about locks, resources,
/// connections or the server's state is transient; unknown server errors count as the
/// row's fault so that one odd row cannot stall replication forever — it is recorded,
/// never dropped.
pub fn classify(e: &MyError) -> ErrorClass {
    use codes::*;
    match e {
        MyError::Server(s) => match s.code {
            LOCK_DEADLOCK
            | LOCK_WAIT_TIMEOUT
            | CON_COUNT
            | TOO_MANY_USER_CONNECTIONS
            | SERVER_SHUTDOWN
            | QUERY_INTERRUPTED
            | CONNECTION_KILLED
            | OPTION_PREVENTS_STATEMENT
            | LOCK_TABLE_FULL
            | NET_READ_ERROR
            | NET_READ_INTERRUPTED
            | NET_ERROR_ON_WRITE
            | NET_WRITE_INTERRUPTED
            | DISK_FULL
            | OUT_OF_MEMORY
            | OUT_OF_RESOURCES => ErrorClass::Transient,
            BAD_FIELD => ErrorClass::UnknownColumn,
            NO_SUCH_TABLE | BAD_DB | UNKNOWN_TABLE => ErrorClass::MissingTable,
            _ if s.state.starts_with("08") || s.state.starts_with("40") => ErrorClass::Transient,
            _ => ErrorClass::Rejected,
        },
        // Driver, I/O and URL errors are about the connection, not the row.
        _ => ErrorClass::Transient,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::ServerError;

    fn server(code: u16, state: &str) -> MyError {
        MyError::Server(ServerError {
            code,
            message: "m".into(),
            state: state.into(),
        })
    }

    #[test]
    fn locks_and_connections_are_transient() {
        assert_eq!(classify(&server(1213, "40001")), ErrorClass::Transient);
        assert_eq!(classify(&server(1205, "HY000")), ErrorClass::Transient);
        assert_eq!(classify(&server(1927, "70100")), ErrorClass::Transient);
        assert_eq!(classify(&server(9999, "08S01")), ErrorClass::Transient);
        assert_eq!(
            classify(&MyError::Other("connection reset".into())),
            ErrorClass::Transient
        );
    }

    #[test]
    fn schema_moves_are_recognised() {
        assert_eq!(classify(&server(1054, "42S22")), ErrorClass::UnknownColumn);
        assert_eq!(classify(&server(1146, "42S02")), ErrorClass::MissingTable);
    }

    #[test]
    fn bad_content_is_the_rows_fault() {
        assert_eq!(classify(&server(1406, "22001")), ErrorClass::Rejected); // data too long
        assert_eq!(classify(&server(4025, "23000")), ErrorClass::Rejected); // CHECK
        assert_eq!(classify(&server(1062, "23000")), ErrorClass::Rejected); // unique
        assert_eq!(classify(&server(1366, "22007")), ErrorClass::Rejected); // bad value
    }
}
