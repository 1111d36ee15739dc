//! The overview: per replicated table, its open mismatches by state, open failed events,
//! changes applied and verified per second and its last checksum; each role's last sign
//! of life; the auto-repair circuit; snapshots copying rows. It refreshes itself.

use super::render;
use crate::auth::User;
use crate::error::PageError;
use crate::rates::{APPLIED, REPLICATION_LAG, VERIFIED, VERIFIER_LAG};
use crate::view::{ago, at, error_chain, Nav};
use crate::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use concord_change::TableName;
use concord_config::ConsoleRole;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the list of replicated tables (read from the source) is reused.
const TABLES_FOR: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct TableLine {
    pub table: String,
    pub detected: i64,
    pub rechecking: i64,
    pub needs_manual: i64,
    pub failed: i64,
    pub applied: String,
    pub verified: String,
    pub checksum: String,
    pub checksum_when: String,
    pub healthy: bool,
}

pub struct Beat {
    pub role: String,
    pub name: String,
    pub at: String,
    pub ago: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    nav: Nav,
    refresh: u32,
    tables: Vec<TableLine>,
    beats: Vec<Beat>,
    circuit_open: bool,
    circuit_note: String,
    replication_lag: String,
    verifier_lag: String,
    problems: Vec<String>,
    can_close: bool,
    /// Snapshot jobs running or waiting, and the ones that ended last.
    snapshots: Vec<super::jobs::SnapshotLine>,
}

fn rate(v: Option<f64>) -> String {
    match v {
        Some(r) if r >= 10.0 => format!("{r:.0}/s"),
        Some(r) => format!("{r:.1}/s"),
        None => "-".into(),
    }
}

/// The replicated tables as last read from the source, and when.
pub type TableList = Mutex<Option<(Instant, Vec<TableName>)>>;

async fn replicated(state: &AppState) -> Result<Vec<TableName>, String> {
    let cached = &state.0.tables;
    if let Some((when, tables)) = cached.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        if when.elapsed() < TABLES_FOR {
            return Ok(tables.clone());
        }
    }
    let config = &state.0.config;
    let tables = concord_checksum::replicated_tables(
        config,
        &config.tables.filter(),
        &state.recovery().compare.source,
    )
    .await
    .map_err(|e| error_chain(&e))?;
    *cached.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), tables.clone()));
    Ok(tables)
}

