//! The verifier's Prometheus metrics (names start with `concord_`).

use prometheus::{
    register_gauge, register_int_counter_vec, register_int_gauge, Gauge, IntCounterVec, IntGauge,
};
use std::sync::LazyLock;

pub static VERIFIED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_verified_total",
        "Row changes verified, by result: match (target equals the change), resolved (it \
         differed but equals the source's current row), superseded (the row changed again: \
         its later change is verified instead), mismatch",
        &["table", "result"]
    )
    .expect("metric registers once")
});

pub static LAG: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "concord_verifier_lag_seconds",
        "How late the verifier is beyond its delay: now - (source commit time + delay) of the \
         last change it verified; 0 when it is on schedule"
    )
    .expect("metric registers once")
});

pub static PARKED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "concord_verifier_parked_rows",
        "Differing rows held back before a source recheck, waiting for a later change of the \
         same row to be verified instead"
    )
    .expect("metric registers once")
});
