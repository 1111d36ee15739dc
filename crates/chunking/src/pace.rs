//! How fast a walk goes: chunk sizes that track a time budget, and waiting while the
//! source is busy.
//!
//! Invariant: a chunk never grows more than fourfold over the previous one, so a first
//! chunk that ran from a warm cache cannot make the next one hold the source for many
//! times the budget.

use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use std::time::{Duration, Instant};

pub const MIN_ROWS: u64 = 100;
/// Bounds the rows of one chunk.
pub const MAX_ROWS: u64 = 250_000;

/// Sizes chunks so that reading one takes about `budget` on the source.
#[derive(Debug)]
pub struct ChunkSizer {
    rows: u64,
    budget: Duration,
    /// Smoothed rows per second, once a chunk has been timed.
    rate: Option<f64>,
}

impl ChunkSizer {
    pub fn new(first: u64, budget: Duration) -> Self {
        Self {
            rows: first.clamp(MIN_ROWS, MAX_ROWS),
            budget,
            rate: None,
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Learns from a chunk of `rows` rows that took `took`; sets the next size.
    pub fn observe(&mut self, rows: u64, took: Duration) {
        if rows == 0 {
            return;
        }
        let seen = rows as f64 / took.as_secs_f64().max(0.001);
        // Slower: believed at once (the source is busier, back off now). Faster: believed
        // gradually, so one chunk that happened to be cached does not inflate the next.
        let rate = match self.rate {
            Some(r) if seen > r => 0.75 * r + 0.25 * seen,
            _ => seen,
        };
        self.rate = Some(rate);
        let want = (rate * self.budget.as_secs_f64()) as u64;
        self.rows = want.clamp(MIN_ROWS, (self.rows * 4).min(MAX_ROWS));
    }
}

/// Waits while the source's `Threads_running` is above `max`; returns how long it waited.
/// `who` names the walk in the log line that says it waits.
pub async fn wait_until_quiet(
    source: &Pool,
    max: u64,
    who: &str,
) -> Result<Duration, mysql_async::Error> {
    let started = Instant::now();
    let mut logged: Option<Instant> = None;
    loop {
        let mut conn = source.get_conn().await?;
        let row: Option<(String, String)> = conn
            .query_first("SHOW GLOBAL STATUS LIKE 'Threads_running'")
            .await?;
        drop(conn);
        let running: u64 = row.and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        if running <= max {
            return Ok(started.elapsed());
        }
        if logged.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
            tracing::info!(threads_running = running, max, "source busy; {who} waiting");
            logged = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_grow_toward_the_budget_at_most_fourfold_and_shrink_at_once() {
        let mut s = ChunkSizer::new(1000, Duration::from_millis(500));
        // 1000 rows in 5 ms: 200k rows/s, 100k rows per budget; grows 4x per step.
        s.observe(1000, Duration::from_millis(5));
        assert_eq!(s.rows(), 4000);
        s.observe(4000, Duration::from_millis(20));
        assert_eq!(s.rows(), 16_000);
        // A slow chunk: the smoothed rate drops and the size follows down at once.
        s.observe(16_000, Duration::from_secs(8));
        let slow = s.rows();
        assert_eq!(slow, 1000, "2000 rows/s for 0.5 s");
        // Faster again: grows back gradually, and never below the floor.
        s.observe(1000, Duration::from_millis(50));
        assert!(s.rows() > 1000 && s.rows() < 4000, "{}", s.rows());
        for _ in 0..3 {
            s.observe(100, Duration::from_secs(60));
        }
        assert_eq!(s.rows(), MIN_ROWS);
    }
}
