//! What every concord process exposes about itself: logs (human or JSON) and an HTTP
//! endpoint with `/metrics` (Prometheus text), `/healthz` (the process runs) and `/readyz`
//! (every role of the process is connected and doing its work; when one is not, the
//! answer names it and says why).

mod readiness;
pub mod snapshot;

pub use readiness::{Readiness, RoleHealth};
pub use snapshot::Snapshot;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, TextEncoder};
use std::io::IsTerminal;
use std::net::SocketAddr;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Installs the global tracing subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (metrics.listen): {source}")]
pub struct ServeError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` and serves the endpoints in the background; `/readyz` answers for the
/// roles registered in `ready`.
pub async fn serve(addr: SocketAddr, ready: Readiness) -> Result<SocketAddr, ServeError> {
    // The process's own figures (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
    // open file descriptors…) come with prometheus's default registry (its `process`
    // feature): registering them again only failed as a duplicate and logged a warning at
    // every start.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(ready);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
    Ok(bound)
}

/// `concord_role_ready{role}`: 1 while the role is ready, as `/readyz` says.
static ROLE_READY: std::sync::LazyLock<prometheus::IntGaugeVec> = std::sync::LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "concord_role_ready",
        "1 while the role is connected and doing its work (as /readyz says), 0 otherwise",
        &["role"]
    )
    .expect("metric registers once")
});

/// `concord_role_standby{role}`: 1 while the process waits as the standby of a role that
/// runs once (another process holds its lock).
static ROLE_STANDBY: std::sync::LazyLock<prometheus::IntGaugeVec> =
    std::sync::LazyLock::new(|| {
        prometheus::register_int_gauge_vec!(
            "concord_role_standby",
            "1 while this process waits as the hot standby of the role (another process is \
             the active one), 0 once it is the active one",
            &["role"]
        )
        .expect("metric registers once")
    });

/// Says whether this process is the standby of `role`.
pub fn set_standby(role: &str, standby: bool) {
    ROLE_STANDBY
        .with_label_values(&[role])
        .set(i64::from(standby));
}

async fn metrics(State(ready): State<Readiness>) -> impl IntoResponse {
    // Read at each scrape, so the gauge is never older than the flags.
    ready.each(|role, is_ready| {
        ROLE_READY
            .with_label_values(&[role])
            .set(i64::from(is_ready));
    });
    let mut buf = Vec::new();
    let families = prometheus::gather();
    match TextEncoder::new().encode(&families, &mut buf) {
        Ok(()) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            buf,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            e.to_string().into_bytes(),
        ),
    }
}

async fn readyz(State(ready): State<Readiness>) -> impl IntoResponse {
    match ready.report() {
        None => (StatusCode::OK, "ready\n".to_owned()),
        Some(report) => (StatusCode::SERVICE_UNAVAILABLE, report),
    }
}
