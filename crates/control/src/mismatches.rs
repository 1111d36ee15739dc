//! Mismatch records: rows where the target was found to differ from the source, by the
//! verifier or the checksum, with what differed — the work list of recovery and the console.
//!
//! Invariant: a row (table + primary key) has at most one open record. Recording it again
//! while it is open updates that record (kind, columns, position, last seen, occurrences)
//! instead of adding one; the store enforces it with a unique digest that is only set while
//! the record is open.

use crate::lifecycle::{from_json, to_json, MismatchState, NamedRow};
use crate::{now_ms, text, Backend, ControlError, ControlStore};
use concord_change::{Position, TableName, Value};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::collections::HashMap;

/// How the target row differs from the source row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MismatchKind {
    /// The source has the row, the target does not.
    MissingOnTarget,
    /// The target has a row the source does not.
    ExtraOnTarget,
    /// Both have the row; some shared columns differ.
    ColumnsDiffer,
}

impl MismatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::MissingOnTarget => "missing",
            MismatchKind::ExtraOnTarget => "extra",
            MismatchKind::ColumnsDiffer => "differs",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "missing" => Some(MismatchKind::MissingOnTarget),
            "extra" => Some(MismatchKind::ExtraOnTarget),
            "differs" => Some(MismatchKind::ColumnsDiffer),
            _ => None,
        }
    }
}

/// One differing column. For a missing or extra row every shared column is listed, with
/// `Null` on the side that has no row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnDiff {
    pub column: String,
    pub source: Value,
    pub target: Value,
}

/// Which part of concord found the difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detector {
    Verifier,
    Checksum,
}

impl Detector {
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Verifier => "verifier",
            Detector::Checksum => "checksum",
        }
    }
}

/// A difference to record.
#[derive(Clone, Debug)]
pub struct Mismatch {
    pub table: TableName,
    /// Primary-key columns and values, in key order.
    pub key: Vec<(String, Value)>,
    pub kind: MismatchKind,
    pub columns: Vec<ColumnDiff>,
    /// The change that led to the check (binlog position, or `topic[partition]` + offset);
    /// for the checksum, the source position when the row was read.
    pub position: Position,
    pub detected_by: Detector,
    /// What the change said the target must hold (`None`: the row must be absent, or the
    /// detector had no change to go by).
    pub expected: Option<NamedRow>,
    /// Both rows as the detector last saw them (`None`: absent).
    pub source_row: Option<NamedRow>,
    pub target_row: Option<NamedRow>,
}

/// A mismatch as the store has it.
#[derive(Clone, Debug)]
pub struct MismatchRow {
    pub id: i64,
    pub table: TableName,
    pub key: Vec<(String, Value)>,
    pub kind: MismatchKind,
    pub columns: Vec<ColumnDiff>,
    pub position: Position,
    pub detected_by: String,
    pub state: String,
    pub occurrences: i64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub expected: Option<NamedRow>,
    pub source_row: Option<NamedRow>,
    pub target_row: Option<NamedRow>,
    /// The closed record of the same row this one follows.
    pub previous_id: Option<i64>,
    pub state_ms: i64,
    /// Why the record is in its state.
    pub note: Option<String>,
    /// Repairs tried.
    pub attempts: i64,
}

impl MismatchRow {
    pub fn state(&self) -> Option<MismatchState> {
        MismatchState::parse(&self.state)
    }
}

/// The order of a list of records; each pages by its own keyset (never OFFSET).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// The newest record first (by id).
    #[default]
    Newest,
    /// The oldest record first.
    Oldest,
    /// The record seen most recently first.
    LastSeen,
}

impl ListOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            ListOrder::Newest => "newest",
            ListOrder::Oldest => "oldest",
            ListOrder::LastSeen => "last_seen",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Newest, Self::Oldest, Self::LastSeen]
            .into_iter()
            .find(|o| o.as_str() == s)
    }

    fn sql(self) -> &'static str {
        match self {
            ListOrder::Newest => " ORDER BY id DESC",
            ListOrder::Oldest => " ORDER BY id",
            ListOrder::LastSeen => " ORDER BY last_seen_ms DESC, id DESC",
        }
    }
}

/// The state every new record starts in (the recovery service moves it on).
pub const DETECTED: &str = "detected";

