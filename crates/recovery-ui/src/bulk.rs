//! Bulk actions: repair or ignore the records selected on a page, or everything matching
//! the list's filter. The first POST shows a confirmation (how many open records, which
//! tables); the confirmed one starts a job that works through the records a page at a
//! time in id order, up to the newest id matching when it started (records found later
//! are not swept in), keeping its progress in the control store so a large set can be
//! watched. Each record's move has its own history row; the job adds one for itself.

use crate::auth::User;
use crate::error::PageError;
use crate::pages::mismatches::{query_string, ListQuery};
use crate::pages::render;
use crate::view::{at, error_chain, Nav};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use axum_extra::extract::Form;
use concord_config::ConsoleRole;
use concord_control::{BulkJob, ListOrder, MismatchFilter, MismatchState};
use concord_recovery::{Mode, Settled};
use serde::Deserialize;
use tracing::Instrument;

/// Records handed to the engine at once (it settles them a table's page at a time).
const CHUNK: i64 = 500;

#[derive(Clone, Debug, Deserialize)]
pub struct BulkForm {
    /// The list page's buttons: `ACTION:SCOPE` (`repair:selected`, `ignore:filter`).
    #[serde(default, rename = "do")]
    button: Option<String>,
    /// `repair` or `ignore`.
    #[serde(default)]
    action: String,
    /// `selected` (the ids below) or `filter` (everything matching the fields below).
    #[serde(default)]
    scope: String,
    #[serde(default)]
    id: Vec<i64>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: Option<String>,
    // The list's filter (scope `filter`), as its query string carried it.
    #[serde(default)]
    table: Vec<String>,
    #[serde(default)]
    state: Vec<String>,
    #[serde(default)]
    kind: Vec<String>,
    #[serde(default)]
    detector: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    sort: Option<String>,
}

impl BulkForm {
    fn list_query(&self) -> ListQuery {
        ListQuery {
            table: self.table.clone(),
            state: self.state.clone(),
            kind: self.kind.clone(),
            detector: self.detector.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            key: self.key.clone(),
            sort: self.sort.clone(),
            ..ListQuery::default()
        }
    }
}

#[derive(Template)]
#[template(path = "bulk_confirm.html")]
struct ConfirmPage {
    nav: Nav,
    action: String,
    scope: String,
    ids: Vec<i64>,
    reason: String,
    total: i64,
    tables: Vec<(String, i64)>,
    selection: String,
    hidden: Vec<(&'static str, String)>,
}

/// What the form selects: the open records among them (only open records can be repaired
/// or ignored), and how a person reads the selection.
fn selection(form: &BulkForm) -> Result<(MismatchFilter, String), PageError> {
    let open: Vec<MismatchState> = MismatchState::ALL
        .into_iter()
        .filter(|s| s.is_open())
        .collect();
    match form.scope.as_str() {
        "selected" => {
            if form.id.is_empty() {
                return Err(PageError::BadRequest(
                    "select at least one record (or choose everything matching the filter)".into(),
                ));
            }
            let f = MismatchFilter {
                ids: form.id.clone(),
                states: open,
                ..MismatchFilter::default()
            };
            let ids: Vec<String> = form.id.iter().map(i64::to_string).collect();
            Ok((f, format!("records {}", ids.join(", "))))
        }
        "filter" => {
            let query = form.list_query();
            let mut f = query.filter()?;
            f.states = if f.states.is_empty() {
                open
            } else {
                f.states.into_iter().filter(|s| s.is_open()).collect()
            };
            if f.states.is_empty() {
                return Err(PageError::BadRequest(
                    "the filter matches only closed records: nothing to repair or ignore".into(),
                ));
            }
            let pairs = query.pairs();
            let text = if pairs.is_empty() {
                "every open record".to_owned()
            } else {
                format!("open records matching {}", query_string(&pairs))
            };
            Ok((f, text))
        }
        other => Err(PageError::BadRequest(format!(
            "scope = {other:?}: expected selected or filter"
        ))),
    }
}

pub async fn confirm_or_start(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Form(mut form): Form<BulkForm>,
) -> Result<Response, PageError> {
    if let Some((action, scope)) = form.button.as_deref().and_then(|b| b.split_once(':')) {
        (form.action, form.scope) = (action.to_owned(), scope.to_owned());
    }
    let what = match form.action.as_str() {
        "repair" => "repair mismatches",
        "ignore" => "ignore mismatches",
        other => {
            return Err(PageError::BadRequest(format!(
                "action = {other:?}: expected repair or ignore"
            )))
        }
    };
    user.require(ConsoleRole::Operator, what)?;
    let (mut filter, text) = selection(&form)?;
    let store = state.store();
    let tables: Vec<(String, i64)> = store
        .count_mismatches_by_table(&filter)
        .await?
        .into_iter()
        .map(|(t, n)| (t.to_string(), n))
        .collect();
    let total: i64 = tables.iter().map(|(_, n)| n).sum();
    let confirmed = form.confirm.as_deref() == Some("yes");
    let reason = form.reason.trim().to_owned();
    if !confirmed || (form.action == "ignore" && reason.is_empty()) || total == 0 {
        let page = ConfirmPage {
            nav: user.nav("mismatches"),
            action: form.action.clone(),
            scope: form.scope.clone(),
            ids: form.id.clone(),
            reason,
            total,
            tables,
            selection: text,
            hidden: form.list_query().pairs(),
        };
        return render(page);
    }
    // Records found after this moment are not part of what was confirmed.
    filter.order = ListOrder::Newest;
    let newest = store.find_mismatches(&filter, 1).await?;
    let Some(cap) = newest.first().map(|m| m.id) else {
        return Err(PageError::BadRequest("nothing left to act on".into()));
    };
    let reason_text = if reason.is_empty() {
        "asked from the console".to_owned()
    } else {
        reason.clone()
    };
    let id = store
        .start_bulk(&user.name, &form.action, &text, &reason_text, total)
        .await?;
    tracing::info!(user = %user.name, job = id, action = %form.action, total, selection = %text, "console bulk action started");
    let job = store
        .bulk_job(id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("bulk job {id} vanished")))?;
    filter.order = ListOrder::Oldest;
    filter.before_id = Some(cap + 1);
    tokio::spawn(run(state.clone(), job, filter, user.name.clone(), reason).in_current_span());
    Ok(Redirect::to(&format!("/bulk/{id}")).into_response())
}

