//! The control store: where concord keeps what an operator must be able to see and act on
//! — failed events, mismatches, role positions, and the recovery history of every record.
//!
//! A SQLite file by default (embedded), a MySQL/MariaDB database when several processes
//! share it. Both are reached through sqlx's `Any` driver with per-backend migrations.
//!
//! Invariant: recording the same failure twice (a replay after a crash) updates one
//! record — its origin (binlog file, position, row index) is unique.

mod audit;
mod batch_jobs;
mod checksum_runs;
mod console;
mod failed;
mod lifecycle;
mod listing;
mod mismatches;
mod missing;
mod positions;
mod snapshot_jobs;

pub use audit::AuditFilter;
pub use batch_jobs::{BatchJob, BatchRequest};
pub use checksum_runs::ChecksumRun;
pub use console::{process_name, AuditRow, BulkJob, ConsoleSession, Heartbeat};
pub use failed::{FailedEvent, FailedEventRow, FailureReason};
pub use lifecycle::{FailedState, HistoryRow, MismatchState, Move, NamedRow, Setting, Subject};
pub use listing::{ChecksumRunRow, FailedFilter};
pub use mismatches::{
    ColumnDiff, Detector, ListOrder, Mismatch, MismatchFilter, MismatchKind, MismatchRow, DETECTED,
};
pub use missing::{MissingRows, MissingTable};
pub use positions::{SavedPosition, VerifierPosition};
pub use snapshot_jobs::{snapshot_state, SnapshotJob, SnapshotKind, SnapshotRequest};

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::AnyPool;
use std::sync::LazyLock;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control store {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("control store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("control store query: {0}")]
    Query(#[from] sqlx::Error),
}

impl ControlError {
    /// Everything but a broken migration may pass: a failed event must be recorded before
    /// replication moves past it, so callers retry these rather than drop the record.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ControlError::Migrate(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    MySql,
}

#[derive(Clone, Debug)]
pub struct ControlStore {
    pool: AnyPool,
    backend: Backend,
}

/// The migrations, which only ever add (tables, indexes, nullable columns): a store migrated
/// by a newer concord is read and written by an older one, so a rollback of the binary
/// needs no rollback of the store. An older binary skips the migrations it does not know
/// (`ignore_missing`) instead of refusing to start.
static SQLITE_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| {
    let mut m = sqlx::migrate!("./migrations/sqlite");
    m.set_ignore_missing(true);
    m
});
static MYSQL_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| {
    let mut m = sqlx::migrate!("./migrations/mysql");
    m.set_ignore_missing(true);
    m
});

impl ControlStore {
    /// Connects (creating a SQLite file if needed) and brings the schema up to date.
    pub async fn connect(url: &str, redacted: &str) -> Result<Self, ControlError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = match mysql_url(url) {
            Some(url) => (Backend::MySql, url),
            None if url.contains('?') => (Backend::Sqlite, url.to_owned()),
            None => (Backend::Sqlite, format!("{url}?mode=rwc")),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 1 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // MariaDB answers a list filtered by table and state (ORDER BY id LIMIT)
                    // by intersecting two indexes and sorting every match — 20,000 rows for
                    // a page of 50 (1.5 s under load in bench/console.sh); without the
                    // intersection it walks the key in order and stops at the page's end.
                    if backend == Backend::MySql {
                        sqlx::query(
                            "SET SESSION optimizer_switch = 'index_merge_intersection=off'",
                        )
                        .execute(conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| ControlError::Connect {
                url: redacted.to_owned(),
                source,
            })?;
        match backend {
            Backend::Sqlite => {
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&pool)
                    .await?;
                migrate_sqlite(&pool).await?;
            }
            // MySQL migrations take a named lock: concurrent starts wait for each other.
            Backend::MySql => MYSQL_MIGRATIONS.run(&pool).await?,
        }
        Ok(Self { pool, backend })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction that will write. On SQLite it begins as the writer (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads and then writes fails at once with
    /// "database is locked" when another process committed in between (WAL's busy
    /// snapshot, which no busy timeout waits out), while an immediate one waits its turn.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::MySql => self.pool.begin().await,
        }
    }
}

/// The control store's URL as a MySQL URL (`mariadb://` spelled `mysql://`) when the store
/// is a MariaDB/MySQL database; `None` for a SQLite file (`sqlite:`).
pub fn mysql_url(url: &str) -> Option<String> {
    (!url.starts_with("sqlite:")).then(|| url.replacen("mariadb://", "mysql://", 1))
}

/// SQLite migrations take no lock of their own: the roles of one process are serialised
/// here, and a process that raced another one over the same file (both saw a migration
/// missing; one applied it first) tries again, finding it applied.
async fn migrate_sqlite(pool: &AnyPool) -> Result<(), ControlError> {
    static MIGRATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = MIGRATING.lock().await;
    let mut attempt: u64 = 0;
    loop {
        match SQLITE_MIGRATIONS.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::info!(error = %e, "control store migration raced another process; trying again");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs `op` until the control store accepts it, waiting with doubling backoff (capped at
/// `max_backoff`) between attempts, and returns how many attempts failed. For writes that
/// must not be lost: a failed event or a position is stored before work moves past it, so
/// a control store that is down holds that work back instead.
pub async fn until_stored<F, Fut>(what: &str, max_backoff: Duration, mut op: F) -> u32
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), ControlError>>,
{
    let mut backoff = Duration::from_millis(100);
    let mut failed = 0;
    while let Err(e) = op().await {
        failed += 1;
        tracing::warn!(error = %e, retry_in = ?backoff, "control store unavailable; {what} not stored yet");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max_backoff);
    }
    failed
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// TEXT columns read through the `Any` driver from MariaDB arrive typed as BLOB; accept
/// either and require UTF-8 (concord only ever writes UTF-8 there).
pub(crate) fn text(r: &sqlx::any::AnyRow, i: usize) -> Result<String, sqlx::Error> {
    use sqlx::Row;
    match r.try_get::<String, _>(i) {
        Ok(s) => Ok(s),
        Err(_) => {
            let bytes: Vec<u8> = r.try_get(i)?;
            String::from_utf8(bytes).map_err(|e| sqlx::Error::Decode(Box::new(e)))
        }
    }
}
