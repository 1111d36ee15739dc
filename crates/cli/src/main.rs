//! `concord`: one binary, a subcommand per role. This is the only place that turns errors
//! into exit codes and messages for a person.

/// Every role moves row images through many small allocations (decoded binlog values,
/// rows read back for verification); glibc's allocator spent about a third of the
/// verifier's CPU time in a profile of the verification benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use concord_change::TableName;
use concord_checksum::Selection;
use concord_config::{Config, TransportKind};
use concord_telemetry::LogFormat;
use concord_telemetry::Readiness;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use supervise::supervise;
use tokio_util::task::AbortOnDropHandle;

mod batch;
mod failed;
mod guard;
mod publish;
mod records;
mod snapshot;
mod supervise;

#[derive(Parser)]
#[command(
    name = "concord",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("CONCORD_GIT_REV"), ")"),
    about = "Keeps a target database a verified copy of a MySQL/MariaDB source"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = Format::Human, global = true)]
    log_format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Apply changes to the target: from the binlog (direct mode) or from Kafka.
    Replicate(ConfigArg),
    /// Every role in one process, direct mode: the replicator, the verifier and recovery.
    Run(ConfigArg),
    /// Check every replicated change again after `verifier.delay`, against the target and
    /// the source, and record mismatches.
    Verify(ConfigArg),
    /// Publish the source's binlog to Kafka as change envelopes (kafka mode).
    Capture(ConfigArg),
    /// Copy the rows the source already holds — every replicated table, some, a key range
    /// or listed keys — while replication runs (docs/SNAPSHOT.md). Exit 0: done; 1: a job
    /// failed; 2: refused (no primary key, no target table without --create-tables, a bad
    /// key).
    Snapshot(snapshot::SnapshotArgs),
    /// Compare whole tables between source and target, online, chunk by chunk; record the
    /// rows the source confirms differ. Exit 0: all equal; 3: mismatches recorded; 1: a
    /// table could not be checked, or an error; 2: bad arguments.
    Checksum(ChecksumArgs),
    /// List the replicated tables the target lacked while rows arrived for them (one record
    /// per table: row count and binlog range); `--resolve db.table` once it was re-synced.
    MissingTables(MissingArgs),
    /// The recovery worker: after `recovery.grace`, each detected mismatch is looked at
    /// again — resolved, repaired (auto-repair on, circuit closed) or handed to a person.
    /// `concord recovery resume` closes the auto-repair circuit.
    Recovery(RecoveryArgs),
    /// Mismatch records: `list` (filters, newest first) and `show ID` (both rows now, the
    /// repair's SQL, the history).
    #[command(subcommand)]
    Mismatches(MismatchesCommand),
    /// Repair mismatch records (by id or filter) through the guarded repair; `--dry-run`
    /// prints the SQL and changes nothing. Exit 3: some were not repaired; 4: more than 100
    /// without `--yes`.
    Repair(ActArgs),
    /// Ignore mismatch records (by id or filter) with a `--reason`, kept in the history.
    Ignore(ActArgs),
    /// Failed events (rows the target refused): `list`, `show ID`, `retry ID…` (apply the
    /// stored change again), `repair ID…` (write the source's current row), `ignore ID…
    /// --reason TEXT`. Exit 3: some were not settled.
    #[command(subcommand)]
    Failed(FailedCommand),
    /// Load and validate the config, print it with secrets hidden, and exit.
    CheckConfig(ConfigArg),
    /// The web console: `hash-password` prints the argon2 hash of a password for
    /// `[[console.users]]`. The console itself is served by `concord run` and
    /// `concord recovery` when `[console]` is set.
    #[command(subcommand)]
    Console(ConsoleCommand),
}

#[derive(Subcommand)]
enum ConsoleCommand {
    /// Read a password (from the terminal without echo, or one line of standard input)
    /// and print its argon2id PHC string for `console.users[].password_hash`.
    HashPassword,
}

