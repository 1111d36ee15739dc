//! How far behind the replicator is, in time: no repair runs while it lags by more than
//! the grace period — a lagging replicator is not a mismatch, and repairing over it would
//! only race it.
//!
//! The lag is measured as the source itself tells it: each look samples the source's
//! binlog position with the time it was read; the replicator's lag is how long ago the
//! source was at the oldest sampled position the replicator has not applied yet (zero when
//! it has applied the newest). So an idle source with a caught-up replicator has no lag,
//! however old its last transaction.
//!
//! Invariant: the lag reported is never less than the true lag by more than the sampling
//! interval (the worker's `recovery.every`).

use concord_change::Position;
use concord_target::{ProgressError, Replica, Stream};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Samples kept at most (the oldest unreached one is always kept).
const MAX_SAMPLES: usize = 4096;

#[derive(Default)]
pub struct LagGauge {
    samples: VecDeque<(Instant, Position)>,
}

impl LagGauge {
    /// Adds the source position `now_at` read just now and returns the replicator's lag on
    /// `stream`.
    pub async fn lag(
        &mut self,
        replica: &Replica,
        stream: &Stream,
        now_at: Position,
    ) -> Result<Duration, ProgressError> {
        let now = Instant::now();
        if self.samples.back().is_none_or(|(_, p)| *p != now_at) {
            self.samples.push_back((now, now_at));
        }
        if self.samples.len() > MAX_SAMPLES {
            // Keep the oldest (it bounds the lag) and thin out the rest.
            self.samples.remove(1);
        }
        // Samples are in source order, so "applied" holds for a prefix of them: find
        // where it ends with a binary search (a few reads of the replicator's progress).
        let (mut lo, mut hi) = (0, self.samples.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if replica.has_applied(&self.samples[mid].1, stream).await? {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.samples.drain(..lo);
        Ok(match self.samples.front() {
            Some((at, _)) => now.duration_since(*at),
            None => Duration::ZERO,
        })
    }
}
