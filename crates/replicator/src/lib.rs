//! The replicator: applies source row changes to the target, idempotently and in whole
//! source transactions, with its position stored in the same target transaction.
//!
//! Direct mode ([`direct::run`]) pairs it with the binlog reader in one process.

pub mod applier;
pub mod barrier;
pub mod batch;
pub mod direct;
pub mod error;
pub mod gap;
pub mod kafka;
pub mod metrics;
pub mod triggers;

pub use error::ReplicatorError;
