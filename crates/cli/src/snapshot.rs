//! `concord snapshot`: copies the rows the source already holds — whole tables, a key
//! range, or listed keys — while replication runs (docs/SNAPSHOT.md).
//!
//! The jobs are queued in the control store for the stream owner (the direct-mode
//! replicator, or the capture). If one runs elsewhere it runs them, and this command follows
//! their progress; otherwise this process becomes the stream owner — holding its singleton
//! lock, streaming from its position — until its jobs are done.

use crate::supervise::supervise;
use anyhow::Context;
use concord_change::TableName;
use concord_config::{Config, SnapshotMode, TransportKind};
use concord_control::{snapshot_state, ControlStore, SnapshotJob};
use concord_snapshot::Ask;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct SnapshotArgs {
    /// TOML config file; `CONCORD_SECTION__KEY` environment variables override it.
    #[arg(long, short)]
    pub config: PathBuf,
    /// A source table, `db.table`; repeat for more (default: every replicated table).
    #[arg(long = "table", value_parser = crate::parse_table)]
    pub tables: Vec<TableName>,
    /// The range's first key (inclusive): a value, or a JSON array for a composite key.
    #[arg(long, requires = "tables")]
    pub pk_from: Option<String>,
    /// The range's last key (inclusive).
    #[arg(long, requires = "tables")]
    pub pk_to: Option<String>,
    /// Copy exactly the keys in this file, one per line (a value, or a JSON array).
    #[arg(long, requires = "tables", conflicts_with_all = ["pk_from", "pk_to"])]
    pub keys: Option<PathBuf>,
    /// Create missing target tables from the source's definition (printed and logged).
    #[arg(long)]
    pub create_tables: bool,
    /// Queue the jobs and return: the running replicator (or capture) runs them.
    #[arg(long)]
    pub no_wait: bool,
    /// Who asks (default: $USER).
    #[arg(long)]
    pub user: Option<String>,
}

pub async fn run(config: Config, a: SnapshotArgs) -> anyhow::Result<ExitCode> {
    if (a.pk_from.is_some() || a.pk_to.is_some() || a.keys.is_some()) && a.tables.len() != 1 {
        eprintln!("concord: --pk-from, --pk-to and --keys need exactly one --table");
        return Ok(ExitCode::from(2));
    }
    let control =
        ControlStore::connect(config.control.url.expose(), &config.control.url.redacted()).await?;
    let keys = match &a.keys {
        Some(path) => Some(read_keys(path)?),
        None => None,
    };
    let ask = Ask {
        tables: a.tables.clone(),
        pk_from: a.pk_from.clone(),
        pk_to: a.pk_to.clone(),
        keys,
        create_tables: a.create_tables,
        actor: crate::records::actor(a.user.clone()),
    };
    let jobs =
        match concord_snapshot::queue(&config, &control, &ask, &mut |s| println!("{s}")).await {
            Ok(jobs) => jobs,
            Err(e) if !e.is_transient() => {
                eprintln!("concord: {}", concord_snapshot::chain(&e));
                return Ok(ExitCode::from(2));
            }
            Err(e) => return Err(anyhow::Error::new(e).context("queueing the snapshot")),
        };
    for j in &jobs {
        println!(
            "queued snapshot job {} of {} ({})",
            j.id,
            j.table,
            j.kind.as_str()
        );
    }
    if a.no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    follow_or_own(&config, &control, &jobs).await
}

