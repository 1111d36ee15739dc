//! `concord failed list|show|retry|repair|ignore`: failed events — rows the target refused —
//! seen and settled by an operator. Exit codes as for the mismatch commands
//! (`crate::records`): 3 when some events were not settled.

use crate::records::Output;
use concord_control::{ControlStore, Subject};
use concord_recovery::failed::{FailedAction, FailedOutcome};
use concord_recovery::Recovery;
use serde_json::json;
use std::process::ExitCode;

pub async fn list(
    store: &ControlStore,
    table: Option<&concord_change::TableName>,
    limit: i64,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let rows = store.failed_events(table, limit).await?;
    match output {
        Output::Json => {
            let items: Vec<_> = rows.iter().map(event_json).collect();
            println!("{}", json!({ "failed_events": items }));
        }
        Output::Table => {
            println!(
                "{:>8}  {:<30} {:<9} {:<16} {:<8} {:<28}  error",
                "id", "table", "op", "reason", "status", "origin"
            );
            for r in &rows {
                println!(
                    "{:>8}  {:<30} {:<9} {:<16} {:<8} {:<28}  {}",
                    r.id,
                    r.table.to_string(),
                    r.op,
                    r.reason,
                    r.status,
                    format!("{}#{}", r.position, r.row_index),
                    r.error
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn show(store: &ControlStore, id: i64) -> anyhow::Result<ExitCode> {
    let Some(r) = store.failed_event(id).await? else {
        eprintln!("concord: no failed event {id}");
        return Ok(ExitCode::from(2));
    };
    let history = crate::records::history_json(&store.history(Subject::FailedEvent, id).await?);
    let change: serde_json::Value =
        serde_json::from_str(&r.event).unwrap_or(serde_json::Value::String(r.event.clone()));
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "event": event_json(&r), "change": change, "history": history
        }))?
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn act(
    recovery: &Recovery,
    ids: &[i64],
    action: Option<FailedAction>,
    reason: &str,
    actor: &str,
) -> anyhow::Result<ExitCode> {
    if action.is_none() && reason.trim().is_empty() {
        eprintln!(
            "concord: --reason is required to ignore a failed event (it is kept in the history)"
        );
        return Ok(ExitCode::from(2));
    }
    let mut outcomes = Vec::with_capacity(ids.len());
    for &id in ids {
        let text = match action {
            Some(a) => match recovery.act_on_failed(id, a, actor).await {
                Ok(FailedOutcome::Done) => Ok("done: written and verified".to_owned()),
                Ok(FailedOutcome::StillRefused(e)) => {
                    Err(format!("still refused by the target: {e}"))
                }
                Ok(FailedOutcome::NotDone(why)) => Err(format!("not done: {why}")),
                Err(e) => Err(format!("error: {e:#}")),
            },
            None => match recovery.ignore_failed(id, actor, reason).await {
                Ok(true) => Ok("ignored".to_owned()),
                Ok(false) => Err("not open; left as it is".to_owned()),
                Err(e) => Err(format!("error: {e:#}")),
            },
        };
        outcomes.push((id, text));
    }
    Ok(crate::records::print_outcomes(outcomes))
}

fn event_json(r: &concord_control::FailedEventRow) -> serde_json::Value {
    json!({
        "id": r.id, "table": r.table.to_string(), "op": r.op, "reason": r.reason,
        "status": r.status, "error": r.error, "origin": r.position.to_string(),
        "row_index": r.row_index, "occurrences": r.occurrences,
    })
}
