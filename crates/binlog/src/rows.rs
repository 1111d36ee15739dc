//! Rows events of the included tables, decoded into [`RowChange`]s of the open transaction.
//!
//! Invariant: every row of an included table ends up in the transaction, either as a change
//! or as an [`Undecodable`] entry (with the reason) — a row is never dropped, and a change
//! whose image does not carry what finding its row needs is never applied by guesswork.

use crate::decode::DecodeError;
use crate::decode::{Collations, TableInfo};
use crate::reader::{metrics, TablePredicate};
use concord_change::{Op, Position, RowChange, TableName, Transaction, Undecodable, Value};
use mysql_async::binlog::events::{RowsEventData, TableMapEvent};
use mysql_common::io::ParseBuf;
use std::collections::HashMap;
use std::sync::Arc;

/// What is known about the table ids of a stream, each valid while its table map stays the
/// same: whether the table is replicated (asked once, not per event) and its decoders.
pub(crate) struct Tables {
    include: TablePredicate,
    collations: Arc<Collations>,
    known: HashMap<u64, Known>,
}

struct Known {
    tme: TableMapEvent<'static>,
    included: bool,
    info: Result<Arc<TableInfo>, String>,
}

/// An included table's rows events decode through this.
pub(crate) struct Table<'a> {
    info: &'a Result<Arc<TableInfo>, String>,
}

impl Tables {
    pub fn new(include: TablePredicate, collations: Arc<Collations>) -> Self {
        Self {
            include,
            collations,
            known: HashMap::new(),
        }
    }

    /// Whether changes of `table` are replicated.
    pub fn includes(&self, table: &TableName) -> bool {
        (self.include)(table)
    }

    /// The table a rows event of `table_id` belongs to, if it is replicated.
    pub fn included(&mut self, table_id: u64, tme: &TableMapEvent<'_>) -> Option<Table<'_>> {
        if !matches!(self.known.get(&table_id), Some(k) if k.tme == *tme) {
            let included = (self.include)(&TableName::new(tme.database_name(), tme.table_name()));
            let info = if included {
                TableInfo::new(tme, &self.collations)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            } else {
                Err(String::new())
            };
            let known = Known {
                tme: tme.clone().into_owned(),
                included,
                info,
            };
            self.known.insert(table_id, known);
        }
        let known = self.known.get(&table_id).expect("inserted above");
        known.included.then_some(Table { info: &known.info })
    }
}

/// A rows event whose table map the stream never sent: recorded, not skipped.
pub(crate) fn no_table_map(rows: &RowsEventData<'_>, position: Position, txn: &mut Transaction) {
    let table_id = rows.table_id();
    tracing::warn!(%position, table_id, "rows event without a table map; recorded as undecodable");
    metrics::UNDECODABLE.inc();
    txn.undecodable.push(Undecodable {
        table: TableName::new("", format!("table id {table_id}")),
        position,
        row_index: 0,
        error: "rows event without a table map".into(),
    });
}

impl Table<'_> {
    /// Decodes every row of the event into `txn`.
    pub fn decode(
        &self,
        rows: &RowsEventData<'_>,
        tme: &TableMapEvent<'_>,
        position: Position,
        txn: &mut Transaction,
    ) {
        let undecodable = |txn: &mut Transaction, i: usize, error: String| {
            metrics::UNDECODABLE.inc();
            txn.undecodable.push(Undecodable {
                table: TableName::new(tme.database_name(), tme.table_name()),
                position: position.clone(),
                row_index: i as u32,
                error,
            });
        };
        let info = match self.info {
            Ok(info) => info,
            Err(e) => return undecodable(txn, 0, format!("table map could not be read: {e}")),
        };
        // Which columns each image carries (all of them for FULL row images).
        let before_cols: Option<Vec<bool>> = rows
            .columns_before_image()
            .map(|b| b.iter().by_vals().collect());
        let after_cols: Option<Vec<bool>> = rows
            .columns_after_image()
            .map(|b| b.iter().by_vals().collect());
        let shared = matches!(rows, RowsEventData::PartialUpdateRowsEvent(_));
        // mysql_common 0.37 overflows on a negative TIME(1) or TIME(2) with a fraction
        // (overflow checks are on for it in every profile, so it panics rather than
        // return a time 625 hours off): such an event is recorded, never altered.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            images(info, rows.rows_data(), &before_cols, &after_cols, shared)
        }));
        let Ok(parsed) = parsed else {
            return undecodable(
                txn,
                0,
                "the binlog parser failed on this rows event (mysql_common 0.37 cannot decode \
                 a negative TIME(1) or TIME(2) value with a fraction); re-sync its rows"
                    .into(),
            );
        };
        for (i, row) in parsed.into_iter().enumerate() {
            let decoded = match row {
                Ok(images) => images,
                Err(e) => {
                    undecodable(txn, i, format!("rows event could not be parsed: {e}"));
                    break;
                }
            };
            let (before, after) = match decoded {
                Ok(images) => images,
                Err(e) => {
                    undecodable(txn, i, e.to_string());
                    continue;
                }
            };
            let change = RowChange {
                table: info.source.clone(),
                op: op_of(rows),
                before,
                after,
                position: position.clone(),
                row_index: i as u32,
                commit_ts: 0,
            };
            match key_problem(&change) {
                None => txn.changes.push(change),
                Some(problem) => {
                    tracing::warn!(table = %change.table.name, %position, "{problem}; recorded as undecodable");
                    undecodable(txn, i, problem)
                }
            }
        }
    }
}

/// One row's images as decoded: a value that cannot be decoded makes the row's inner error.
type Images = Result<(Option<Vec<Value>>, Option<Vec<Value>>), DecodeError>;

/// Every row of a rows event's data, parsed image by image (before, then after, as the
/// event carries them); a parse error ends the list (nothing after it can be found).
fn images(
    info: &TableInfo,
    data: &[u8],
    before: &Option<Vec<bool>>,
    after: &Option<Vec<bool>>,
    shared: bool,
) -> Vec<std::io::Result<Images>> {
    let mut buf = ParseBuf(data);
    let mut out = Vec::new();
    while !buf.is_empty() {
        let row = (|| -> std::io::Result<Images> {
            let b = match before {
                Some(cols) => Some(info.decode_image(&mut buf, cols, false)?),
                None => None,
            };
            let a = match after {
                Some(cols) => Some(info.decode_image(&mut buf, cols, shared)?),
                None => None,
            };
            Ok((|| Ok((b.transpose()?, a.transpose()?)))())
        })();
        let failed = row.is_err();
        out.push(row);
        if failed {
            break;
        }
    }
    out
}

fn op_of(rows: &RowsEventData<'_>) -> Op {
    match rows {
        RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => Op::Insert,
        RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => Op::Delete,
        _ => Op::Update,
    }
}

/// Why a change cannot be applied without guessing: an update or a delete whose before
/// image does not carry the primary key (a partial row image of a table with no primary
/// key, say). A minimal insert may lack key columns the statement left to their defaults:
/// it writes what it has, and the target fills in its defaults too.
fn key_problem(change: &RowChange) -> Option<String> {
    let lacks_key = change.op != Op::Insert
        && change
            .before
            .as_ref()
            .is_some_and(|img| change.table.primary_key.iter().any(|&i| img[i].is_absent()));
    lacks_key.then(|| {
        format!(
            "the before row image (binlog_row_image MINIMAL or NOBLOB) lacks primary-key \
             columns of {}; the row cannot be found on the target without guessing",
            change.table.name
        )
    })
}
