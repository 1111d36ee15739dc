//! `concord recovery batch`: re-syncs one table's key range, or the rows a time window
//! changed, after an outage or an incident. A range goes through the chunked checksum
//! (paced like it, resumable per chunk as the job's own run); a window's keys are read back
//! from the source's binlogs and checked page by page the same way. Every difference the
//! source confirms becomes a record, and each record is repaired through the guarded write
//! in mode `batch` (rows only the target has are deleted). A killed job, asked again the
//! same way, resumes where it stopped.
//!
//! The job itself is the library's (`concord_recovery::batch`, which the console runs
//! too); this module turns the arguments into a request and shows its progress (a bar on
//! a terminal, log lines otherwise), a dry run's SQL and the summary.

use crate::records::Output;
use concord_change::TableName;
use concord_config::Config;
use concord_control::{BatchJob, ChecksumRun};
use concord_recovery::batch::{run_batch, BatchError, BatchSpec, Watch};
use concord_recovery::Recovery;
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
    /// Copy the range (or the rows the window changed) again from the source through the
    /// snapshot, instead of checking and repairing row by row; target rows the source
    /// lacks are deleted (docs/SNAPSHOT.md).
    #[arg(long, conflicts_with = "dry_run")]
    pub copy: bool,
    /// Who (default: $USER).
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub format: Output,
    /// Serve /metrics on `metrics.listen` while running (not while `concord run` holds it).
    #[arg(long)]
    pub serve_metrics: bool,
}

/// The job's progress on the terminal (a bar), or in the log.
struct Progress(Option<ProgressBar>);

impl Watch for Progress {
    fn checking(&mut self, rows: u64) {
        self.0 = progress_bar(rows);
    }

    fn checked(&mut self, job: i64, run: &ChecksumRun) {
        match &self.0 {
            Some(bar) => {
                bar.set_position(run.rows as u64);
                bar.set_message(format!("{} differing", run.mismatches));
            }
            None => tracing::info!(
                job,
                rows = run.rows,
                chunks = run.chunks,
                differing = run.mismatches,
                "batch recovery: checked"
            ),
        }
    }

    fn checked_all(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }

    fn warn(&mut self, text: &str) {
        eprintln!("concord: warning: {text}");
    }
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
    let spec = BatchSpec {
        table: a.table.clone(),
        pk_from: a.pk_from.clone(),
        pk_to: a.pk_to.clone(),
        since: a.since.clone(),
        until: a.until.clone(),
        dry_run: a.dry_run,
        actor: crate::records::actor(a.user.clone()),
    };
    if a.copy {
        return match concord_recovery::batch::copy::queue_copy(config, &recovery, &spec).await {
            Ok(jobs) => {
                for j in &jobs {
                    println!(
                        "queued snapshot job {} of {} ({})",
                        j.id,
                        j.table,
                        j.kind.as_str()
                    );
                }
                crate::snapshot::follow_or_own(config, &recovery.compare.control, &jobs).await
            }
            Err(BatchError::Refused(why)) => {
                eprintln!("concord: {why}");
                Ok(ExitCode::from(2))
            }
            Err(e) => Err(e.into()),
        };
    }
    let done = match run_batch(config, &recovery, &spec, &mut Progress(None)).await {
        Ok(done) => done,
        Err(BatchError::Refused(why)) => {
            eprintln!("concord: {why}");
            return Ok(ExitCode::from(2));
        }
        Err(e @ (BatchError::Problem { .. } | BatchError::Cancelled(_))) => {
            eprintln!("concord: {e}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    if a.dry_run {
        for m in &done.found {
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
    }
    summary(&done.job, a.format);
    Ok(if done.job.failed > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
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
