use concord_change::Position;

/// Errors of the binlog reader, split by what the caller should do with them.
#[derive(Debug, thiserror::Error)]
pub enum BinlogError {
    /// The source is not set up for row replication; nothing will work until it is.
    #[error("source setting {setting} is {actual}, concord needs {required}: {hint}")]
    Setting {
        setting: &'static str,
        actual: String,
        required: &'static str,
        hint: &'static str,
    },
    /// The requested position no longer exists on the source (purged or mistyped).
    #[error("binlog position {position} is not available on the source: {message}")]
    PositionGone { position: Position, message: String },
    /// Connection-level trouble: retried with backoff.
    #[error("source connection at {position}: {source}")]
    Connection {
        position: Position,
        #[source]
        source: mysql_async::Error,
    },
    #[error("source stream at {position} was silent for {seconds}s (no event, no heartbeat)")]
    Silent { position: Position, seconds: u64 },
    #[error(
        "tables without a primary key cannot be replicated (updates and deletes could not find \
         their row): {}; add a primary key or exclude them with tables.exclude",
        .0.join(", ")
    )]
    KeylessTables(Vec<String>),
    /// An event that may carry row data and that concord cannot decode: reading stops here
    /// rather than pass over changes.
    #[error("binlog event {name} (type {code}) at {position} cannot be read: {detail}")]
    Unsupported {
        position: Position,
        code: u8,
        name: String,
        detail: String,
    },
    /// The consumer of the reader's output went away; the reader stops.
    #[error("the reader's consumer stopped")]
    Closed,
}

impl BinlogError {
    /// Errors a restart meets again: the source's settings or the table selection must
    /// change first, or the binlog holds an event this version cannot read.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            BinlogError::Setting { .. }
                | BinlogError::KeylessTables(_)
                | BinlogError::Unsupported { .. }
        )
    }

    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BinlogError::Connection { .. } | BinlogError::Silent { .. }
        )
    }
}
