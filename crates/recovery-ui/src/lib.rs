//! The web console: operators see every table's health, read a mismatch side by side and
//! repair, recheck or ignore it with a button — every action through the recovery engine
//! (`concord_recovery`), so a click is exactly what `concord repair` would do, guarded the
//! same way and audited with the person's name.
//!
//! Server-rendered HTML (askama, escaping on everywhere; no data is ever marked safe), one
//! small script for selecting rows, no front-end build. Served by `concord run` and
//! `concord recovery` when `[console]` is configured.
//!
//! Invariants:
//! - every request but the login page and the stylesheet is made by a known user
//!   ([`auth`]); every state-changing request is a POST that carries the session's CSRF
//!   token and comes from the console's own origin ([`guard`]);
//! - a viewer changes nothing: every action checks the user's role first.

pub mod auth;
mod bulk;
mod error;
mod guard;
mod housekeeping;
mod limiter;
mod pages;
mod rates;
mod view;

pub use error::PageError;

use axum::routing::{get, post};
use axum::Router;
use concord_config::{Config, ConsoleConfig};
use concord_control::ControlStore;
use concord_recovery::Recovery;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::Instrument;

/// The span every console line is logged in, requests and the tasks they start alike, so
/// that JSON logs name the console as the role they came from.
pub fn console_span() -> tracing::Span {
    tracing::info_span!("role", role = "console")
}

/// How long the list's counts per state are reused (the page says they may be this old).
pub const COUNTS_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    /// The whole config: a checksum started from the console runs with it.
    config: Arc<Config>,
    console: ConsoleConfig,
    recovery: Arc<Recovery>,
    proxies: Vec<ipnet::IpNet>,
    limiter: limiter::Limiter,
    rates: rates::Rates,
    tables: pages::overview::TableList,
    /// The list's counts per state, by filter, for a few seconds: counting a filter over
    /// 100,000 records costs more than the page itself, and twenty people (or one
    /// reloading) ask for the same counts again and again.
    counts: moka::future::Cache<String, std::sync::Arc<Vec<(String, i64)>>>,
}

impl AppState {
    /// The console's state for `config` (which must have a `[console]` section).
    pub fn new(config: Arc<Config>, recovery: Arc<Recovery>) -> Result<Self, ConsoleError> {
        let console = config.console.clone().ok_or(ConsoleError::NotConfigured)?;
        let proxies = console.trusted_proxies();
        let limiter = limiter::Limiter::new(console.login_attempts, console.login_window);
        Ok(Self(Arc::new(Inner {
            config,
            console,
            recovery,
            proxies,
            limiter,
            rates: rates::Rates::default(),
            tables: Default::default(),
            counts: moka::future::Cache::builder()
                .max_capacity(1_000)
                .time_to_live(COUNTS_FOR)
                .build(),
        })))
    }

    fn store(&self) -> &ControlStore {
        &self.0.recovery.compare.control
    }

    fn recovery(&self) -> &Recovery {
        &self.0.recovery
    }

    fn console(&self) -> &ConsoleConfig {
        &self.0.console
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("the config has no [console] section")]
    NotConfigured,
    #[error("cannot listen on {addr} (console.listen)")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Every page and action of the console.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::overview::show))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/mismatches", get(pages::mismatches::list))
        .route("/mismatches/bulk", post(bulk::confirm_or_start))
        .route("/mismatches/{id}", get(pages::mismatches::detail))
        .route("/mismatches/{id}/recheck", post(pages::actions::recheck))
        .route("/mismatches/{id}/repair", post(pages::actions::repair))
        .route("/mismatches/{id}/ignore", post(pages::actions::ignore))
        .route("/bulk/{id}", get(bulk::progress))
        .route("/failed", get(pages::failed::list))
        .route("/failed/{id}", get(pages::failed::detail))
        .route("/failed/{id}/{action}", post(pages::failed::act))
        .route(
            "/batch",
            get(pages::jobs::batch_jobs).post(pages::jobs::start_batch),
        )
        .route("/batch/{id}/cancel", post(pages::jobs::cancel_batch))
        .route(
            "/checksums",
            get(pages::jobs::checksums).post(pages::jobs::start_checksum),
        )
        .route("/circuit/close", post(pages::overview::close_circuit))
        .route("/audit", get(pages::audit::list))
        .route("/audit.csv", get(pages::audit::csv))
        .route("/static/console.css", get(pages::stylesheet))
        .route("/static/console.js", get(pages::script))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| {
                next.run(req).instrument(console_span())
            },
        ))
        .with_state(state)
}

/// Binds `console.listen` and serves the console in the background; returns the address
/// it listens on. Also starts the sampler behind the overview's rates.
pub async fn serve(state: AppState) -> Result<SocketAddr, ConsoleError> {
    let addr = state.console().listen_addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ConsoleError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ConsoleError::Listen { addr, source })?;
    tokio::spawn(rates::sample_forever(state.clone()).instrument(console_span()));
    tokio::spawn(housekeeping::forever(state.clone()).instrument(console_span()));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(
        async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "console stopped");
            }
        }
        .instrument(console_span()),
    );
    console_span().in_scope(|| tracing::info!(%bound, "console listening"));
    Ok(bound)
}
