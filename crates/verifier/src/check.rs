//! One verification round: a batch of due changes, coalesced per row, compared with the
//! target's rows (one read per table), and every difference handed to the source recheck.
//!
//! Invariants:
//! - nothing is compared before the replicator has applied it (see [`crate::progress`]);
//! - a difference is never recorded on the strength of the change alone: only
//!   [`crate::recheck`] records, after the source confirmed it.

use crate::equality::same;
use crate::metrics;
use crate::parked::Parked;
use crate::progress::{Mark, Replica, Stream};
use crate::recheck::{recheck, resolve_quickly, Recheck};
use crate::rows::{self, key_of};
use concord_change::{Op, Position, RowChange, SourceTable, TableName, Value};
use concord_config::TableFilter;
use concord_control::{ControlStore, Detector};
use concord_schema_cache::{RefreshReason, SchemaCache, TargetTable};
use mysql_async::Pool;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// A change to verify and where it came from.
#[derive(Clone, Debug)]
pub struct Item {
    pub change: RowChange,
    /// What the replicator must have applied before the change is compared.
    pub mark: Mark,
    /// The stream the change's row travels in.
    pub stream: Stream,
    /// The change's origin for a mismatch record: a binlog position, or `topic[partition]`
    /// and the offset.
    pub origin: Position,
}

/// What the target should hold for one row after the latest change of the round.
#[derive(Clone, Debug)]
pub(crate) struct Expectation {
    pub source: Arc<SourceTable>,
    /// Key values in the source table's primary-key order.
    pub key: Vec<Value>,
    /// The row's after-image, or `None`: the row must be absent.
    pub after: Option<Vec<Value>>,
    pub stream: Stream,
    pub origin: Position,
    /// How many changes of the round this expectation stands for (coalesced into it).
    pub changes: usize,
}

impl Expectation {
    /// (column, value) pairs of the key, for records.
    pub fn named_key(&self) -> Vec<(String, Value)> {
        self.source
            .primary_key
            .iter()
            .map(|&i| self.source.columns[i].clone())
            .zip(self.key.iter().cloned())
            .collect()
    }

