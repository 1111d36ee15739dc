//! The source recheck: a row whose target state differs from the change that was verified
//! is read again on the source before anything is recorded.
//!
//! One *cycle*, for all differing rows of a table at once: read the source rows (S), then
//! the source's binlog position P; wait until the replicator has applied every change of
//! the rows' streams up to P; read the target rows (T).
//!
//! 1. First cycle: a row whose T equals its S simply moved on and the target followed —
//!    *resolved*.
//! 2. After `verifier.retry_after`, a second cycle for the rest: T equals S now —
//!    *resolved*; S or T changed since the first cycle — the row is still moving, and its
//!    newer changes are in the stream to be verified in their turn — *superseded*; both
//!    stayed the same and still differ — *confirmed*, and recorded.
//!
//! Why two cycles: the target read after the replicator passed P may already hold changes
//! made after P. A row deleted, inserted again and deleted again around P (a hot row) can
//! look "extra" for one cycle; it does not stay identically so across two.
//!
//! Invariant: a mismatch is recorded only when, twice and `retry_after` apart, the target
//! — having applied the source up to a point where the source row had some value — held
//! the same other value, and the source row had not changed.

use crate::equality::same;
use crate::expect::Expectation;
use crate::metrics;
use crate::rows::{key_of, Rows};
use crate::{compared_index, CompareError, Comparer, Side};
use concord_change::{TableName, Value};
use concord_control::{ColumnDiff, Detector, Mismatch, MismatchKind, NamedRow};
use concord_schema_cache::{TargetColumn, TargetTable};
use concord_target::Stream;
use std::collections::BTreeSet;

/// How the rechecked rows of one table turned out, counted in the changes each row's
/// expectation stands for (see [`Expectation::changes`]).
#[derive(Debug, Default)]
pub struct Recheck {
    pub resolved: usize,
    pub superseded: usize,
    pub confirmed: usize,
    /// A key column the change does not carry (a key changed since): not comparable.
    pub no_key: usize,
    /// The table is gone on the source: nothing to confirm a difference against.
    pub no_source_table: usize,
    /// The confirmed differences, when the comparer does not record them.
    pub found: Vec<Mismatch>,
}

impl std::ops::AddAssign for Recheck {
    fn add_assign(&mut self, other: Recheck) {
        self.resolved += other.resolved;
        self.superseded += other.superseded;
        self.confirmed += other.confirmed;
        self.no_key += other.no_key;
        self.no_source_table += other.no_source_table;
        self.found.extend(other.found);
    }
}

impl Comparer {
    /// Rechecks the differing rows of one table against the source (see the module's
    /// docs) and records those confirmed as mismatches found by `detected_by`.
    pub async fn recheck(
        &self,
        target_name: &TableName,
        target: &TargetTable,
        differing: Vec<Expectation>,
        detected_by: Detector,
    ) -> Result<Recheck, CompareError> {
        recheck(self, target_name, target, differing, detected_by).await
    }

    /// The cheap look first: see [`resolve_quickly`].
    pub async fn resolve_quickly(
        &self,
        target: &TargetTable,
        differing: Vec<Expectation>,
        targets: Vec<Option<Vec<Value>>>,
    ) -> Result<(usize, Vec<Expectation>), CompareError> {
        resolve_quickly(self, target, differing, targets).await
    }
}

