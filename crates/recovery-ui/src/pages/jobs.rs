//! Jobs: batch recovery jobs — started here (a key range or a time window, maybe a dry
//! run) or by `concord recovery batch` — with their progress, summaries and a cancel
//! button; and checksum runs — the runs of
//! `concord checksum`, and runs started here (one table or every replicated table), which
//! the console runs in the background with the process's config.

use super::{given, parse_table, render};
use crate::auth::User;
use crate::error::PageError;
use crate::view::{ago, at, error_chain, Nav};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use concord_checksum::Selection;
use concord_config::ConsoleRole;
use concord_control::{BatchJob, ChecksumRunRow, SnapshotJob, Subject};
use concord_recovery::batch::{self, BatchError, BatchSpec, Quiet};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};
use tracing::Instrument;

pub struct BatchLine {
    pub job: BatchJob,
    pub covers: String,
    pub started: String,
    pub updated: String,
}

/// A snapshot job as the batch page and the overview list it.
pub struct SnapshotLine {
    pub job: SnapshotJob,
    pub covers: String,
    /// Rows copied of the estimate, as a percentage (capped at 100).
    pub percent: i64,
    pub updated: String,
}

impl SnapshotLine {
    pub fn of(job: SnapshotJob) -> Self {
        let covers = match (&job.keys_json, &job.pk_from, &job.pk_to) {
            (Some(keys), _, _) => format!(
                "{} listed keys",
                serde_json::from_str::<Vec<serde_json::Value>>(keys).map_or(0, |k| k.len())
            ),
            (None, None, None) => "the whole table".into(),
            (None, from, to) => format!(
                "keys {} to {}",
                from.as_deref().unwrap_or("(first)"),
                to.as_deref().unwrap_or("(last)")
            ),
        };
        let percent = match (job.rows_estimate, job.is_finished()) {
            (_, true) if job.state == "done" => 100,
            (0, _) => 0,
            (e, _) => (job.rows_copied * 100 / e).clamp(0, 100),
        };
        Self {
            covers,
            percent,
            updated: ago(job.updated_ms),
            job,
        }
    }
}

#[derive(Template)]
#[template(path = "batch.html")]
struct BatchPage {
    nav: Nav,
    jobs: Vec<BatchLine>,
    copies: Vec<SnapshotLine>,
    can_act: bool,
}

/// Jobs this process runs, by id: stopping one aborts its task at once (a job run by
/// another process stops at its next page of repairs, when it sees the mark).
static BATCHES: LazyLock<Mutex<HashMap<i64, tokio::task::AbortHandle>>> =
    LazyLock::new(Default::default);

fn batches() -> std::sync::MutexGuard<'static, HashMap<i64, tokio::task::AbortHandle>> {
    BATCHES.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Deserialize)]
pub struct BatchForm {
    #[serde(default)]
    table: String,
    #[serde(default)]
    pk_from: Option<String>,
    #[serde(default)]
    pk_to: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    dry_run: Option<String>,
    /// `repair` (check, then repair what differs) or `copy` (copy again from the source).
    #[serde(default)]
    method: Option<String>,
}

