//! Looking at rows again and writing them through the guarded repair, a page of rows of one
//! table at a time: the pieces [`crate::settle`] and [`crate::failed`] are made of.
//!
//! A look is one consistent cycle for all rows of a page: the source rows (S), then the
//! source's position P, the replicator past P on the table's stream, then the target rows
//! (T). Reading S before P and T after the replicator passed P means T holds at least
//! everything the source had when S was read.
//!
//! Invariant: every row of a page is described by the same pair of table descriptions, so
//! one plan writes them all; keys that do not name every key column of both tables never
//! reach a page.

use crate::reads::Reads;
use crate::{Recovery, RecoveryError};
use concord_change::{TableName, Value};
use concord_compare::rows::key_of;
use concord_compare::Side;
use concord_schema_cache::{ColumnPlan, TargetTable};
use concord_target::repair::{repair_page, RepairError, RepairOutcome, RowRepair};
use concord_target::{classify, ErrorClass};
use std::sync::Arc;

/// Both sides' descriptions of a table.
#[derive(Clone)]
pub(crate) struct Pair {
    pub source: Arc<TargetTable>,
    pub target: Arc<TargetTable>,
}

/// A row's key in the source's and in the target's primary-key order.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    pub source: Vec<Value>,
    pub target: Vec<Value>,
}

/// What a look at one row needs about its table.
pub(crate) struct Tables {
    pub source: Arc<TargetTable>,
    pub target: Arc<TargetTable>,
    pub source_key: Vec<Value>,
    pub target_key: Vec<Value>,
}

impl Tables {
    pub fn pair(&self) -> Pair {
        Pair {
            source: self.source.clone(),
            target: self.target.clone(),
        }
    }

    pub fn keys(&self) -> Keys {
        Keys {
            source: self.source_key.clone(),
            target: self.target_key.clone(),
        }
    }
}

/// A row as a look saw it: the source's and the target's images (`None`: no such row).
pub(crate) type Seen = (Option<Vec<Value>>, Option<Vec<Value>>);

/// A page's guarded write, row by row: its outcome, or why it failed (shared when the
/// whole page failed with one error).
pub(crate) type Written = Result<RepairOutcome, Arc<RepairError>>;

impl Pair {
    /// The key of the row whose column values `value_of` gives by name, or `None` when it
    /// does not name every key column of both tables (a key changed since it was recorded).
    pub fn keys(&self, value_of: impl Fn(&str) -> Option<Value>) -> Option<Keys> {
        let key_in =
            |pk: &[String]| -> Option<Vec<Value>> { pk.iter().map(|k| value_of(k)).collect() };
        Some(Keys {
            source: key_in(&self.source.primary_key)?,
            target: key_in(&self.target.primary_key)?,
        })
    }
}

impl Recovery {
    /// Both sides' descriptions of source table `source_name` and its target, or why it
    /// cannot be looked at.
    pub(crate) async fn pair(
        &self,
        source_name: &TableName,
    ) -> Result<Result<Pair, String>, RecoveryError> {
        let target_name = self.filter.target_name(source_name);
        let Some(source) = self
            .compare
            .source_schema
            .get(source_name)
            .await
            .map_err(cmp)?
        else {
            return Ok(Err(format!("{source_name} no longer exists on the source")));
        };
        let Some(target) = self
            .compare
            .target_schema
            .get(&target_name)
            .await
            .map_err(cmp)?
        else {
            return Ok(Err(format!("{target_name} does not exist on the target")));
        };
        Ok(Ok(Pair { source, target }))
    }

    /// As [`Recovery::pair`], with the key of the row whose column values `value_of` gives
    /// by name.
    pub(crate) async fn tables_for(
        &self,
        source_name: &TableName,
        value_of: impl Fn(&str) -> Option<Value>,
    ) -> Result<Result<Tables, String>, RecoveryError> {
        let pair = match self.pair(source_name).await? {
            Ok(p) => p,
            Err(why) => return Ok(Err(why)),
        };
        let Some(keys) = pair.keys(value_of) else {
            return Ok(Err(KEY_CHANGED.into()));
        };
        Ok(Ok(Tables {
            source: pair.source,
            target: pair.target,
            source_key: keys.source,
            target_key: keys.target,
        }))
    }

