//! The TRUNCATE marker: how a source `TRUNCATE` of a replicated table travels in kafka mode
//! (`op = "t"`, as Debezium writes it), one copy on every partition of the table's topic.
//!
//! Invariant: a table's rows are spread over the partitions by key, so the marker is on
//! each of them, after every change published before the statement; `partitions` says how
//! many copies there are, so a replicator group can tell when every partition has reached
//! its copy (the barrier in the replicator) even if the topic grows later. `attempt` tells
//! the copies of one publishing apart from those of a capture that published the same
//! TRUNCATE again after a restart (at-least-once), whose first attempt may be incomplete,
//! and orders them.

use super::{EnvelopeError, SourceInfo, FORMAT_VERSION};
use crate::TableName;
use serde::{Deserialize, Serialize};

/// A decoded marker.
#[derive(Clone, Debug, PartialEq)]
pub struct Truncate {
    pub table: TableName,
    pub source: SourceInfo,
    /// The partitions the capture published a copy to: 0 to `partitions - 1`.
    pub partitions: u32,
    /// One per publishing of this TRUNCATE, later ones larger: the capture's clock in
    /// microseconds since the epoch when it published.
    pub attempt: u64,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    version: u32,
    op: String,
    ts_ms: u64,
    source: SourceInfo,
    truncate: TruncateInfo,
}

#[derive(Serialize, Deserialize)]
struct TruncateInfo {
    partitions: u32,
    attempt: u64,
}

impl Truncate {
    /// The marker of `source` (its `db` and `table` name the emptied table).
    pub fn encode(source: &SourceInfo, partitions: u32, attempt: u64, now_ms: u64) -> Vec<u8> {
        let wire = Wire {
            version: FORMAT_VERSION,
            op: "t".into(),
            ts_ms: now_ms,
            source: source.clone(),
            truncate: TruncateInfo {
                partitions,
                attempt,
            },
        };
        serde_json::to_vec(&wire).expect("markers always serialize")
    }

    /// The marker in `bytes`, if they hold one (`op = "t"`); `None` for anything else.
    pub(super) fn decode(bytes: &[u8]) -> Option<Result<Truncate, EnvelopeError>> {
        #[derive(Deserialize)]
        struct Probe {
            op: Option<String>,
        }
        let probe: Probe = serde_json::from_slice(bytes).ok()?;
        if probe.op.as_deref() != Some("t") {
            return None;
        }
        let wire: Wire = match serde_json::from_slice(bytes) {
            Ok(w) => w,
            Err(e) => return Some(Err(EnvelopeError::Shape(format!("TRUNCATE marker: {e}")))),
        };
        if wire.version != FORMAT_VERSION {
            return Some(Err(EnvelopeError::Version(wire.version)));
        }
        if wire.truncate.partitions == 0 {
            return Some(Err(EnvelopeError::Shape(
                "TRUNCATE marker for 0 partitions".into(),
            )));
        }
        Some(Ok(Truncate {
            table: TableName::new(wire.source.db.clone(), wire.source.table.clone()),
            source: wire.source,
            partitions: wire.truncate.partitions,
            attempt: wire.truncate.attempt,
        }))
    }

    /// Names this TRUNCATE among all others: the source position of its statement's end
    /// and the table's index in it (a statement may empty several).
    pub fn event(&self) -> String {
        format!(
            "{}:{}#{}",
            self.source.txn.end_file, self.source.txn.end_pos, self.source.row
        )
    }
}
