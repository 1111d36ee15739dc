//! Rates for the overview: per table, changes applied and verified per second, and the
//! lags — from what every live concord process publishes in the control store with its
//! heartbeat, so a console in `concord recovery` shows replicators and verifiers running
//! in other processes or pods as well as those beside it in `concord run`.
//!
//! Invariant: a rate is each process's own increase over the last minute, summed over the
//! processes — a process that restarts (its counters start again from zero under a new
//! name) or stops never makes a rate negative or counts twice.

use concord_control::{ControlError, ControlStore};
use concord_telemetry::Snapshot;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use concord_telemetry::snapshot::{APPLIED, REPLICATION_LAG, VERIFIED, VERIFIER_LAG};

/// How often the console samples what was published.
const EVERY: Duration = Duration::from_secs(5);
/// The window a rate is taken over.
const OVER: Duration = Duration::from_secs(60);
/// A process whose last beat is older than this has stopped (processes beat every 5 s).
const LIVE: Duration = Duration::from_secs(30);

/// Each live process's newest snapshot: process → (published at, ms; snapshot).
type Published = HashMap<String, (i64, Snapshot)>;

#[derive(Default)]
pub struct Rates {
    samples: Mutex<VecDeque<(Instant, Published)>>,
}

impl Rates {
    /// Reads what the live processes published and keeps it as the newest sample.
    pub async fn sample(&self, store: &ControlStore) -> Result<(), ControlError> {
        let since = crate::auth::now_ms() - LIVE.as_millis() as i64;
        let mut published = Published::new();
        for (name, at, json) in store.published_counters(since).await? {
            match serde_json::from_str::<Snapshot>(&json) {
                Ok(s) => {
                    published.entry(name).or_insert((at, s));
                }
                Err(e) => {
                    tracing::warn!(process = %name, error = %e, "published counters unreadable")
                }
            }
        }
        self.push(Instant::now(), published);
        Ok(())
    }

    /// Samples unless the newest sample is recent (a page asks before it reads rates).
    pub async fn refresh(&self, store: &ControlStore) -> Result<(), ControlError> {
        let fresh = {
            let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
            s.back().is_some_and(|(t, _)| t.elapsed() < EVERY)
        };
        if fresh {
            return Ok(());
        }
        self.sample(store).await
    }

    fn push(&self, now: Instant, published: Published) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.push_back((now, published));
        while s.len() > 2 && s.front().is_some_and(|(t, _)| now - *t > OVER) {
            s.pop_front();
        }
    }

    /// `metric` per second for `table`: each live process's increase between the oldest
    /// and the newest sample that have it, summed. `None` when no live process counts
    /// `metric` (none runs the role behind it).
    pub fn per_second(&self, metric: &str, table: &str) -> Option<f64> {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let (first, last) = (&s.front()?.1, &s.back()?.1);
        let value = |snap: &Snapshot| -> Option<f64> {
            snap.counters
                .get(metric)
                .map(|t| t.get(table).copied().unwrap_or(0.0))
        };
        let mut total = None;
        for (process, (t1, snap1)) in last {
            let Some(v1) = value(snap1) else { continue };
            let sum = total.get_or_insert(0.0);
            let Some((t0, snap0)) = first.get(process) else {
                continue;
            };
            let secs = (t1 - t0) as f64 / 1000.0;
            if secs > 0.0 {
                *sum += (v1 - value(snap0).unwrap_or(0.0)).max(0.0) / secs;
            }
        }
        total
    }

    /// Whether a live process counts `metric` at all.
    pub fn has(&self, metric: &str) -> bool {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.back()
            .is_some_and(|(_, p)| p.values().any(|(_, s)| s.counters.contains_key(metric)))
    }

    /// Gauge `name` as the live processes last published it, the largest when several do
    /// (the lag that matters is the worst).
    pub fn gauge(&self, name: &str) -> Option<f64> {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.back()?
            .1
            .values()
            .filter_map(|(_, s)| s.gauges.get(name).copied())
            .reduce(f64::max)
    }
}

pub async fn sample_forever(state: crate::AppState) {
    loop {
        if let Err(e) = state.0.rates.sample(state.store()).await {
            tracing::warn!(error = %e, "published counters not read");
        }
        tokio::time::sleep(EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(applied: f64) -> Snapshot {
        let mut s = Snapshot::default();
        s.counters
            .entry(APPLIED.into())
            .or_default()
            .insert("shop.t".into(), applied);
        s.gauges.insert(REPLICATION_LAG.into(), applied / 100.0);
        s
    }

    fn published(rows: &[(&str, i64, f64)]) -> Published {
        rows.iter()
            .map(|(p, at, v)| (p.to_string(), (*at, snap(*v))))
            .collect()
    }

    #[test]
    fn rates_are_each_process_own_increase_summed() {
        let r = Rates::default();
        let t = Instant::now();
        r.push(t, published(&[("a:1", 0, 100.0), ("b:2", 0, 50.0)]));
        // a counted 200 more in 10 s; b restarted as b:3 (from zero) and b:2 stopped.
        r.push(
            t + Duration::from_secs(10),
            published(&[("a:1", 10_000, 300.0), ("b:3", 10_000, 5.0)]),
        );
        assert_eq!(r.per_second(APPLIED, "shop.t"), Some(20.0));
        assert_eq!(
            r.per_second(APPLIED, "shop.u"),
            Some(0.0),
            "counted, not here"
        );
        assert_eq!(r.per_second(VERIFIED, "shop.t"), None, "nobody verifies");
        assert!(r.has(APPLIED) && !r.has(VERIFIED));
        assert_eq!(r.gauge(REPLICATION_LAG), Some(3.0), "the worst lag");
        assert_eq!(r.gauge(VERIFIER_LAG), None);
    }

    #[test]
    fn a_counter_that_went_down_counts_nothing() {
        let r = Rates::default();
        let t = Instant::now();
        r.push(t, published(&[("a:1", 0, 100.0)]));
        r.push(
            t + Duration::from_secs(5),
            published(&[("a:1", 5_000, 40.0)]),
        );
        assert_eq!(r.per_second(APPLIED, "shop.t"), Some(0.0));
    }
}
