//! The replicator's Prometheus metrics (names start with `concord_`).

use prometheus::{
    register_gauge, register_histogram, register_int_counter_vec, Gauge, Histogram, IntCounterVec,
};
use std::sync::LazyLock;

pub static LAG: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "concord_replication_lag_seconds",
        "Seconds between the source commit of the last applied transaction and its apply; 0 when caught up"
    )
    .expect("metric registers once")
});

pub static APPLIED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_applied_events_total",
        "Source row changes applied to the target",
        &["table", "op"]
    )
    .expect("metric registers once")
});

pub static FAILED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_failed_events_total",
        "Source row changes recorded as failed events instead of applied",
        &["table", "reason"]
    )
    .expect("metric registers once")
});

pub static BATCH_ROWS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "concord_apply_batch_rows",
        "Source row changes per target transaction",
        vec![1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0]
    )
    .expect("metric registers once")
});

pub static BATCH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "concord_apply_batch_seconds",
        "Time to apply and commit one target transaction",
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]
    )
    .expect("metric registers once")
});

pub static RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_apply_retries_total",
        "Batches retried, by cause (transient target error, schema moved, control store)",
        &["cause"]
    )
    .expect("metric registers once")
});

pub static DEAD_LETTERED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "concord_dead_lettered_total",
        "Kafka messages sent to the dead-letter topic"
    )
    .expect("metric registers once")
});

pub static CONSUMER_LAG: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "concord_kafka_consumer_lag",
        "Messages between a partition's high watermark and this replicator's position",
        &["topic", "partition"]
    )
    .expect("metric registers once")
});

pub static IN_FLIGHT: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "concord_kafka_in_flight_rows",
        "Row changes read from Kafka and not yet committed to the target"
    )
    .expect("metric registers once")
});

pub static OFFSET_GAPS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "concord_kafka_offset_gaps_total",
        "Times a partition's broker answered again past the offset the target expects next, \
         after the replicator had sought back to it (it keeps seeking; it never skips)",
        &["topic", "partition"]
    )
    .expect("metric registers once")
});

pub static TRUNCATES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_truncates_total",
        "Source TRUNCATEs of replicated tables: applied to the target, or recorded (replicator.truncate = \"record\")",
        &["table", "action"]
    )
    .expect("metric registers once")
});

pub static MISSING_TABLE_ROWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_missing_table_rows_total",
        "Source rows not written because the target has no table for them (one record per table in the control store)",
        &["table"]
    )
    .expect("metric registers once")
});
