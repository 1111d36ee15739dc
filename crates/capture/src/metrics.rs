use prometheus::{
    register_gauge, register_int_counter_vec, register_int_gauge, Gauge, IntCounterVec, IntGauge,
};
use std::sync::LazyLock;

pub static PUBLISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_capture_published_total",
        "Change envelopes acknowledged by the broker, by topic",
        &["topic"]
    )
    .expect("metric registers once")
});

pub static ACKED_POSITION: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "concord_capture_position",
        "Byte offset in its binlog file of the last transaction fully acknowledged by the broker"
    )
    .expect("metric registers once")
});

pub static LAG: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "concord_capture_lag_seconds",
        "Seconds between the source commit of the last fully acknowledged transaction and its acknowledgement; 0 when caught up"
    )
    .expect("metric registers once")
});

pub static UNPUBLISHED: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "concord_capture_unpublished_seconds",
        "Seconds since the capture last had everything it read acknowledged by the broker \
         (0 when caught up): grows while the source writes and nothing gets published"
    )
    .expect("metric registers once")
});
