//! The checksum's metrics (names start with `concord_checksum_`).

use prometheus::{register_int_counter_vec, IntCounterVec};
use std::sync::LazyLock;

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