#[derive(clap::Args)]
#[command(subcommand_negates_reqs = true)]
struct RecoveryArgs {
    #[command(subcommand)]
    action: Option<RecoveryAction>,
    /// TOML config file; `CONCORD_SECTION__KEY` environment variables override it.
    #[arg(long, short, required = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum RecoveryAction {
    /// Re-sync one table's key range: every row the chunked checksum finds different (and
    /// the source confirms) is repaired through the guarded write; resumable after kill -9;
    /// `--dry-run` prints the SQL and changes nothing. Exit 3: some rows were not repaired.
    Batch {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: batch::BatchArgs,
    },
    /// Close the auto-repair circuit: automatic repair goes on.
    Resume {
        #[command(flatten)]
        config: ConfigArg,
        /// Why (kept with the circuit's state).
        #[arg(long, default_value = "")]
        reason: String,
        /// Who (default: $USER).
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum MismatchesCommand {
    /// Records matching the filters, newest first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        filter: records::FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Only records older than this id (the next page).
        #[arg(long)]
        before_id: Option<i64>,
        #[arg(long, value_enum, default_value_t = records::Output::Table)]
        format: records::Output,
    },
    /// One record: as recorded, both rows now, the repair's SQL, its history.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        id: i64,
        #[arg(long, value_enum, default_value_t = records::Output::Table)]
        format: records::Output,
    },
}

#[derive(Subcommand)]
enum FailedCommand {
    /// Failed events, newest first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// A source table, `db.table`.
        #[arg(long, value_parser = parse_table)]
        table: Option<TableName>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, value_enum, default_value_t = records::Output::Table)]
        format: records::Output,
    },
    /// One event: the stored change, the error, its origin, its history.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        id: i64,
    },
    /// Apply the stored change again (refused if the source row moved on since).
    Retry(FailedActArgs),
    /// Write the source's current row through the guarded repair.
    Repair(FailedActArgs),
    /// Close the events with a `--reason`.
    Ignore(FailedActArgs),
}

#[derive(clap::Args)]
struct FailedActArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[arg(required = true)]
    ids: Vec<i64>,
    /// Why (required to ignore).
    #[arg(long, default_value = "")]
    reason: String,
    /// Who (default: $USER).
    #[arg(long)]
    user: Option<String>,
}

#[derive(clap::Args)]
struct ActArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Record ids; or select with the filters.
    ids: Vec<i64>,
    #[command(flatten)]
    filter: records::FilterArgs,
    /// Print what would be done; change nothing (repair).
    #[arg(long)]
    dry_run: bool,
    /// Why (required to ignore).
    #[arg(long, default_value = "")]
    reason: String,
    /// Go on with more than 100 records.
    #[arg(long)]
    yes: bool,
    /// Who (default: $USER).
    #[arg(long)]
    user: Option<String>,
}

#[derive(clap::Args)]
struct MissingArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Mark this source table's open record resolved (the table exists now and was
    /// re-synced from the source); its next missing rows open a new record.
    #[arg(long, value_parser = parse_table)]
    resolve: Option<TableName>,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// TOML config file; `CONCORD_SECTION__KEY` environment variables override it.
    #[arg(long, short)]
    config: PathBuf,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["tables", "all"])))]
struct ChecksumArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// A source table, `db.table`; repeat for more.
    #[arg(long = "table", value_parser = parse_table)]
    tables: Vec<TableName>,
    /// Every source table the config replicates.
    #[arg(long)]
    all: bool,
    /// Start the tables over instead of resuming an interrupted run.
    #[arg(long)]
    restart: bool,
    /// Serve /metrics on `metrics.listen` while running (not while `concord run` holds it).
    #[arg(long)]
    serve_metrics: bool,
}

