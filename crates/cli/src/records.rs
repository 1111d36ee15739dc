//! The operator's commands on mismatch records — `mismatches list|show`, `repair`,
//! `ignore`, `recovery resume` — the console's actions, scriptable.
//!
//! Exit codes: 0 done; 1 an error; 2 bad arguments (an unknown table, state or kind is
//! refused naming it); 3 some records were not repaired (they still differ, wait for the
//! replicator, or need a person); 4 a bulk action above 100 records without `--yes`.

use anyhow::Context;
use concord_change::TableName;
use concord_config::Config;
use concord_control::{
    ControlStore, MismatchFilter, MismatchKind, MismatchRow, MismatchState, NamedRow, Subject,
};
use concord_recovery::{Mode, Recovery, Settled};
use serde_json::json;
use std::process::ExitCode;

/// Above this many records a bulk action asks for `--yes`.
const CONFIRM_ABOVE: usize = 100;

#[derive(clap::Args, Clone)]
pub struct FilterArgs {
    /// A source table, `db.table`; repeat for more.
    #[arg(long = "table", value_parser = crate::parse_table)]
    pub tables: Vec<TableName>,
    /// detected, rechecking, resolved, repaired, needs_manual, ignored; repeat for more.
    #[arg(long = "state")]
    pub states: Vec<String>,
    /// missing, extra, differs; repeat for more.
    #[arg(long = "kind")]
    pub kinds: Vec<String>,
    /// Last seen within this long (`30m`, `2h`) or since this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Records whose key's text contains this (as shown, JSON).
    #[arg(long)]
    pub key_contains: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// The user an action is recorded under: `--user`, else `$USER`, else `cli`.
pub fn actor(user: Option<String>) -> String {
    user.or_else(|| std::env::var("USER").ok())
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "cli".into())
}

/// Turns the arguments into a filter, refusing what names nothing: an unknown state or
/// kind, a table the config does not replicate or the source does not have.
pub async fn filter(
    config: &Config,
    args: &FilterArgs,
    ids: &[i64],
) -> anyhow::Result<Result<MismatchFilter, String>> {
    let mut f = MismatchFilter {
        ids: ids.to_vec(),
        key_contains: args.key_contains.clone(),
        ..MismatchFilter::default()
    };
    for s in &args.states {
        match MismatchState::parse(s) {
            Some(st) => f.states.push(st),
            None => {
                return Ok(Err(format!(
                    "unknown state `{s}`: expected one of detected, rechecking, resolved, \
                     repaired, needs_manual, ignored"
                )))
            }
        }
    }
    for k in &args.kinds {
        match MismatchKind::parse(k) {
            Some(kind) => f.kinds.push(kind),
            None => {
                return Ok(Err(format!(
                    "unknown kind `{k}`: expected one of missing, extra, differs"
                )))
            }
        }
    }
    if let Some(since) = &args.since {
        f.seen_since_ms = Some(match parse_time(since) {
            Some(ms) => ms,
            None => {
                return Ok(Err(format!(
                    "--since `{since}`: expected a duration such as `30m` or `2h`, or a time \
                     such as 2026-12-03T10:00:00Z"
                )))
            }
        });
    }
    let filter = config.tables.filter();
    for t in &args.tables {
        if !filter.matches(t) {
            return Ok(Err(format!(
                "table {t} is not replicated by this config (tables.include / tables.exclude)"
            )));
        }
    }
    if !args.tables.is_empty() {
        let source = mysql_async::Pool::new(config.source.opts());
        let cache =
            concord_schema_cache::SchemaCache::new(source.clone(), config.target.schema_ttl);
        for t in &args.tables {
            if cache
                .get(t)
                .await
                .context("reading the source's schema")?
                .is_none()
            {
                return Ok(Err(format!("table {t} does not exist on the source")));
            }
        }
        source.disconnect().await.ok();
    }
    f.tables = args.tables.clone();
    Ok(Ok(f))
}

pub use concord_recovery::batch::parse_time;