async fn recheck(
    comparer: &Comparer,
    target_name: &TableName,
    target: &TargetTable,
    differing: Vec<Expectation>,
    detected_by: Detector,
) -> Result<Recheck, CompareError> {
    let source_name = differing[0].source.name.clone();
    let source = comparer.source_schema.get(&source_name).await?;
    let mut out = Recheck::default();
    if source.is_none() {
        // Dropped or renamed on the source since: there is no row to confirm a difference
        // against. Counted and warned about, never recorded as rows missing on the source.
        let n: usize = differing.iter().map(|e| e.changes).sum();
        tracing::warn!(table = %source_name, changes = n,
            "source table gone before its differing rows were rechecked; not recorded");
        out.no_source_table = n;
        return Ok(out);
    }

    // Keys in the source's current key order and in the target's.
    let mut rows_to_check = Vec::new();
    for e in differing {
        let skey = match &source {
            Some(s) => e.key_in(&s.primary_key),
            None => Some(Vec::new()),
        };
        let tkey = e.key_in(&target.primary_key);
        match (skey, tkey) {
            (Some(s), Some(t)) => rows_to_check.push((s, t, e)),
            // A key column the change does not carry (a key changed since): not comparable.
            _ => out.no_key += e.changes,
        }
    }

    let shared = shared_columns(source.as_deref(), target);
    let first = cycle(
        comparer,
        &source_name,
        source.as_deref(),
        target,
        &rows_to_check,
    )
    .await?;
    let mut candidates = Vec::new();
    for ((skey, tkey, e), (s, t)) in rows_to_check.into_iter().zip(first) {
        if differences(&shared, s.as_deref(), target, t.as_deref()).is_none() {
            out.resolved += e.changes;
            metrics::RECHECKS.with_label_values(&["resolved"]).inc();
        } else {
            candidates.push(((skey, tkey, e), (s, t)));
        }
    }
    if candidates.is_empty() {
        return Ok(out);
    }
    tokio::time::sleep(comparer.retry_after).await;
    let keys: Vec<_> = candidates.iter().map(|(k, _)| k.clone()).collect();
    let second = cycle(comparer, &source_name, source.as_deref(), target, &keys).await?;
    for (((_, _, e), (s1, t1)), (s2, t2)) in candidates.into_iter().zip(second) {
        let Some((kind, columns)) = differences(&shared, s2.as_deref(), target, t2.as_deref())
        else {
            out.resolved += e.changes;
            metrics::RECHECKS.with_label_values(&["resolved"]).inc();
            continue;
        };
        let source_types = source
            .as_deref()
            .map(|s| s.columns.as_slice())
            .unwrap_or_default();
        if !same_row(source_types, s1.as_deref(), s2.as_deref())
            || !same_row(&target.columns, t1.as_deref(), t2.as_deref())
        {
            out.superseded += e.changes;
            metrics::RECHECKS.with_label_values(&["superseded"]).inc();
            continue;
        }
        let mismatch = Mismatch {
            table: source_name.clone(),
            key: e.named_key(),
            kind,
            columns,
            position: e.origin.clone(),
            detected_by,
            expected: e.after.as_ref().map(|after| {
                e.source
                    .columns
                    .iter()
                    .cloned()
                    .zip(after.iter().cloned())
                    .collect()
            }),
            source_row: named(source_types, s2.as_deref()),
            target_row: named(&target.columns, t2.as_deref()),
        };
        tracing::warn!(table = %source_name, key = ?mismatch.key, kind = kind.as_str(),
            origin = %e.origin, "mismatch confirmed against the source");
        metrics::RECHECKS.with_label_values(&["confirmed"]).inc();
        out.confirmed += e.changes;
        out.found.push(mismatch);
    }
    if comparer.record && !out.found.is_empty() {
        // One commit for the table's confirmed rows; each is counted once: a row confirmed
        // again updates its open record.
        let found = std::mem::take(&mut out.found);
        let new = comparer
            .control
            .record_mismatches_for(&found, comparer.batch_job)
            .await?;
        let label = target_name.to_string();
        for (m, new) in found.iter().zip(new) {
            if new {
                metrics::MISMATCHES
                    .with_label_values(&[&label, m.kind.as_str()])
                    .inc();
            }
        }
    }
    Ok(out)
}

/// The cheap look first: the target rows were just read (after the replicator applied the
/// round); a row whose source row, read now, equals that target row is resolved without a
/// full cycle — the target already holds what the source holds. On a backlog, where the
/// target has moved past the change being verified, that is most differing rows.
///
/// Returns the changes resolved and the expectations left for [`recheck`]. `targets` are
/// the rows read for `differing`, in its order.
async fn resolve_quickly(
    comparer: &Comparer,
    target: &TargetTable,
    differing: Vec<Expectation>,
    targets: Vec<Option<Vec<Value>>>,
) -> Result<(usize, Vec<Expectation>), CompareError> {
    let source_name = differing[0].source.name.clone();
    let Some(source) = comparer.source_schema.get(&source_name).await? else {
        return Ok((0, differing));
    };
    let keys: Vec<Option<Vec<Value>>> = differing
        .iter()
        .map(|e| e.key_in(&source.primary_key))
        .collect();
    let wanted: Vec<Vec<Value>> = keys.iter().flatten().cloned().collect();
    let rows = comparer.read_rows(Side::Source, &source, &wanted).await?;
    let shared = shared_columns(Some(&source), target);
    let mut resolved = 0;
    let mut rest = Vec::new();
    for ((e, key), t) in differing.into_iter().zip(keys).zip(targets) {
        let s = key.and_then(|k| rows.get(&key_of(&source, &k)));
        let settled = match s {
            Some(s) => differences(&shared, Some(s), target, t.as_deref()).is_none(),
            // Absent on the source: settled only when absent on the target too.
            None => t.is_none(),
        };
        if settled {
            resolved += e.changes;
            metrics::RECHECKS.with_label_values(&["resolved"]).inc();
        } else {
            rest.push(e);
        }
    }
    Ok((resolved, rest))
}

