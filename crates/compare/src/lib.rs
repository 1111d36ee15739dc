//! Comparing a row on the source with the same row on the target, as every role that
//! compares does (the verifier, the checksum, recovery): type-aware equality
//! ([`equality`]), what a change says the target must hold ([`expect`]), reading rows many
//! at a time ([`rows`]) and the source recheck ([`recheck`]) that stands between a
//! difference and a record of it.
//!
//! Invariants:
//! - a target row is read only after the replicator has applied what it is compared with
//!   (see `concord_target::progress`), so a lagging replicator is never a difference;
//! - a difference is recorded only after the source confirmed it ([`recheck`]).

pub mod equality;
pub mod expect;
pub mod metrics;
pub mod recheck;
pub mod rows;
pub mod sql_value;

pub use expect::{coalesce, matches_target, Expectation, Item};
pub use recheck::{differences, shared_columns, Recheck};

use concord_change::{Position, TableName, Value};
use concord_config::Config;
use concord_control::ControlStore;
use concord_schema_cache::{RefreshReason, SchemaCache, TargetTable};
use concord_target::{classify, ErrorClass, Replica};
use mysql_async::{Opts, OptsBuilder, Pool};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{side} {table}: {source}")]
    Sql {
        side: &'static str,
        table: TableName,
        #[source]
        source: mysql_async::Error,
    },
    /// The server no longer has a column or table the statement named: a DDL reached it
    /// since the column set was read. Transient: that side's entry is read again (see
    /// [`Comparer::refresh_after`]) and the work is retried with the columns both sides
    /// have then.
    #[error("{side} {table}: schema changed under the statement: {source}")]
    SchemaMoved {
        side: Side,
        table: TableName,
        reason: RefreshReason,
        #[source]
        source: mysql_async::Error,
    },
    #[error(transparent)]
    Schema(#[from] concord_schema_cache::SchemaError),
    #[error(transparent)]
    Progress(#[from] concord_target::ProgressError),
    #[error(transparent)]
    Control(#[from] concord_control::ControlError),
}

impl CompareError {
    /// Connection trouble, a lock wait, a server going away, a schema that moved: retry
    /// the work. Anything else (a statement the server refuses) would fail again the same
    /// way.
    pub fn is_transient(&self) -> bool {
        match self {
            CompareError::Sql { source, .. } => classify(source) == ErrorClass::Transient,
            CompareError::Schema(e) => classify(&e.source) == ErrorClass::Transient,
            CompareError::SchemaMoved { .. } => true,
            CompareError::Progress(e) => e.is_transient(),
            CompareError::Control(e) => e.is_transient(),
        }
    }

    /// Errors no retry or restart gets past: the config must change first.
    pub fn is_fatal(&self) -> bool {
        matches!(self, CompareError::Progress(e) if !e.is_transient())
    }
}

/// What every comparison reads from: both servers (every session in UTC, see
/// [`session_opts`]), their cached column sets, the control store records go to, and how
/// far the replicator has got.
pub struct Comparer {
    pub target: Pool,
    pub source: Pool,
    pub target_schema: SchemaCache,
    pub source_schema: SchemaCache,
    pub control: ControlStore,
    pub replica: Replica,
    /// How often the replicator's progress is polled while waiting for it.
    pub poll: Duration,
    /// Between the two cycles of a recheck.
    pub retry_after: Duration,
    /// Record confirmed differences in the control store (off: a dry run collects them in
    /// [`Recheck::found`] instead).
    pub record: bool,
    /// The batch recovery job whose check this is: the records it confirms are marked as
    /// that job's (it repairs exactly those).
    pub batch_job: Option<i64>,
}

/// Connection options for comparing: sessions read TIMESTAMP values as UTC (see
/// [`sql_value`]).
///
/// Pooled connections are kept, prepared statements and all: they are not reset when they
/// return to the pool (a reset drops the session's prepared statements; nothing a
/// comparison does changes session state beyond this setup), and idle ones stay for a
/// minute rather than being closed at once — work in flight uses more connections than the
/// pool's minimum, and each new connection prepares its statements again. Pool limits
/// given in the URL (`pool_min`, `pool_max`) are kept.
pub fn session_opts(opts: Opts) -> Opts {
    let pool = opts
        .pool_opts()
        .clone()
        .with_reset_connection(false)
        .with_inactive_connection_ttl(Duration::from_secs(60));
    OptsBuilder::from_opts(opts)
        .stmt_cache_size(256)
        .pool_opts(pool)
        .setup(vec!["SET time_zone = '+00:00'".to_owned()])
        .into()
}

impl Comparer {
    /// Connects to both servers and the control store as `config` says; the target's
    /// connection is the verifier's (`verifier.target_url`, else the target's).
    pub async fn connect(config: &Config) -> Result<Self, CompareError> {
        let source = Pool::new(session_opts(config.source.opts()));
        let target = Pool::new(session_opts(config.verifier_target_opts()));
        let control =
            ControlStore::connect(config.control.url.expose(), &config.control.url.redacted())
                .await?;
        let replica = Replica::for_config(config, target.clone(), control.clone())?;
        Ok(Self {
            target_schema: SchemaCache::new(target.clone(), config.target.schema_ttl),
            source_schema: SchemaCache::new(source.clone(), config.target.schema_ttl),
            source,
            target,
            control,
            replica,
            poll: Duration::from_millis(50),
            retry_after: config.verifier.retry_after,
            record: true,
            batch_job: None,
        })
    }
}

/// Which server a read goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Comparer {
    /// The rows of `table` (as `side` describes it) with these keys, in one batch.
    pub async fn read_rows(
        &self,
        side: Side,
        table: &TargetTable,
        keys: &[Vec<Value>],
    ) -> Result<rows::Rows, CompareError> {
        self.read_rows_by(side, table, &table.primary_key, keys)
            .await
    }

    /// The rows of `table` whose columns `by` hold one of `keys`, keyed by primary key.
    pub async fn read_rows_by(
        &self,
        side: Side,
        table: &TargetTable,
        by: &[String],
        keys: &[Vec<Value>],
    ) -> Result<rows::Rows, CompareError> {
        let pool = match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        };
        let mut conn = pool
            .get_conn()
            .await
            .map_err(|e| sql(side, &table.name, e))?;
        rows::fetch_by(&mut conn, table, by, keys)
            .await
            .map_err(|e| sql(side, &table.name, e))
    }

    /// The source's binlog position now (`table` names the work it is for, in errors).
    pub async fn source_position(&self, table: &TableName) -> Result<Position, CompareError> {
        let mut conn = self
            .source
            .get_conn()
            .await
            .map_err(|e| sql(Side::Source, table, e))?;
        concord_binlog::current_position(&mut conn)
            .await
            .map_err(|e| sql(Side::Source, table, e))
    }
}

