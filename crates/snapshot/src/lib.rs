//! The snapshot (docs/SNAPSHOT.md): copying the rows a source already holds while the
//! binlog keeps being applied. The stream owner — the direct-mode replicator, or the
//! capture in kafka mode — writes (or publishes) each chunk in its stream's order: a chunk
//! is read in key order inside a consistent snapshot whose binlog position the server
//! tells, the stream owner notes what it handles of the chunk's table meanwhile, and once
//! past that position it writes the chunk less what the stream already wrote.
//!
//! Invariant: after a chunk is written at the stream owner's position `E`, every key of
//! the chunk's scope holds what the source holds at `E` — so the stream continues from a
//! correct state and nothing is lost or applied out of order.

pub mod ask;
mod error;
mod executor;
pub mod merge;
mod metrics;
mod notes;
mod shape;
mod source;
mod target;

pub use ask::{queue, Ask};
pub use error::SnapshotError;
pub use executor::{chain, copies_first, stream_of, Executor};
pub use merge::Resolved;
pub use notes::{ChunkSpec, Noted, Notes, Outcome, Read, ReadyChunk, Scope};
pub use shape::Shape;
pub use source::check as check_source;
pub use target::{keys_in_scope, not_written_rows};
