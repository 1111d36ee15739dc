//! The singleton guard of the roles that must never run twice: the capture of a topic and
//! the direct-mode replicator of a `replicator.name` (alone or in `concord run`). The
//! process holds a named lock ([`concord_lease`]) on the control store's MariaDB — or on
//! the target when the control store is a SQLite file — before the role starts, and stops
//! the role the moment it loses it (the server went away, or the lock is another's), then
//! waits to hold it again. A second process waits as a hot standby, saying so on `/readyz`
//! and in `concord_role_standby`.

use anyhow::Context;
use concord_config::{Config, TransportKind};
use concord_lease::{acquire, lock_name, Lease, Waiting};
use concord_telemetry::RoleHealth;
use std::time::Duration;

/// What must run once, for `role` under `config` (`None`: the role may run many times).
pub fn singleton(config: &Config, role: &str) -> Option<String> {
    match (role, config.transport.kind) {
        // The server id names the source (it is unique among the source's replicas), so
        // captures of different sources to topics of the same name do not wait for each
        // other when their locks share a server.
        ("capture", _) => config
            .kafka
            .as_ref()
            .map(|k| lock_name(&format!("capture:{}:{}", config.source.server_id, k.topic))),
        ("replicator", TransportKind::Direct) => {
            Some(lock_name(&format!("replicator:{}", config.replicator.name)))
        }
        _ => None,
    }
}

/// The server that keeps the locks — the control store's MariaDB, else the target — and
/// how to name it.
fn lock_server(config: &Config) -> anyhow::Result<(mysql_async::Opts, String)> {
    Ok(
        match concord_control::mysql_url(config.control.url.expose()) {
            Some(url) => (
                mysql_async::Opts::from_url(&url).context("control.url")?,
                format!("the control store {}", config.control.url.redacted()),
            ),
            None => (
                config.target.opts(),
                format!("the target {}", config.target.url.redacted()),
            ),
        },
    )
}

/// Takes `name` if no other process holds it; `None` when one does.
pub async fn try_hold(config: &Config, name: &str) -> anyhow::Result<Option<Lease>> {
    let (opts, server) = lock_server(config)?;
    concord_lease::try_acquire(opts, name)
        .await
        .with_context(|| format!("asking {server} for lock {name}"))
}

/// Waits until this process holds `name`, reporting the wait on `health`.
pub async fn hold(config: &Config, name: &str, health: &RoleHealth) -> anyhow::Result<Lease> {
    let (opts, server) = lock_server(config)?;
    let role = health.name();
    concord_telemetry::set_standby(role, true);
    tracing::info!(lock = name, %server, "waiting for the lock that makes this process the active {role}");
    let mut last = None;
    let lease = acquire(opts, name, |w| {
        let why = match &w {
            Waiting::HeldBy(id) => format!(
                "standby: another process is the active {role} (lock {name} on {server} held by \
                 connection {id})"
            ),
            Waiting::Unreachable(e) => {
                format!("standby: {server} (which keeps lock {name}) is unreachable: {e}")
            }
        };
        if last.as_ref() != Some(&w) {
            tracing::info!(lock = name, "{why}");
            last = Some(w);
        }
        health.set_down(why, Duration::ZERO);
    })
    .await?;
    concord_telemetry::set_standby(role, false);
    Ok(lease)
}
