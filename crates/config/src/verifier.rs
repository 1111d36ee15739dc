//! The `[verifier]` and `[checksum]` sections: how long a change waits before it is checked,
//! and how the whole-table checksum paces itself.

use crate::error::ConfigError;
use crate::sections::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifierConfig {
    /// A change is checked once its source commit time is this far in the past.
    #[serde(default = "default_delay", with = "humantime_serde")]
    pub delay: Duration,
    /// Names the verifier's saved position in the control store (direct mode).
    #[serde(default = "default_name")]
    pub name: String,
    /// The verifier's own consumer group (kafka mode).
    #[serde(default = "default_group")]
    pub group: String,
    /// The replica server id of the verifier's binlog reader (direct mode); it must differ
    /// from `source.server_id`. Default: `source.server_id + 1`.
    #[serde(default)]
    pub server_id: Option<u32>,
    /// Most changes compared in one round (one target read per table per round).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Rounds verified at once. A round waits on the servers (and a recheck sleeps between
    /// its looks); with more than one, the next rounds go on meanwhile. Positions are saved
    /// in order. One is fastest where concord shares a small machine with both servers.
    #[serde(default = "default_rounds_in_flight")]
    pub rounds_in_flight: usize,
    /// How often the verifier's position is saved.
    #[serde(default = "default_save_every", with = "humantime_serde")]
    pub save_every: Duration,
    /// Most rows held back, before any source recheck, waiting for a later change of the
    /// same row to supersede their difference (see docs/VERIFY.md); 0 turns that off.
    #[serde(default = "default_park_rows")]
    pub park_rows: usize,
    /// How long such a row waits for its later change before the source is asked; the
    /// saved position stays behind it meanwhile. `0s` turns parking off.
    #[serde(default = "default_park_for", with = "humantime_serde")]
    pub park_for: Duration,
    /// Between the two looks of a source recheck: a difference is recorded only if source
    /// and target rows stayed the same across both (see docs/VERIFY.md).
    #[serde(default = "default_retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
    /// The user the verifier (and the checksum) reads the target as — SELECT is all they
    /// need; by default `target.url`'s user. Its password comes from `target_password` or
    /// `target_password_file`, else the target's.
    #[serde(default)]
    pub target_user: Option<String>,
    #[serde(default)]
    pub target_password: Option<Secret>,
    #[serde(default)]
    pub target_password_file: Option<PathBuf>,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            delay: default_delay(),
            name: default_name(),
            group: default_group(),
            server_id: None,
            batch_rows: default_batch_rows(),
            rounds_in_flight: default_rounds_in_flight(),
            save_every: default_save_every(),
            park_rows: default_park_rows(),
            park_for: default_park_for(),
            retry_after: default_retry_after(),
            target_user: None,
            target_password: None,
            target_password_file: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksumConfig {
    /// Each chunk is sized so that hashing it takes about this long on the source.
    #[serde(default = "default_chunk_time", with = "humantime_serde")]
    pub chunk_time: Duration,
    /// Rows in the first chunk of a table, before the size adapts.
    #[serde(default = "default_first_chunk")]
    pub first_chunk_rows: u64,
    /// The source counts as busy while `Threads_running` is above this; the checksum then
    /// waits between chunks.
    #[serde(default = "default_max_running")]
    pub max_threads_running: u64,
}

impl Default for ChecksumConfig {
    fn default() -> Self {
        Self {
            chunk_time: default_chunk_time(),
            first_chunk_rows: default_first_chunk(),
            max_threads_running: default_max_running(),
        }
    }
}

impl VerifierConfig {
    pub(crate) fn validate(&self, source_server_id: u32) -> Result<(), ConfigError> {
        if self.name.is_empty() || self.name.len() > 191 {
            return Err(ConfigError::invalid(
                "verifier.name",
                &self.name,
                "expected 1 to 191 characters",
            ));
        }
        if self.group.is_empty() {
            return Err(ConfigError::invalid(
                "verifier.group",
                "",
                "expected a consumer group name",
            ));
        }
        if self.server_id == Some(0) || self.server_id == Some(source_server_id) {
            return Err(ConfigError::invalid(
                "verifier.server_id",
                self.server_id.unwrap_or_default(),
                "expected a replica server id from 1 to 4294967295 other than source.server_id",
            ));
        }
        if self.batch_rows == 0 {
            return Err(ConfigError::invalid(
                "verifier.batch_rows",
                0,
                "expected at least 1",
            ));
        }
        if self.rounds_in_flight == 0 {
            return Err(ConfigError::invalid(
                "verifier.rounds_in_flight",
                0,
                "expected at least 1",
            ));
        }
        for (key, d) in [
            ("verifier.save_every", self.save_every),
            ("verifier.retry_after", self.retry_after),
        ] {
            if d < Duration::from_millis(10) {
                return Err(ConfigError::invalid(
                    key,
                    humantime::format_duration(d),
                    "expected at least 10ms",
                ));
            }
        }
        Ok(())
    }

    /// The server id the verifier's own binlog reader registers with.
    pub fn server_id(&self, source_server_id: u32) -> u32 {
        self.server_id
            .unwrap_or_else(|| match source_server_id.wrapping_add(1) {
                0 => 1,
                id => id,
            })
    }
}

impl ChecksumConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.chunk_time < Duration::from_millis(10) || self.chunk_time > Duration::from_secs(60)
        {
            return Err(ConfigError::invalid(
                "checksum.chunk_time",
                humantime::format_duration(self.chunk_time),
                "expected 10ms to 60s",
            ));
        }
        if self.first_chunk_rows == 0 {
            return Err(ConfigError::invalid(
                "checksum.first_chunk_rows",
                0,
                "expected at least 1",
            ));
        }
        if self.max_threads_running == 0 {
            return Err(ConfigError::invalid(
                "checksum.max_threads_running",
                0,
                "expected at least 1",
            ));
        }
        Ok(())
    }
}

fn default_delay() -> Duration {
    Duration::from_secs(120)
}
fn default_name() -> String {
    "verifier".into()
}
fn default_group() -> String {
    "concord-verifier".into()
}
fn default_batch_rows() -> usize {
    5000
}

fn default_rounds_in_flight() -> usize {
    1
}
fn default_save_every() -> Duration {
    Duration::from_secs(1)
}
fn default_park_rows() -> usize {
    150_000
}
fn default_park_for() -> Duration {
    Duration::from_secs(10)
}
fn default_retry_after() -> Duration {
    Duration::from_secs(2)
}
fn default_chunk_time() -> Duration {
    Duration::from_millis(500)
}
fn default_first_chunk() -> u64 {
    1000
}
fn default_max_running() -> u64 {
    25
}
