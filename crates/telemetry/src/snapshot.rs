//! A process's own counters and gauges as plain values, for publishing where other
//! processes read them (the control store, for the console's overview): a console served by
//! `concord recovery` shows the rates of replicators running in other pods.
//!
//! Invariant: a counter is summed over every label but `table`, so a snapshot's figures
//! are what the process counted per table since it started.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The counters the overview turns into rates, and the gauges it shows.
pub const APPLIED: &str = "concord_applied_events_total";
pub const VERIFIED: &str = "concord_verified_total";
pub const REPLICATION_LAG: &str = "concord_replication_lag_seconds";
pub const VERIFIER_LAG: &str = "concord_verifier_lag_seconds";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Counter → table → value (the process's total since it started).
    pub counters: BTreeMap<String, BTreeMap<String, f64>>,
    /// Gauge (without labels) → value.
    pub gauges: BTreeMap<String, f64>,
}

impl Snapshot {
    /// This process's [`APPLIED`] and [`VERIFIED`] counters and its lag gauges, as far as
    /// it has them (a role it does not run registers none).
    pub fn gather() -> Self {
        let mut s = Snapshot::default();
        for family in prometheus::gather() {
            let name = family.name();
            if name == APPLIED || name == VERIFIED {
                let by_table = s.counters.entry(name.to_owned()).or_default();
                for m in family.get_metric() {
                    let table = m
                        .get_label()
                        .iter()
                        .find(|l| l.name() == "table")
                        .map(|l| l.value().to_owned())
                        .unwrap_or_default();
                    *by_table.entry(table).or_default() += m.get_counter().get_value();
                }
            } else if name == REPLICATION_LAG || name == VERIFIER_LAG {
                if let Some(m) = family.get_metric().first() {
                    s.gauges.insert(name.to_owned(), m.get_gauge().get_value());
                }
            }
        }
        s
    }

    /// A line for people: what the process counted in all.
    pub fn summary(&self) -> String {
        let total =
            |name: &str| -> f64 { self.counters.get(name).map_or(0.0, |t| t.values().sum()) };
        let mut parts = Vec::new();
        if self.counters.contains_key(APPLIED) {
            parts.push(format!("{} changes applied", total(APPLIED)));
        }
        if self.counters.contains_key(VERIFIED) {
            parts.push(format!("{} verified", total(VERIFIED)));
        }
        if parts.is_empty() {
            "running".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_per_table_and_round_trip() {
        let c = prometheus::register_int_counter_vec!(APPLIED, "test", &["table", "op"]).unwrap();
        c.with_label_values(&["shop.t", "insert"]).inc_by(3);
        c.with_label_values(&["shop.t", "update"]).inc_by(2);
        c.with_label_values(&["shop.u", "insert"]).inc();
        let s = Snapshot::gather();
        assert_eq!(s.counters[APPLIED]["shop.t"], 5.0);
        assert_eq!(s.counters[APPLIED]["shop.u"], 1.0);
        assert!(!s.counters.contains_key(VERIFIED));
        assert_eq!(s.summary(), "6 changes applied");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), s);
    }
}
