//! One table's checksum run: chunk after chunk in key order, each hashed by both servers;
//! a chunk that differs is hashed again at a consistent point, then narrowed to rows, and
//! those rows go through the verifier's source recheck before anything is recorded.
//!
//! Invariants:
//! - the run's saved `last_key` only moves past a chunk once its differing rows are
//!   settled (recorded, resolved or superseded), so an interrupted run loses nothing;
//! - the second look at a differing chunk hashes the target only after the replicator has
//!   applied the source up to a position read *after* the source hash, so a replicator
//!   that is merely behind does not make a chunk differ twice.

use super::chunk::{ChunkSql, HashedColumn, KeyRange};
use super::ends::ChunkEnds;
use super::narrow::narrow;
use super::pace::{wait_until_quiet, ChunkSizer};
use crate::metrics;
use concord_change::{Position, SourceTable, TableName, Value};
use concord_compare::{
    shared_columns, sql, target_index, CompareError, Comparer, Expectation, Recheck, Side,
};
use concord_config::ChecksumConfig;
use concord_control::{ChecksumRun, Detector, Mismatch};
use concord_schema_cache::TargetTable;
use concord_target::Stream;
use mysql_async::prelude::Queryable;
use mysql_async::{Params, Pool};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one table's checksum found. Totals are the run's (a resumed run includes what was
/// done before the interruption); `resolved` and `superseded` are this invocation's.
#[derive(Clone, Debug)]
pub struct TableReport {
    pub table: TableName,
    pub rows: u64,
    pub chunks: u64,
    pub chunks_differ: u64,
    /// Rows confirmed against the source and recorded as mismatches.
    pub mismatches: u64,
    /// Rows that differed in a chunk but equalled the source's current row on recheck.
    pub resolved: u64,
    /// Rows that kept changing during the recheck (their changes are verified in turn).
    pub superseded: u64,
    pub elapsed: Duration,
    /// Why the table was not (fully) checked.
    pub problem: Option<String>,
    /// The confirmed differences, when they are not recorded (a dry run).
    pub found: Vec<Mismatch>,
}

impl TableReport {
    pub fn new(table: TableName) -> Self {
        Self {
            table,
            rows: 0,
            chunks: 0,
            chunks_differ: 0,
            mismatches: 0,
            resolved: 0,
            superseded: 0,
            elapsed: Duration::ZERO,
            problem: None,
            found: Vec::new(),
        }
    }
}

/// Both servers' descriptions of one table and what is derived from them once.
pub(crate) struct Sides {
    pub source: Arc<TargetTable>,
    pub target: Arc<TargetTable>,
    pub source_sql: ChunkSql,
    pub target_sql: ChunkSql,
    /// (source column index, target column index) of the columns both have.
    pub shared: Vec<(usize, usize)>,
    /// Source column index of each source key column, in key order.
    source_key: Vec<usize>,
    /// Source column index of each target key column, in the target's key order.
    source_for_target_key: Vec<usize>,
    /// Target column index of each source key column, in the source's key order.
    target_for_source_key: Vec<usize>,
    /// Place in the source's key of each target key column, in the target's key order.
    source_key_for_target_key: Vec<usize>,
    /// The source table as a change describes it, for recheck expectations.
    change_table: Arc<SourceTable>,
}

impl Sides {
    /// `Err` says why the table cannot be checksummed.
    pub fn new(source: Arc<TargetTable>, target: Arc<TargetTable>) -> Result<Self, String> {
        if source.primary_key.is_empty() {
            return Err("no primary key on the source".into());
        }
        let same_key = source.primary_key.len() == target.primary_key.len()
            && source
                .primary_key
                .iter()
                .all(|k| target.primary_key.iter().any(|t| t.eq_ignore_ascii_case(k)));
        if !same_key {
            return Err(format!(
                "primary keys differ (source {:?}, target {:?})",
                source.primary_key, target.primary_key
            ));
        }
        let index = |t: &TargetTable, k: &str| target_index(t, k).expect("key columns exist");
        let source_key = source
            .primary_key
            .iter()
            .map(|k| index(&source, k))
            .collect();
        let source_for_target_key = target
            .primary_key
            .iter()
            .map(|k| index(&source, k))
            .collect();
        let target_for_source_key = source
            .primary_key
            .iter()
            .map(|k| index(&target, k))
            .collect();
        let source_key_for_target_key = target
            .primary_key
            .iter()
            .map(|k| {
                source
                    .primary_key
                    .iter()
                    .position(|s| s.eq_ignore_ascii_case(k))
                    .expect("the same key columns, checked above")
            })
            .collect();
        let shared = shared_columns(Some(&source), &target);
        // The same column list, with the source's types, for both statements.
        let hashed: Vec<HashedColumn> = shared
            .iter()
            .map(|&(i, j)| {
                let c = &source.columns[i];
                HashedColumn {
                    name: c.name.clone(),
                    data_type: c.data_type.clone(),
                    nullable: c.nullable || target.columns[j].nullable,
                }
            })
            .collect();
        let change_table = Arc::new(SourceTable {
            name: source.name.clone(),
            columns: source.columns.iter().map(|c| c.name.clone()).collect(),
            primary_key: source
                .primary_key
                .iter()
                .map(|k| index(&source, k))
                .collect(),
        });
        Ok(Self {
            source_sql: ChunkSql::new(&source, &hashed),
            target_sql: ChunkSql::new(&target, &hashed),
            source,
            target,
            shared,
            source_key,
            source_for_target_key,
            target_for_source_key,
            source_key_for_target_key,
            change_table,
        })
    }

    /// A key given in the source's key order, in the target's.
    pub fn key_in_target_order(&self, key: &[Value]) -> Vec<Value> {
        self.source_key_for_target_key
            .iter()
            .map(|&i| key[i].clone())
            .collect()
    }

    /// The key of a source row, in the source's key order.
    pub fn source_key(&self, row: &[Value]) -> Vec<Value> {
        self.source_key.iter().map(|&i| row[i].clone()).collect()
    }

    /// The key of a source row, in the target's key order.
    pub fn source_key_in_target_order(&self, row: &[Value]) -> Vec<Value> {
        self.source_for_target_key
            .iter()
            .map(|&i| row[i].clone())
            .collect()
    }

    /// The key of a target row, in the source's key order.
    pub fn key_from_target(&self, row: &[Value]) -> Vec<Value> {
        self.target_for_source_key
            .iter()
            .map(|&i| row[i].clone())
            .collect()
    }

    pub fn expectation(
        &self,
        key: Vec<Value>,
        after: Option<Vec<Value>>,
        stream: &Stream,
        origin: &Position,
    ) -> Expectation {
        Expectation {
            source: self.change_table.clone(),
            key,
            after,
            stream: stream.clone(),
            origin: origin.clone(),
            changes: 1,
        }
    }
}

/// Checks one table from where its run stands; `report` gathers what was found. Returns
/// when the table is done, or with the first error (the run resumes from its last saved
/// chunk when called again).
pub(crate) async fn checksum_table(
    checker: &Comparer,
    settings: &ChecksumConfig,
    sides: &Sides,
    stream: &Stream,
    of: &RunOf<'_>,
    report: &mut TableReport,
    on_chunk: &mut (dyn FnMut(&ChecksumRun) + Send),
) -> Result<(), CompareError> {
    let name = &sides.source.name;
    let label = name.to_string();
    let (restart, bounds) = (of.restart, of.bounds);
    let mut run = checker
        .control
        .checksum_run_in(name, of.scope, restart)
        .await?;
    let mut after: Option<Vec<Value>> = match run.last_key.as_deref() {
        None => None,
        Some(k) => match serde_json::from_str(k) {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!(table = %name, error = %e, "saved checksum key unreadable; starting the table over");
                run = checker
                    .control
                    .checksum_run_in(name, of.scope, true)
                    .await?;
                None
            }
        },
    };
    if after.is_some() {
        tracing::info!(table = %name, chunks = run.chunks, rows = run.rows, "resuming checksum run");
    } else if let Some(from) = &bounds.from {
        // A range walks from the last source key below its start.
        after = key_before(&checker.source, sides, from)
            .await
            .map_err(|e| sql(Side::Source, name, e))?;
    }
    let estimate = estimated_rows(&checker.source, name).await?;
    let mut sizer = ChunkSizer::new(settings.first_chunk_rows, settings.chunk_time);
    let source_err = |e| sql(Side::Source, name, e);
    let mut ends = ChunkEnds::new(&checker.source, sides, estimate)
        .await
        .map_err(source_err)?;
    loop {
        wait_until_quiet(&checker.source, settings.max_threads_running)
            .await
            .map_err(source_err)?;
        let through = ends
            .next(&checker.source, sides, after.as_deref(), sizer.rows())
            .await
            .map_err(source_err)?;
        let range = KeyRange {
            after: after.clone(),
            through: through.clone(),
            from: bounds.from.clone(),
            until: bounds.to.clone(),
        };
        // First look: both servers at once. Equal hashes settle the chunk.
        let timed_source = async {
            let t = Instant::now();
            let h = hash(&checker.source, &sides.source_sql, &range).await;
            (h, t.elapsed())
        };
        let (source, target) = tokio::join!(
            timed_source,
            hash(&checker.target, &sides.target_sql, &range)
        );
        let (source, took) = source;
        let source = source.map_err(source_err)?;
        let target = target.map_err(|e| sql(Side::Target, &sides.target.name, e))?;
        sizer.observe(source.0, took);
        ends.observe(after.as_deref(), through.as_deref(), source.0);
        let mut rows = source.0;
        let mut differs = source != target;
        if differs {
            // Second look at a consistent point: the target once the replicator has
            // applied everything the source had when it was hashed.
            let (again, origin) = consistent_hashes(checker, sides, stream, &range).await?;
            rows = again.0 .0;
            differs = again.0 != again.1;
            if differs {
                let found = narrow(checker, sides, &range, stream, &origin).await?;
                tracing::info!(table = %name, ?range, rows = found.len(), "chunk differs; rechecking its differing rows");
                if !found.is_empty() {
                    confirm(checker, sides, found, report, &mut run).await?;
                }
            }
        }
        run.chunks += 1;
        run.rows += rows as i64;
        run.chunks_differ += i64::from(differs);
        run.last_key = through
            .as_ref()
            .map(|k| serde_json::to_string(k).expect("values serialize"));
        metrics::CHECKSUM_ROWS
            .with_label_values(&[&label])
            .inc_by(rows);
        metrics::CHECKSUM_CHUNKS
            .with_label_values(&[label.as_str(), if differs { "differ" } else { "same" }])
            .inc();
        if estimate > 0 {
            metrics::CHECKSUM_PROGRESS
                .with_label_values(&[&label])
                .set((run.rows as f64 / estimate as f64).min(1.0));
        }
        let done = match (&through, &bounds.to) {
            (None, _) => true,
            (Some(t), Some(_)) => !rows_beyond(checker, sides, t, &range).await?,
            (Some(_), None) => false,
        };
        if done {
            checker.control.finish_checksum(&run).await?;
            metrics::CHECKSUM_PROGRESS
                .with_label_values(&[&label])
                .set(1.0);
        } else {
            checker.control.save_checksum_progress(&run).await?;
        }
        report.rows = run.rows as u64;
        report.chunks = run.chunks as u64;
        report.chunks_differ = run.chunks_differ as u64;
        report.mismatches = run.mismatches as u64;
        on_chunk(&run);
        if done {
            return Ok(());
        }
        after = through;
    }
}

