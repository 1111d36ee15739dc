//! The binlog reader: connects to a MySQL/MariaDB source as a replica, checks that the
//! source logs what concord needs, and turns its row events into
//! [`concord_change::Transaction`]s — whole, or in fragments when one outgrows the bound.
//!
//! Invariant: a transaction is handed on as a `Transaction` only once its commit event was
//! read, and every such `end` is a position the reader can resume from without gaps or
//! partial transactions; a fragment's position is never one to resume from.

mod assemble;
mod decode;
mod error;
mod preflight;
mod queue;
mod reader;
mod rows;
mod settings;
mod statement;
mod window;

pub use decode::{Collations, ColumnKind, DecodeError, TableInfo};
pub use error::BinlogError;
pub use preflight::{preflight, start_position};
pub use queue::{queue, Closed, Receiver, Sender, TryRecvError};
pub use reader::{BinlogReader, FragmentBound, ReaderEvent, ReaderOptions, Resume};
pub use settings::{check_settings, current_position, earliest_position, ServerInfo};
pub use statement::{classify, report_statement, QueryKind};
pub use window::{changes_in_window, Scanned, Window};
