//! How fast the checksum goes: the walk's pacing (chunk sizes, waiting while the source is
//! busy), with the time it waited counted.

use crate::metrics;
pub use concord_chunking::ChunkSizer;
use mysql_async::Pool;
use std::time::Duration;

/// Waits while the source's `Threads_running` is above `max`; counts and returns how long
/// it waited.
pub async fn wait_until_quiet(source: &Pool, max: u64) -> Result<Duration, mysql_async::Error> {
    let waited = concord_chunking::wait_until_quiet(source, max, "checksum").await?;
    if !waited.is_zero() {
        metrics::CHECKSUM_THROTTLED.inc_by(waited.as_secs_f64());
    }
    Ok(waited)
}