pub async fn show(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Response, PageError> {
    let store = state.store();
    let mut problems = Vec::new();
    let mut lines: BTreeMap<String, TableLine> = BTreeMap::new();
    match replicated(&state).await {
        Ok(tables) => {
            for t in tables {
                lines.entry(t.to_string()).or_default();
            }
        }
        Err(e) => problems.push(format!("the source's tables could not be listed: {e}")),
    }
    for (t, st, n) in store.open_mismatch_counts().await? {
        let l = lines.entry(t.to_string()).or_default();
        match st.as_str() {
            "detected" => l.detected += n,
            "rechecking" => l.rechecking += n,
            _ => l.needs_manual += n,
        }
    }
    for (t, n) in store.open_failed_counts().await? {
        lines.entry(t.to_string()).or_default().failed += n;
    }
    let mut runs = store.checksum_runs(true, 1000).await?;
    runs.reverse();
    for r in runs {
        // Oldest first, so each table ends with its newest run.
        let l = lines.entry(r.table.to_string()).or_default();
        l.checksum = match r.state.as_str() {
            "running" => format!(
                "running: {} rows, {} differing chunks",
                r.rows, r.chunks_differ
            ),
            "done" if r.mismatches == 0 => format!("equal ({} rows)", r.rows),
            "done" => format!("{} mismatches in {} rows", r.mismatches, r.rows),
            other => format!("{other} after {} rows", r.rows),
        };
        l.checksum_when = ago(r.updated_ms);
    }
    let rates = &state.0.rates;
    if let Err(e) = rates.refresh(store).await {
        problems.push(format!(
            "the processes' published counters could not be read: {e}"
        ));
    }
    let (applies, verifies) = (rates.has(APPLIED), rates.has(VERIFIED));
    for (name, l) in lines.iter_mut() {
        l.table = name.clone();
        l.applied = if applies {
            rate(rates.per_second(APPLIED, name).or(Some(0.0)))
        } else {
            "-".into()
        };
        l.verified = if verifies {
            rate(rates.per_second(VERIFIED, name).or(Some(0.0)))
        } else {
            "-".into()
        };
        l.healthy = l.detected + l.rechecking + l.needs_manual + l.failed == 0;
    }
    let mut beats: Vec<Beat> = store
        .heartbeats()
        .await?
        .into_iter()
        .map(|h| Beat {
            role: h.role,
            name: h.name,
            at: at(h.at_ms),
            ago: ago(h.at_ms),
            detail: h.detail,
        })
        .collect();
    match replicator_beats(&state).await {
        Ok(mut r) => {
            r.append(&mut beats);
            beats = r;
        }
        Err(e) => problems.push(format!("the replicators' progress could not be read: {e}")),
    }
    // Running and queued jobs, then the last few that ended.
    let mut snapshots: Vec<_> = store.recent_snapshots(20).await?;
    snapshots.sort_by_key(|j| (j.is_finished(), -j.id));
    let snapshots = snapshots
        .into_iter()
        .enumerate()
        .filter(|(i, j)| !j.is_finished() || *i < 5)
        .map(|(_, j)| super::jobs::SnapshotLine::of(j))
        .collect();
    let circuit = store.setting(concord_recovery::worker::CIRCUIT).await?;
    let circuit_open = circuit
        .as_ref()
        .is_some_and(|c| c.value == concord_recovery::worker::OPEN);
    let circuit_note = circuit
        .map(|c| {
            format!(
                "{} by {} {}: {}",
                c.value,
                c.actor,
                ago(c.updated_ms),
                c.reason
            )
        })
        .unwrap_or_else(|| "closed (never opened)".into());
    let seconds = |name: &str| {
        rates
            .gauge(name)
            .map(|s| format!("{s:.1} s"))
            .unwrap_or_else(|| "- (no running process reports it)".into())
    };
    let page = OverviewPage {
        nav: user.nav("overview"),
        refresh: state.console().refresh_seconds.max(2),
        tables: lines.into_values().collect(),
        beats,
        circuit_open,
        circuit_note,
        replication_lag: seconds(REPLICATION_LAG),
        verifier_lag: seconds(VERIFIER_LAG),
        problems,
        can_close: user.role >= ConsoleRole::Admin,
        snapshots,
    };
    render(page)
}

/// The replicators' checkpoints and offsets on the target, as heartbeats.
async fn replicator_beats(state: &AppState) -> Result<Vec<Beat>, String> {
    let mut conn = state
        .recovery()
        .compare
        .target
        .get_conn()
        .await
        .map_err(|e| error_chain(&e))?;
    let schema = &state.0.config.target.checkpoint_schema;
    let progress = concord_target::heartbeat::progress(&mut conn, schema)
        .await
        .map_err(|e| error_chain(&e))?;
    Ok(progress
        .into_iter()
        .map(|p| Beat {
            role: "replicator".into(),
            name: p.name,
            at: at(p.updated_ms),
            ago: ago(p.updated_ms),
            detail: p.at,
        })
        .collect())
}

#[derive(Deserialize)]
pub struct CloseForm {
    #[serde(default)]
    reason: String,
}

/// Closes the auto-repair circuit (admins only): automatic repair goes on.
pub async fn close_circuit(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Form(form): Form<CloseForm>,
) -> Result<Response, PageError> {
    user.require(ConsoleRole::Admin, "close the auto-repair circuit")?;
    let reason = form.reason.trim();
    if reason.is_empty() {
        return Err(PageError::BadRequest(
            "say why the circuit may close (what was looked at)".into(),
        ));
    }
    let was_open = state.recovery().resume(&user.name, reason).await?;
    tracing::info!(user = %user.name, was_open, "auto-repair circuit closed from the console");
    Ok(Redirect::to("/").into_response())
}
