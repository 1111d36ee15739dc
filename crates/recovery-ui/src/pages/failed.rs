//! Failed events — rows the target refused: the list by table and status, one event's
//! stored change, error and origin with its history, and retry / repair from source /
//! ignore through the recovery engine.

use super::mismatches::{query_string, HistoryLine};
use super::{given, parse_table, render};
use crate::auth::User;
use crate::error::PageError;
use crate::view::Nav;
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use axum_extra::extract::Query;
use concord_config::ConsoleRole;
use concord_control::{FailedEventRow, FailedFilter, FailedState, Subject};
use concord_recovery::failed::{FailedAction, FailedOutcome};
use serde::Deserialize;

const PAGE: i64 = 50;

#[derive(Deserialize)]
pub struct FailedQuery {
    #[serde(default)]
    table: Option<String>,
    /// `open` unless asked otherwise; `all` for every status.
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    before: Option<i64>,
}

pub struct FailedLine {
    pub id: i64,
    pub table: String,
    pub op: String,
    pub reason: String,
    pub error: String,
    pub status: String,
    pub occurrences: i64,
    pub origin: String,
}

fn origin(e: &FailedEventRow) -> String {
    format!("{} row {}", e.position, e.row_index)
}

impl FailedLine {
    fn of(e: &FailedEventRow) -> Self {
        let error = if e.error.chars().count() > 160 {
            format!("{}…", e.error.chars().take(160).collect::<String>())
        } else {
            e.error.clone()
        };
        Self {
            id: e.id,
            table: e.table.to_string(),
            op: e.op.clone(),
            reason: e.reason.clone(),
            error,
            status: e.status.clone(),
            occurrences: e.occurrences,
            origin: origin(e),
        }
    }
}

#[derive(Template)]
#[template(path = "failed_list.html")]
struct ListPage {
    nav: Nav,
    rows: Vec<FailedLine>,
    table: String,
    statuses: Vec<crate::view::Choice>,
    next: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Query(q): Query<FailedQuery>,
) -> Result<Response, PageError> {
    let status = given(&q.status).unwrap_or("open").to_owned();
    if status != "all" && FailedState::parse(&status).is_none() {
        return Err(PageError::BadRequest(format!(
            "status = {status:?}: expected open, retried, repaired, ignored or all"
        )));
    }
    let table = match given(&q.table) {
        Some(t) => Some(parse_table("table", t)?),
        None => None,
    };
    let f = FailedFilter {
        table: table.clone(),
        status: (status != "all").then(|| status.clone()),
        before_id: q.before,
    };
    let mut rows = state.store().find_failed(&f, PAGE + 1).await?;
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let table_text = table.map(|t| t.to_string()).unwrap_or_default();
    let next = match (more, rows.last()) {
        (true, Some(last)) => {
            let mut p = vec![("status", status.clone()), ("before", last.id.to_string())];
            if !table_text.is_empty() {
                p.push(("table", table_text.clone()));
            }
            Some(format!("/failed?{}", query_string(&p)))
        }
        _ => None,
    };
    let page = ListPage {
        nav: user.nav("failed"),
        rows: rows.iter().map(FailedLine::of).collect(),
        table: table_text,
        statuses: crate::view::choices(&["open", "retried", "repaired", "ignored", "all"], |s| {
            s == status
        }),
        next,
    };
    render(page)
}

#[derive(Template)]
#[template(path = "failed.html")]
struct DetailPage {
    nav: Nav,
    line: FailedLine,
    /// The whole error.
    error: String,
    /// The stored change, pretty-printed.
    event: String,
    history: Vec<HistoryLine>,
    outcome: Option<String>,
    can_act: bool,
}

#[derive(Deserialize)]
pub struct DetailQuery {
    #[serde(default)]
    outcome: Option<String>,
}

/// The fixed outcomes the event's page reports.
fn outcome_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "done" => "Done: the row was written and verified on both sides; the event is closed.",
        "not_done" => "Nothing was done (see the history for why).",
        "ignored" => "Ignored, with your reason.",
        _ => return None,
    })
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<i64>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, PageError> {
    let outcome = q
        .outcome
        .as_deref()
        .and_then(outcome_text)
        .map(str::to_owned);
    detail_page(&state, &user, id, outcome).await
}

async fn detail_page(
    state: &AppState,
    user: &User,
    id: i64,
    outcome: Option<String>,
) -> Result<Response, PageError> {
    let store = state.store();
    let e = store
        .failed_event(id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("there is no failed event {id}")))?;
    let history = store.history(Subject::FailedEvent, id).await?;
    let event = serde_json::from_str::<serde_json::Value>(&e.event)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| e.event.clone());
    let page = DetailPage {
        nav: user.nav("failed"),
        error: e.error.clone(),
        line: FailedLine::of(&e),
        event,
        history: history.iter().map(HistoryLine::of).collect(),
        outcome,
        can_act: user.role >= ConsoleRole::Operator && e.status == "open",
    };
    render(page)
}

#[derive(Deserialize)]
pub struct ActForm {
    #[serde(default)]
    reason: String,
}

pub async fn act(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<ActForm>,
) -> Result<Response, PageError> {
    let action = match action.as_str() {
        "retry" => Some(FailedAction::Retry),
        "repair" => Some(FailedAction::Repair),
        "ignore" => None,
        other => {
            return Err(PageError::NotFound(format!(
                "there is no action {other:?} on failed events (retry, repair, ignore)"
            )))
        }
    };
    user.require(ConsoleRole::Operator, "act on a failed event")?;
    let recovery = state.recovery();
    let code = match action {
        Some(a) => match recovery.act_on_failed(id, a, &user.name).await? {
            FailedOutcome::Done => "done",
            // Why is this request's own answer: shown on the page it returns.
            FailedOutcome::StillRefused(why) => {
                let text = format!("The target refused the row again: {why}");
                return detail_page(&state, &user, id, Some(text)).await;
            }
            FailedOutcome::NotDone(why) => {
                let text = format!("Nothing was done: {why}");
                return detail_page(&state, &user, id, Some(text)).await;
            }
        },
        None => {
            if form.reason.trim().is_empty() {
                return Err(PageError::BadRequest(
                    "a reason is required to ignore a failed event".into(),
                ));
            }
            if recovery
                .ignore_failed(id, &user.name, form.reason.trim())
                .await?
            {
                "ignored"
            } else {
                "not_done"
            }
        }
    };
    Ok(Redirect::to(&format!("/failed/{id}?outcome={code}")).into_response())
}
