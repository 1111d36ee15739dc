//! The binlog reader: connects to a MySQL/MariaDB source as a replica, checks that the
//! source logs what concord needs, and turns its row events into whole
//! [`concord_change::Transaction`]s.
//!
//! Invariant: a transaction is handed on only once its commit event was read, and every
//! handed-on transaction's `end` is a position the reader can resume from without gaps or
//! partial transactions.

mod assemble;
mod decode;
mod error;
mod preflight;
mod reader;
mod rows;
mod settings;
mod statement;

pub use decode::{Collations, ColumnKind, DecodeError, TableInfo};
pub use error::BinlogError;
pub use preflight::{preflight, start_position};
pub use reader::{BinlogReader, ReaderEvent, ReaderOptions, Resume};
pub use settings::{check_settings, current_position, earliest_position, ServerInfo};
pub use statement::{classify, report_statement, QueryKind};