/// Waits for `jobs` to end: follows the running stream owner's progress, or — when none
/// runs — streams in this process (holding the owner's lock) until they are done.
pub async fn follow_or_own(
    config: &Config,
    control: &ControlStore,
    jobs: &[SnapshotJob],
) -> anyhow::Result<ExitCode> {
    if jobs.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    let role = match config.transport.kind {
        TransportKind::Direct => "replicator",
        TransportKind::Kafka => "capture",
    };
    let name = crate::guard::singleton(config, role).expect("the stream owner runs once");
    match crate::guard::try_hold(config, &name).await? {
        Some(mut lease) => {
            tracing::info!(
                role,
                "no {role} runs: this process streams until the snapshot is done"
            );
            let mut owner = config.clone();
            // Only the jobs asked for: none planned of its own.
            owner.snapshot.mode = SnapshotMode::Never;
            tokio::select! {
                e = stream_owner(&owner, role) => Err(e),
                e = lease.lost() => Err(anyhow::Error::new(e).context("the snapshot stopped")),
                done = follow(control, &ids) => done,
                _ = crate::shutdown_signal() => {
                    eprintln!("concord: stopped; the jobs resume where they are when a {role} runs");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        None => {
            eprintln!("concord: the running {role} copies the rows; following its progress");
            tokio::select! {
                done = follow(control, &ids) => done,
                _ = crate::shutdown_signal() => {
                    eprintln!("concord: stopped following; the {role} goes on with the jobs");
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
    }
}

/// The stream owner of `config`'s mode, restarted on errors a restart gets past.
async fn stream_owner(config: &Config, role: &'static str) -> anyhow::Error {
    let readiness = concord_telemetry::Readiness::new();
    let health = readiness.role(role);
    let backoff = config.replicator.max_backoff;
    match config.transport.kind {
        TransportKind::Direct => anyhow::Error::new(
            supervise(health, backoff, |ready| {
                concord_replicator::direct::run(config, ready)
            })
            .await,
        ),
        TransportKind::Kafka => anyhow::Error::new(
            supervise(health, backoff, |ready| concord_capture::run(config, ready)).await,
        ),
    }
    .context(format!("{role} stopped"))
}

/// Shows the jobs' progress until each has ended; exit 0 when all are done.
async fn follow(control: &ControlStore, ids: &[i64]) -> anyhow::Result<ExitCode> {
    let mut view = View::new();
    loop {
        let mut jobs = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(j) = control.snapshot_job(id).await? {
                jobs.push(j);
            }
        }
        view.show(&jobs);
        if jobs.iter().all(SnapshotJob::is_finished) {
            view.clear();
            return Ok(report(&jobs));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prints how each job ended; exit 0 when all are done.
fn report(jobs: &[SnapshotJob]) -> ExitCode {
    let mut ok = true;
    for j in jobs {
        match j.state.as_str() {
            snapshot_state::DONE => println!(
                "{}: {} rows copied, {} deleted ({} chunks)",
                j.table, j.rows_copied, j.rows_deleted, j.chunks
            ),
            state => {
                ok = false;
                println!(
                    "{}: {state}: {}",
                    j.table,
                    j.error.as_deref().unwrap_or("no reason given")
                );
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A bar per job on a terminal; a log line per job every 10 s otherwise.
struct View {
    bars: Option<(MultiProgress, HashMap<i64, ProgressBar>)>,
    logged: Instant,
}

impl View {
    fn new() -> Self {
        Self {
            bars: std::io::stderr()
                .is_terminal()
                .then(|| (MultiProgress::new(), HashMap::new())),
            logged: Instant::now(),
        }
    }

    fn show(&mut self, jobs: &[SnapshotJob]) {
        let Some((multi, bars)) = &mut self.bars else {
            if self.logged.elapsed() >= Duration::from_secs(10) {
                for j in jobs.iter().filter(|j| !j.is_finished()) {
                    tracing::info!(table = %j.table, job = j.id, state = %j.state, copied = j.rows_copied,
                        estimate = j.rows_estimate, deleted = j.rows_deleted, "snapshot progress");
                }
                self.logged = Instant::now();
            }
            return;
        };
        for j in jobs {
            let bar = bars.entry(j.id).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(j.rows_estimate.max(1) as u64));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>24} [{bar:30}] {pos}/~{len} rows ({per_sec}, ETA {eta}) {msg}",
                    )
                    .expect("a valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(j.table.to_string());
                bar
            });
            let copied = j.rows_copied.max(0) as u64;
            if copied > bar.length().unwrap_or(0) {
                bar.set_length(copied);
            }
            bar.set_position(copied);
            bar.set_message(j.state.clone());
            if j.is_finished() && !bar.is_finished() {
                bar.finish();
            }
        }
    }

    fn clear(&mut self) {
        if let Some((multi, _)) = &self.bars {
            let _ = multi.clear();
        }
    }
}

/// Keys from a file, one per line: a JSON value (an array for a composite key), or else
/// the line as text.
fn read_keys(path: &PathBuf) -> anyhow::Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --keys {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|_| serde_json::Value::String(l.to_owned()))
        })
        .collect())
}
