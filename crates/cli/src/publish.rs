//! Every long-running concord process says in the control store, every few seconds, that
//! it is alive and what it has counted (applied and verified per table, its lags): the
//! console's overview reads these, so a console served by `concord recovery` shows the
//! rates of replicators and verifiers running in other processes or pods.
//!
//! Invariant: publishing never holds a role back — a beat that cannot be stored is logged
//! and the next one tried; the overview shows the process as silent meanwhile.

use concord_config::Config;
use concord_control::ControlStore;
use concord_telemetry::Snapshot;
use std::time::Duration;

/// How often a process publishes (the overview's rates are averaged over a minute).
const EVERY: Duration = Duration::from_secs(5);

/// Publishes this process's snapshot as `role` (e.g. `concord run`) until it ends.
pub async fn forever(config: Config, role: &'static str) {
    let url = &config.control.url;
    let store = loop {
        match ControlStore::connect(url.expose(), &url.redacted()).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "the process's heartbeat waits for the control store");
                tokio::time::sleep(EVERY).await;
            }
        }
    };
    let name = concord_control::process_name();
    loop {
        let snapshot = Snapshot::gather();
        match serde_json::to_string(&snapshot) {
            Ok(json) => {
                if let Err(e) = store.publish(role, &name, &snapshot.summary(), &json).await {
                    tracing::warn!(error = %e, "the process's heartbeat was not stored");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the process's counters could not be written as JSON")
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}
