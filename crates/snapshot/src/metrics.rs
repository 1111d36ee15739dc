//! The snapshot's metrics (names start with `concord_`).

use prometheus::{register_int_counter_vec, register_int_gauge_vec, IntCounterVec, IntGaugeVec};
use std::sync::LazyLock;

pub static ROWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_snapshot_rows_total",
        "Rows a snapshot wrote (or published) to the target, by source table",
        &["table"]
    )
    .expect("metric registers once")
});

pub static DELETED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_snapshot_deleted_rows_total",
        "Target rows a snapshot deleted because the source did not have them, by source table",
        &["table"]
    )
    .expect("metric registers once")
});

pub static REMAINING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "concord_snapshot_remaining_rows",
        "Rows a running snapshot job has still to copy (from the source's estimate), by table",
        &["table"]
    )
    .expect("metric registers once")
});

pub static SPOILED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_snapshot_chunks_reread_total",
        "Chunks read again because a DDL, a TRUNCATE or an unreadable change of their table \
         came between their read and their write",
        &["table"]
    )
    .expect("metric registers once")
});
