//! Keeps a role running: a role whose run stops with an error is logged (the whole cause
//! chain, which names the table or position where the role knows it), counted in
//! `concord_role_restarts_total{role}`, marked down in `/readyz` and started again after a
//! backoff — while the other roles of the process go on.
//!
//! Invariant: only an error no restart can get past (a config error, a source setting, an
//! event this version cannot read) leaves [`supervise`]; everything else is retried, forever.

use concord_telemetry::RoleHealth;
use prometheus::{register_int_counter_vec, IntCounterVec};
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tracing::Instrument;

static RESTARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "concord_role_restarts_total",
        "Times a role stopped with an error and was started again",
        &["role"]
    )
    .expect("metric registers once")
});

/// The first wait before a restart; it doubles while the role keeps failing soon after
/// each start, up to the caller's cap.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// A run that lasted this long was working: its failure starts the backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// How long a restarted role stays reported down after its restart, even once it says it
/// is ready: one that fails again within this time never looks ready in between.
const PROBATION: Duration = Duration::from_secs(10);

/// What the supervisor needs to know of a role's error.
pub trait RoleError: std::error::Error + 'static {
    /// True when a restart would meet the same error: the process stops with it.
    fn is_fatal(&self) -> bool;
}

impl RoleError for concord_replicator::ReplicatorError {
    fn is_fatal(&self) -> bool {
        concord_replicator::ReplicatorError::is_fatal(self)
    }
}

impl RoleError for concord_verifier::VerifierError {
    fn is_fatal(&self) -> bool {
        concord_verifier::VerifierError::is_fatal(self)
    }
}

impl RoleError for concord_recovery::RecoveryError {
    fn is_fatal(&self) -> bool {
        matches!(self, concord_recovery::RecoveryError::Config(_))
    }
}

impl RoleError for concord_capture::CaptureError {
    fn is_fatal(&self) -> bool {
        concord_capture::CaptureError::is_fatal(self)
    }
}

/// Runs `attempt` (given the role's readiness flag) again and again until it fails with a
/// fatal error, which is returned. A role that ends without an error is started again too:
/// roles run until stopped, so an end is unexpected.
pub async fn supervise<E, F, Fut>(health: RoleHealth, max_backoff: Duration, mut attempt: F) -> E
where
    E: RoleError,
    F: FnMut(Arc<AtomicBool>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let role = health.name();
    // Exported at 0 from the start, so an alert's increase() sees the first restart.
    RESTARTS.with_label_values(&[role]);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = tokio::time::Instant::now();
        // Every line the role logs (and the tasks it starts, which take its span along)
        // says which role it came from: `concord run` runs three.
        let outcome = attempt(health.flag())
            .instrument(tracing::info_span!("role", role))
            .await;
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        let why = match outcome {
            Err(e) if e.is_fatal() => return e,
            Err(e) => chain(&e),
            Ok(()) => "its run ended".to_owned(),
        };
        tracing::error!(role, error = %why, restart_in = ?backoff, "{role} stopped; restarting it");
        RESTARTS.with_label_values(&[role]).inc();
        health.set_down(why, backoff + PROBATION);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max_backoff.max(FIRST_BACKOFF));
    }
}

/// The error and each of its causes, joined as `anyhow` shows them.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // Some errors repeat their cause in their own message.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_telemetry::Readiness;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug, thiserror::Error)]
    #[error("boom {0}")]
    struct Boom(u32, bool);

    impl RoleError for Boom {
        fn is_fatal(&self) -> bool {
            self.1
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] Boom);

    #[test]
    fn the_chain_names_each_cause_once() {
        let e = Outer(Boom(1, false));
        assert_eq!(chain(&e), "outer: boom 1");
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped")]
        struct Wrapped(#[source] Outer);
        assert_eq!(chain(&Wrapped(e)), "wrapped: outer: boom 1");
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_until_a_fatal_error() {
        let readiness = Readiness::new();
        let health = readiness.role("test");
        let runs = AtomicU32::new(0);
        let e = supervise(health, Duration::from_secs(4), |_ready| async {
            let n = runs.fetch_add(1, Ordering::Relaxed);
            Err(Boom(n, n == 3))
        })
        .await;
        assert_eq!(e.0, 3, "the fourth run's fatal error ends it");
        assert_eq!(RESTARTS.with_label_values(&["test"]).get(), 3);
        assert_eq!(
            readiness.report().as_deref(),
            Some("test: down: boom 2\n"),
            "the last retried error is the reason shown"
        );
    }
}
