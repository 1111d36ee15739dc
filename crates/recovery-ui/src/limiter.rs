//! Failed logins, counted per user name and address within a sliding window: past the
//! allowance, logins for that pair are refused until the oldest failure leaves the window.
//!
//! Kept in memory, per console process: a replica that restarts forgets, and an attacker
//! spreading attempts over replicas gets each one's allowance — the argon2 cost per try
//! and the log line per failure remain.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Limiter {
    allowed: usize,
    window: Duration,
    failures: Mutex<HashMap<(String, IpAddr), VecDeque<Instant>>>,
}

/// Above this many tracked pairs, stale ones are swept on the next failure.
const SWEEP_ABOVE: usize = 10_000;

impl Limiter {
    pub fn new(allowed: u32, window: Duration) -> Self {
        Self {
            allowed: allowed as usize,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long `user` from `addr` must wait before trying again; `None`: it may try now.
    pub fn wait(&self, user: &str, addr: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut all = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let times = all.get_mut(&(user.to_owned(), addr))?;
        while times.front().is_some_and(|t| now - *t >= self.window) {
            times.pop_front();
        }
        if times.len() < self.allowed {
            return None;
        }
        times.front().map(|oldest| self.window - (now - *oldest))
    }

    /// Counts a failed login of `user` from `addr`.
    pub fn failed(&self, user: &str, addr: IpAddr) {
        let now = Instant::now();
        let mut all = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() > SWEEP_ABOVE {
            all.retain(|_, times| times.back().is_some_and(|t| now - *t < self.window));
        }
        all.entry((user.to_owned(), addr))
            .or_default()
            .push_back(now);
    }

    /// Forgets the failures of `user` from `addr` (after a good login).
    pub fn succeeded(&self, user: &str, addr: IpAddr) {
        let mut all = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        all.remove(&(user.to_owned(), addr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_held_back_after_its_allowance_and_others_are_not() {
        let l = Limiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.wait("ada", a), None);
            l.failed("ada", a);
        }
        let wait = l.wait("ada", a).expect("held back after three failures");
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50));
        assert_eq!(l.wait("ada", b), None, "another address may try");
        assert_eq!(l.wait("bob", a), None, "another user may try");
        l.succeeded("ada", a);
        assert_eq!(l.wait("ada", a), None);
    }

    #[test]
    fn failures_leave_the_window() {
        let l = Limiter::new(1, Duration::from_millis(30));
        let a: IpAddr = "::1".parse().unwrap();
        l.failed("ada", a);
        assert!(l.wait("ada", a).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(l.wait("ada", a), None);
    }
}
