//! The mismatch list (filters in the query string, so a link can be shared; keyset pages,
//! never OFFSET) and one record's page: what the change said, the source and the target
//! now, side by side, its history, and the exact SQL a repair would run.

use super::{given, parse_table, parse_time, render};
use crate::auth::User;
use crate::error::PageError;
use crate::view::{self, ago, at, choices, Choice, DiffRow, Nav};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use axum_extra::extract::Query;
use concord_config::ConsoleRole;
use concord_control::{
    Detector, HistoryRow, ListOrder, MismatchFilter, MismatchKind, MismatchRow, MismatchState,
    Subject,
};
use serde::Deserialize;
use std::sync::Arc;

/// Records per page unless the link asks for another size.
const PAGE: i64 = 50;

/// The list's filters and page, as the query string carries them.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub table: Vec<String>,
    #[serde(default)]
    pub state: Vec<String>,
    #[serde(default)]
    pub kind: Vec<String>,
    #[serde(default)]
    pub detector: Option<String>,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub until: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub sort: Option<String>,
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub before: Option<i64>,
    #[serde(default)]
    pub after: Option<i64>,
    /// `LAST_SEEN_MS:ID`, the last-seen order's cursor.
    #[serde(default)]
    pub seen: Option<String>,
}

impl ListQuery {
    /// The filter these fields ask for (without a page cursor); an unknown value is
    /// refused naming it.
    pub fn filter(&self) -> Result<MismatchFilter, PageError> {
        let mut f = MismatchFilter::default();
        for t in self.table.iter().filter(|t| !t.trim().is_empty()) {
            f.tables.push(parse_table("table", t)?);
        }
        for s in self.state.iter().filter(|s| !s.is_empty()) {
            f.states.push(MismatchState::parse(s).ok_or_else(|| {
                PageError::BadRequest(format!(
                    "state = {s:?}: expected detected, rechecking, resolved, repaired, \
                     needs_manual or ignored"
                ))
            })?);
        }
        for k in self.kind.iter().filter(|k| !k.is_empty()) {
            f.kinds.push(MismatchKind::parse(k).ok_or_else(|| {
                PageError::BadRequest(format!("kind = {k:?}: expected missing, extra or differs"))
            })?);
        }
        if let Some(d) = given(&self.detector) {
            f.detected_by = Some(match d {
                "verifier" => Detector::Verifier,
                "checksum" => Detector::Checksum,
                _ => {
                    return Err(PageError::BadRequest(format!(
                        "detector = {d:?}: expected verifier or checksum"
                    )))
                }
            });
        }
        if let Some(s) = given(&self.since) {
            f.seen_since_ms = Some(parse_time("since", s)?);
        }
        if let Some(s) = given(&self.until) {
            f.seen_until_ms = Some(parse_time("until", s)?);
        }
        f.key_contains = given(&self.key).map(str::to_owned);
        f.order = match given(&self.sort) {
            None => ListOrder::Newest,
            Some(s) => ListOrder::parse(s).ok_or_else(|| {
                PageError::BadRequest(format!(
                    "sort = {s:?}: expected newest, oldest or last_seen"
                ))
            })?,
        };
        Ok(f)
    }

    /// The filter's fields as query pairs (no cursor), for links and hidden form fields.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for t in self.table.iter().filter(|t| !t.trim().is_empty()) {
            out.push(("table", t.trim().to_owned()));
        }
        for s in self.state.iter().filter(|s| !s.is_empty()) {
            out.push(("state", s.clone()));
        }
        for k in self.kind.iter().filter(|k| !k.is_empty()) {
            out.push(("kind", k.clone()));
        }
        for (name, v) in [
            ("detector", &self.detector),
            ("since", &self.since),
            ("until", &self.until),
            ("key", &self.key),
            ("sort", &self.sort),
        ] {
            if let Some(v) = given(v) {
                out.push((name, v.to_owned()));
            }
        }
        out
    }
}

