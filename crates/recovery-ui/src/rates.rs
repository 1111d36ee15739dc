//! Rates for the overview: per table, changes applied and verified per second, from this
//! process's own counters (`concord run` runs the replicator and the verifier beside the
//! console), sampled every few seconds and compared over the last minute. A console in a
//! process without those roles shows no rate rather than a wrong one.

use crate::AppState;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_secs(5);
const OVER: Duration = Duration::from_secs(60);

/// The counters sampled, summed per `table` label.
pub const APPLIED: &str = "concord_applied_events_total";
pub const VERIFIED: &str = "concord_verified_total";

/// Counter values by (metric, table).
type Counters = HashMap<(String, String), f64>;

#[derive(Default)]
pub struct Rates {
    samples: Mutex<VecDeque<(Instant, Counters)>>,
}

/// This process's counters of `names`, summed per (metric, table).
fn counters(names: &[&str]) -> Counters {
    let mut out = HashMap::new();
    for family in prometheus::gather() {
        if !names.contains(&family.name()) {
            continue;
        }
        for m in family.get_metric() {
            let table = m
                .get_label()
                .iter()
                .find(|l| l.name() == "table")
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            *out.entry((family.name().to_owned(), table)).or_default() +=
                m.get_counter().get_value();
        }
    }
    out
}

/// A gauge of this process (no labels), if it has it.
pub fn gauge(name: &str) -> Option<f64> {
    prometheus::gather()
        .into_iter()
        .find(|f| f.name() == name)
        .and_then(|f| f.get_metric().first().map(|m| m.get_gauge().get_value()))
}

impl Rates {
    pub fn sample(&self) {
        let now = Instant::now();
        let values = counters(&[APPLIED, VERIFIED]);
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.push_back((now, values));
        while s.len() > 2 && s.front().is_some_and(|(t, _)| now - *t > OVER) {
            s.pop_front();
        }
    }

    /// `metric` per second for `table` over the samples kept; `None` before two samples or
    /// when this process has no such counter.
    pub fn per_second(&self, metric: &str, table: &str) -> Option<f64> {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let ((t0, first), (t1, last)) = (s.front()?, s.back()?);
        let key = (metric.to_owned(), table.to_owned());
        let end = *last.get(&key)?;
        let start = first.get(&key).copied().unwrap_or(0.0);
        let secs = (*t1 - *t0).as_secs_f64();
        (secs > 0.0).then(|| (end - start).max(0.0) / secs)
    }

    /// Whether this process counts `metric` at all (it runs the role behind it).
    pub fn has(&self, metric: &str) -> bool {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.back()
            .is_some_and(|(_, v)| v.keys().any(|(m, _)| m == metric))
    }
}

pub async fn sample_forever(state: AppState) {
    loop {
        state.0.rates.sample();
        tokio::time::sleep(EVERY).await;
    }
}
