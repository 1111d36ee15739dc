//! The verifier: every replicated change is checked again after a delay — against the
//! target, and against the source before anything is recorded — plus the whole-table
//! checksum.
//!
//! Invariant: a mismatch is recorded only after the source confirmed it (see
//! [`recheck`]); a lagging replicator, a row that moved on, or a row still changing are
//! never mismatches.

pub(crate) mod cascade;
pub mod check;
pub mod checksum;
pub mod direct;
pub mod equality;
pub mod error;
pub mod kafka;
pub mod metrics;
pub(crate) mod parked;
pub mod progress;
pub mod recheck;
pub(crate) mod rounds;
pub mod rows;
pub(crate) mod setup;
pub mod sql_value;

pub use error::VerifierError;