    /// One consistent cycle over the rows with `keys` (see the module's docs); one entry
    /// per key.
    pub(crate) async fn look_page(
        &self,
        source_name: &TableName,
        pair: &Pair,
        keys: &[Keys],
    ) -> Result<Vec<Seen>, RecoveryError> {
        let c = &self.compare;
        let source_keys: Vec<Vec<Value>> = keys.iter().map(|k| k.source.clone()).collect();
        let target_keys: Vec<Vec<Value>> = keys.iter().map(|k| k.target.clone()).collect();
        let s = c
            .read_rows(Side::Source, &pair.source, &source_keys)
            .await?;
        let p = c.source_position(source_name).await?;
        let stream = self.stream_of(source_name);
        let waited = tokio::time::timeout(self.grace, c.replica.wait_applied(&p, &stream, c.poll));
        match waited.await {
            Ok(r) => r.map_err(|e| cmp(concord_compare::CompareError::Progress(e)))?,
            Err(_) => {
                return Err(RecoveryError::Refused(
                    "the replicator did not reach the source's position within \
                     recovery.grace"
                        .into(),
                ))
            }
        }
        let t = c
            .read_rows(Side::Target, &pair.target, &target_keys)
            .await?;
        Ok(keys
            .iter()
            .map(|k| {
                (
                    s.get(&key_of(&pair.source, &k.source)).cloned(),
                    t.get(&key_of(&pair.target, &k.target)).cloned(),
                )
            })
            .collect())
    }

    /// [`Recovery::look_page`] for one row.
    pub(crate) async fn look(
        &self,
        source_name: &TableName,
        t: &Tables,
    ) -> Result<Seen, RecoveryError> {
        let mut seen = self.look_page(source_name, &t.pair(), &[t.keys()]).await?;
        Ok(seen.remove(0))
    }

    /// The guarded repair of the row with `key`, observed as `observed` on the target;
    /// `Err`: why the row cannot be written (no usable key on one side).
    pub(crate) fn row_repair(
        &self,
        pair: &Pair,
        key: &Keys,
        observed: Option<Vec<Value>>,
    ) -> Result<RowRepair, String> {
        let source = pair.source.change_table();
        let plan = ColumnPlan::new(
            &source,
            &pair.target,
            &self.audit_flag_column,
            &self.audit_ts_column,
        )
        .map_err(|e| format!("the row cannot be written: {e}"))?;
        Ok(RowRepair {
            target: pair.target.clone(),
            source,
            plan,
            key: key.target.clone(),
            observed,
        })
    }

    /// Runs the guarded repair of a page of `rows` (with their `keys`) in a fresh writer
    /// session: one transaction for the page. A page the target refuses is tried again row
    /// by row, each in its own transaction, so only the refused row fails.
    pub(crate) async fn guarded_page(
        &self,
        pair: &Pair,
        rows: &[RowRepair],
        keys: &[Keys],
    ) -> Result<Vec<Written>, RecoveryError> {
        let source_keys: Vec<Vec<Value>> = keys.iter().map(|k| k.source.clone()).collect();
        let reads = Reads {
            compare: &self.compare,
            source: &pair.source,
            source_keys: &source_keys,
        };
        let mut conn = self.writer().await?;
        let e = match repair_page(&mut conn, rows, &reads).await {
            Ok(out) => return Ok(out.into_iter().map(Ok).collect()),
            Err(e) => e,
        };
        drop(conn);
        if rows.len() == 1 || !refused(&e) {
            let e = Arc::new(e);
            return Ok(rows.iter().map(|_| Err(e.clone())).collect());
        }
        tracing::info!(rows = rows.len(), error = %e, "a page of repairs was refused; writing its rows one by one");
        let mut out = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let reads = Reads {
                compare: &self.compare,
                source: &pair.source,
                source_keys: std::slice::from_ref(&source_keys[i]),
            };
            // Rows before this one may be written already: a session that cannot be opened
            // is this row's failure (looked at again), not the page's, so their outcomes
            // and SQL are kept.
            let one = match self.writer().await {
                Ok(mut conn) => repair_page(&mut conn, std::slice::from_ref(row), &reads)
                    .await
                    .map(|mut o| o.remove(0)),
                Err(RecoveryError::Writer(source)) => Err(RepairError::Target {
                    table: pair.target.name.to_string(),
                    source,
                }),
                Err(e) => return Err(e),
            };
            out.push(one.map_err(Arc::new));
        }
        Ok(out)
    }

    /// [`Recovery::guarded_page`] for one row.
    pub(crate) async fn guarded_write(
        &self,
        t: &Tables,
        row: &RowRepair,
    ) -> Result<Written, RecoveryError> {
        let mut out = self
            .guarded_page(&t.pair(), std::slice::from_ref(row), &[t.keys()])
            .await?;
        Ok(out.remove(0))
    }
}

/// Why a record whose key lacks a column of either table's primary key cannot be looked at.
pub(crate) const KEY_CHANGED: &str =
    "the record's key does not name every primary-key column of both tables \
     (a key changed since it was recorded)";

/// Whether the target refused a row's content (as opposed to trouble reaching it).
pub(crate) fn refused(e: &RepairError) -> bool {
    match e {
        RepairError::Target { source, .. } => classify(source) == ErrorClass::Rejected,
        RepairError::Source { .. } => false,
    }
}

pub(crate) fn cmp(e: impl Into<concord_compare::CompareError>) -> RecoveryError {
    RecoveryError::Compare(Box::new(e.into()))
}

/// The causes below an error, for a record a person reads.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push(c.to_string());
        cause = c.source();
    }
    out.join(": ")
}
