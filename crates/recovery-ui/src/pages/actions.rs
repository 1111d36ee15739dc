//! One record's actions: recheck now, repair, ignore with a reason. Each goes through the
//! recovery engine exactly as `concord repair`/`ignore` do — the guarded repair, the
//! audited moves — under the user's name, then returns to the record's page saying how it
//! ended (POST, then redirect, so a reload does not act twice).

use crate::auth::User;
use crate::error::PageError;
use crate::AppState;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use concord_config::ConsoleRole;
use concord_control::MismatchRow;
use concord_recovery::{Mode, Settled};
use serde::Deserialize;

/// The fixed outcomes a record's page can report (never text from the query string).
pub fn outcome_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "resolved" => "Rechecked: source and target agree now; nothing was written.",
        "repaired" => "Repaired: the source's row was written and verified on both sides.",
        "superseded" => {
            "Not repaired: the target row changed under the repair (the replicator moved \
             it); the record is detected again and will be looked at again."
        }
        "needs_manual" => "Still differs: the record waits for a person (see its history).",
        "waiting" => "Nothing was done now (see the history for why); try again shortly.",
        "ignored" => "Ignored, with your reason.",
        "not_open" => "Nothing was done: the record is no longer open.",
        _ => return None,
    })
}

fn code(s: &Settled) -> &'static str {
    match s {
        Settled::Resolved => "resolved",
        Settled::Repaired => "repaired",
        Settled::Superseded => "superseded",
        Settled::NeedsManual(_) => "needs_manual",
        Settled::Waiting(_) => "waiting",
    }
}

async fn record(state: &AppState, id: i64) -> Result<MismatchRow, PageError> {
    state
        .store()
        .mismatch(id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("there is no mismatch record {id}")))
}

fn back(id: i64, outcome: &str) -> Response {
    Redirect::to(&format!("/mismatches/{id}?outcome={outcome}")).into_response()
}

/// Looks at the rows again now: agreeing rows resolve the record; rows that still differ
/// hand it to a person (nothing is written).
pub async fn recheck(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    user.require(ConsoleRole::Operator, "recheck a mismatch")?;
    let m = record(&state, id).await?;
    if !m.state().is_some_and(|s| s.is_open()) {
        return Ok(back(id, "not_open"));
    }
    let why = format!(
        "rechecked by {} from the console: the rows still differ; repair or ignore it",
        user.name
    );
    let settled = state
        .recovery()
        .settle(&m, Mode::Manual, &user.name, Err(why))
        .await?;
    Ok(back(id, code(&settled)))
}

pub async fn repair(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    user.require(ConsoleRole::Operator, "repair a mismatch")?;
    let m = record(&state, id).await?;
    if !m.state().is_some_and(|s| s.is_open()) {
        return Ok(back(id, "not_open"));
    }
    let mut out = state
        .recovery()
        .repair_records(std::slice::from_ref(&m), &user.name, Mode::Manual)
        .await;
    match out.pop().map(|(_, r)| r) {
        Some(Ok(settled)) => Ok(back(id, code(&settled))),
        Some(Err(e)) => Err(PageError::BadRequest(format!(
            "the repair could not be done: {}",
            crate::view::error_chain(&*e)
        ))),
        None => Ok(back(id, "waiting")),
    }
}

#[derive(Deserialize)]
pub struct Reason {
    #[serde(default)]
    reason: String,
}

pub async fn ignore(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<i64>,
    Form(form): Form<Reason>,
) -> Result<Response, PageError> {
    user.require(ConsoleRole::Operator, "ignore a mismatch")?;
    if form.reason.trim().is_empty() {
        return Err(PageError::BadRequest(
            "a reason is required to ignore a mismatch".into(),
        ));
    }
    let m = record(&state, id).await?;
    let moved = state
        .recovery()
        .ignore_records(std::slice::from_ref(&m), &user.name, form.reason.trim())
        .await?;
    let ok = moved.first().is_some_and(|(_, moved)| *moved);
    Ok(back(id, if ok { "ignored" } else { "not_open" }))
}
