//! Target errors by what they mean for the work that met them: retry (the server or the
//! connection is in trouble), look at the schema again, or treat the row as refused.
//!
//! Invariant: only errors about a statement's data are the row's fault; anything about
//! locks, resources, connections or the server's state is transient, so no role ever
//! records or skips a row because the target was briefly unwell.

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