fn parse_table(s: &str) -> Result<TableName, String> {
    match s.split_once('.') {
        Some((db, t)) if !db.is_empty() && !t.is_empty() => Ok(TableName::new(db, t)),
        _ => Err(format!("expected db.table, got `{s}`")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    concord_telemetry::init_tracing(match cli.log_format {
        Format::Human => LogFormat::Human,
        Format::Json => LogFormat::Json,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("concord: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    if let Command::Checksum(a) = command {
        let config = load(&a.config)?;
        return checksum(config, a).await;
    }
    if let Command::Console(ConsoleCommand::HashPassword) = command {
        return hash_password();
    }
    if let Command::Snapshot(a) = command {
        let config = load(&ConfigArg {
            config: a.config.clone(),
        })?;
        return snapshot::run(config, a).await;
    }
    if let Command::MissingTables(a) = command {
        let config = load(&a.config)?;
        return missing_tables(config, a.resolve).await;
    }
    match command {
        Command::Mismatches(c) => mismatches(c).await,
        Command::Repair(a) => act(a, true).await,
        Command::Ignore(a) => act(a, false).await,
        Command::Failed(c) => failed_command(c).await,
        Command::Recovery(RecoveryArgs {
            action:
                Some(RecoveryAction::Resume {
                    config,
                    reason,
                    user,
                }),
            ..
        }) => {
            let config = load(&config)?;
            let recovery = concord_recovery::Recovery::connect(&config).await?;
            let was_open = recovery.resume(&records::actor(user), &reason).await?;
            println!(
                "auto-repair circuit {}",
                if was_open { "closed" } else { "was not open" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Recovery(RecoveryArgs {
            action: Some(RecoveryAction::Batch { config, args }),
            ..
        }) => {
            let config = load(&config)?;
            batch::run(&config, args).await
        }
        command => role(command).await,
    }
}

async fn mismatches(c: MismatchesCommand) -> anyhow::Result<ExitCode> {
    match c {
        MismatchesCommand::List {
            config,
            filter,
            limit,
            before_id,
            format,
        } => {
            let config = load(&config)?;
            let mut f = match records::filter(&config, &filter, &[]).await? {
                Ok(f) => f,
                Err(why) => return bad_argument(&why),
            };
            f.before_id = before_id;
            let store = concord_control::ControlStore::connect(
                config.control.url.expose(),
                &config.control.url.redacted(),
            )
            .await?;
            records::list(&store, &f, limit.clamp(1, 10_000), format).await
        }
        MismatchesCommand::Show { config, id, format } => {
            let config = load(&config)?;
            let recovery = concord_recovery::Recovery::connect(&config).await?;
            records::show(&recovery, id, format).await
        }
    }
}

async fn act(a: ActArgs, repair: bool) -> anyhow::Result<ExitCode> {
    let config = load(&a.config)?;
    let selects = a.filter.tables.len()
        + a.filter.states.len()
        + a.filter.kinds.len()
        + usize::from(a.filter.since.is_some())
        + usize::from(a.filter.key_contains.is_some());
    if a.ids.is_empty() && selects == 0 {
        return bad_argument(
            "name the records: ids, or a filter such as --table db.t --state needs_manual",
        );
    }
    let f = match records::filter(&config, &a.filter, &a.ids).await? {
        Ok(f) => f,
        Err(why) => return bad_argument(&why),
    };
    let recovery = concord_recovery::Recovery::connect(&config).await?;
    let actor = records::actor(a.user);
    if repair {
        records::repair(&recovery, &f, a.dry_run, a.yes, &actor).await
    } else {
        records::ignore(&recovery, &f, &a.reason, a.yes, &actor).await
    }
}

async fn failed_command(c: FailedCommand) -> anyhow::Result<ExitCode> {
    use concord_recovery::failed::FailedAction;
    let store = |config: &Config| {
        let (url, redacted) = (
            config.control.url.expose().to_owned(),
            config.control.url.redacted(),
        );
        async move { concord_control::ControlStore::connect(&url, &redacted).await }
    };
    let (a, action) = match c {
        FailedCommand::List {
            config,
            table,
            limit,
            format,
        } => {
            let config = load(&config)?;
            let store = store(&config).await?;
            return failed::list(&store, table.as_ref(), limit.clamp(1, 10_000), format).await;
        }
        FailedCommand::Show { config, id } => {
            let config = load(&config)?;
            return failed::show(&store(&config).await?, id).await;
        }
        FailedCommand::Retry(a) => (a, Some(FailedAction::Retry)),
        FailedCommand::Repair(a) => (a, Some(FailedAction::Repair)),
        FailedCommand::Ignore(a) => (a, None),
    };
    let config = load(&a.config)?;
    let recovery = concord_recovery::Recovery::connect(&config).await?;
    failed::act(
        &recovery,
        &a.ids,
        action,
        &a.reason,
        &records::actor(a.user),
    )
    .await
}

fn bad_argument(why: &str) -> anyhow::Result<ExitCode> {
    eprintln!("concord: {why}");
    Ok(ExitCode::from(2))
}

/// The long-running roles.
async fn role(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::CheckConfig(a) => {
            let config = load(&a)?;
            println!("{config:#?}");
            println!("config OK");
            Ok(())
        }
        Command::Replicate(a) => {
            let config = load(&a)?;
            replicate(config).await
        }
        Command::Run(a) => {
            let config = load(&a)?;
            if config.transport.kind == TransportKind::Kafka {
                anyhow::bail!(
                    "`concord run` is the direct-mode all-in-one; with transport.kind = \"kafka\" \
                     start `concord capture` and `concord replicate` instead"
                );
            }
            run_all(config).await
        }
        Command::Verify(a) => {
            let config = load(&a)?;
            verify(config).await
        }
        Command::Capture(a) => {
            let config = load(&a)?;
            capture(config).await
        }
        Command::Recovery(a) => {
            let path = a
                .config
                .expect("clap requires --config without a subcommand");
            let config = load(&ConfigArg { config: path })?;
            recovery(config).await
        }
        Command::Checksum(_)
        | Command::Snapshot(_)
        | Command::MissingTables(_)
        | Command::Mismatches(_)
        | Command::Repair(_)
        | Command::Ignore(_)
        | Command::Failed(_)
        | Command::Console(_) => unreachable!("handled above"),
    }
    .map(|()| ExitCode::SUCCESS)
}

fn load(a: &ConfigArg) -> anyhow::Result<Config> {
    Config::load(Some(&a.config)).with_context(|| format!("invalid config {}", a.config.display()))
}

/// Runs one role under the supervisor, with `/readyz` for it, until a signal or an error
/// no restart can get past. On a signal nothing needs flushing: an uncommitted batch is
/// rolled back by the target, a verifier's saved position is the end of a fully verified
/// round, unacknowledged messages are published again — each resumes from its saved
/// position.
async fn one_role<E, F, Fut>(config: &Config, role: &'static str, attempt: F) -> anyhow::Result<()>
where
    E: supervise::RoleError + Send + Sync,
    F: FnMut(std::sync::Arc<std::sync::atomic::AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let readiness = Readiness::new();
    let health = readiness.role(role);
    concord_telemetry::serve(config.metrics.listen_addr(), readiness).await?;
    let _beating = AbortOnDropHandle::new(tokio::spawn(publish::forever(
        config.clone(),
        command_of(role),
    )));
    let mut attempt = attempt;
    loop {
        let Some(mut lease) = guarded(config, role, &health).await? else {
            return Ok(()); // a signal while waiting as the standby
        };
        tokio::select! {
            e = supervise(health.clone(), config.replicator.max_backoff, &mut attempt) => {
                return Err(anyhow::Error::new(e).context(format!("{role} stopped")));
            }
            e = lost(&mut lease) => lost_lock(&e, &[&health]),
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                return Ok(());
            }
        }
    }
}

/// The lock was lost (its server went away, or another session holds it): the roles have
/// been stopped by now — dropped mid-step; an open target transaction is rolled back when
/// its session closes, or, cut off from the server, when the server ends the silent session
/// (`concord_target::session::WRITER_WAIT_TIMEOUT`) — and the process waits to hold the
/// lock again, as the standby.
fn lost_lock(e: &concord_lease::LeaseError, roles: &[&concord_telemetry::RoleHealth]) {
    tracing::warn!(error = %e, "the singleton lock was lost: the roles stopped; waiting to hold it again");
    for r in roles {
        r.set_down(e.to_string(), std::time::Duration::ZERO);
    }
}

/// The singleton lock when `role` needs one (waiting for it as the standby): `Some(None)`
/// for a role that needs none, `None` when a signal came first.
async fn guarded(
    config: &Config,
    role: &str,
    health: &concord_telemetry::RoleHealth,
) -> anyhow::Result<Option<Option<concord_lease::Lease>>> {
    let Some(name) = guard::singleton(config, role) else {
        return Ok(Some(None));
    };
    tokio::select! {
        lease = guard::hold(config, &name, health) => Ok(Some(Some(lease?))),
        _ = shutdown_signal() => {
            tracing::info!("shutting down (the standby)");
            Ok(None)
        }
    }
}

/// Resolves when a held lease is lost; never without one.
async fn lost(lease: &mut Option<concord_lease::Lease>) -> concord_lease::LeaseError {
    match lease {
        Some(l) => l.lost().await,
        None => std::future::pending().await,
    }
}

/// The command a role runs under, as its process's heartbeat names it.
fn command_of(role: &str) -> &'static str {
    match role {
        "replicator" => "concord replicate",
        "verifier" => "concord verify",
        "capture" => "concord capture",
        "recovery" => "concord recovery",
        _ => "concord",
    }
}

async fn replicate(config: Config) -> anyhow::Result<()> {
    let config = &config;
    one_role(config, "replicator", move |ready| async move {
        match config.transport.kind {
            TransportKind::Direct => concord_replicator::direct::run(config, ready).await,
            TransportKind::Kafka => concord_replicator::kafka::run(config, ready).await,
        }
    })
    .await
}

async fn verify(config: Config) -> anyhow::Result<()> {
    let config = &config;
    one_role(config, "verifier", move |ready| async move {
        match config.transport.kind {
            TransportKind::Direct => concord_verifier::direct::run(config, ready).await,
            TransportKind::Kafka => concord_verifier::kafka::run(config, ready).await,
        }
    })
    .await
}

/// Direct mode, all in one process: replicator, verifier and recovery side by side, each restarted
/// on its own when it fails; only an error no restart can get past (or a signal) ends the
/// process.
async fn run_all(config: Config) -> anyhow::Result<()> {
    let readiness = Readiness::new();
    let replicator = readiness.role("replicator");
    let verifier = readiness.role("verifier");
    let recovery = readiness.role("recovery");
    concord_telemetry::serve(config.metrics.listen_addr(), readiness).await?;
    let _beating = AbortOnDropHandle::new(tokio::spawn(publish::forever(
        config.clone(),
        "concord run",
    )));
    // The replicator of this replicator.name runs once: the whole process waits as the
    // standby until it holds the lock, and again whenever it loses it.
    let mut console = false;
    loop {
        let Some(mut lease) = guarded(&config, "replicator", &replicator).await? else {
            return Ok(());
        };
        if !console {
            start_console(&config).await?;
            console = true;
        }
        tokio::select! {
            e = run_roles(&config, &replicator, &verifier, &recovery) => return Err(e),
            e = lost(&mut lease) => lost_lock(&e, &[&replicator, &verifier, &recovery]),
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                return Ok(());
            }
        }
    }
}

/// `concord run`'s roles side by side, until one stops with an error no restart gets past.
async fn run_roles(
    config: &Config,
    replicator: &concord_telemetry::RoleHealth,
    verifier: &concord_telemetry::RoleHealth,
    recovery: &concord_telemetry::RoleHealth,
) -> anyhow::Error {
    // The verifier starts where the replicator first started in this process, once the
    // replicator has checked the source (so a refusal at start — settings, keyless tables
    // — is reported once, by the replicator), and so it sees every change the replicator
    // applies. A verifier that saved a position resumes from that instead.
    let (started, mut start) = tokio::sync::watch::channel(None);
    let started = &started;
    let max_backoff = config.replicator.max_backoff;
    let replicating = supervise(replicator.clone(), max_backoff, move |ready| {
        concord_replicator::direct::run_telling_start(config, ready, Some(started))
    });
    let verifying = async {
        let first = match start.wait_for(Option::is_some).await {
            Ok(first) => first.clone(),
            // The replicator stopped for good: its error is the one reported.
            Err(_) => return std::future::pending().await,
        };
        supervise(verifier.clone(), max_backoff, move |ready| {
            concord_verifier::direct::run_from(config, ready, first.clone())
        })
        .await
    };
    let recovering = supervise(recovery.clone(), max_backoff, move |ready| {
        concord_recovery::worker::run(config, ready)
    });
    tokio::select! {
        e = replicating => anyhow::Error::new(e).context("replicator stopped"),
        e = verifying => anyhow::Error::new(e).context("verifier stopped"),
        e = recovering => anyhow::Error::new(e).context("recovery stopped"),
    }
}

async fn recovery(config: Config) -> anyhow::Result<()> {
    start_console(&config).await?;
    let config = &config;
    one_role(config, "recovery", move |ready| {
        concord_recovery::worker::run(config, ready)
    })
    .await
}

/// Serves the web console in the background when the config has `[console]`.
async fn start_console(config: &Config) -> anyhow::Result<()> {
    if config.console.is_none() {
        return Ok(());
    }
    let recovery = concord_recovery::Recovery::connect(config)
        .await
        .context("starting the console")?;
    let state = concord_recovery_ui::AppState::new(
        std::sync::Arc::new(config.clone()),
        std::sync::Arc::new(recovery),
    )?;
    concord_recovery_ui::serve(state).await?;
    Ok(())
}

fn hash_password() -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, IsTerminal};
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ")?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            eprintln!("concord: the two passwords differ");
            return Ok(ExitCode::from(2));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        eprintln!("concord: an empty password cannot be used");
        return Ok(ExitCode::from(2));
    }
    let hash = concord_recovery_ui::auth::hash_password(&password)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}

async fn capture(config: Config) -> anyhow::Result<()> {
    let config = &config;
    one_role(config, "capture", move |ready| {
        concord_capture::run(config, ready)
    })
    .await
}

async fn checksum(config: Config, a: ChecksumArgs) -> anyhow::Result<ExitCode> {
    if a.serve_metrics {
        let readiness = Readiness::new();
        readiness
            .role("checksum")
            .flag()
            .store(true, Ordering::Relaxed);
        concord_telemetry::serve(config.metrics.listen_addr(), readiness).await?;
    }
    let selection = if a.all {
        Selection::All
    } else {
        Selection::Tables(a.tables)
    };
    let reports = tokio::select! {
        r = concord_checksum::run(&config, selection, a.restart) => r.context("checksum failed")?,
        _ = shutdown_signal() => {
            // Every finished chunk is saved; the next run resumes after it.
            tracing::info!("interrupted; the next run resumes each table where it stopped");
            return Ok(ExitCode::FAILURE);
        }
    };
    print_reports(&reports);
    Ok(if reports.iter().any(|r| r.mismatches > 0) {
        ExitCode::from(3)
    } else if reports.iter().any(|r| r.problem.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn missing_tables(config: Config, resolve: Option<TableName>) -> anyhow::Result<ExitCode> {
    let store = concord_control::ControlStore::connect(
        config.control.url.expose(),
        &config.control.url.redacted(),
    )
    .await?;
    if let Some(table) = resolve {
        if !store.resolve_missing(&table).await? {
            eprintln!("concord: no open missing-table record for {table}");
            return Ok(ExitCode::FAILURE);
        }
        println!("{table}: resolved");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<40} {:<40} {:>10} {:<28} {:<28}  status",
        "table", "target", "rows", "first", "last"
    );
    for m in store.missing_tables().await? {
        println!(
            "{:<40} {:<40} {:>10} {:<28} {:<28}  {}",
            m.table.to_string(),
            m.target.to_string(),
            m.rows,
            m.first.to_string(),
            m.last.to_string(),
            m.status
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_reports(reports: &[concord_checksum::TableReport]) {
    println!(
        "{:<40} {:>12} {:>8} {:>9} {:>10} {:>9} {:>10} {:>9}  problem",
        "table", "rows", "chunks", "differing", "mismatches", "resolved", "superseded", "seconds"
    );
    for r in reports {
        println!(
            "{:<40} {:>12} {:>8} {:>9} {:>10} {:>9} {:>10} {:>9.1}  {}",
            r.table.to_string(),
            r.rows,
            r.chunks,
            r.chunks_differ,
            r.mismatches,
            r.resolved,
            r.superseded,
            r.elapsed.as_secs_f64(),
            r.problem.as_deref().unwrap_or("-")
        );
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
