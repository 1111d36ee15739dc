//! Harness for concord's end-to-end tests: real source and target servers (started by
//! `scripts/services.sh`), the real `concord` binary as a child process, and helpers to
//! compare what the two databases hold.
//!
//! Every test works in its own freshly created schema with its own replicator name and
//! server id, so tests run in parallel against the same two servers without interfering.

pub mod broker;
pub mod charsets;
pub mod concord;
pub mod console;
pub mod db;
pub mod pipeline;
pub mod proxy;
pub mod race;
pub mod server;
pub mod writer;

pub use concord::{Concord, ConcordConfig};
pub use db::{Servers, TestDb};

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some`, or fails the test after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