/// Which mismatch records to list. Keyset pagination: newest first, below `before_id`.
#[derive(Clone, Debug, Default)]
pub struct MismatchFilter {
    /// Tables, as exact names (`db.table`); empty: every table.
    pub tables: Vec<TableName>,
    pub states: Vec<MismatchState>,
    pub kinds: Vec<MismatchKind>,
    pub detected_by: Option<Detector>,
    /// Last seen at or after / before (ms since the epoch).
    pub seen_since_ms: Option<i64>,
    pub seen_until_ms: Option<i64>,
    /// A substring of the key's text (its JSON form).
    pub key_contains: Option<String>,
    pub ids: Vec<i64>,
    /// The page: in [`ListOrder::Newest`] order, records below this id.
    pub before_id: Option<i64>,
    /// In [`ListOrder::Oldest`] order, records above this id.
    pub after_id: Option<i64>,
    /// In [`ListOrder::LastSeen`] order, records seen before this (last seen ms, id).
    pub seen_before: Option<(i64, i64)>,
    pub order: ListOrder,
    /// Records a batch recovery job's check confirmed.
    pub batch_job: Option<i64>,
}

const COLUMNS: &str = "id, db, tbl, pk, kind, columns, source_file, source_pos, detected_by, \
                       state, occurrences, first_seen_ms, last_seen_ms, expected, source_row, \
                       target_row, previous_id, state_ms, note, attempts";

fn open_key(table: &TableName, key_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(table.db.as_bytes());
    h.update([0]);
    h.update(table.table.as_bytes());
    h.update([0]);
    h.update(key_json.as_bytes());
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// The multi-row upsert of mismatch records: its head, one row's values, and each
/// backend's tail (a row whose key has an open record updates that record).
const UPSERT_HEAD: &str = "INSERT INTO mismatches (db, tbl, pk, kind, columns, source_file, \
     source_pos, detected_by, state, first_seen_ms, last_seen_ms, open_key, row_key, \
     previous_id, expected, source_row, target_row, state_ms, batch_job) VALUES ";
const UPSERT_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const UPSERT_TAIL_SQLITE: &str = " ON CONFLICT (open_key) DO UPDATE SET kind = excluded.kind, \
     columns = excluded.columns, source_file = excluded.source_file, \
     source_pos = excluded.source_pos, last_seen_ms = excluded.last_seen_ms, \
     expected = excluded.expected, source_row = excluded.source_row, \
     target_row = excluded.target_row, occurrences = occurrences + 1, \
     batch_job = COALESCE(excluded.batch_job, batch_job)";
const UPSERT_TAIL_MYSQL: &str = " ON DUPLICATE KEY UPDATE kind = VALUES(kind), \
     columns = VALUES(columns), source_file = VALUES(source_file), \
     source_pos = VALUES(source_pos), last_seen_ms = VALUES(last_seen_ms), \
     expected = VALUES(expected), source_row = VALUES(source_row), \
     target_row = VALUES(target_row), occurrences = occurrences + 1, \
     batch_job = COALESCE(VALUES(batch_job), batch_job)";

/// Runs `sql` (one placeholder per open key) and maps its rows' first column (an open key)
/// to their second (a number).
async fn by_open_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sql: &str,
    opens: &[&String],
) -> Result<HashMap<String, i64>, ControlError> {
    let mut q = sqlx::query(sql);
    for open in opens {
        q = q.bind((*open).clone());
    }
    Ok(q.fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| Ok((text(r, 0)?, r.try_get::<i64, _>(1)?)))
        .collect::<Result<_, sqlx::Error>>()?)
}

/// Records per statement, at most (19 values each).
const RECORDS_PER_STATEMENT: usize = 500;

/// `all` cut into consecutive groups in which no row's key repeats, each at most
/// [`RECORDS_PER_STATEMENT`]: a repeated key's second record must see the first.
fn groups_without_repeats(all: &[Mismatch]) -> Vec<&[Mismatch]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut seen = std::collections::HashSet::new();
    for (i, m) in all.iter().enumerate() {
        let key = (
            &m.table,
            serde_json::to_string(&m.key).expect("values always serialize"),
        );
        if i - start == RECORDS_PER_STATEMENT || seen.contains(&key) {
            out.push(&all[start..i]);
            start = i;
            seen.clear();
        }
        seen.insert(key);
    }
    if start < all.len() {
        out.push(&all[start..]);
    }
    out
}

