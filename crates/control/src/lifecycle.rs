//! The recovery lifecycle of mismatch records and failed events: their states, the moves
//! between them, and the history of every move.
//!
//! Invariants:
//! - a move happens only from the state the mover saw (`WHERE state = from`), in the same
//!   transaction as its history row: two movers of one record (the worker and an operator)
//!   cannot both move it, and no move goes unrecorded;
//! - a mismatch record is open (it holds its row's `open_key`) exactly while its state is
//!   `detected`, `rechecking` or `needs_manual`; closing it frees the row for a new record,
//!   which links back to it.

use crate::{now_ms, text, ControlError, ControlStore};
use concord_change::Value;
use sqlx::Row;

/// Where a mismatch record stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MismatchState {
    /// Confirmed against the source; waiting for the grace period.
    Detected,
    /// The recovery worker is looking at it again now.
    Rechecking,
    /// Source and target agreed when looked at again: nothing was written.
    Resolved,
    /// concord wrote the source's row to the target and verified it again.
    Repaired,
    /// Waiting for a person: auto-repair is off for the table, the circuit is open, the
    /// repair failed, or the target refuses the source's row.
    NeedsManual,
    /// An operator decided to leave it, with a reason.
    Ignored,
}

impl MismatchState {
    pub const ALL: [MismatchState; 6] = [
        MismatchState::Detected,
        MismatchState::Rechecking,
        MismatchState::Resolved,
        MismatchState::Repaired,
        MismatchState::NeedsManual,
        MismatchState::Ignored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MismatchState::Detected => "detected",
            MismatchState::Rechecking => "rechecking",
            MismatchState::Resolved => "resolved",
            MismatchState::Repaired => "repaired",
            MismatchState::NeedsManual => "needs_manual",
            MismatchState::Ignored => "ignored",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the record still asks for something to happen.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            MismatchState::Detected | MismatchState::Rechecking | MismatchState::NeedsManual
        )
    }
}

impl std::fmt::Display for MismatchState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a failed event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailedState {
    Open,
    /// The stored change was applied again and the target took it.
    Retried,
    /// The source's current row was written through the guarded repair.
    Repaired,
    Ignored,
}