    /// The key's values in the order of `pk` (column names); `None` if a column of `pk`
    /// is not part of the change (or not in its partial row image: a minimal insert that
    /// left a key column to its default).
    pub fn key_in(&self, pk: &[String]) -> Option<Vec<Value>> {
        pk.iter()
            .map(|name| {
                let i = self.source.column_index(name)?;
                let at = self.source.primary_key.iter().position(|&k| k == i);
                let v = match at {
                    Some(at) => Some(self.key[at].clone()),
                    // Not a source key column: take it from the image if there is one.
                    None => self.after.as_ref().map(|a| a[i].clone()),
                };
                v.filter(|v| !v.is_absent())
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{side} {table}: {source}")]
    Sql {
        side: &'static str,
        table: TableName,
        #[source]
        source: mysql_async::Error,
    },
    /// The server no longer has a column or table the statement named: a DDL reached it
    /// since the column set was read. Transient: that side's entry is read again (see
    /// [`Checker::refresh_after`]) and the work is retried with the columns both sides
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
    Progress(#[from] crate::progress::ProgressError),
    #[error(transparent)]
    Control(#[from] concord_control::ControlError),
}

pub struct Checker {
    pub(crate) target: Pool,
    pub(crate) source: Pool,
    pub(crate) target_schema: SchemaCache,
    pub(crate) source_schema: SchemaCache,
    pub(crate) control: ControlStore,
    pub(crate) filter: TableFilter,
    pub(crate) replica: Replica,
    /// How often the replicator's progress is polled while waiting for it.
    pub(crate) poll: Duration,
    /// Between the two cycles of a recheck.
    pub(crate) retry_after: Duration,
    /// Differing rows waiting for a later change before a source recheck.
    pub(crate) parked: Parked,
}

impl Checker {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        target: Pool,
        source: Pool,
        target_schema: SchemaCache,
        source_schema: SchemaCache,
        control: ControlStore,
        filter: TableFilter,
        replica: Replica,
        poll: Duration,
        retry_after: Duration,
        parked: Parked,
    ) -> Self {
        Self {
            target,
            source,
            target_schema,
            source_schema,
            control,
            filter,
            replica,
            poll,
            retry_after,
            parked,
        }
    }

    /// Verifies round number `round` (rounds are numbered in stream order; its changes are
    /// given in stream order). Returns once every change is matched, resolved, superseded,
    /// recorded as a mismatch — or parked (see [`crate::parked`]); then rechecks the rows
    /// parked long enough.
    pub async fn verify(&self, items: &[Item], round: u64) -> Result<(), CheckError> {
        if items.is_empty() {
            // Transactions of other tables only: parked rows still age and are rechecked.
            return self.recheck_parked(false).await;
        }
        // The replicator must have applied everything of the round first.
        let mut latest: BTreeMap<Stream, &Mark> = BTreeMap::new();
        for item in items {
            let e = latest.entry(item.stream.clone()).or_insert(&item.mark);
            if item.mark > **e {
                *e = &item.mark;
            }
        }
        for mark in latest.values() {
            self.replica.wait_for(mark, self.poll).await?;
        }

        let mut by_table: HashMap<TableName, Vec<Expectation>> = HashMap::new();
        let mut names: HashMap<TableId, TableName> = HashMap::new();
        for e in coalesce(items, &self.filter) {
            let name = names
                .entry(table_id(&e.source))
                .or_insert_with(|| self.filter.target_name(&e.source.name));
            match by_table.get_mut(name) {
                Some(list) => list.push(e),
                None => {
                    by_table.insert(name.clone(), vec![e]);
                }
            }
        }
        // The children a cascade changed. A child's own change in the round may be older
        // than the cascade (its after-image then still matches a target the cascade did
        // not reach): the child's expectation compares with the source's row now, so both
        // are kept.
        for (child, derived) in self.cascade_expectations(items).await? {
            by_table.entry(child).or_default().extend(derived);
        }
        by_table.retain(|_, list| !list.is_empty());
        // Tables are independent: their reads overlap (each holds its own connections).
        futures_util::future::try_join_all(
            by_table.into_iter().map(|(name, expectations)| async move {
                self.verify_table(&name, expectations, round).await
            }),
        )
        .await?;
        self.recheck_parked(false).await
    }

    /// Rechecks the parked rows against the source: those parked for `verifier.park_for`,
    /// or (`all`) every one — before the verifier saves a position it has caught up to.
    pub(crate) async fn recheck_parked(&self, all: bool) -> Result<(), CheckError> {
        // Table by table, each handed back as soon as it is settled: a failure later on
        // parks only the unsettled tables' rows again, so no row is counted twice.
        let mut result = Ok(());
        for taken in self.parked.take(all) {
            if result.is_err() {
                self.parked.done(taken.tickets, false);
                continue;
            }
            result = self.recheck_table(&taken.table, taken.expectations).await;
            self.parked.done(taken.tickets, result.is_ok());
        }
        metrics::PARKED.set(self.parked.len() as i64);
        result
    }

    async fn recheck_table(
        &self,
        target_name: &TableName,
        differing: Vec<Expectation>,
    ) -> Result<(), CheckError> {
        let label = target_name.to_string();
        let Some(target) = self.target_schema.get(target_name).await? else {
            no_target_table(&label, &differing);
            return Ok(());
        };
        let outcome = recheck(self, target_name, &target, differing, Detector::Verifier).await?;
        count(&label, outcome);
        Ok(())
    }

    async fn verify_table(
        &self,
        target_name: &TableName,
        expectations: Vec<Expectation>,
        round: u64,
    ) -> Result<(), CheckError> {
        let label = target_name.to_string();
        let Some(target) = self.target_schema.get(target_name).await? else {
            no_target_table(&label, &expectations);
            return Ok(());
        };
        let mut keyed = Vec::with_capacity(expectations.len());
        for e in expectations {
            match e.key_in(&target.primary_key) {
                Some(k) => keyed.push((k, e)),
                None => metrics::VERIFIED
                    .with_label_values(&[&label, "no_key"])
                    .inc_by(e.changes as u64),
            }
        }
        let keys: Vec<Vec<Value>> = keyed.iter().map(|(k, _)| k.clone()).collect();
        let rows = self.read_rows(Side::Target, &target, &keys).await?;
        // Where each source column is in the target row, once per source table version.
        let mut mappings: HashMap<TableId, Vec<Option<usize>>> = HashMap::new();
        let mut differing = Vec::new();
        let mut first_looks = Vec::new();
        let mut superseded = 0;
        // Whether a parked row can do without its after-image: the target's key is made of
        // the source's key columns, so the recheck finds it from `Expectation::key` alone.
        let key_only = |e: &Expectation| {
            target.primary_key.iter().all(|k| {
                e.source
                    .column_index(k)
                    .is_some_and(|i| e.source.primary_key.contains(&i))
            })
        };
        for (k, e) in keyed {
            let id = key_of(&target, &k);
            superseded += self.parked.supersede(target_name, &id, round);
            let row = rows.get(&id);
            let mapping = mappings.entry(table_id(&e.source)).or_insert_with(|| {
                e.source
                    .columns
                    .iter()
                    .map(|name| compared_index(&target, name))
                    .collect()
            });
            if matches_target(&e, mapping, row.map(Vec::as_slice), &target) {
                metrics::VERIFIED
                    .with_label_values(&[&label, "match"])
                    .inc_by(e.changes as u64);
            } else {
                let parked = if key_only(&e) {
                    Expectation { after: None, ..e }
                } else {
                    e
                };
                match self.parked.park(target_name, id, round, parked) {
                    Ok(n) => superseded += n,
                    Err(e) => {
                        first_looks.push(row.cloned());
                        differing.push(e);
                    }
                }
            }
        }
        // Counted now: the parked rows superseded have left the lot whatever happens next.
        count(
            &label,
            Recheck {
                superseded,
                ..Recheck::default()
            },
        );
        let mut outcome = Recheck::default();
        if !differing.is_empty() {
            let (quick, differing) = resolve_quickly(self, &target, differing, first_looks).await?;
            outcome.resolved += quick;
            if !differing.is_empty() {
                outcome +=
                    recheck(self, target_name, &target, differing, Detector::Verifier).await?;
            }
        }
        count(&label, outcome);
        Ok(())
    }
}

/// Changes of a table the target does not have: the replicator recorded their rows as
/// failed events (missing table), so there is nothing to compare.
fn no_target_table(label: &str, expectations: &[Expectation]) {
    metrics::VERIFIED
        .with_label_values(&[label, "no_target_table"])
        .inc_by(expectations.iter().map(|e| e.changes as u64).sum());
}

/// Counts a table's settled changes by result.
fn count(label: &str, outcome: Recheck) {
    let Recheck {
        resolved,
        superseded,
        confirmed,
    } = outcome;
    for (result, n) in [
        ("resolved", resolved),
        ("superseded", superseded),
        ("mismatch", confirmed),
    ] {
        if n > 0 {
            metrics::VERIFIED
                .with_label_values(&[label, result])
                .inc_by(n as u64);
        }
    }
}

/// Which server a read goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl Side {
    fn as_str(self) -> &'static str {
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

impl Checker {
    /// The rows of `table` (as `side` describes it) with these keys, in one batch.
    pub(crate) async fn read_rows(
        &self,
        side: Side,
        table: &TargetTable,
        keys: &[Vec<Value>],
    ) -> Result<rows::Rows, CheckError> {
        self.read_rows_by(side, table, &table.primary_key, keys)
            .await
    }

    /// The rows of `table` whose columns `by` hold one of `keys`, keyed by primary key.
    pub(crate) async fn read_rows_by(
        &self,
        side: Side,
        table: &TargetTable,
        by: &[String],
        keys: &[Vec<Value>],
    ) -> Result<rows::Rows, CheckError> {
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
    pub(crate) async fn source_position(&self, table: &TableName) -> Result<Position, CheckError> {
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

/// A server's error on a statement about `table`: [`CheckError::SchemaMoved`] when the
/// server says the table's columns moved, else [`CheckError::Sql`].
pub(crate) fn sql(side: Side, table: &TableName, source: mysql_async::Error) -> CheckError {
    match RefreshReason::of_error(&source) {
        Some(reason) => CheckError::SchemaMoved {
            side,
            table: table.clone(),
            reason,
            source,
        },
        None => CheckError::Sql {
            side: side.as_str(),
            table: table.clone(),
            source,
        },
    }
}

impl Checker {
    /// Before work that failed with `e` is retried: if a side's schema moved under it,
    /// that side's cached column set of the table is dropped, so the retry reads it again.
    pub(crate) async fn refresh_after(&self, e: &CheckError) {
        if let CheckError::SchemaMoved {
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
pub(crate) fn target_index(table: &TargetTable, name: &str) -> Option<usize> {
    table
        .columns
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(name))
}

/// As [`target_index`], for a column whose values are compared: not a virtual column (the
/// server computes it on read) nor a system-versioning timestamp. A stored generated
/// column is data and is compared.
pub(crate) fn compared_index(table: &TargetTable, name: &str) -> Option<usize> {
    target_index(table, name).filter(|&j| table.columns[j].is_compared())
}

/// Whether the target row (in `target`'s column order, `None` if absent) is what the
/// change left: the after-image over the columns both sides have (`mapping`: each source
/// column's index in the target row), or no row at all.
fn matches_target(
    e: &Expectation,
    mapping: &[Option<usize>],
    row: Option<&[Value]>,
    target: &TargetTable,
) -> bool {
    match (&e.after, row) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        // A source-only column is not replicated, so not compared.
        (Some(after), Some(row)) => after.iter().zip(mapping).all(|(v, j)| match j {
            Some(j) => same(v, &row[*j], &target.columns[*j].data_type),
            None => true,
        }),
    }
}

/// One source table description (one version of a table's columns), for per-round caches:
/// the changes of a round hold their descriptions, so an address is not reused meanwhile.
type TableId = usize;

fn table_id(t: &Arc<SourceTable>) -> TableId {
    Arc::as_ptr(t) as usize
}

/// The round's changes as one expectation per row: the latest change of each row wins; an
/// update that moves a row to a new key also says the old key must be gone. A partial
/// after-image (MINIMAL, NOBLOB) only says what it carries: laid over the row's earlier
/// image of the round, if there is one; its other columns are not compared.
pub(crate) fn coalesce(items: &[Item], filter: &TableFilter) -> Vec<Expectation> {
    /// The winning change of a row so far: the item, whether the row must be absent, and
    /// how many changes it stands for. Images are cloned once, for the winners only —
    /// except a partial image laid over an earlier one (`merged`).
    struct Latest<'a> {
        item: &'a Item,
        key: Vec<Value>,
        gone: bool,
        changes: usize,
        merged: Option<Vec<Value>>,
    }
    let mut latest: HashMap<(&TableName, Vec<u8>), Latest> = HashMap::new();
    // Asked once per table description, not once per change.
    let mut verified: HashMap<TableId, bool> = HashMap::new();
    for item in items {
        let c = &item.change;
        let wanted = *verified
            .entry(table_id(&c.table))
            .or_insert_with(|| filter.matches(&c.table.name) && c.table.has_primary_key());
        if !wanted {
            continue;
        }
        let key_of_image = |image: &[Value]| -> Vec<Value> {
            c.table
                .primary_key
                .iter()
                .map(|&i| image[i].clone())
                .collect()
        };
        // `counted`: whether this change is counted under the key (a key move counts once,
        // under the new key).
        let mut put = |key: Vec<Value>, gone: bool, counted: bool| {
            let mut bytes = Vec::new();
            for v in &key {
                v.key_bytes(&mut bytes);
            }
            let slot = (&c.table.name, bytes);
            let earlier = latest.get(&slot);
            let merged = match (&c.after, earlier) {
                (Some(after), Some(e))
                    if !gone && !e.gone && after.iter().any(Value::is_absent) =>
                {
                    let base = e.merged.as_ref().or(e.item.change.after.as_ref());
                    base.filter(|b| b.len() == after.len()).map(|b| {
                        b.iter()
                            .zip(after)
                            .map(|(old, new)| {
                                if new.is_absent() {
                                    old.clone()
                                } else {
                                    new.clone()
                                }
                            })
                            .collect()
                    })
                }
                _ => None,
            };
            let changes = earlier.map_or(0, |e| e.changes) + usize::from(counted);
            latest.insert(
                slot,
                Latest {
                    item,
                    key,
                    gone,
                    changes,
                    merged,
                },
            );
        };
        match (c.op, &c.before, &c.after) {
            (Op::Delete, Some(before), _) => put(key_of_image(before), true, true),
            (Op::Insert, _, Some(after)) => put(key_of_image(after), false, true),
            (Op::Update, Some(before), Some(_)) => {
                let old = key_of_image(before);
                // A partial after-image lacks the key columns it did not change.
                let Some(new) = c.key() else { continue };
                if old != new {
                    put(old, true, false);
                }
                put(new, false, true);
            }
            _ => {}
        }
    }
    latest
        .into_values()
        .map(|l| Expectation {
            source: l.item.change.table.clone(),
            key: l.key,
            after: match (l.gone, l.merged) {
                (true, _) => None,
                (false, Some(merged)) => Some(merged),
                (false, None) => l.item.change.after.clone(),
            },
            stream: l.item.stream.clone(),
            origin: l.item.origin.clone(),
            changes: l.changes,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Arc<SourceTable> {
        Arc::new(SourceTable {
            name: TableName::new("shop", "orders"),
            columns: vec!["id".into(), "total".into()],
            primary_key: vec![0],
        })
    }

    fn item(op: Op, before: Option<(i64, i64)>, after: Option<(i64, i64)>, pos: u64) -> Item {
        let img = |(id, t): (i64, i64)| vec![Value::Int(id), Value::Int(t)];
        Item {
            change: RowChange {
                table: table(),
                op,
                before: before.map(img),
                after: after.map(img),
                position: Position::new("b.000001", pos),
                row_index: 0,
                commit_ts: 0,
            },
            mark: Mark::Binlog(Position::new("b.000001", pos)),
            stream: Stream::Binlog,
            origin: Position::new("b.000001", pos),
        }
    }

    #[test]
    fn latest_change_per_row_wins_and_key_moves_expect_the_old_key_gone() {
        let filter = TableFilter::new(&Default::default()).unwrap();
        let items = vec![
            item(Op::Insert, None, Some((1, 10)), 100),
            item(Op::Update, Some((1, 10)), Some((1, 11)), 200),
            item(Op::Insert, None, Some((2, 20)), 300),
            item(Op::Update, Some((2, 20)), Some((3, 20)), 400),
        ];
        let mut got: Vec<(i64, Option<i64>, u64, usize)> = coalesce(&items, &filter)
            .into_iter()
            .map(|e| {
                let Value::Int(id) = e.key[0] else { panic!() };
                let total = e.after.map(|a| match a[1] {
                    Value::Int(t) => t,
                    _ => panic!(),
                });
                (id, total, e.origin.pos, e.changes)
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (1, Some(11), 200, 2),
                (2, None, 400, 1),
                (3, Some(20), 400, 1)
            ]
        );
    }
}