impl ControlStore {
    /// Records a mismatch, or updates the row's open record if it has one. Returns whether
    /// the record is new (the row's first open record). A new record links to the row's
    /// last closed one.
    pub async fn record_mismatch(&self, m: &Mismatch) -> Result<bool, ControlError> {
        Ok(self.record_mismatches(std::slice::from_ref(m)).await?[0])
    }

    /// As [`ControlStore::record_mismatch`] for many rows, in one transaction (a chunk's
    /// or a round's differences cost one commit, not one each), a few statements per group
    /// of rows rather than three a row.
    pub async fn record_mismatches(&self, all: &[Mismatch]) -> Result<Vec<bool>, ControlError> {
        self.record_mismatches_for(all, None).await
    }

    /// As [`ControlStore::record_mismatches`], marking each record (new or found again) as
    /// confirmed by batch recovery job `batch_job`.
    pub async fn record_mismatches_for(
        &self,
        all: &[Mismatch],
        batch_job: Option<i64>,
    ) -> Result<Vec<bool>, ControlError> {
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(all.len());
        for group in groups_without_repeats(all) {
            out.extend(self.record_group(&mut tx, group, batch_job).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records rows whose keys all differ: the rows' last closed records (to link to), one
    /// multi-row upsert, then the open records' counts — in `tx`, so two verifier rounds
    /// confirming the same row at once see 1 and 2, never both 2 (the row would then never
    /// be counted as new).
    async fn record_group(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        group: &[Mismatch],
        batch_job: Option<i64>,
    ) -> Result<Vec<bool>, ControlError> {
        let rows: Vec<(String, String, String)> = group
            .iter()
            .map(|m| {
                let key_json = serde_json::to_string(&m.key).expect("values always serialize");
                let columns = serde_json::to_string(&m.columns).expect("values always serialize");
                let open = open_key(&m.table, &key_json);
                (key_json, columns, open)
            })
            .collect();
        let marks = vec!["?"; rows.len()].join(", ");
        let sql = format!(
            "SELECT row_key, MAX(id) FROM mismatches WHERE open_key IS NULL AND row_key IN \
             ({marks}) GROUP BY row_key"
        );
        let opens: Vec<&String> = rows.iter().map(|(_, _, open)| open).collect();
        let previous = by_open_key(tx, &sql, &opens).await?;
        let now = now_ms();
        let mut q_text = String::from(UPSERT_HEAD);
        q_text.push_str(&vec![UPSERT_ROW; rows.len()].join(", "));
        q_text.push_str(match self.backend {
            Backend::Sqlite => UPSERT_TAIL_SQLITE,
            Backend::MySql => UPSERT_TAIL_MYSQL,
        });
        let mut q = sqlx::query(&q_text);
        for (m, (key_json, columns, open)) in group.iter().zip(&rows) {
            q = q
                .bind(m.table.db.clone())
                .bind(m.table.table.clone())
                .bind(key_json.clone())
                .bind(m.kind.as_str())
                .bind(columns.clone())
                .bind(m.position.file.to_string())
                .bind(m.position.pos as i64)
                .bind(m.detected_by.as_str())
                .bind(DETECTED)
                .bind(now)
                .bind(now)
                .bind(open.clone())
                .bind(open.clone())
                .bind(previous.get(open).copied())
                .bind(to_json(&m.expected))
                .bind(to_json(&m.source_row))
                .bind(to_json(&m.target_row))
                .bind(now)
                .bind(batch_job);
        }
        q.execute(&mut **tx).await?;
        let sql =
            format!("SELECT open_key, occurrences FROM mismatches WHERE open_key IN ({marks})");
        let counts = by_open_key(tx, &sql, &opens).await?;
        Ok(rows
            .iter()
            .map(|(_, _, open)| counts.get(open) == Some(&1))
            .collect())
    }

    /// One record.
    pub async fn mismatch(&self, id: i64) -> Result<Option<MismatchRow>, ControlError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM mismatches WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(mismatch_row).transpose()
    }

    /// Records matching `f`, in `f.order`, at most `limit`.
    pub async fn find_mismatches(
        &self,
        f: &MismatchFilter,
        limit: i64,
    ) -> Result<Vec<MismatchRow>, ControlError> {
        let (mut sql, binds) = filter_sql(f);
        sql = format!(
            "SELECT {COLUMNS} FROM mismatches{sql}{} LIMIT ?",
            f.order.sql()
        );
        let q = bound(sqlx::query(&sql), &binds);
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(mismatch_row).collect()
    }

    /// How many records match `f`, by state.
    pub async fn count_mismatches(
        &self,
        f: &MismatchFilter,
    ) -> Result<Vec<(String, i64)>, ControlError> {
        let (sql, binds) = filter_sql(f);
        let sql = format!("SELECT state, COUNT(*) FROM mismatches{sql} GROUP BY state");
        let q = bound(sqlx::query(&sql), &binds);
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ControlError::from)
    }

    /// How many records match `f`, by table.
    pub async fn count_mismatches_by_table(
        &self,
        f: &MismatchFilter,
    ) -> Result<Vec<(TableName, i64)>, ControlError> {
        let (sql, binds) = filter_sql(f);
        let sql = format!("SELECT db, tbl, COUNT(*) FROM mismatches{sql} GROUP BY db, tbl");
        let rows = bound(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    TableName::new(text(r, 0)?, text(r, 1)?),
                    r.try_get::<i64, _>(2)?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ControlError::from)
    }

    /// Records in `state` whose state has not changed since `before_ms`, oldest first.
    pub async fn mismatches_in_state_since(
        &self,
        state: MismatchState,
        before_ms: i64,
        limit: i64,
    ) -> Result<Vec<MismatchRow>, ControlError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM mismatches WHERE state = ? AND state_ms <= ? \
             ORDER BY id LIMIT ?"
        ))
        .bind(state.as_str())
        .bind(before_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(mismatch_row).collect()
    }

    /// The oldest open record's first sighting per table (ms since the epoch).
    pub async fn oldest_open_mismatches(&self) -> Result<Vec<(TableName, i64)>, ControlError> {
        let rows = sqlx::query(
            "SELECT db, tbl, MIN(first_seen_ms) FROM mismatches WHERE open_key IS NOT NULL \
             GROUP BY db, tbl",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    TableName::new(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?),
                    r.try_get::<i64, _>(2)?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ControlError::from)
    }

    /// Mismatch records, newest first, optionally of one table.
    pub async fn mismatches(
        &self,
        table: Option<&TableName>,
        limit: i64,
    ) -> Result<Vec<MismatchRow>, ControlError> {
        let base = format!("SELECT {COLUMNS} FROM mismatches");
        let query = match table {
            Some(_) => format!("{base} WHERE db = ? AND tbl = ? ORDER BY id DESC LIMIT ?"),
            None => format!("{base} ORDER BY id DESC LIMIT ?"),
        };
        let mut q = sqlx::query(&query);
        if let Some(t) = table {
            q = q.bind(&t.db).bind(&t.table);
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(mismatch_row).collect()
    }

    /// Open records per (table, state), for the `concord_open_mismatches` gauge.
    pub async fn open_mismatch_counts(
        &self,
    ) -> Result<Vec<(TableName, String, i64)>, ControlError> {
        let rows = sqlx::query(
            "SELECT db, tbl, state, COUNT(*) FROM mismatches WHERE open_key IS NOT NULL \
             GROUP BY db, tbl, state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    TableName::new(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?),
                    r.try_get::<String, _>(2)?,
                    r.try_get::<i64, _>(3)?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(ControlError::from)
    }
}

fn mismatch_row(r: &sqlx::any::AnyRow) -> Result<MismatchRow, ControlError> {
    let bad = |what: &str, e: serde_json::Error| {
        ControlError::Query(sqlx::Error::Decode(
            format!("mismatch {what} is not valid JSON: {e}").into(),
        ))
    };
    let kind: String = r.try_get(4)?;
    Ok(MismatchRow {
        id: r.try_get(0)?,
        table: TableName::new(r.try_get::<String, _>(1)?, r.try_get::<String, _>(2)?),
        key: serde_json::from_str(&text(r, 3)?).map_err(|e| bad("key", e))?,
        kind: MismatchKind::parse(&kind).ok_or_else(|| {
            ControlError::Query(sqlx::Error::Decode(
                format!("unknown mismatch kind {kind:?}").into(),
            ))
        })?,
        columns: serde_json::from_str(&text(r, 5)?).map_err(|e| bad("columns", e))?,
        position: Position::new(r.try_get::<String, _>(6)?, r.try_get::<i64, _>(7)? as u64),
        detected_by: r.try_get(8)?,
        state: r.try_get(9)?,
        occurrences: r.try_get(10)?,
        first_seen_ms: r.try_get(11)?,
        last_seen_ms: r.try_get(12)?,
        expected: from_json(opt_text(r, 13)?)?,
        source_row: from_json(opt_text(r, 14)?)?,
        target_row: from_json(opt_text(r, 15)?)?,
        previous_id: r.try_get(16)?,
        state_ms: r.try_get::<Option<i64>, _>(17)?.unwrap_or_default(),
        note: opt_text(r, 18)?,
        attempts: r.try_get(19)?,
    })
}

/// A nullable TEXT column (see [`text`]).
pub(crate) fn opt_text(r: &sqlx::any::AnyRow, i: usize) -> Result<Option<String>, sqlx::Error> {
    if r.try_get::<Option<String>, _>(i).is_ok_and(|v| v.is_none()) {
        return Ok(None);
    }
    text(r, i).map(Some)
}

enum Bind {
    Text(String),
    Int(i64),
}

/// The WHERE clause of a filter and its values (always bound).
/// `q` with a filter's values bound, in order.
fn bound<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: &[Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for b in binds {
        q = match b {
            Bind::Text(s) => q.bind(s.clone()),
            Bind::Int(i) => q.bind(*i),
        };
    }
    q
}

fn filter_sql(f: &MismatchFilter) -> (String, Vec<Bind>) {
    let mut conds = Vec::new();
    let mut binds = Vec::new();
    let mut any_of = |conds: &mut Vec<String>, one: &str, items: Vec<Vec<Bind>>| {
        if items.is_empty() {
            return;
        }
        let parts: Vec<String> = items.iter().map(|_| format!("({one})")).collect();
        conds.push(format!("({})", parts.join(" OR ")));
        binds.extend(items.into_iter().flatten());
    };
    any_of(
        &mut conds,
        "db = ? AND tbl = ?",
        f.tables
            .iter()
            .map(|t| vec![Bind::Text(t.db.clone()), Bind::Text(t.table.clone())])
            .collect(),
    );
    any_of(
        &mut conds,
        "state = ?",
        f.states
            .iter()
            .map(|s| vec![Bind::Text(s.as_str().into())])
            .collect(),
    );
    any_of(
        &mut conds,
        "kind = ?",
        f.kinds
            .iter()
            .map(|k| vec![Bind::Text(k.as_str().into())])
            .collect(),
    );
    any_of(
        &mut conds,
        "id = ?",
        f.ids.iter().map(|i| vec![Bind::Int(*i)]).collect(),
    );
    if let Some(d) = f.detected_by {
        conds.push("detected_by = ?".into());
        binds.push(Bind::Text(d.as_str().into()));
    }
    if let Some(ms) = f.seen_since_ms {
        conds.push("last_seen_ms >= ?".into());
        binds.push(Bind::Int(ms));
    }
    if let Some(ms) = f.seen_until_ms {
        conds.push("last_seen_ms < ?".into());
        binds.push(Bind::Int(ms));
    }
    if let Some(text) = &f.key_contains {
        // INSTR, not LIKE: the operator's text is matched as it is, wildcards and all.
        conds.push("INSTR(pk, ?) > 0".into());
        binds.push(Bind::Text(text.clone()));
    }
    if let Some(id) = f.before_id {
        conds.push("id < ?".into());
        binds.push(Bind::Int(id));
    }
    if let Some(id) = f.after_id {
        conds.push("id > ?".into());
        binds.push(Bind::Int(id));
    }
    if let Some((ms, id)) = f.seen_before {
        conds.push("(last_seen_ms < ? OR (last_seen_ms = ? AND id < ?))".into());
        binds.extend([Bind::Int(ms), Bind::Int(ms), Bind::Int(id)]);
    }
    if let Some(job) = f.batch_job {
        conds.push("batch_job = ?".into());
        binds.push(Bind::Int(job));
    }
    if conds.is_empty() {
        (String::new(), binds)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), binds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch(id: i64, kind: MismatchKind) -> Mismatch {
        Mismatch {
            table: TableName::new("shop", "orders"),
            key: vec![("id".into(), Value::Int(id))],
            kind,
            columns: vec![ColumnDiff {
                column: "total".into(),
                source: Value::Decimal("10.00".into()),
                target: Value::Decimal("9.00".into()),
            }],
            position: Position::new("mysql-bin.000001", 400),
            detected_by: Detector::Verifier,
            expected: None,
            source_row: Some(vec![("id".into(), Value::Int(id))]),
            target_row: None,
        }
    }

    #[tokio::test]
    async fn many_rows_recorded_at_once_count_a_repeated_key_once_and_link_closed_records() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        let rows: Vec<Mismatch> = [1, 2, 1, 3]
            .into_iter()
            .map(|id| mismatch(id, MismatchKind::ColumnsDiffer))
            .collect();
        assert_eq!(
            store.record_mismatches(&rows).await.unwrap(),
            vec![true, true, false, true],
            "the second record of key 1 updates the first"
        );
        let open = store.mismatches(None, 10).await.unwrap();
        assert_eq!(open.len(), 3);
        let one = open.iter().find(|m| m.key == rows[0].key).unwrap();
        assert_eq!(one.occurrences, 2);
        // Closed, then found again in a later group: a new record linking the old one.
        let mv = crate::Move {
            actor: "system".into(),
            reason: "agree".into(),
            ..crate::Move::default()
        };
        store
            .move_mismatch(
                one.id,
                MismatchState::Detected,
                MismatchState::Resolved,
                &mv,
            )
            .await
            .unwrap();
        let again = store.record_mismatches(&rows[..2]).await.unwrap();
        assert_eq!(again, vec![true, false]);
        let newest = store.mismatches(None, 1).await.unwrap()[0].clone();
        assert_eq!(newest.previous_id, Some(one.id));
        // A batch job's check marks what it confirms, also a record another detector made.
        store
            .record_mismatches_for(&rows[3..], Some(7))
            .await
            .unwrap();
        let of_job = MismatchFilter {
            batch_job: Some(7),
            ..MismatchFilter::default()
        };
        let marked = store.find_mismatches(&of_job, 10).await.unwrap();
        assert_eq!(marked.len(), 1);
        assert_eq!(
            (marked[0].key.clone(), marked[0].occurrences),
            (rows[3].key.clone(), 2)
        );
        store.record_mismatches(&rows[3..]).await.unwrap();
        assert_eq!(
            store.find_mismatches(&of_job, 10).await.unwrap().len(),
            1,
            "a mark stays"
        );
    }

    #[tokio::test]
    async fn a_row_that_keeps_differing_is_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        let mut new = Vec::new();
        for m in [
            mismatch(1, MismatchKind::ColumnsDiffer),
            mismatch(1, MismatchKind::MissingOnTarget),
            mismatch(2, MismatchKind::ColumnsDiffer),
        ] {
            new.push(store.record_mismatch(&m).await.unwrap());
        }
        assert_eq!(
            new,
            vec![true, false, true],
            "only a row's first record is new"
        );
        let rows = store.mismatches(None, 10).await.unwrap();
        assert_eq!(rows.len(), 2);
        let one = rows.iter().find(|r| r.key[0].1 == Value::Int(1)).unwrap();
        assert_eq!(one.occurrences, 2);
        assert_eq!(one.kind, MismatchKind::MissingOnTarget);
        assert_eq!(one.state, DETECTED);
        assert_eq!(one.columns[0].source, Value::Decimal("10.00".into()));
        let counts = store.open_mismatch_counts().await.unwrap();
        assert_eq!(
            counts,
            vec![(TableName::new("shop", "orders"), DETECTED.to_owned(), 2)]
        );
    }

    #[tokio::test]
    async fn the_same_row_recorded_at_once_is_new_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        for round in 0..5 {
            let m = mismatch(100 + round, MismatchKind::ColumnsDiffer);
            let calls: Vec<_> = (0..6)
                .map(|_| {
                    let (store, m) = (store.clone(), m.clone());
                    tokio::spawn(async move { store.record_mismatch(&m).await.unwrap() })
                })
                .collect();
            let mut new = Vec::new();
            for call in calls {
                new.push(call.await.unwrap());
            }
            assert_eq!(
                new.iter().filter(|n| **n).count(),
                1,
                "row {round}: one call saw its record created: {new:?}"
            );
        }
    }
}
