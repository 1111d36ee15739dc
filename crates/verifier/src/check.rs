//! One verification round: a batch of due changes, coalesced per row, compared with the
//! target's rows (one read per table), and every difference handed to the source recheck.
//!
//! Invariants:
//! - nothing is compared before the replicator has applied it (see
//!   `concord_target::progress`);
//! - a difference is never recorded on the strength of the change alone: only the source
//!   recheck (`concord_compare::recheck`) records, after the source confirmed it.

use crate::metrics;
use crate::parked::Parked;
use concord_change::{TableName, Value};
use concord_compare::expect::{table_id, TableId};
use concord_compare::rows::key_of;
use concord_compare::{
    coalesce, compared_index, matches_target, CompareError, Comparer, Expectation, Item, Recheck,
    Side,
};
use concord_config::TableFilter;
use concord_control::Detector;
use concord_target::{Mark, Stream};
use std::collections::{BTreeMap, HashMap};

/// The verifier's comparison: the shared [`Comparer`], the tables it verifies, and the
/// rows parked while a later change of theirs may still come.
pub struct Checker {
    pub(crate) compare: Comparer,
    pub(crate) filter: TableFilter,
    /// Differing rows waiting for a later change before a source recheck.
    pub(crate) parked: Parked,
}

impl Checker {
    pub(crate) fn new(compare: Comparer, filter: TableFilter, parked: Parked) -> Self {
        Self {
            compare,
            filter,
            parked,
        }
    }

    /// Verifies round number `round` (rounds are numbered in stream order; its changes are
    /// given in stream order). Returns once every change is matched, resolved, superseded,
    /// recorded as a mismatch — or parked (see [`crate::parked`]); then rechecks the rows
    /// parked long enough.
    pub async fn verify(&self, items: &[Item], round: u64) -> Result<(), CompareError> {
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
            self.compare
                .replica
                .wait_for(mark, self.compare.poll)
                .await?;
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
    pub(crate) async fn recheck_parked(&self, all: bool) -> Result<(), CompareError> {
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
    ) -> Result<(), CompareError> {
        let label = target_name.to_string();
        let Some(target) = self.compare.target_schema.get(target_name).await? else {
            no_target_table(&label, &differing);
            return Ok(());
        };
        let outcome = self
            .compare
            .recheck(target_name, &target, differing, Detector::Verifier)
            .await?;
        count(&label, outcome);
        Ok(())
    }

    async fn verify_table(
        &self,
        target_name: &TableName,
        expectations: Vec<Expectation>,
        round: u64,
    ) -> Result<(), CompareError> {
        let label = target_name.to_string();
        let Some(target) = self.compare.target_schema.get(target_name).await? else {
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
        let rows = self.compare.read_rows(Side::Target, &target, &keys).await?;
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
            let (quick, differing) = self
                .compare
                .resolve_quickly(&target, differing, first_looks)
                .await?;
            outcome.resolved += quick;
            if !differing.is_empty() {
                outcome += self
                    .compare
                    .recheck(target_name, &target, differing, Detector::Verifier)
                    .await?;
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
        no_key,
        no_source_table,
        ..
    } = outcome;
    for (result, n) in [
        ("resolved", resolved),
        ("superseded", superseded),
        ("mismatch", confirmed),
        ("no_key", no_key),
        ("no_source_table", no_source_table),
    ] {
        if n > 0 {
            metrics::VERIFIED
                .with_label_values(&[label, result])
                .inc_by(n as u64);
        }
    }
}