/// A server's error on a statement about `table`: [`CompareError::SchemaMoved`] when the
/// server says the table's columns moved, else [`CompareError::Sql`].
pub fn sql(side: Side, table: &TableName, source: mysql_async::Error) -> CompareError {
    match RefreshReason::of_error(&source) {
        Some(reason) => CompareError::SchemaMoved {
            side,
            table: table.clone(),
            reason,
            source,
        },
        None => CompareError::Sql {
            side: side.as_str(),
            table: table.clone(),
            source,
        },
    }
}

impl Comparer {
    /// Before work that failed with `e` is retried: if a side's schema moved under it,
    /// that side's cached column set of the table is dropped, so the retry reads it again.
    pub async fn refresh_after(&self, e: &CompareError) {
        if let CompareError::SchemaMoved {
            side,
            table,
            reason,
            ..
        } = e
        {
            metrics::SCHEMA_RETRIES
                .with_label_values(&[&table.to_string(), side.as_str()])
                .inc();
            let cache = match side {
                Side::Source => &self.source_schema,
                Side::Target => &self.target_schema,
            };
            cache.refresh(table, *reason).await;
        }
    }
}

/// The position of column `name` in `table`, if it has one.
pub fn target_index(table: &TargetTable, name: &str) -> Option<usize> {
    table
        .columns
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(name))
}

/// As [`target_index`], for a column whose values are compared: not a virtual column (the
/// server computes it on read) nor a system-versioning timestamp. A stored generated
/// column is data and is compared.
pub fn compared_index(table: &TargetTable, name: &str) -> Option<usize> {
    target_index(table, name).filter(|&j| table.columns[j].is_compared())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_limits_from_the_url_are_kept() {
        let opts = Opts::from_url("mysql://root@127.0.0.1:3307/db?pool_min=2&pool_max=7").unwrap();
        let opts = session_opts(opts);
        let limits = opts.pool_opts().constraints();
        assert_eq!((limits.min(), limits.max()), (2, 7));
        assert!(!opts.pool_opts().reset_connection());
        assert_eq!(
            opts.pool_opts().inactive_connection_ttl(),
            Duration::from_secs(60)
        );
    }
}
