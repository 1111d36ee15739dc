//! Metrics of comparing (names start with `concord_`): the source rechecks, the mismatches
//! they confirm, work retried because a schema moved — whichever role compared — and the
//! gauges of open records, kept current by every role that reads them.

use concord_control::ControlStore;
use prometheus::{
    register_gauge_vec, register_int_counter_vec, register_int_gauge_vec, GaugeVec, IntCounterVec,
    IntGaugeVec,
};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

pub static RECHECKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_source_rechecks_total",
        "Differences rechecked against the source, by outcome (resolved, superseded, confirmed)",
        &["outcome"]
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

pub static OLDEST_OPEN: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "concord_oldest_open_mismatch_seconds",
        "Age of the oldest open mismatch record of each table (first seen to now)",
        &["table"]
    )
    .expect("metric registers once")
});

pub static FAILED_OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "concord_failed_events_open",
        "Failed events not yet retried, repaired or ignored, by table",
        &["table"]
    )
    .expect("metric registers once")
});

/// Keeps the gauges of open records in step with the control store, every `every`.
pub async fn report_open_records(control: ControlStore, every: Duration) {
    loop {
        if let Err(e) = count_open_records(&control).await {
            tracing::warn!(error = %e, "could not count open records");
        }
        tokio::time::sleep(every).await;
    }
}

async fn count_open_records(control: &ControlStore) -> Result<(), concord_control::ControlError> {
    let counts = control.open_mismatch_counts().await?;
    let oldest = control.oldest_open_mismatches().await?;
    let failed = control.open_failed_counts().await?;
    OPEN_MISMATCHES.reset();
    for (table, state, n) in counts {
        OPEN_MISMATCHES
            .with_label_values(&[&table.to_string(), &state])
            .set(n);
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    OLDEST_OPEN.reset();
    for (table, first_seen_ms) in oldest {
        OLDEST_OPEN
            .with_label_values(&[&table.to_string()])
            .set((now_ms - first_seen_ms).max(0) as f64 / 1000.0);
    }
    FAILED_OPEN.reset();
    for (table, n) in failed {
        FAILED_OPEN.with_label_values(&[&table.to_string()]).set(n);
    }
    Ok(())
}
