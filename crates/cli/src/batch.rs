//! `concord recovery batch`: re-syncs one table's key range, or the rows a time window
//! changed, after an outage or an incident. A range goes through the chunked checksum
//! (paced like it, resumable per chunk as the job's own run); a window's keys are read back
//! from the source's binlogs and checked page by page the same way. Every difference the
//! source confirms becomes a record, and each record is repaired through the guarded write
//! in mode `batch` (rows only the target has are deleted). A killed job, asked again the
//! same way, resumes where it stopped.
//!
//! The steps are the libraries' (`concord_checksum::check_range` and `check_keys`, the
//! binlog's window read, the recovery engine);
//! this module only strings them together for one job, with its progress and summary.

use crate::records::Output;
use concord_change::{TableName, Value};
use concord_checksum::Bounds;
use concord_config::Config;
use concord_control::{BatchJob, BatchRequest, ControlStore, MismatchFilter, MismatchState};
use concord_recovery::{Mode, Recovery, Settled};
use concord_schema_cache::TargetTable;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct BatchArgs {
    /// The source table, `db.table`.
    #[arg(long, value_parser = crate::parse_table)]
    pub table: TableName,
    /// The range's first key (inclusive): a value, or a JSON array for a composite key.
    #[arg(long)]
    pub pk_from: Option<String>,
    /// The range's last key (inclusive).
    #[arg(long)]
    pub pk_to: Option<String>,
    /// Instead of a range, the rows transactions committed since this time changed (read
    /// back from the source's binlogs): `2026-12-03 10:00:00` (UTC), RFC 3339, or a
    /// duration ago (`2h`).
    #[arg(long, conflicts_with_all = ["pk_from", "pk_to"])]
    pub since: Option<String>,
    /// The window's end (default: now).
    #[arg(long, requires = "since")]
    pub until: Option<String>,
    /// Print what would be repaired, and the SQL; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Who (default: $USER).
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub format: Output,
    /// Serve /metrics on `metrics.listen` while running (not while `concord run` holds it).
    #[arg(long)]
    pub serve_metrics: bool,
}

/// What a job covers: a key range, or the keys a time window changed.
enum Cover {
    Range(Bounds),
    /// Commit times in milliseconds, both ends included.
    Window(i64, i64),
}