type Keyed = (Vec<Value>, Vec<Value>, Expectation);
type Pair = (Option<Vec<Value>>, Option<Vec<Value>>);

/// One cycle: S, then P, the replicator past P, then T — per row, in `rows`' order.
async fn cycle(
    comparer: &Comparer,
    source_name: &TableName,
    source: Option<&TargetTable>,
    target: &TargetTable,
    rows: &[Keyed],
) -> Result<Vec<Pair>, CompareError> {
    let source_rows = read_source(comparer, source, rows).await?;
    let position = comparer.source_position(source_name).await?;
    let streams: BTreeSet<&Stream> = rows.iter().map(|(_, _, e)| &e.stream).collect();
    for stream in streams {
        comparer
            .replica
            .wait_applied(&position, stream, comparer.poll)
            .await?;
    }
    let keys: Vec<Vec<Value>> = rows.iter().map(|(_, t, _)| t.clone()).collect();
    let target_rows = comparer.read_rows(Side::Target, target, &keys).await?;
    Ok(rows
        .iter()
        .map(|(skey, tkey, _)| {
            let s = source.and_then(|st| source_rows.get(&key_of(st, skey)).cloned());
            let t = target_rows.get(&key_of(target, tkey)).cloned();
            (s, t)
        })
        .collect())
}

async fn read_source(
    comparer: &Comparer,
    source: Option<&TargetTable>,
    rows: &[Keyed],
) -> Result<Rows, CompareError> {
    let Some(source) = source else {
        return Ok(Rows::new()); // the table is gone on the source: no rows
    };
    let keys: Vec<Vec<Value>> = rows.iter().map(|(s, ..)| s.clone()).collect();
    comparer.read_rows(Side::Source, source, &keys).await
}

/// (source column index, target column index) of the columns both tables have, by name,
/// whose values are compared (neither side's is virtual or a versioning timestamp).
pub fn shared_columns(source: Option<&TargetTable>, target: &TargetTable) -> Vec<(usize, usize)> {
    let Some(source) = source else {
        return Vec::new();
    };
    source
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_compared())
        .filter_map(|(i, c)| compared_index(target, &c.name).map(|j| (i, j)))
        .collect()
}

/// How the target row differs from the source row over the `shared` columns; `None` if
/// it does not. Rows are in their own table's column order.
pub fn differences(
    shared: &[(usize, usize)],
    s: Option<&[Value]>,
    target: &TargetTable,
    t: Option<&[Value]>,
) -> Option<(MismatchKind, Vec<ColumnDiff>)> {
    let name = |j: usize| target.columns[j].name.clone();
    match (s, t) {
        (None, None) => None,
        (Some(s), None) => Some((
            MismatchKind::MissingOnTarget,
            shared
                .iter()
                .map(|&(i, j)| ColumnDiff {
                    column: name(j),
                    source: s[i].clone(),
                    target: Value::Null,
                })
                .collect(),
        )),
        (None, Some(t)) => Some((
            MismatchKind::ExtraOnTarget,
            target
                .columns
                .iter()
                .enumerate()
                .map(|(j, _)| ColumnDiff {
                    column: name(j),
                    source: Value::Null,
                    target: t[j].clone(),
                })
                .collect(),
        )),
        (Some(s), Some(t)) => {
            let diffs: Vec<ColumnDiff> = shared
                .iter()
                .filter(|&&(i, j)| !same(&s[i], &t[j], &target.columns[j].data_type))
                .map(|&(i, j)| ColumnDiff {
                    column: name(j),
                    source: s[i].clone(),
                    target: t[j].clone(),
                })
                .collect();
            (!diffs.is_empty()).then_some((MismatchKind::ColumnsDiffer, diffs))
        }
    }
}

/// A row read in the column order of `columns`, as the control store keeps it.
pub fn named(columns: &[TargetColumn], row: Option<&[Value]>) -> Option<NamedRow> {
    row.map(|row| {
        columns
            .iter()
            .map(|c| c.name.clone())
            .zip(row.iter().cloned())
            .collect()
    })
}

/// Whether two reads of one row (in the column order of `columns`) hold the same data.
pub fn same_row(columns: &[TargetColumn], a: Option<&[Value]>, b: Option<&[Value]>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a
            .iter()
            .zip(b)
            .zip(columns)
            .all(|((x, y), c)| same(x, y, &c.data_type)),
        _ => false,
    }
}
