//! Recovery's metrics (names start with `concord_`); the gauges of open records are
//! `concord_compare::metrics`', kept by whichever role runs.

use prometheus::{register_int_counter_vec, register_int_gauge, IntCounterVec, IntGauge};
use std::sync::LazyLock;

pub static REPAIRS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_repairs_total",
        "Guarded repairs by table, mode (auto, manual, batch) and outcome: repaired (written \
         and verified), superseded (the target row moved first; nothing written), refused \
         (not allowed to write: auto-repair off or the circuit open), failed",
        &["table", "mode", "outcome"]
    )
    .expect("metric registers once")
});

pub static CIRCUIT_OPEN: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "concord_recovery_circuit_open",
        "1 while automatic repair is stopped because too many rows differed at once; \
         `concord recovery resume` closes it"
    )
    .expect("metric registers once")
});

pub static REPLICATOR_LAG: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    prometheus::register_gauge!(
        "concord_recovery_replicator_lag_seconds",
        "The replicator's lag as recovery last measured it (how long ago the source was at \
         the oldest position the replicator has not applied); above recovery.grace nothing \
         is repaired"
    )
    .expect("metric registers once")
});

pub static BATCH_ROWS: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "concord_batch_rows",
        "The running batch recovery job's rows by count: checked, differing, repaired, \
         superseded, failed",
        &["table", "count"]
    )
    .expect("metric registers once")
});

pub static GRACE: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    prometheus::register_gauge!(
        "concord_recovery_grace_seconds",
        "recovery.grace: how long a detected mismatch waits before recovery looks at it \
         (the alert on mismatches open too long compares with it)"
    )
    .expect("metric registers once")
});