pub async fn run(config: &Config, a: BatchArgs) -> anyhow::Result<ExitCode> {
    if a.serve_metrics {
        let readiness = concord_telemetry::Readiness::new();
        readiness
            .role("batch")
            .flag()
            .store(true, std::sync::atomic::Ordering::Relaxed);
        concord_telemetry::serve(config.metrics.listen_addr(), readiness).await?;
    }
    let recovery = Recovery::connect(config).await?;
    let Some(source) = recovery.compare.source_schema.get(&a.table).await? else {
        eprintln!("concord: table {} does not exist on the source", a.table);
        return Ok(ExitCode::from(2));
    };
    if !config.tables.filter().matches(&a.table) {
        eprintln!(
            "concord: table {} is not replicated by this config",
            a.table
        );
        return Ok(ExitCode::from(2));
    }
    let cover = match cover(&a, &source) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("concord: {why}");
            return Ok(ExitCode::from(2));
        }
    };
    let store = &recovery.compare.control;
    let actor = crate::records::actor(a.user.clone());
    let request = BatchRequest {
        table: a.table.clone(),
        pk_from: a.pk_from.clone(),
        pk_to: a.pk_to.clone(),
        since_text: a.since.clone(),
        until_text: a.until.clone(),
        window: match cover {
            Cover::Window(since, until) => Some((since, until)),
            Cover::Range(_) => None,
        },
        dry_run: a.dry_run,
        actor: actor.clone(),
    };
    let (mut job, resumed) = store.start_batch(&request).await?;
    // A resumed window job keeps the window it resolved when it started.
    let cover = match (job.window, cover) {
        (Some((since, until)), _) => Cover::Window(since, until),
        (None, cover) => cover,
    };
    tracing::info!(job = job.id, table = %a.table, resumed, dry_run = a.dry_run, "batch recovery");
    let checked = check(config, &recovery, &a, &source, &job, &cover).await;
    let (report, found) = match checked {
        Ok(r) => r,
        Err(e) => {
            save(store, &job, "failed", Some(&format!("{e:#}"))).await?;
            return Err(e);
        }
    };
    job.checked = report.rows as i64;
    if let Some(problem) = &report.problem {
        save(store, &job, "failed", Some(problem)).await?;
        eprintln!("concord: {}: {problem}", a.table);
        return Ok(ExitCode::FAILURE);
    }
    if a.dry_run {
        job.differing = found.len() as i64;
        for m in &found {
            match recovery.preview_found(m).await? {
                Ok(p) if !p.statements.is_empty() => {
                    for s in &p.statements {
                        println!("{s};");
                    }
                }
                Ok(_) => println!("-- {:?}: the rows agree now", m.key),
                Err(why) => println!("-- {:?}: cannot be repaired: {why}", m.key),
            }
        }
        save(store, &job, "done", None).await?;
        summary(&job, a.format);
        return Ok(ExitCode::SUCCESS);
    }
    repair(&recovery, store, &mut job, &actor).await?;
    save(store, &job, "done", None).await?;
    summary(&job, a.format);
    Ok(if job.failed > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// The job's cover from the arguments, or what is wrong with them.
fn cover(a: &BatchArgs, source: &TargetTable) -> Result<Cover, String> {
    if let Some(since) = &a.since {
        let since_ms = crate::records::parse_time(since)
            .ok_or_else(|| format!("--since `{since}`: not a time (`2026-12-03 10:00:00` UTC, RFC 3339) or a duration ago (`2h`)"))?;
        let until_ms = match &a.until {
            Some(until) => crate::records::parse_time(until)
                .ok_or_else(|| format!("--until `{until}`: not a time or a duration ago"))?,
            None => crate::records::parse_time("0s").expect("now parses"),
        };
        if until_ms < since_ms {
            return Err("--until is before --since".into());
        }
        return Ok(Cover::Window(since_ms, until_ms));
    }
    let types: Vec<String> = source
        .primary_key
        .iter()
        .map(|k| {
            source
                .column(k)
                .map(|c| c.data_type.clone())
                .unwrap_or_default()
        })
        .collect();
    let mut bounds = Bounds::default();
    for (arg, text, slot) in [
        ("--pk-from", &a.pk_from, &mut bounds.from),
        ("--pk-to", &a.pk_to, &mut bounds.to),
    ] {
        if let Some(text) = text {
            *slot = Some(parse_key(text, &types).map_err(|why| format!("{arg} `{text}`: {why}"))?);
        }
    }
    Ok(Cover::Range(bounds))
}

/// The job's check: the range through the chunked checksum, or the window's keys page by
/// page; what it confirmed is recorded (or, in a dry run, returned).
async fn check(
    config: &Config,
    recovery: &Recovery,
    a: &BatchArgs,
    source: &TargetTable,
    job: &BatchJob,
    cover: &Cover,
) -> anyhow::Result<(
    concord_checksum::TableReport,
    Vec<concord_control::Mismatch>,
)> {
    // The check's two source cycles need not be `verifier.retry_after` apart here: every
    // difference it confirms is looked at again under the guarded repair before anything
    // is written, and a row that only moved on is resolved there, nothing written.
    let mut check_config = config.clone();
    check_config.verifier.retry_after = RECHECK_PAUSE;
    // A window becomes its keys first.
    let keys = match cover {
        Cover::Range(bounds) => Err(bounds),
        Cover::Window(since, until) => {
            let w = crate::window::keys_changed(config, &a.table, source, (*since, *until)).await?;
            if !w.complete {
                tracing::warn!(table = %a.table, "the source's binlogs begin after --since: changes made before its oldest binlog are not in the window; check those with a key range");
                eprintln!("concord: warning: the source's binlogs begin after --since; only the changes they still hold are checked");
            }
            if w.unreadable > 0 {
                tracing::warn!(table = %a.table, changes = w.unreadable, "changes in the window whose rows the binlog does not show (undecodable, logged as statements, truncates); check the table with a key range too");
                eprintln!("concord: warning: {} change(s) in the window have no row images in the binlog; check the table with a key range too", w.unreadable);
            }
            tracing::info!(table = %a.table, keys = w.keys.len(), transactions = w.transactions, "batch recovery: the window's keys");
            Ok(w.keys)
        }
    };
    let rows = match &keys {
        Ok(k) => k.len() as u64,
        Err(_) => estimate(recovery, &a.table).await,
    };
    let bar = progress_bar(rows);
    let mut on_chunk = |run: &concord_control::ChecksumRun| match &bar {
        Some(bar) => {
            bar.set_position(run.rows as u64);
            bar.set_message(format!("{} differing", run.mismatches));
        }
        None => tracing::info!(
            job = job.id,
            rows = run.rows,
            chunks = run.chunks,
            differing = run.mismatches,
            "batch recovery: checked"
        ),
    };
    let checked = match &keys {
        Ok(keys) => {
            concord_checksum::check_keys(
                &check_config,
                &a.table,
                keys,
                job.id,
                !a.dry_run,
                &mut on_chunk,
            )
            .await
        }
        Err(bounds) => {
            concord_checksum::check_range(
                &check_config,
                &a.table,
                bounds,
                job.id,
                !a.dry_run,
                &mut on_chunk,
            )
            .await
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    Ok(checked?)
}

/// Repairs the records the job's check confirmed (marked as the job's, whichever detector
/// recorded them first), saving the counts as it goes.
async fn repair(
    recovery: &Recovery,
    store: &ControlStore,
    job: &mut BatchJob,
    actor: &str,
) -> anyhow::Result<()> {
    let filter = MismatchFilter {
        tables: vec![job.table.clone()],
        states: MismatchState::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .collect(),
        batch_job: Some(job.id),
        ..MismatchFilter::default()
    };
    // Each record is settled once; one the replicator moved under its repair (superseded)
    // or that waited is looked at again in a later sweep.
    let mut seen = std::collections::HashSet::new();
    let mut settled = std::collections::HashSet::new();
    for sweep in 0..SWEEPS {
        let mut f = filter.clone();
        let mut left = 0;
        loop {
            let page = store.find_mismatches(&f, RECORDS_AT_ONCE).await?;
            let Some(last) = page.last() else { break };
            f.before_id = Some(last.id);
            let todo: Vec<_> = page
                .into_iter()
                .filter(|m| !settled.contains(&m.id))
                .collect();
            for m in &todo {
                if seen.insert(m.id) {
                    job.differing += 1;
                }
            }
            for (id, outcome) in recovery.repair_records(&todo, actor, Mode::Batch).await {
                let done = match outcome {
                    Ok(Settled::Repaired) | Ok(Settled::Resolved) => {
                        job.repaired += 1;
                        true
                    }
                    Ok(Settled::NeedsManual(why)) => {
                        tracing::warn!(id, %why, "batch repair: needs a person");
                        job.failed += 1;
                        true
                    }
                    Ok(Settled::Superseded) => {
                        job.superseded += 1;
                        false
                    }
                    Ok(Settled::Waiting(why)) => {
                        tracing::info!(id, %why, "batch repair waits");
                        false
                    }
                    Err(e) => {
                        tracing::warn!(id, error = %e, "batch repair failed; looked at again");
                        false
                    }
                };
                if done {
                    settled.insert(id);
                } else {
                    left += 1;
                }
            }
            save(store, job, "running", None).await?;
        }
        if left == 0 {
            return Ok(());
        }
        tracing::info!(
            sweep,
            left,
            "batch recovery: rows still moving; looking again"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    // Still moving after every sweep: counted as not repaired; the worker goes on with them.
    job.failed += (seen.len() - settled.len()) as i64;
    Ok(())
}

/// Saves the job's counts and state (see `ControlStore::save_batch`), and shows the counts
/// as metrics.
async fn save(
    store: &ControlStore,
    job: &BatchJob,
    state: &str,
    error: Option<&str>,
) -> Result<(), concord_control::ControlError> {
    let table = job.table.to_string();
    for (count, value) in [
        ("checked", job.checked),
        ("differing", job.differing),
        ("repaired", job.repaired),
        ("superseded", job.superseded),
        ("failed", job.failed),
    ] {
        concord_recovery::metrics::BATCH_ROWS
            .with_label_values(&[&table, count])
            .set(value);
    }
    store.save_batch(job, state, error).await
}

/// Records handed to the recovery engine at once (it settles them a page at a time, a few
/// pages side by side).
const RECORDS_AT_ONCE: i64 = 3_000;

/// Sweeps over a job's records before the ones still moving are left to the worker.
const SWEEPS: usize = 5;

/// The pause between the range check's two source cycles (see [`run`]).
const RECHECK_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// A key from the command line: a value, or a JSON array of values for a composite key;
/// numbers become numbers for number columns, everything else text.
fn parse_key(text: &str, types: &[String]) -> Result<Vec<Value>, String> {
    let parts: Vec<serde_json::Value> = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(items)) => items,
        _ => vec![serde_json::Value::String(text.to_owned())],
    };
    if parts.len() != types.len() {
        return Err(format!(
            "the primary key has {} column(s); give {} value(s)",
            types.len(),
            types.len()
        ));
    }
    parts
        .iter()
        .zip(types)
        .map(|(v, ty)| {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let integer = matches!(
                ty.as_str(),
                "tinyint" | "smallint" | "mediumint" | "int" | "bigint"
            );
            if integer {
                s.parse::<i64>()
                    .map(Value::Int)
                    .map_err(|_| format!("`{s}` is not a whole number ({ty} column)"))
            } else {
                Ok(Value::Text(s))
            }
        })
        .collect()
}

async fn estimate(recovery: &Recovery, table: &TableName) -> u64 {
    use mysql_async::prelude::Queryable;
    let Ok(mut conn) = recovery.compare.source.get_conn().await else {
        return 0;
    };
    conn.exec_first::<Option<u64>, _, _>(
        "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
        (&table.db, &table.table),
    )
    .await
    .ok()
    .flatten()
    .flatten()
    .unwrap_or(0)
}

/// A bar on a terminal; `None` (log lines instead) otherwise.
fn progress_bar(estimate: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(estimate.max(1));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:40}] {pos}/~{len} rows ({per_sec}, ETA {eta}) {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    Some(bar)
}

fn summary(job: &BatchJob, format: Output) {
    match format {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "job": job.id, "table": job.table.to_string(), "checked": job.checked,
                "differing": job.differing, "repaired": job.repaired,
                "superseded": job.superseded, "failed": job.failed, "dry_run": job.dry_run,
            })
        ),
        Output::Table => {
            println!(
            "batch {} {}: rows checked {}, differing {}, repaired {}, superseded {}, failed {}{}",
            job.id,
            job.table,
            job.checked,
            job.differing,
            job.repaired,
            job.superseded,
            job.failed,
            if job.dry_run { " (dry run: nothing written)" } else { "" }
        )
        }
    }
}