/// Starts a batch recovery job (a key range, or the rows a time window changed), which
/// this console runs in the background; its progress is on the jobs page.
pub async fn start_batch(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Form(form): Form<BatchForm>,
) -> Result<Response, PageError> {
    user.require(ConsoleRole::Operator, "start a batch recovery job")?;
    let table = parse_table("table", &form.table)?;
    let spec = BatchSpec {
        table,
        pk_from: given(&form.pk_from).map(str::to_owned),
        pk_to: given(&form.pk_to).map(str::to_owned),
        since: given(&form.since).map(str::to_owned),
        until: given(&form.until).map(str::to_owned),
        dry_run: form.dry_run.is_some(),
        actor: user.name.clone(),
    };
    if spec.since.is_some() && (spec.pk_from.is_some() || spec.pk_to.is_some()) {
        return Err(PageError::BadRequest(
            "give a key range or a time window, not both".into(),
        ));
    }
    if spec.until.is_some() && spec.since.is_none() {
        return Err(PageError::BadRequest(
            "a window's end needs its start (since)".into(),
        ));
    }
    let config = state.0.config.clone();
    if form.method.as_deref() == Some("copy") {
        return start_copy(&state, &user, &spec).await;
    }
    let started = match batch::start(&config, state.recovery(), &spec).await {
        Ok(s) => s,
        Err(BatchError::Refused(why)) => return Err(PageError::BadRequest(why)),
        Err(e) => {
            return Err(PageError::BadRequest(format!(
                "the job could not start: {}",
                error_chain(&e)
            )))
        }
    };
    let id = started.job().id;
    if batches().contains_key(&id) {
        return Err(PageError::BadRequest(format!(
            "batch job {id} (the same request) is already running here"
        )));
    }
    let covers = covers_of(&spec.since, &spec.until, &spec.pk_from, &spec.pk_to);
    state
        .store()
        .audit(
            Subject::BatchJob,
            id,
            &user.name,
            "start",
            &format!(
                "{} {covers}{}",
                spec.table,
                if spec.dry_run { " (dry run)" } else { "" }
            ),
        )
        .await?;
    tracing::info!(user = %user.name, job = id, table = %spec.table, %covers, "batch recovery started from the console");
    let run_state = state.clone();
    let task = tokio::spawn(
        async move {
            let recovery = run_state.recovery();
            match started.run(&config, recovery, &spec, &mut Quiet).await {
                Ok(done) => tracing::info!(
                    job = id,
                    checked = done.job.checked,
                    differing = done.job.differing,
                    repaired = done.job.repaired,
                    failed = done.job.failed,
                    "console batch job done"
                ),
                Err(e) => {
                    tracing::warn!(job = id, error = %error_chain(&e), "console batch job ended")
                }
            }
            batches().remove(&id);
        }
        .in_current_span(),
    );
    batches().insert(id, task.abort_handle());
    Ok(Redirect::to("/batch").into_response())
}

/// What a job covers, as a person reads it.
fn covers_of(
    since: &Option<String>,
    until: &Option<String>,
    pk_from: &Option<String>,
    pk_to: &Option<String>,
) -> String {
    match (since, pk_from, pk_to) {
        (Some(since), _, _) => format!(
            "changed since {since}{}",
            until
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
    }
}

/// Cancels a running job: it writes nothing more (its counts so far stay).
pub async fn cancel_batch(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    user.require(ConsoleRole::Operator, "cancel a batch recovery job")?;
    if !state.store().cancel_batch(id, &user.name).await? {
        return Err(PageError::BadRequest(format!(
            "batch job {id} is not running"
        )));
    }
    if let Some(task) = batches().remove(&id) {
        task.abort();
    }
    tracing::info!(user = %user.name, job = id, "batch recovery cancelled from the console");
    Ok(Redirect::to("/batch").into_response())
}

/// A batch recovery by copying: the snapshot job is queued for the stream owner (the
/// replicator, or the capture), which copies the range — or the rows the window changed —
/// again from the source.
async fn start_copy(
    state: &AppState,
    user: &User,
    spec: &BatchSpec,
) -> Result<Response, PageError> {
    if spec.dry_run {
        return Err(PageError::BadRequest(
            "a copy has no dry run: it writes what the source holds".into(),
        ));
    }
    let config = state.0.config.clone();
    let jobs = match batch::copy::queue_copy(&config, state.recovery(), spec).await {
        Ok(jobs) => jobs,
        Err(BatchError::Refused(why)) => return Err(PageError::BadRequest(why)),
        Err(e) => {
            return Err(PageError::BadRequest(format!(
                "the copy could not be queued: {}",
                error_chain(&e)
            )))
        }
    };
    let covers = covers_of(&spec.since, &spec.until, &spec.pk_from, &spec.pk_to);
    for job in &jobs {
        state
            .store()
            .audit(
                Subject::Snapshot,
                job.id,
                &user.name,
                "copy",
                &format!("{} {covers}: copied again from the source", spec.table),
            )
            .await?;
        tracing::info!(user = %user.name, job = job.id, table = %spec.table, %covers, "copy queued from the console");
    }
    Ok(Redirect::to("/batch").into_response())
}

pub async fn batch_jobs(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Response, PageError> {
    let copies = state
        .store()
        .recent_snapshots(50)
        .await?
        .into_iter()
        .map(SnapshotLine::of)
        .collect();
    let jobs = state.store().batch_jobs(100).await?;
    let jobs = jobs
        .into_iter()
        .map(|job| {
            let covers = covers_of(&job.since_text, &job.until_text, &job.pk_from, &job.pk_to);
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
        copies,
        can_act: user.role >= ConsoleRole::Operator,
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
    }
    .in_current_span());
    Ok(Redirect::to("/checksums").into_response())
}
