//! The target side, as every role sees it: the statements that write rows, the rows that
//! record the replicator's position (a binlog checkpoint, or kafka offsets), how a target
//! error is classified, and whether the replicator has applied a given point yet.
//!
//! Invariant: whatever writes rows to the target writes them with the statements of
//! [`sql`] (identifiers from the schema cache, quoted; values bound), so the replicator and
//! a repair leave the same bytes — audit columns included.

pub mod checkpoint;
pub mod error;
pub mod heartbeat;
pub mod offsets;
pub mod progress;
pub mod repair;
pub mod session;
pub mod sql;
pub mod write;

pub use checkpoint::Checkpoints;
pub use error::{classify, ErrorClass};
pub use offsets::Offsets;
pub use progress::{Mark, ProgressError, Replica, Stream};
pub use write::{Write, WriteKind};
