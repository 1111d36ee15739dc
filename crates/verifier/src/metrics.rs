//! The verifier's and the checksum's Prometheus metrics (names start with `concord_`).

use concord_control::ControlStore;
use prometheus::{
    register_gauge, register_int_counter_vec, register_int_gauge, register_int_gauge_vec, Gauge,
    IntCounterVec, IntGauge, IntGaugeVec,
};
use std::sync::LazyLock;
use std::time::Duration;

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

pub static MISMATCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_mismatches_detected_total",
        "Rows newly recorded as mismatches after the source confirmed them, by kind (missing, \
         extra, differs); a row confirmed again updates its open record and is not counted again",
        &["table", "kind"]
    )
    .expect("metric registers once")
});

pub static SCHEMA_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_verifier_schema_retries_total",
        "Verifier and checksum work retried because a server no longer had a column or table \
         it named (a DDL reached that side); the side's column set was read again",
        &["table", "side"]
    )
    .expect("metric registers once")
});

pub static OPEN_MISMATCHES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "concord_open_mismatches",
        "Open mismatch records in the control store, by table and state",
        &["table", "state"]
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

pub static RECHECKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_source_rechecks_total",
        "Differences rechecked against the source, by outcome (resolved, superseded, confirmed)",
        &["outcome"]
    )
    .expect("metric registers once")
});

pub static CHECKSUM_ROWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_checksum_rows_total",
        "Rows covered by concord checksum chunks",
        &["table"]
    )
    .expect("metric registers once")
});

pub static CHECKSUM_CHUNKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_checksum_chunks_total",
        "Checksum chunks compared, by result (same, differ)",
        &["table", "result"]
    )
    .expect("metric registers once")
});

pub static CHECKSUM_PROGRESS: LazyLock<prometheus::GaugeVec> = LazyLock::new(|| {
    prometheus::register_gauge_vec!(
        "concord_checksum_progress_ratio",
        "Share of the table's estimated rows the current checksum run has covered",
        &["table"]
    )
    .expect("metric registers once")
});

pub static CHECKSUM_THROTTLED: LazyLock<prometheus::Counter> = LazyLock::new(|| {
    prometheus::register_counter!(
        "concord_checksum_throttled_seconds_total",
        "Time the checksum waited because the source's Threads_running was above \
         checksum.max_threads_running"
    )
    .expect("metric registers once")
});

/// Keeps `concord_open_mismatches` in step with the control store.
pub async fn report_open_mismatches(control: ControlStore, every: Duration) {
    loop {
        match control.open_mismatch_counts().await {
            Ok(counts) => {
                OPEN_MISMATCHES.reset();
                for (table, state, n) in counts {
                    OPEN_MISMATCHES
                        .with_label_values(&[&table.to_string(), &state])
                        .set(n);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not count open mismatches"),
        }
        tokio::time::sleep(every).await;
    }
}