impl FailedState {
    pub fn as_str(self) -> &'static str {
        match self {
            FailedState::Open => "open",
            FailedState::Retried => "retried",
            FailedState::Repaired => "repaired",
            FailedState::Ignored => "ignored",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            FailedState::Open,
            FailedState::Retried,
            FailedState::Repaired,
            FailedState::Ignored,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// What a history row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Mismatch,
    FailedEvent,
    /// A bulk action of the console (its id is the bulk job's).
    Bulk,
    /// The auto-repair circuit (id 0).
    Circuit,
    /// A batch recovery job started or cancelled from the console.
    BatchJob,
    /// A checksum run started from the console (id 0: every table).
    Checksum,
    /// A snapshot job queued from the console (a batch recovery by copying).
    Snapshot,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Mismatch => "mismatch",
            Subject::FailedEvent => "failed_event",
            Subject::Bulk => "bulk",
            Subject::Circuit => "circuit",
            Subject::BatchJob => "batch_job",
            Subject::Checksum => "checksum",
            Subject::Snapshot => "snapshot_job",
        }
    }

    pub const ALL: [Subject; 7] = [
        Subject::Mismatch,
        Subject::FailedEvent,
        Subject::Bulk,
        Subject::Circuit,
        Subject::BatchJob,
        Subject::Checksum,
        Subject::Snapshot,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A row image as kept in records: (column, value) in the table's column order.
pub type NamedRow = Vec<(String, Value)>;

/// One move of a record, as the history keeps it.
#[derive(Clone, Debug, Default)]
pub struct Move {
    /// A user name, or `system`.
    pub actor: String,
    /// `auto`, `manual` or `batch` for repairs; `None` otherwise.
    pub mode: Option<String>,
    pub reason: String,
    pub before: Option<NamedRow>,
    pub after: Option<NamedRow>,
    /// The SQL that ran, with its values.
    pub statement: Option<String>,
}

/// A history row.
#[derive(Clone, Debug)]
pub struct HistoryRow {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub from_state: String,
    pub to_state: String,
    pub mode: Option<String>,
    pub reason: String,
    pub before: Option<NamedRow>,
    pub after: Option<NamedRow>,
    pub statement: Option<String>,
}

/// The columns [`history_row`] reads, in its order.
pub(crate) const HISTORY_COLUMNS: &str = "id, at_ms, actor, from_state, to_state, mode, \
     reason, before_image, after_image, statement";

/// A history row from [`HISTORY_COLUMNS`], read starting at column `at`.
pub(crate) fn history_row(r: &sqlx::any::AnyRow, at: usize) -> Result<HistoryRow, ControlError> {
    let opt = |i: usize| -> Result<Option<String>, ControlError> {
        let v: Option<Vec<u8>> = match r.try_get::<Option<String>, _>(at + i) {
            Ok(s) => s.map(String::into_bytes),
            Err(_) => r.try_get(at + i)?,
        };
        v.map(String::from_utf8)
            .transpose()
            .map_err(|e| ControlError::Query(sqlx::Error::Decode(Box::new(e))))
    };
    Ok(HistoryRow {
        id: r.try_get(at)?,
        at_ms: r.try_get(at + 1)?,
        actor: text(r, at + 2)?,
        from_state: text(r, at + 3)?,
        to_state: text(r, at + 4)?,
        mode: opt(5)?,
        reason: text(r, at + 6)?,
        before: from_json(opt(7)?)?,
        after: from_json(opt(8)?)?,
        statement: opt(9)?,
    })
}

pub(crate) fn to_json(row: &Option<NamedRow>) -> Option<String> {
    row.as_ref()
        .map(|r| serde_json::to_string(r).expect("values always serialize"))
}

pub(crate) fn from_json(s: Option<String>) -> Result<Option<NamedRow>, ControlError> {
    s.map(|s| {
        serde_json::from_str(&s).map_err(|e| {
            ControlError::Query(sqlx::Error::Decode(
                format!("a stored row image is not valid JSON: {e}").into(),
            ))
        })
    })
    .transpose()
}

impl ControlStore {
    /// Moves mismatch `id` from `from` to `to`, with its history row; `note` says why the
    /// record is where it is now. Returns `false`, changing nothing, when the record was
    /// not in `from` (someone else moved it first).
    pub async fn move_mismatch(
        &self,
        id: i64,
        from: MismatchState,
        to: MismatchState,
        m: &Move,
    ) -> Result<bool, ControlError> {
        let moved = self.move_mismatches(&[(id, from, to, m.clone())]).await?;
        Ok(moved[0])
    }

    /// Many moves as [`ControlStore::move_mismatch`], in one transaction (a page of
    /// records settled together costs one commit); for each, whether it moved. Each record
    /// appears at most once. Moves between the same two states are made together: one read
    /// of which records are still where the mover saw them, one guarded `UPDATE`, one
    /// multi-row insert of their history — a handful of statements per page, not two a row.
    pub async fn move_mismatches(
        &self,
        moves: &[(i64, MismatchState, MismatchState, Move)],
    ) -> Result<Vec<bool>, ControlError> {
        let now = now_ms();
        let mut groups: std::collections::BTreeMap<(&str, &str, bool), Vec<usize>> =
            Default::default();
        for (i, (_, from, to, m)) in moves.iter().enumerate() {
            groups
                .entry((from.as_str(), to.as_str(), m.mode.is_some()))
                .or_default()
                .push(i);
        }
        let mut moved = vec![false; moves.len()];
        let mut tx = self.begin_write().await?;
        for ((from, to, attempted), members) in groups {
            let closing = !MismatchState::parse(to).is_some_and(|s| s.is_open());
            for chunk in members.chunks(MOVES_PER_STATEMENT) {
                let ids: Vec<i64> = chunk.iter().map(|&i| moves[i].0).collect();
                let still = self.still_in(&mut tx, from, &ids).await?;
                let these: Vec<usize> = chunk
                    .iter()
                    .copied()
                    .filter(|&i| still.contains(&moves[i].0))
                    .collect();
                if these.is_empty() {
                    continue;
                }
                let step = Step {
                    subject: Subject::Mismatch,
                    id: 0,
                    at_ms: now,
                    from,
                    to,
                };
                let rows: Vec<(i64, &Move)> =
                    these.iter().map(|&i| (moves[i].0, &moves[i].3)).collect();
                update_states(&mut tx, &step, &rows, attempted, closing).await?;
                insert_histories(&mut tx, &step, &rows).await?;
                for i in these {
                    moved[i] = true;
                }
            }
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// Which of the records `ids` are in state `from` now, inside `tx` (locked on MySQL, so
    /// the update that follows sees the same).
    async fn still_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        from: &str,
        ids: &[i64],
    ) -> Result<std::collections::HashSet<i64>, ControlError> {
        let lock = match self.backend {
            crate::Backend::MySql => " FOR UPDATE",
            crate::Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT id FROM mismatches WHERE state = ? AND id IN ({}){lock}",
            marks(ids.len())
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(from);
        for id in ids {
            q = q.bind(*id);
        }
        Ok(q.fetch_all(&mut **tx).await?.into_iter().collect())
    }

    /// Moves failed event `id` from `from` to `to`, with its history row; `error`, when
    /// given, replaces the recorded error (a retry that failed again). As
    /// [`ControlStore::move_mismatch`], `false` when the event was not in `from`.
    pub async fn move_failed(
        &self,
        id: i64,
        from: FailedState,
        to: FailedState,
        m: &Move,
        error: Option<&str>,
    ) -> Result<bool, ControlError> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let query = sqlx::query(
            "UPDATE failed_events SET status = ?, state_ms = ?, note = ?, \
             error = COALESCE(?, error) WHERE id = ? AND status = ?",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(&m.reason)
        .bind(error)
        .bind(id)
        .bind(from.as_str());
        let step = Step {
            subject: Subject::FailedEvent,
            id,
            at_ms: now,
            from: from.as_str(),
            to: to.as_str(),
        };
        let moved = move_in(&mut tx, query, &step, m).await?;
        tx.commit().await?;
        Ok(moved)
    }

    /// The history of a record, oldest first.
    pub async fn history(
        &self,
        subject: Subject,
        id: i64,
    ) -> Result<Vec<HistoryRow>, ControlError> {
        let rows = sqlx::query(&format!(
            "SELECT {HISTORY_COLUMNS} FROM recovery_history WHERE subject = ? AND \
             subject_id = ? ORDER BY id"
        ))
        .bind(subject.as_str())
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| history_row(r, 0)).collect()
    }

    /// A recovery switch (`circuit`): its value, why and by whom it was set, when.
    pub async fn setting(&self, name: &str) -> Result<Option<Setting>, ControlError> {
        let row = sqlx::query(
            "SELECT value, reason, actor, updated_ms FROM recovery_settings WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Setting {
                value: r.try_get(0)?,
                reason: text(&r, 1)?,
                actor: r.try_get(2)?,
                updated_ms: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Sets a recovery switch; returns whether it changed (it held another value).
    pub async fn set_setting(
        &self,
        name: &str,
        value: &str,
        reason: &str,
        actor: &str,
    ) -> Result<bool, ControlError> {
        let mut tx = self.begin_write().await?;
        let old: Option<String> =
            sqlx::query_scalar("SELECT value FROM recovery_settings WHERE name = ?")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        if old.as_deref() == Some(value) {
            tx.rollback().await?;
            return Ok(false);
        }
        let now = now_ms();
        if old.is_some() {
            sqlx::query(
                "UPDATE recovery_settings SET value = ?, reason = ?, actor = ?, updated_ms = ? \
                 WHERE name = ?",
            )
            .bind(value)
            .bind(reason)
            .bind(actor)
            .bind(now)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO recovery_settings (name, value, reason, actor, updated_ms) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(name)
            .bind(value)
            .bind(reason)
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

/// A recovery switch as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub reason: String,
    pub actor: String,
    pub updated_ms: i64,
}

/// Records moved by one statement, at most (binds stay far below every backend's limit).
const MOVES_PER_STATEMENT: usize = 500;

/// `n` placeholders, comma-separated.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Moves the records `rows` (all in `step.from`, checked by the caller in the same
/// transaction) to `step.to`, each with its own note.
async fn update_states(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    step: &Step<'_>,
    rows: &[(i64, &Move)],
    attempted: bool,
    closing: bool,
) -> Result<(), ControlError> {
    // Closing frees the row's open key; staying open keeps it.
    let free = if closing { ", open_key = NULL" } else { "" };
    let sql = format!(
        "UPDATE mismatches SET state = ?, state_ms = ?, note = CASE id {} END, \
         attempts = attempts + ?{free} WHERE state = ? AND id IN ({})",
        vec!["WHEN ? THEN ?"; rows.len()].join(" "),
        marks(rows.len())
    );
    let mut q = sqlx::query(&sql).bind(step.to).bind(step.at_ms);
    for (id, m) in rows {
        q = q.bind(*id).bind(m.reason.clone());
    }
    q = q.bind(i64::from(attempted)).bind(step.from);
    for (id, _) in rows {
        q = q.bind(*id);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// The history rows of `rows`' moves, in one statement.
async fn insert_histories(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    step: &Step<'_>,
    rows: &[(i64, &Move)],
) -> Result<(), ControlError> {
    let sql = format!(
        "INSERT INTO recovery_history (subject, subject_id, at_ms, actor, from_state, to_state, \
         mode, reason, before_image, after_image, statement) VALUES {}",
        vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; rows.len()].join(", ")
    );
    let mut q = sqlx::query(&sql);
    for (id, m) in rows {
        q = q
            .bind(step.subject.as_str())
            .bind(*id)
            .bind(step.at_ms)
            .bind(m.actor.clone())
            .bind(step.from)
            .bind(step.to)
            .bind(m.mode.clone())
            .bind(m.reason.clone())
            .bind(to_json(&m.before))
            .bind(to_json(&m.after))
            .bind(m.statement.clone());
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// One record's move, as its history row names it.
struct Step<'a> {
    subject: Subject,
    id: i64,
    at_ms: i64,
    from: &'a str,
    to: &'a str,
}

/// Runs `update` (the record's guarded state change: it touches the row only while the
/// record is still in `step.from`) and, when it moved the record, adds the history row.
async fn move_in<'q>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    update: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    step: &Step<'_>,
    m: &Move,
) -> Result<bool, ControlError> {
    if update.execute(&mut **tx).await?.rows_affected() != 1 {
        return Ok(false);
    }
    insert_histories(tx, step, &[(step.id, m)]).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ColumnDiff, Detector, Mismatch, MismatchFilter, MismatchKind};
    use concord_change::{Position, TableName};

    async fn store() -> (tempfile::TempDir, ControlStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = ControlStore::connect(&url, &url).await.unwrap();
        (dir, store)
    }

    fn mismatch(key: &str) -> Mismatch {
        Mismatch {
            table: TableName::new("shop", "orders"),
            key: vec![("id".into(), Value::Text(key.into()))],
            kind: MismatchKind::ColumnsDiffer,
            columns: vec![ColumnDiff {
                column: "total".into(),
                source: Value::Int(1),
                target: Value::Int(2),
            }],
            position: Position::new("b.000001", 4),
            detected_by: Detector::Checksum,
            expected: None,
            source_row: Some(vec![("total".into(), Value::Int(1))]),
            target_row: Some(vec![("total".into(), Value::Int(2))]),
        }
    }

    fn by(actor: &str, reason: &str) -> Move {
        Move {
            actor: actor.into(),
            reason: reason.into(),
            ..Move::default()
        }
    }

    #[tokio::test]
    async fn moves_happen_only_from_the_state_seen_and_each_has_its_history() {
        let (_dir, store) = store().await;
        store.record_mismatch(&mismatch("a")).await.unwrap();
        let id = store.mismatches(None, 1).await.unwrap()[0].id;
        use MismatchState::*;
        assert!(store
            .move_mismatch(id, Detected, Rechecking, &by("system", "look"))
            .await
            .unwrap());
        // A second mover that saw `detected` loses.
        assert!(!store
            .move_mismatch(id, Detected, Ignored, &by("bob", "late"))
            .await
            .unwrap());
        let repaired = Move {
            actor: "system".into(),
            mode: Some("auto".into()),
            reason: "written".into(),
            before: Some(vec![("total".into(), Value::Int(2))]),
            after: Some(vec![("total".into(), Value::Int(1))]),
            statement: Some("INSERT INTO `shop`.`orders` …".into()),
        };
        assert!(store
            .move_mismatch(id, Rechecking, Repaired, &repaired)
            .await
            .unwrap());
        let row = store.mismatch(id).await.unwrap().unwrap();
        assert_eq!(row.state(), Some(Repaired));
        assert_eq!(row.attempts, 1);
        let history = store.history(Subject::Mismatch, id).await.unwrap();
        let moves: Vec<(&str, &str, &str)> = history
            .iter()
            .map(|h| (h.from_state.as_str(), h.to_state.as_str(), h.actor.as_str()))
            .collect();
        assert_eq!(
            moves,
            vec![
                ("detected", "rechecking", "system"),
                ("rechecking", "repaired", "system")
            ]
        );
        assert_eq!(history[1].before, repaired.before);
        assert_eq!(history[1].statement, repaired.statement);
        assert_eq!(store.open_mismatch_counts().await.unwrap(), vec![]);
    }

    #[tokio::test]
    async fn a_page_of_moves_is_one_transaction_and_each_move_keeps_its_own_guard() {
        let (_dir, store) = store().await;
        for key in ["a", "b", "c"] {
            store.record_mismatch(&mismatch(key)).await.unwrap();
        }
        let ids: Vec<i64> = store
            .mismatches(None, 3)
            .await
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        use MismatchState::*;
        // `b` was taken by someone else first.
        assert!(store
            .move_mismatch(ids[1], Detected, Ignored, &by("bob", "known"))
            .await
            .unwrap());
        let page: Vec<_> = ids
            .iter()
            .map(|&id| (id, Detected, Rechecking, by("system", "batch look")))
            .collect();
        assert_eq!(
            store.move_mismatches(&page).await.unwrap(),
            vec![true, false, true]
        );
        for (id, state, moves) in [
            (ids[0], Rechecking, 1),
            (ids[1], Ignored, 1),
            (ids[2], Rechecking, 1),
        ] {
            assert_eq!(
                store.mismatch(id).await.unwrap().unwrap().state(),
                Some(state)
            );
            assert_eq!(
                store.history(Subject::Mismatch, id).await.unwrap().len(),
                moves
            );
        }
    }

    #[tokio::test]
    async fn a_row_found_different_again_after_closing_opens_a_linked_record() {
        let (_dir, store) = store().await;
        let key = "it's \\ a \"key\" <script>\0";
        store.record_mismatch(&mismatch(key)).await.unwrap();
        let first = store.mismatches(None, 1).await.unwrap()[0].clone();
        assert_eq!(
            first.key[0].1,
            Value::Text(key.into()),
            "the key round-trips"
        );
        assert_eq!(first.source_row, mismatch(key).source_row);
        store
            .move_mismatch(
                first.id,
                MismatchState::Detected,
                MismatchState::Resolved,
                &by("system", "agree"),
            )
            .await
            .unwrap();
        assert!(store.record_mismatch(&mismatch(key)).await.unwrap(), "new");
        let second = store.mismatches(None, 1).await.unwrap()[0].clone();
        assert_ne!(second.id, first.id);
        assert_eq!(second.previous_id, Some(first.id));
        let found = store
            .find_mismatches(
                &MismatchFilter {
                    key_contains: Some("<script>".into()),
                    states: vec![MismatchState::Detected],
                    ..MismatchFilter::default()
                },
                10,
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, second.id);
    }

    #[tokio::test]
    async fn a_setting_changes_once_per_value() {
        let (_dir, store) = store().await;
        assert_eq!(store.setting("circuit").await.unwrap(), None);
        assert!(store
            .set_setting("circuit", "open", "burst", "system")
            .await
            .unwrap());
        assert!(!store
            .set_setting("circuit", "open", "again", "system")
            .await
            .unwrap());
        assert!(store
            .set_setting("circuit", "closed", "checked", "alice")
            .await
            .unwrap());
        let s = store.setting("circuit").await.unwrap().unwrap();
        assert_eq!((s.value.as_str(), s.actor.as_str()), ("closed", "alice"));
    }
}