pub async fn list(
    store: &ControlStore,
    f: &MismatchFilter,
    limit: i64,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let rows = store.find_mismatches(f, limit).await?;
    let counts = store.count_mismatches(f).await?;
    match output {
        Output::Json => {
            let items: Vec<_> = rows.iter().map(record_json).collect();
            let counts: serde_json::Map<_, _> =
                counts.into_iter().map(|(s, n)| (s, json!(n))).collect();
            let next = rows
                .last()
                .filter(|_| rows.len() as i64 == limit)
                .map(|r| r.id);
            println!(
                "{}",
                json!({ "mismatches": items, "counts": counts, "next_before_id": next })
            );
        }
        Output::Table => {
            println!(
                "{:>8}  {:<30} {:<12} {:<8} {:<9} {:>5}  key",
                "id", "table", "state", "kind", "detector", "seen"
            );
            for r in &rows {
                println!(
                    "{:>8}  {:<30} {:<12} {:<8} {:<9} {:>5}  {}",
                    r.id,
                    r.table.to_string(),
                    r.state,
                    r.kind.as_str(),
                    r.detected_by,
                    r.occurrences,
                    key_text(&r.key)
                );
            }
            let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{s}: {n}")).collect();
            println!(
                "-- {} shown; matching by state: {}",
                rows.len(),
                summary.join(", ")
            );
            if rows.len() as i64 == limit {
                if let Some(last) = rows.last() {
                    println!("-- more: add --before-id {}", last.id);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn show(recovery: &Recovery, id: i64, output: Output) -> anyhow::Result<ExitCode> {
    let store = &recovery.compare.control;
    let Some(m) = store.mismatch(id).await? else {
        eprintln!("concord: no mismatch record {id}");
        return Ok(ExitCode::from(2));
    };
    let history = store.history(Subject::Mismatch, id).await?;
    let preview = recovery.preview(&m).await;
    let (now, plan) = match &preview {
        Ok(Ok(p)) => (
            json!({ "source": row_json(&p.source_row), "target": row_json(&p.target_row),
                    "differs": p.differs }),
            json!(p
                .statements
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()),
        ),
        Ok(Err(why)) => (json!({ "problem": why }), json!([])),
        Err(e) => (json!({ "problem": format!("{e:#}") }), json!([])),
    };
    let doc = json!({ "record": record_json(&m), "now": now, "repair_sql": plan,
                      "history": history_json(&history) });
    match output {
        Output::Json => println!("{doc}"),
        Output::Table => println!("{}", serde_json::to_string_pretty(&doc)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// Repairs (or, `dry_run`, shows the repair of) the records matching `f`.
pub async fn repair(
    recovery: &Recovery,
    f: &MismatchFilter,
    dry_run: bool,
    yes: bool,
    actor: &str,
) -> anyhow::Result<ExitCode> {
    let records = open_records(recovery, f).await?;
    if let Some(code) = confirm(&records, yes, if dry_run { "show" } else { "repair" }) {
        return Ok(code);
    }
    if dry_run {
        for m in &records {
            match recovery.preview(m).await? {
                Ok(p) if p.statements.is_empty() => {
                    println!(
                        "-- {}: {} {}: nothing to write (the rows agree now)",
                        m.id,
                        m.table,
                        key_text(&m.key)
                    )
                }
                Ok(p) => {
                    println!("-- {}: {} {}", m.id, m.table, key_text(&m.key));
                    for s in &p.statements {
                        println!("{s};");
                    }
                }
                Err(why) => println!(
                    "-- {}: {} {}: cannot be repaired: {why}",
                    m.id,
                    m.table,
                    key_text(&m.key)
                ),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let outcomes = recovery.repair_records(&records, actor, Mode::Manual).await;
    Ok(print_outcomes(outcomes.into_iter().map(|(id, outcome)| {
        let text = match outcome {
            Ok(Settled::Repaired) => Ok("repaired".to_owned()),
            Ok(Settled::Resolved) => {
                Ok("resolved (the rows agree now; nothing written)".to_owned())
            }
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(format!("error: {e:#}")),
        };
        (id, text)
    })))
}

/// Prints what became of each record (`Ok`: settled; `Err`: left, and why); exit code 3
/// when any was left.
pub fn print_outcomes(
    outcomes: impl IntoIterator<Item = (i64, Result<String, String>)>,
) -> ExitCode {
    let mut left = 0;
    for (id, text) in outcomes {
        let text = text.unwrap_or_else(|why| {
            left += 1;
            why
        });
        println!("{id}: {text}");
    }
    if left == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

pub async fn ignore(
    recovery: &Recovery,
    f: &MismatchFilter,
    reason: &str,
    yes: bool,
    actor: &str,
) -> anyhow::Result<ExitCode> {
    if reason.trim().is_empty() {
        eprintln!("concord: --reason is required to ignore a mismatch (it is kept in the history)");
        return Ok(ExitCode::from(2));
    }
    let records = open_records(recovery, f).await?;
    if let Some(code) = confirm(&records, yes, "ignore") {
        return Ok(code);
    }
    for (id, moved) in recovery.ignore_records(&records, actor, reason).await? {
        println!(
            "{id}: {}",
            if moved {
                "ignored"
            } else {
                "not open any more; left as it is"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The open records among those matching `f` (every one of them, paged by id).
async fn open_records(recovery: &Recovery, f: &MismatchFilter) -> anyhow::Result<Vec<MismatchRow>> {
    let mut f = f.clone();
    if f.states.is_empty() {
        f.states = MismatchState::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .collect();
    }
    let mut out = Vec::new();
    loop {
        let page = recovery.compare.control.find_mismatches(&f, 1000).await?;
        let Some(last) = page.last() else { break };
        f.before_id = Some(last.id);
        out.extend(page);
    }
    Ok(out)
}

fn confirm(records: &[MismatchRow], yes: bool, what: &str) -> Option<ExitCode> {
    let mut tables: Vec<String> = records.iter().map(|m| m.table.to_string()).collect();
    tables.sort();
    tables.dedup();
    println!(
        "-- {} open record(s) to {what}, in {}",
        records.len(),
        tables.join(", ")
    );
    if records.len() > CONFIRM_ABOVE && !yes {
        eprintln!(
            "concord: {} records is more than {CONFIRM_ABOVE}: add --yes to {what} them",
            records.len()
        );
        return Some(ExitCode::from(4));
    }
    None
}

fn key_text(key: &[(String, concord_change::Value)]) -> String {
    serde_json::to_string(&key_json(key)).expect("values serialize")
}

fn key_json(key: &[(String, concord_change::Value)]) -> serde_json::Value {
    serde_json::Value::Object(
        key.iter()
            .map(|(c, v)| {
                (
                    c.clone(),
                    serde_json::to_value(v).expect("values serialize"),
                )
            })
            .collect(),
    )
}

/// A record's history as `show` prints it, oldest first.
pub fn history_json(history: &[concord_control::HistoryRow]) -> serde_json::Value {
    history
        .iter()
        .map(|h| {
            json!({ "at_ms": h.at_ms, "actor": h.actor, "from": h.from_state, "to": h.to_state,
                    "mode": h.mode, "reason": h.reason, "before": row_json(&h.before),
                    "after": row_json(&h.after), "sql": h.statement })
        })
        .collect()
}

fn row_json(row: &Option<NamedRow>) -> serde_json::Value {
    match row {
        Some(r) => key_json(r),
        None => serde_json::Value::Null,
    }
}

fn record_json(r: &MismatchRow) -> serde_json::Value {
    json!({
        "id": r.id, "table": r.table.to_string(), "key": key_json(&r.key), "kind": r.kind.as_str(),
        "state": r.state, "detected_by": r.detected_by, "occurrences": r.occurrences,
        "first_seen_ms": r.first_seen_ms, "last_seen_ms": r.last_seen_ms,
        "state_ms": r.state_ms, "note": r.note, "previous_id": r.previous_id,
        "attempts": r.attempts, "origin": r.position.to_string(),
        "columns": r.columns.iter().map(|c| json!({"column": c.column,
            "source": serde_json::to_value(&c.source).expect("values serialize"),
            "target": serde_json::to_value(&c.target).expect("values serialize")})).collect::<Vec<_>>(),
        "expected": row_json(&r.expected), "source_row": row_json(&r.source_row),
        "target_row": row_json(&r.target_row),
    })
}
