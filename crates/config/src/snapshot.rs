//! `[snapshot]`: copying the rows a source already holds (docs/SNAPSHOT.md).

use crate::ConfigError;
use serde::Deserialize;

/// Whether the stream owner copies tables it never copied before streaming them.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotMode {
    /// Every included table without a snapshot record is copied first (a deployment that
    /// already streams records its tables as streamed instead).
    #[default]
    Initial,
    /// Only what `concord snapshot` asks for is copied.
    Never,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    #[serde(default)]
    pub mode: SnapshotMode,
    /// Chunks read from the source at once (each on its own connection, in its own
    /// consistent snapshot), and — in direct mode — written to the target at once.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Rows per chunk.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u64,
    /// The source counts as busy while `Threads_running` is above this; the snapshot then
    /// waits before reading its next chunk (the checksum's rule).
    #[serde(default = "default_max_running")]
    pub max_threads_running: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            mode: SnapshotMode::default(),
            threads: default_threads(),
            chunk_rows: default_chunk_rows(),
            max_threads_running: default_max_running(),
        }
    }
}

fn default_threads() -> usize {
    4
}
fn default_chunk_rows() -> u64 {
    10_000
}
fn default_max_running() -> u64 {
    25
}

impl SnapshotConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=64).contains(&self.threads) {
            return Err(ConfigError::invalid(
                "snapshot.threads",
                self.threads,
                "expected 1 to 64",
            ));
        }
        if !(100..=250_000).contains(&self.chunk_rows) {
            return Err(ConfigError::invalid(
                "snapshot.chunk_rows",
                self.chunk_rows,
                "expected 100 to 250000",
            ));
        }
        Ok(())
    }
}