/// `pairs` as a query string.
pub fn query_string(pairs: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// One line of the list.
pub struct ListRow {
    pub id: i64,
    pub table: String,
    pub key: String,
    pub kind: &'static str,
    pub state: String,
    pub open: bool,
    pub detected_by: String,
    pub occurrences: i64,
    pub columns: String,
    pub first_seen: String,
    pub last_seen: String,
    pub last_seen_ago: String,
}

impl ListRow {
    fn of(m: &MismatchRow) -> Self {
        let key = view::key_text(&m.key);
        let key = if key.chars().count() > 80 {
            format!("{}…", key.chars().take(80).collect::<String>())
        } else {
            key
        };
        Self {
            id: m.id,
            table: m.table.to_string(),
            key,
            kind: m.kind.as_str(),
            state: m.state.clone(),
            open: m.state().is_some_and(|s| s.is_open()),
            detected_by: m.detected_by.clone(),
            occurrences: m.occurrences,
            columns: m
                .columns
                .iter()
                .map(|c| c.column.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            first_seen: at(m.first_seen_ms),
            last_seen: at(m.last_seen_ms),
            last_seen_ago: ago(m.last_seen_ms),
        }
    }
}

#[derive(Template)]
#[template(path = "mismatches.html")]
struct ListPage {
    nav: Nav,
    rows: Vec<ListRow>,
    /// Records matching the filters (whatever their state), by state.
    counts: Vec<(&'static str, i64, String)>,
    total: i64,
    counts_age: u64,
    table_text: String,
    since: String,
    until: String,
    key: String,
    states: Vec<Choice>,
    kinds: Vec<Choice>,
    detectors: Vec<Choice>,
    sorts: Vec<Choice>,
    /// The filter as hidden fields (bulk actions over "everything matching").
    hidden: Vec<(&'static str, String)>,
    next: Option<String>,
    first: Option<String>,
    can_act: bool,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Query(q): Query<ListQuery>,
) -> Result<Response, PageError> {
    let mut f = q.filter()?;
    let limit = q.limit.unwrap_or(PAGE).clamp(1, 500);
    let store = state.store();
    let mut all_states = f.clone();
    all_states.states.clear();
    all_states.order = ListOrder::Newest;
    let counted = state
        .0
        .counts
        .try_get_with(format!("{all_states:?}"), async {
            store.count_mismatches(&all_states).await.map(Arc::new)
        })
        .await
        .map_err(|e| PageError::Counting(e.to_string()))?;
    f.before_id = q.before;
    f.after_id = q.after;
    f.seen_before = match given(&q.seen) {
        None => None,
        Some(s) => Some(parse_seen(s)?),
    };
    let mut found = store.find_mismatches(&f, limit + 1).await?;
    let more = found.len() as i64 > limit;
    found.truncate(limit as usize);
    let pairs = q.pairs();
    let next = match (more, found.last()) {
        (true, Some(last)) => {
            let mut p = pairs.clone();
            p.push(("limit", limit.to_string()));
            p.push(match f.order {
                ListOrder::Newest => ("before", last.id.to_string()),
                ListOrder::Oldest => ("after", last.id.to_string()),
                ListOrder::LastSeen => ("seen", format!("{}:{}", last.last_seen_ms, last.id)),
            });
            Some(format!("/mismatches?{}", query_string(&p)))
        }
        _ => None,
    };
    let paged = q.before.is_some() || q.after.is_some() || q.seen.is_some();
    let first = paged.then(|| format!("/mismatches?{}", query_string(&pairs)));
    let counts = MismatchState::ALL
        .iter()
        .map(|s| {
            let n = counted
                .iter()
                .find(|(name, _)| name == s.as_str())
                .map(|(_, n)| *n)
                .unwrap_or(0);
            let mut p: Vec<_> = pairs
                .iter()
                .filter(|(k, _)| *k != "state")
                .cloned()
                .collect();
            p.push(("state", s.as_str().to_owned()));
            (s.as_str(), n, format!("/mismatches?{}", query_string(&p)))
        })
        .collect();
    let page = ListPage {
        nav: user.nav("mismatches"),
        rows: found.iter().map(ListRow::of).collect(),
        total: counted.iter().map(|(_, n)| n).sum(),
        counts_age: crate::COUNTS_FOR.as_secs(),
        counts,
        table_text: q.table.first().cloned().unwrap_or_default(),
        since: given(&q.since).unwrap_or_default().to_owned(),
        until: given(&q.until).unwrap_or_default().to_owned(),
        key: q.key.clone().unwrap_or_default(),
        states: choices(&MismatchState::ALL.map(|s| s.as_str()), |s| {
            q.state.iter().any(|x| x == s)
        }),
        kinds: choices(&["missing", "extra", "differs"], |k| {
            q.kind.iter().any(|x| x == k)
        }),
        detectors: choices(&["verifier", "checksum"], |d| given(&q.detector) == Some(d)),
        sorts: choices(&["newest", "oldest", "last_seen"], |s| {
            f.order.as_str() == s
        }),
        hidden: pairs,
        next,
        first,
        can_act: user.role >= ConsoleRole::Operator,
    };
    render(page)
}

fn parse_seen(s: &str) -> Result<(i64, i64), PageError> {
    s.split_once(':')
        .and_then(|(ms, id)| Some((ms.parse().ok()?, id.parse().ok()?)))
        .ok_or_else(|| PageError::BadRequest(format!("seen = {s:?}: expected MS:ID")))
}

/// One history row as shown.
pub struct HistoryLine {
    pub at: String,
    pub actor: String,
    pub from: String,
    pub to: String,
    pub mode: String,
    pub reason: String,
    pub statement: Option<String>,
    pub before: String,
    pub after: String,
}

impl HistoryLine {
    pub fn of(h: &HistoryRow) -> Self {
        let row = |r: &Option<concord_control::NamedRow>| {
            r.as_ref()
                .map(|r| view::key_text(r))
                .unwrap_or_else(|| "(no row)".into())
        };
        Self {
            at: at(h.at_ms),
            actor: h.actor.clone(),
            from: h.from_state.clone(),
            to: h.to_state.clone(),
            mode: h.mode.clone().unwrap_or_default(),
            reason: h.reason.clone(),
            statement: h.statement.clone(),
            before: row(&h.before),
            after: row(&h.after),
        }
    }
}

#[derive(Template)]
#[template(path = "mismatch.html")]
struct DetailPage {
    nav: Nav,
    id: i64,
    table: String,
    key: String,
    kind: &'static str,
    state: String,
    open: bool,
    detected_by: String,
    occurrences: i64,
    first_seen: String,
    last_seen: String,
    origin: String,
    note: String,
    previous_id: Option<i64>,
    /// Where the side-by-side rows come from: `now` or `as recorded`.
    rows_from: &'static str,
    problem: Option<String>,
    has_expected: bool,
    diff: Vec<DiffRow>,
    any_cut: bool,
    /// The same page with every cut column whole.
    whole_link: String,
    statements: Vec<String>,
    history: Vec<HistoryLine>,
    outcome: Option<&'static str>,
    can_act: bool,
}

#[derive(Deserialize)]
pub struct DetailQuery {
    /// Columns to show uncut.
    #[serde(default)]
    full: Vec<String>,
    #[serde(default)]
    outcome: Option<String>,
}

pub async fn detail(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<i64>,
    Query(q): Query<DetailQuery>,
) -> Result<Response, PageError> {
    let store = state.store();
    let m = store
        .mismatch(id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("there is no mismatch record {id}")))?;
    let history = store.history(Subject::Mismatch, id).await?;
    let flagged: Vec<String> = m.columns.iter().map(|c| c.column.clone()).collect();
    let (rows_from, problem, source, target, statements) = match state.recovery().preview(&m).await
    {
        Ok(Ok(p)) => (
            "now",
            None,
            p.source_row,
            p.target_row,
            p.statements.iter().map(ToString::to_string).collect(),
        ),
        Ok(Err(why)) => (
            "as recorded",
            Some(why),
            m.source_row.clone(),
            m.target_row.clone(),
            Vec::new(),
        ),
        Err(e) => (
            "as recorded",
            Some(format!(
                "the rows could not be read now: {}",
                view::error_chain(&e)
            )),
            m.source_row.clone(),
            m.target_row.clone(),
            Vec::new(),
        ),
    };
    let diff = view::diff(
        m.expected.as_ref(),
        source.as_ref(),
        target.as_ref(),
        &flagged,
        &q.full,
    );
    let mut whole: Vec<(&str, String)> = diff
        .iter()
        .filter(|d| d.cut)
        .map(|d| ("full", d.column.clone()))
        .collect();
    whole.extend(q.full.iter().map(|c| ("full", c.clone())));
    let page = DetailPage {
        nav: user.nav("mismatches"),
        id,
        table: m.table.to_string(),
        key: view::key_text(&m.key),
        kind: m.kind.as_str(),
        state: m.state.clone(),
        open: m.state().is_some_and(|s| s.is_open()),
        detected_by: m.detected_by.clone(),
        occurrences: m.occurrences,
        first_seen: at(m.first_seen_ms),
        last_seen: at(m.last_seen_ms),
        origin: m.position.to_string(),
        note: m.note.clone().unwrap_or_default(),
        previous_id: m.previous_id,
        rows_from,
        problem,
        has_expected: m.expected.is_some(),
        any_cut: diff.iter().any(|d| d.cut),
        diff,
        whole_link: format!("/mismatches/{id}?{}", query_string(&whole)),
        statements,
        history: history.iter().map(HistoryLine::of).collect(),
        outcome: q
            .outcome
            .as_deref()
            .and_then(crate::pages::actions::outcome_text),
        can_act: user.role >= ConsoleRole::Operator,
    };
    render(page)
}