/// Rows that differed, through the source recheck: the report and the run count what it
/// resolved, superseded and confirmed.
pub(crate) async fn confirm(
    checker: &Comparer,
    sides: &Sides,
    found: Vec<Expectation>,
    report: &mut TableReport,
    run: &mut ChecksumRun,
) -> Result<(), CompareError> {
    let Recheck {
        resolved,
        superseded,
        confirmed,
        found,
        ..
    } = checker
        .recheck(&sides.target.name, &sides.target, found, Detector::Checksum)
        .await?;
    report.resolved += resolved as u64;
    report.superseded += superseded as u64;
    report.found.extend(found);
    run.mismatches += confirmed as i64;
    Ok(())
}

/// Which run a table's check belongs to and what it covers.
#[derive(Clone, Copy)]
pub(crate) struct RunOf<'a> {
    /// The run's scope (see `ControlStore::checksum_run_in`).
    pub scope: &'a str,
    /// Start over instead of resuming.
    pub restart: bool,
    pub bounds: &'a Bounds,
}

/// A key range to check, inclusive at both ends; `None`: open.
#[derive(Clone, Debug, Default)]
pub struct Bounds {
    pub from: Option<Vec<Value>>,
    pub to: Option<Vec<Value>>,
}

/// Whether either side has rows after `through` up to the range's end.
async fn rows_beyond(
    checker: &Comparer,
    sides: &Sides,
    through: &[Value],
    range: &KeyRange,
) -> Result<bool, CompareError> {
    let rest = KeyRange {
        after: Some(through.to_vec()),
        through: None,
        ..range.clone()
    };
    for (pool, sql_of, side, table) in [
        (
            &checker.source,
            &sides.source_sql,
            Side::Source,
            &sides.source.name,
        ),
        (
            &checker.target,
            &sides.target_sql,
            Side::Target,
            &sides.target.name,
        ),
    ] {
        let (text, params) = sql_of.any(&rest);
        let mut conn = pool.get_conn().await.map_err(|e| sql(side, table, e))?;
        let found: Option<u8> = conn
            .exec_first(text, Params::Positional(params))
            .await
            .map_err(|e| sql(side, table, e))?;
        if found.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The largest source key below `key`.
async fn key_before(
    pool: &Pool,
    sides: &Sides,
    key: &[Value],
) -> Result<Option<Vec<Value>>, mysql_async::Error> {
    let (text, params) = sides.source_sql.key_before(key);
    let mut conn = pool.get_conn().await?;
    let row: Option<mysql_async::Row> = conn.exec_first(text, Params::Positional(params)).await?;
    let types = sides.source.primary_key.iter().map(|k| {
        sides
            .source
            .column(k)
            .map(|c| c.data_type.clone())
            .unwrap_or_default()
    });
    Ok(row.map(|r| {
        r.unwrap()
            .into_iter()
            .zip(types)
            .map(|(v, ty)| concord_compare::sql_value::from_sql(v, &ty))
            .collect()
    }))
}

type Hash = (u64, u64);

/// Source hash, then the source position, the replicator past it, then the target hash.
async fn consistent_hashes(
    checker: &Comparer,
    sides: &Sides,
    stream: &Stream,
    range: &KeyRange,
) -> Result<((Hash, Hash), Position), CompareError> {
    let name = &sides.source.name;
    let source = hash(&checker.source, &sides.source_sql, range)
        .await
        .map_err(|e| sql(Side::Source, name, e))?;
    let position = checker.source_position(name).await?;
    checker
        .replica
        .wait_applied(&position, stream, checker.poll)
        .await?;
    let target = hash(&checker.target, &sides.target_sql, range)
        .await
        .map_err(|e| sql(Side::Target, &sides.target.name, e))?;
    Ok(((source, target), position))
}

async fn hash(pool: &Pool, sql: &ChunkSql, range: &KeyRange) -> Result<Hash, mysql_async::Error> {
    let (text, params) = sql.hash(range);
    let mut conn = pool.get_conn().await?;
    let row: Option<(u64, u64)> = conn.exec_first(text, Params::Positional(params)).await?;
    Ok(row.unwrap_or_default())
}

/// The source's estimate of the table's rows (for the progress gauge); 0 if unknown.
async fn estimated_rows(source: &Pool, name: &TableName) -> Result<u64, CompareError> {
    let mut conn = source
        .get_conn()
        .await
        .map_err(|e| sql(Side::Source, name, e))?;
    let n: Option<Option<u64>> = conn
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&name.db, &name.table),
        )
        .await
        .map_err(|e| sql(Side::Source, name, e))?;
    Ok(n.flatten().unwrap_or(0))
}
