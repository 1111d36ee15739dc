//! Jobs: batch recovery jobs with their summaries, and checksum runs — the runs of
//! `concord checksum`, and runs started here (one table or every replicated table), which
//! the console runs in the background with the process's config.

use super::{given, parse_table, render};
use crate::auth::User;
use crate::error::PageError;
use crate::view::{ago, at, error_chain, Nav};
use crate::AppState;
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use concord_checksum::Selection;
use concord_config::ConsoleRole;
use concord_control::{BatchJobRow, ChecksumRunRow, Subject};
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

pub struct BatchLine {
    pub job: BatchJobRow,
    pub covers: String,
    pub started: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "batch.html")]
struct BatchPage {
    nav: Nav,
    jobs: Vec<BatchLine>,
}

pub async fn batch_jobs(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Response, PageError> {
    let jobs = state.store().batch_jobs(100).await?;
    let jobs = jobs
        .into_iter()
        .map(|job| {
            let covers = match (&job.since_text, &job.pk_from, &job.pk_to) {
                (Some(since), _, _) => format!(
                    "changed since {since}{}",
                    job.until_text
                        .as_ref()
                        .map(|u| format!(" until {u}"))
                        .unwrap_or_default()
                ),
                (None, None, None) => "the whole table".into(),
                (None, from, to) => format!(
                    "keys {} to {}",
                    from.as_deref().unwrap_or("(first)"),
                    to.as_deref().unwrap_or("(last)")
                ),
            };
            BatchLine {
                covers,
                started: at(job.started_ms),
                updated: ago(job.updated_ms),
                job,
            }
        })
        .collect();
    render(BatchPage {
        nav: user.nav("batch"),
        jobs,
    })
}

pub struct RunLine {
    pub run: ChecksumRunRow,
    pub started: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "checksums.html")]
struct ChecksumPage {
    nav: Nav,
    runs: Vec<RunLine>,
    running_here: Vec<String>,
    can_act: bool,
}

/// Checksums this process runs now (what was asked: a table, or `all`), so the same one is
/// not started twice at once from here.
static RUNNING: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

fn running() -> std::sync::MutexGuard<'static, HashSet<String>> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

pub async fn checksums(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Response, PageError> {
    let runs = state.store().checksum_runs(true, 100).await?;
    let mut running_here: Vec<String> = running().iter().cloned().collect();
    running_here.sort();
    render(ChecksumPage {
        nav: user.nav("checksums"),
        runs: runs
            .into_iter()
            .map(|run| RunLine {
                started: at(run.started_ms),
                updated: ago(run.updated_ms),
                run,
            })
            .collect(),
        running_here,
        can_act: user.role >= ConsoleRole::Operator,
    })
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    all: Option<String>,
}

pub async fn start_checksum(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Form(form): Form<StartForm>,
) -> Result<Response, PageError> {
    user.require(ConsoleRole::Operator, "start a checksum")?;
    let (selection, what) = match (given(&form.all), given(&form.table)) {
        (Some(_), _) => (Selection::All, "all".to_owned()),
        (None, Some(t)) => {
            let table = parse_table("table", t)?;
            if !state.0.config.tables.filter().matches(&table) {
                return Err(PageError::BadRequest(format!(
                    "table {table} is not replicated by this config (tables.include / \
                     tables.exclude)"
                )));
            }
            let what = table.to_string();
            (Selection::Tables(vec![table]), what)
        }
        (None, None) => {
            return Err(PageError::BadRequest(
                "name a table (db.table) or choose every table".into(),
            ))
        }
    };
    if !running().insert(what.clone()) {
        return Err(PageError::BadRequest(format!(
            "a checksum of {what} started here is still running"
        )));
    }
    let reason = if what == "all" {
        "every replicated table".to_owned()
    } else {
        format!("table {what}")
    };
    if let Err(e) = state
        .store()
        .audit(Subject::Checksum, 0, &user.name, "start", &reason)
        .await
    {
        running().remove(&what);
        return Err(e.into());
    }
    tracing::info!(user = %user.name, %what, "checksum started from the console");
    let config = state.0.config.clone();
    tokio::spawn(async move {
        match concord_checksum::run(&config, selection, false).await {
            Ok(reports) => {
                for r in reports {
                    tracing::info!(table = %r.table, rows = r.rows, mismatches = r.mismatches, problem = r.problem.as_deref().unwrap_or("-"), "console checksum finished a table");
                }
            }
            Err(e) => tracing::error!(%what, error = %error_chain(&e), "console checksum failed"),
        }
        running().remove(&what);
    });
    Ok(Redirect::to("/checksums").into_response())
}
