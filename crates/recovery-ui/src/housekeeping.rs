//! What the console tidies in the control store once a minute: sessions past their idle
//! timeout, and bulk jobs whose console stopped while running them.
//!
//! Invariant: nothing here touches a mismatch record — an interrupted bulk job only stops
//! claiming to run; the records it had not reached stay as they were.

use crate::auth::now_ms;
use crate::AppState;
use std::time::Duration;

/// How long a running bulk job may go without saving progress before it counts as
/// interrupted. A job saves after every chunk of records (seconds each, even on a slow
/// target), so only a stopped console stays silent this long.
const STALLED_AFTER: Duration = Duration::from_secs(300);

/// Ends idle sessions (a session is also ended when it is used after its timeout) and
/// stalled bulk jobs, every minute, for as long as the console runs.
pub async fn forever(state: AppState) {
    let idle = state.console().idle_timeout.as_millis() as i64;
    loop {
        let now = now_ms();
        if let Err(e) = state.store().end_idle_sessions(now - idle).await {
            tracing::warn!(error = %e, "idle console sessions not ended");
        }
        match state
            .store()
            .end_stalled_bulk_jobs(now - STALLED_AFTER.as_millis() as i64)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                jobs = n,
                "bulk jobs whose console stopped marked interrupted"
            ),
            Err(e) => tracing::warn!(error = %e, "stalled bulk jobs not looked at"),
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}
