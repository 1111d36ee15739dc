//! The audit log: who did what, when, to which record, the rows before and after and the
//! SQL that ran — filtered by person, kind of subject, action, table and time, paged by
//! id, and exported as CSV with the same filters.

use super::mismatches::{query_string, HistoryLine};
use super::{given, parse_table, parse_time, render};
use crate::auth::User;
use crate::error::PageError;
use crate::view::{at, key_text, Nav};
use crate::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum_extra::extract::Query;
use concord_control::{AuditFilter, AuditRow, Subject};
use serde::Deserialize;

const PAGE: i64 = 100;
/// Rows read per query while exporting.
const EXPORT_PAGE: i64 = 5_000;
/// The most rows one export holds (the export is built in memory; narrow the filter by
/// time for more).
const EXPORT_MAX: usize = 100_000;

#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    before: Option<i64>,
}

impl AuditQuery {
    fn filter(&self) -> Result<AuditFilter, PageError> {
        let subject = match given(&self.subject) {
            None => None,
            Some(s) => Some(
                Subject::parse(s)
                    .ok_or_else(|| {
                        PageError::BadRequest(format!(
                            "subject = {s:?}: expected mismatch, failed_event, bulk, circuit, \
                             batch_job or checksum"
                        ))
                    })?
                    .as_str()
                    .to_owned(),
            ),
        };
        Ok(AuditFilter {
            actor: given(&self.actor).map(str::to_owned),
            subject,
            subject_id: None,
            to_state: given(&self.action).map(str::to_owned),
            since_ms: given(&self.since)
                .map(|s| parse_time("since", s))
                .transpose()?,
            until_ms: given(&self.until)
                .map(|s| parse_time("until", s))
                .transpose()?,
            table: given(&self.table)
                .map(|t| parse_table("table", t))
                .transpose()?,
            before_id: self.before,
        })
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("actor", &self.actor),
            ("subject", &self.subject),
            ("action", &self.action),
            ("table", &self.table),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| given(v).map(|v| (k, v.to_owned())))
        .collect()
    }
}

pub struct AuditLine {
    pub subject: String,
    pub subject_id: i64,
    /// A link to the record's own page, for mismatches and failed events.
    pub link: Option<String>,
    pub table: String,
    pub key: String,
    pub h: HistoryLine,
}

fn line(r: &AuditRow) -> AuditLine {
    let link = match r.subject.as_str() {
        "mismatch" => Some(format!("/mismatches/{}", r.subject_id)),
        "failed_event" => Some(format!("/failed/{}", r.subject_id)),
        "bulk" => Some(format!("/bulk/{}", r.subject_id)),
        _ => None,
    };
    AuditLine {
        subject: r.subject.clone(),
        subject_id: r.subject_id,
        link,
        table: r.table.as_ref().map(|t| t.to_string()).unwrap_or_default(),
        key: key_of(r),
        h: HistoryLine::of(&r.history),
    }
}

/// The record's key as a person reads it (the store keeps it as JSON).
fn key_of(r: &AuditRow) -> String {
    r.key
        .as_deref()
        .and_then(|k| serde_json::from_str::<Vec<(String, concord_change::Value)>>(k).ok())
        .map(|k| key_text(&k))
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    rows: Vec<AuditLine>,
    q: AuditQuery,
    subjects: Vec<crate::view::Choice>,
    next: Option<String>,
    csv: String,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    let f = q.filter()?;
    let mut rows = state.store().find_audit(&f, PAGE + 1).await?;
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let pairs = q.pairs();
    let next = match (more, rows.last()) {
        (true, Some(last)) => {
            let mut p = pairs.clone();
            p.push(("before", last.history.id.to_string()));
            Some(format!("/audit?{}", query_string(&p)))
        }
        _ => None,
    };
    let chosen = given(&q.subject).unwrap_or("").to_owned();
    let page = AuditPage {
        nav: user.nav("audit"),
        rows: rows.iter().map(line).collect(),
        subjects: crate::view::choices(&Subject::ALL.map(|s| s.as_str()), |s| s == chosen),
        next,
        csv: format!("/audit.csv?{}", query_string(&pairs)),
        q,
    };
    render(page)
}

/// A text cell a spreadsheet will not run: values come from the source and from people,
/// and one starting with `=`, `+`, `-`, `@` or a control character is taken as a formula
/// by Excel and its kin, so it is written with a leading `'`.
fn inert(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_owned(),
    }
}

/// The filtered audit log as CSV, newest first.
pub async fn csv(
    State(state): State<AppState>,
    Extension(_user): Extension<User>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    let mut f = q.filter()?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let head = [
        "id",
        "at",
        "actor",
        "subject",
        "subject_id",
        "table",
        "key",
        "from",
        "to",
        "mode",
        "reason",
        "before",
        "after",
        "sql",
    ];
    let write_err = |e: csv::Error| PageError::BadRequest(format!("the export failed: {e}"));
    w.write_record(head).map_err(write_err)?;
    let mut written = 0;
    loop {
        let rows = state.store().find_audit(&f, EXPORT_PAGE).await?;
        for r in &rows {
            let h = &r.history;
            let image = |row: &Option<concord_control::NamedRow>| {
                row.as_ref().map(|r| key_text(r)).unwrap_or_default()
            };
            w.write_record([
                h.id.to_string(),
                at(h.at_ms),
                inert(&h.actor),
                r.subject.clone(),
                r.subject_id.to_string(),
                inert(&r.table.as_ref().map(|t| t.to_string()).unwrap_or_default()),
                inert(&key_of(r)),
                h.from_state.clone(),
                h.to_state.clone(),
                h.mode.clone().unwrap_or_default(),
                inert(&h.reason),
                inert(&image(&h.before)),
                inert(&image(&h.after)),
                inert(&h.statement.clone().unwrap_or_default()),
            ])
            .map_err(write_err)?;
        }
        written += rows.len();
        match rows.last() {
            Some(last) if rows.len() as i64 == EXPORT_PAGE && written < EXPORT_MAX => {
                f.before_id = Some(last.history.id)
            }
            _ => break,
        }
    }
    let body = w
        .into_inner()
        .map_err(|e| PageError::BadRequest(format!("the export failed: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"concord-audit.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn formulas_are_written_inert() {
        assert_eq!(super::inert("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(super::inert("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(super::inert("id=7"), "id=7");
    }
}
