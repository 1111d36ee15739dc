//! The verifier: every replicated change is checked again after a delay — against the
//! target, and against the source before anything is recorded.
//!
//! Invariant: a mismatch is recorded only after the source confirmed it (see
//! `concord_compare::recheck`); a lagging replicator, a row that moved on, or a row still
//! changing are never mismatches.

pub(crate) mod cascade;
pub mod check;
pub mod direct;
pub mod error;
pub mod kafka;
pub mod metrics;
pub(crate) mod parked;
pub(crate) mod rounds;
pub(crate) mod setup;

pub use error::VerifierError;
