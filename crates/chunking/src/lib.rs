//! Walking a table in primary-key order, chunk by chunk, as the checksum and the snapshot
//! do: a chunk is a key range whose SQL predicate the server evaluates in its own ordering
//! and collation; chunks are sized to a time budget; a busy source makes the walk wait.
//!
//! Invariants: key values are always bound parameters and identifiers come quoted from
//! the caller's schema description; a range's predicate is written column by column, which
//! every server version turns into an index range.

mod keys;
mod pace;
mod range;
mod tables;

pub use keys::{parse_key, parse_parts};
pub use pace::{wait_until_quiet, ChunkSizer, MAX_ROWS, MIN_ROWS};
pub use range::{compare, KeyRange, KeySql};
pub use tables::replicated_tables;
