//! What can go wrong in a snapshot: the ones a retry gets past (a server away, a lock
//! wait) and the ones that end a job (no key, no target table, a key that cannot be read),
//! each naming the table.

use concord_change::TableName;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}: no such table on the source")]
    NoSourceTable(TableName),
    #[error("{0}: not replicated (tables.include / tables.exclude)")]
    NotReplicated(TableName),
    #[error(
        "{0}: the table has no primary key; a snapshot walks and merges rows by key \
         (exclude it with tables.exclude, or give it a primary key)"
    )]
    NoPrimaryKey(TableName),
    #[error(
        "{source_table}: the target has no table {target}; create it (or pass \
         --create-tables to copy the source's definition)"
    )]
    NoTargetTable {
        source_table: TableName,
        target: TableName,
    },
    #[error("reading a table's columns")]
    Schema(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("{table}: {what} on the source")]
    Source {
        table: TableName,
        what: &'static str,
        #[source]
        source: Box<mysql_async::Error>,
    },
    #[error("{table}: {what} on the target")]
    Target {
        table: TableName,
        what: &'static str,
        #[source]
        source: Box<mysql_async::Error>,
    },
    #[error("the control store")]
    Control(#[from] concord_control::ControlError),
    #[error("the source cannot be snapshotted: {0}")]
    Unsupported(String),
    #[error("{table}: {given:?} is not a key of the table: {why}")]
    BadKey {
        table: TableName,
        given: String,
        why: String,
    },
    #[error("{table}: the chunk could not be written: {why}")]
    Failed { table: TableName, why: String },
    /// The table's definition changed under the job (a DDL): it is described again and
    /// resumes after its last written chunk.
    #[error("{table}: its definition changed ({why}); described again")]
    TableChanged { table: TableName, why: String },
}

impl SnapshotError {
    /// Whether trying again later may succeed (a server away, a lock wait), as opposed to
    /// a job that cannot run as asked.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SnapshotError::Schema(_)
                | SnapshotError::Source { .. }
                | SnapshotError::Target { .. }
                | SnapshotError::Control(_)
                | SnapshotError::TableChanged { .. }
        )
    }
}