/// Works through the job's records, saving progress after each chunk.
async fn run(
    state: AppState,
    mut job: BulkJob,
    mut filter: MismatchFilter,
    actor: String,
    reason: String,
) {
    let store = state.store().clone();
    let outcome = loop {
        let page = match store.find_mismatches(&filter, CHUNK).await {
            Ok(p) => p,
            Err(e) => break Err(error_chain(&e)),
        };
        let Some(last) = page.last().map(|m| m.id) else {
            break Ok(());
        };
        filter.after_id = Some(last);
        let (ok, bad) = if job.action == "repair" {
            let out = state
                .recovery()
                .repair_records(&page, &actor, Mode::Manual)
                .await;
            let ok = out
                .iter()
                .filter(|(_, r)| matches!(r, Ok(Settled::Repaired | Settled::Resolved)))
                .count();
            (ok, out.len() - ok)
        } else {
            match state
                .recovery()
                .ignore_records(&page, &actor, &reason)
                .await
            {
                Ok(out) => {
                    let ok = out.iter().filter(|(_, moved)| *moved).count();
                    (ok, out.len() - ok)
                }
                Err(e) => break Err(error_chain(&e)),
            }
        };
        job.done += page.len() as i64;
        job.succeeded += ok as i64;
        job.failed += bad as i64;
        if let Err(e) = store.save_bulk(&job).await {
            tracing::warn!(job = job.id, error = %e, "bulk progress not saved");
        }
    };
    match outcome {
        Ok(()) => job.state = "finished".into(),
        Err(e) => {
            tracing::error!(job = job.id, error = %e, "console bulk action failed");
            job.state = "failed".into();
            job.error = Some(e);
        }
    }
    tracing::info!(
        job = job.id,
        done = job.done,
        succeeded = job.succeeded,
        failed = job.failed,
        "console bulk action ended"
    );
    if let Err(e) = store.save_bulk(&job).await {
        tracing::error!(job = job.id, error = %e, "bulk job's end not saved");
    }
}

#[derive(Template)]
#[template(path = "bulk.html")]
struct ProgressPage {
    nav: Nav,
    job: BulkJob,
    started: String,
    updated: String,
    running: bool,
    percent: i64,
    /// The records this job touched, as a list link (their history names the job's user).
    records_link: String,
}

pub async fn progress(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let job = state
        .store()
        .bulk_job(id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("there is no bulk job {id}")))?;
    let percent = if job.total > 0 {
        (job.done * 100 / job.total).min(100)
    } else {
        100
    };
    let page = ProgressPage {
        nav: user.nav("mismatches"),
        started: at(job.started_ms),
        updated: at(job.updated_ms),
        running: job.state == "running",
        percent,
        records_link: format!("/audit?actor={}", urlencode(&job.actor)),
        job,
    };
    render(page)
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
