//! Noticing a broker that skips offsets.
//!
//! When a partition's next message is past the offset the target says comes next, the
//! replicator seeks back and reads again: a gap would lose changes. A broker that keeps
//! answering a fetch at offset N with messages after N (seen with tansu's in-memory
//! storage, which answers a fetch that starts inside a record batch with the *next*
//! batch) would keep the replicator seeking forever, silently. This watch turns that into
//! a warning, a metric and a slower retry — the replicator still never skips.
//!
//! Invariant: it only observes; what is applied is decided by the caller's offsets alone.

use std::time::{Duration, Instant};

/// Seeks to the same offset without progress before the broker is reported.
const REPORT_AFTER: u32 = 3;
/// Between two warnings for one partition.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// One partition's seeks back to the offset the target expects.
#[derive(Debug, Default)]
pub struct GapWatch {
    /// The offset sought, and how many times in a row the broker answered past it.
    at: Option<(i64, u32)>,
    warned: Option<Instant>,
}

/// What the caller should do about a gap.
#[derive(Debug, PartialEq, Eq)]
pub enum GapVerdict {
    /// Seek back and read again.
    Seek,
    /// Seek back, but the broker has answered past this offset `times` times in a row:
    /// warn (when `warn`) and slow down before the next fetch.
    Stuck { times: u32, warn: bool },
}

impl GapWatch {
    /// The broker answered with `got` where `expected` comes next.
    pub fn gap(&mut self, expected: i64, got: i64) -> GapVerdict {
        debug_assert!(got > expected);
        let times = match self.at {
            Some((at, n)) if at == expected => n + 1,
            _ => 1,
        };
        self.at = Some((expected, times));
        if times < REPORT_AFTER {
            return GapVerdict::Seek;
        }
        let warn = self.warned.is_none_or(|w| w.elapsed() >= WARN_EVERY);
        if warn {
            self.warned = Some(Instant::now());
        }
        GapVerdict::Stuck { times, warn }
    }

    /// The expected message arrived: the partition moves again.
    pub fn progress(&mut self) {
        self.at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_that_keeps_skipping_is_reported_once_and_progress_clears_it() {
        let mut w = GapWatch::default();
        assert_eq!(w.gap(100, 120), GapVerdict::Seek);
        assert_eq!(w.gap(100, 120), GapVerdict::Seek);
        assert_eq!(
            w.gap(100, 120),
            GapVerdict::Stuck {
                times: 3,
                warn: true
            }
        );
        assert_eq!(
            w.gap(100, 125),
            GapVerdict::Stuck {
                times: 4,
                warn: false
            },
            "warned at most every 30 s"
        );
        // A gap at another offset starts counting again.
        assert_eq!(w.gap(130, 140), GapVerdict::Seek);
        w.progress();
        assert_eq!(w.gap(130, 140), GapVerdict::Seek);
    }
}
