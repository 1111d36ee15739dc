//! Whether the capture keeps up with the source: `concord_capture_unpublished_seconds`, the
//! time since the capture last had everything it read acknowledged by the broker. It grows
//! while the source writes and nothing reaches the broker (the broker refuses or times
//! out, or the capture is stuck) and stays near 0 on an idle source, where every heartbeat
//! finds the capture caught up with nothing left unacknowledged.
//!
//! Invariant: only an acknowledgement, or being caught up with none outstanding, counts as
//! progress — a message merely handed to the producer does not.

use crate::metrics;
use crate::publish::now_ms;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the gauge is brought up to date.
const EVERY: Duration = Duration::from_secs(5);

pub(crate) struct Progress {
    /// Transactions (or fragments) handed to the acker, and those it saw acknowledged.
    sent: AtomicU64,
    acked: AtomicU64,
    /// When the capture last made progress (ms since the epoch).
    last_ms: AtomicU64,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            last_ms: AtomicU64::new(now_ms()),
        })
    }

    pub fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn acked(&self) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        self.last_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The reader found nothing newer on the source.
    pub fn caught_up(&self) {
        if self.acked.load(Ordering::Relaxed) == self.sent.load(Ordering::Relaxed) {
            self.last_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Seconds without progress at `now` (ms).
    fn stalled_seconds(&self, now: u64) -> f64 {
        now.saturating_sub(self.last_ms.load(Ordering::Relaxed)) as f64 / 1000.0
    }

    /// Keeps the gauge up to date while the capture runs (its task is aborted with the run).
    pub async fn report_forever(self: Arc<Self>) {
        loop {
            metrics::UNPUBLISHED.set(self.stalled_seconds(now_ms()));
            tokio::time::sleep(EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_acknowledgements_or_being_caught_up_with_none_outstanding_count() {
        let p = Progress::new();
        let start = p.last_ms.load(Ordering::Relaxed);
        p.sent();
        p.last_ms.store(start - 60_000, Ordering::Relaxed);
        p.caught_up();
        assert!(
            p.stalled_seconds(start) >= 60.0,
            "caught up with a message outstanding is no progress"
        );
        p.acked();
        assert!(p.stalled_seconds(now_ms()) < 1.0);
        p.last_ms.store(start - 60_000, Ordering::Relaxed);
        p.caught_up();
        assert!(
            p.stalled_seconds(now_ms()) < 1.0,
            "idle and all acknowledged"
        );
    }
}
