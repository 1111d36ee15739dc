//! The console's pages, one module per area; each handler reads through the control store
//! or acts through the recovery engine, and renders one template.

pub mod actions;
pub mod audit;
pub mod failed;
pub mod jobs;
pub mod mismatches;
pub mod overview;

use crate::error::PageError;
use askama::Template;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// A template as an HTML answer.
pub fn render(t: impl Template) -> Result<Response, PageError> {
    Ok(Html(t.render()?).into_response())
}

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../static/console.css"),
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../static/console.js"),
    )
        .into_response()
}

pub async fn not_found() -> PageError {
    PageError::NotFound("there is no such page".into())
}

/// A query-string value the form left empty counts as not given.
pub fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A time from a filter field, in ms since the epoch: RFC 3339 (`2026-12-04T10:00:00Z`),
/// `2026-12-04 10:00:00` (UTC), or a duration ago (`2h`).
pub fn parse_time(field: &str, s: &str) -> Result<i64, PageError> {
    concord_recovery::batch::parse_time(s).ok_or_else(|| {
        PageError::BadRequest(format!(
            "{field} = {s:?}: expected a time such as 2026-12-04 10:00:00 (UTC) or a \
             duration ago such as 2h"
        ))
    })
}

/// `db.table`, or why it is not one.
pub fn parse_table(field: &str, s: &str) -> Result<concord_change::TableName, PageError> {
    match s.trim().split_once('.') {
        Some((db, t)) if !db.is_empty() && !t.is_empty() => {
            Ok(concord_change::TableName::new(db, t))
        }
        _ => Err(PageError::BadRequest(format!(
            "{field} = {s:?}: expected db.table"
        ))),
    }
}
