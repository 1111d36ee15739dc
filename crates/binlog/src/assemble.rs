//! Groups binlog events into transactions and tracks the position inside the stream.
//!
//! Invariants:
//! - `file` is always the binlog file the next event comes from — taken from a rotate
//!   event's *payload*, since a rotate's header position belongs to the old file — and
//!   `pos` is where the next event starts in it;
//! - nothing that may carry row data is dropped: an event concord cannot decode stops the
//!   stream with an error naming it ([`BinlogError::Unsupported`]), a row it cannot decode
//!   is kept as [`Undecodable`], a data change logged as SQL as a [`LoggedStatement`];
//! - an XA transaction's rows are handed on at its `XA COMMIT` (never at `XA PREPARE`, since
//!   it may still be rolled back), and every transaction handed on meanwhile says where to
//!   read again to see the prepared one (`resume_from`);
//! - a transaction that outgrows the [`FragmentBound`] is handed on in fragments as it is
//!   read (never an XA one, which may still be rolled back), and after a reconnect the rows
//!   events of it already handed on ([`Sent`]) are skipped, so no row is handed on twice.

use crate::decode::Collations;
use crate::error::BinlogError;
use crate::reader::{metrics, FragmentBound, ReaderEvent, Resume, TablePredicate};
use crate::rows::Tables;
use crate::statement::{classify, QueryKind, XaVerb};
use concord_change::{Ddl, LoggedStatement, Position, TableName, Transaction, Undecodable};
use mysql_async::binlog::events::{Event, EventData};
use mysql_async::binlog::EventFlags;
use mysql_async::BinlogStream;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) struct Assembler {
    file: Arc<str>,
    pos: u64,
    is_mariadb: bool,
    seen_format_description: bool,
    txn: Option<Transaction>,
    /// Where the event group being read started (its GTID or BEGIN event).
    group_start: Position,
    /// The xid of the XA transaction being read (between `XA START` and its prepare).
    xa: Option<String>,
    /// XA transactions prepared and not yet committed or rolled back, by xid.
    prepared: HashMap<String, Prepared>,
    /// While re-reading from an earlier resume point: transactions ending at or before this
    /// were handed on before, and only XA prepares are collected from them.
    applied: Option<Position>,
    /// A GTID announced for the next statement or transaction, not yet opened.
    pending_gtid: Option<String>,
    tables: Tables,
    bound: FragmentBound,
    /// Bytes of the included rows events read into the open transaction since it (or its
    /// last fragment) was handed on.
    open_bytes: u64,
    /// The open event group is an XA transaction (MariaDB says so in its GTID event).
    xa_group: bool,
    /// Fragments of the open transaction handed on, by this assembler or by the one before
    /// a reconnect.
    sent: Option<Sent>,
}

/// How far a transaction handed on in fragments has been handed on: the rows events of the
/// event group starting at `group` that end at or before `through`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    group: Position,
    through: Position,
}

/// What a DDL did to rows without row events, in the included tables.
enum Rowless {
    None,
    /// `TRUNCATE`: every row.
    Truncated(Vec<TableName>),
    /// `ALTER TABLE … TRUNCATE|DROP|EXCHANGE PARTITION`: the rows of some partitions.
    Partitions(Vec<TableName>),
}

/// A prepared XA transaction and where its event group starts.
struct Prepared {
    txn: Transaction,
    start: Position,
}

/// MariaDB's GTID event, which mysql_common does not parse.
const MARIADB_GTID_EVENT: u8 = 162;
/// Its flag for a statement outside any transaction (a DDL): no XID follows.
const FL_STANDALONE: u8 = 1;
/// Its flags for the two parts of an XA transaction: the group ending in `XA PREPARE`, and
/// the `XA COMMIT`/`XA ROLLBACK`.
const FL_PREPARED_XA: u8 = 64;
const FL_COMPLETED_XA: u8 = 128;

/// MariaDB events mysql_common does not parse and that carry no row data: annotate rows
/// (160), binlog checkpoint (161), GTID list (163), start encryption (164).
const MARIADB_HARMLESS: [u8; 4] = [160, 161, 163, 164];

/// Schemas whose statements are never recorded (the server's own bookkeeping).
const SYSTEM_SCHEMAS: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

/// `domain-server-sequence` from a MariaDB GTID event's payload (sequence: 8 bytes, then
/// domain: 4 bytes, then flags, all little-endian) and the event's server id; with the
/// flags.
fn mariadb_gtid(data: &[u8], server_id: u32) -> Option<(String, u8)> {
    let seq = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    let flags = *data.get(12)?;
    Some((format!("{domain}-{server_id}-{seq}"), flags))
}

/// A MariaDB event type that may carry rows or statements concord cannot read.
fn mariadb_unreadable(code: u8) -> Option<&'static str> {
    match code {
        165 => Some("QUERY_COMPRESSED_EVENT"),
        166..=171 => Some("compressed ROWS_EVENT"),
        _ => None,
    }
}

impl Assembler {
    pub fn new(
        resume: &Resume,
        sent: Option<Sent>,
        is_mariadb: bool,
        include: TablePredicate,
        collations: Arc<Collations>,
        bound: FragmentBound,
    ) -> Self {
        Self {
            pos: resume.from.pos,
            file: resume.from.file.clone(),
            is_mariadb,
            seen_format_description: false,
            txn: None,
            group_start: resume.from.clone(),
            xa: None,
            prepared: HashMap::new(),
            applied: (resume.applied > resume.from).then(|| resume.applied.clone()),
            pending_gtid: None,
            tables: Tables::new(include, collations),
            bound,
            open_bytes: 0,
            xa_group: false,
            sent,
        }
    }

    /// The fragments of the open transaction handed on so far (`None` between
    /// transactions).
    pub fn sent(&self) -> Option<&Sent> {
        self.sent.as_ref()
    }

    /// What `event` completes, if anything, with the bytes of binlog it was read from.
    pub fn handle(
        &mut self,
        event: &Event,
        stream: &BinlogStream,
    ) -> Result<Option<(ReaderEvent, u64)>, BinlogError> {
        let out = self.handle_event(event, stream)?;
        Ok(out.map(|e| (e, std::mem::take(&mut self.open_bytes))))
    }

    fn handle_event(
        &mut self,
        event: &Event,
        stream: &BinlogStream,
    ) -> Result<Option<ReaderEvent>, BinlogError> {
        let header = event.header();
        let end = Position::new(self.file.clone(), u64::from(header.log_pos()));
        let start = Position::new(
            self.file.clone(),
            u64::from(header.log_pos()).saturating_sub(u64::from(header.event_size())),
        );
        // Artificial events (the first rotate, heartbeats) carry no position of their own.
        let artificial = header.log_pos() == 0
            || header.event_type() == Ok(mysql_async::binlog::EventType::HEARTBEAT_EVENT);
        if !artificial {
            self.pos = u64::from(header.log_pos());
        }
        let code = header.event_type_raw();
        if self.is_mariadb && code == MARIADB_GTID_EVENT {
            self.gtid_event(event, start);
            return Ok(None);
        }
        let unsupported = |name: String, detail: String| BinlogError::Unsupported {
            position: start.clone(),
            code,
            name,
            detail,
        };
        let Some(data) = self.read(event, &unsupported)? else {
            return Ok(None);
        };
        match data {
            EventData::FormatDescriptionEvent(_) => {
                self.seen_format_description = true;
                Ok(None)
            }
            EventData::RotateEvent(r) => {
                let mut name = r.name_raw().to_vec();
                // MariaDB's first, artificial rotate arrives before the format description
                // that announces checksums, so its 4 checksum bytes are still attached to
                // the name (mysql_async issue 189).
                if self.is_mariadb && !self.seen_format_description && name.len() > 4 {
                    name.truncate(name.len() - 4);
                }
                self.file = String::from_utf8_lossy(&name).into();
                self.pos = r.position();
                Ok(None)
            }
            EventData::HeartbeatEvent => Ok(self.caught_up()),
            EventData::QueryEvent(q) => {
                let schema = q.schema().into_owned();
                let query = q.query().into_owned();
                self.query(schema, query, start, end, header.timestamp())
            }
            EventData::ExecuteLoadQueryEvent(q) => {
                // LOAD DATA logged as a statement: its rows are in a file the binlog
                // carries in pieces; concord does not rebuild them.
                let (schema, query) = (q.schema().into_owned(), q.query().into_owned());
                self.query(schema, query, start, end, header.timestamp())
            }
            EventData::XidEvent(_) => Ok(self.commit(end, header.timestamp())),
            EventData::XaPrepareLogEvent(payload) => {
                // Its first byte says whether this is a one-phase commit.
                if payload.first().is_some_and(|b| *b != 0) {
                    self.xa = None;
                    return Ok(self.commit(end, header.timestamp()));
                }
                self.refuse_fragmented_xa(&start)?;
                // MariaDB has no XA START event: its GTID event opened the transaction.
                if let Some(xid) = prepared_xid(&payload) {
                    self.xa = Some(xid);
                }
                Ok(self.prepare(end, header.timestamp()))
            }
            EventData::RowsEvent(rows) => {
                if self.handed_on_before(&end) || self.replaying_handed_on_group() {
                    self.txn.get_or_insert_with(Transaction::default);
                    return Ok(None);
                }
                let Some(tme) = stream.get_tme(rows.table_id()) else {
                    let txn = self.txn.get_or_insert_with(Transaction::default);
                    crate::rows::no_table_map(&rows, start, txn);
                    return Ok(self.fragment_if_full(end, header.timestamp()));
                };
                if let Some(table) = self.tables.included(rows.table_id(), tme) {
                    let txn = self.txn.get_or_insert_with(Transaction::default);
                    table.decode(&rows, tme, start, txn);
                    self.open_bytes += u64::from(header.event_size());
                }
                Ok(self.fragment_if_full(end, header.timestamp()))
            }
            EventData::TransactionPayloadEvent(_) => Err(unsupported(
                "TRANSACTION_PAYLOAD_EVENT".into(),
                "the source compresses transactions (binlog_transaction_compression=ON); \
                 concord cannot decode them: turn it off, then re-sync the tables changed \
                 meanwhile"
                    .into(),
            )),
            EventData::IncidentEvent(i) => Err(unsupported(
                "INCIDENT_EVENT".into(),
                format!(
                    "the source logged an incident ({}): changes may be missing from its \
                     binlog; re-sync the replicated tables",
                    i.message()
                ),
            )),
            EventData::PreGaWriteRowsEvent(_)
            | EventData::PreGaUpdateRowsEvent(_)
            | EventData::PreGaDeleteRowsEvent(_)
            | EventData::LoadEvent(_)
            | EventData::CreateFileEvent(_)
            | EventData::ExecLoadEvent(_)
            | EventData::NewLoadEvent(_) => Err(unsupported(
                format!("event type {code}"),
                "an old-format event that may carry row data".into(),
            )),
            _ => Ok(None),
        }
    }

    /// MariaDB's GTID event, which opens an event group: a transaction (there is no BEGIN
    /// in MariaDB's binlog), or announces a statement on its own (a DDL).
    fn gtid_event(&mut self, event: &Event, start: Position) {
        let header = event.header();
        self.xa_group = false;
        match mariadb_gtid(event.data(), header.server_id()) {
            Some((gtid, flags)) if flags & FL_STANDALONE != 0 => self.pending_gtid = Some(gtid),
            Some((gtid, flags)) => {
                self.xa_group = flags & (FL_PREPARED_XA | FL_COMPLETED_XA) != 0;
                self.txn = Some(Transaction {
                    gtid: Some(gtid),
                    ..Transaction::default()
                })
            }
            None => tracing::warn!(position = %start, "short MariaDB GTID event ignored"),
        }
        self.group_start = start;
        self.open_bytes = 0;
    }

    /// The event's data, or `None` for an event that carries nothing concord needs; an
    /// error for one that may carry rows concord cannot decode.
    fn read<'e>(
        &self,
        event: &'e Event,
        unsupported: &dyn Fn(String, String) -> BinlogError,
    ) -> Result<Option<EventData<'e>>, BinlogError> {
        let header = event.header();
        let code = header.event_type_raw();
        if let Some(name) = mariadb_unreadable(code) {
            return Err(unsupported(
                name.into(),
                "the source writes compressed binlog events (log_bin_compress=ON); concord \
                 cannot decode them: SET GLOBAL log_bin_compress=OFF, then re-sync the tables \
                 changed meanwhile"
                    .into(),
            ));
        }
        // The server marks events a replica may skip when it does not know them.
        let ignorable = header.flags().contains(EventFlags::LOG_EVENT_IGNORABLE_F);
        match event.read_data() {
            Ok(Some(d)) => Ok(Some(d)),
            Ok(None) if ignorable || (self.is_mariadb && MARIADB_HARMLESS.contains(&code)) => {
                Ok(None)
            }
            Ok(None) => Err(unsupported(
                format!("unknown event type {code}"),
                "it may carry row data".into(),
            )),
            Err(_) if ignorable => Ok(None),
            Err(e) => Err(unsupported(format!("event type {code}"), e.to_string())),
        }
    }

    /// A heartbeat: nothing newer on the source, unless a transaction is open.
    fn caught_up(&self) -> Option<ReaderEvent> {
        let position = Position::new(self.file.clone(), self.pos);
        if self.txn.is_some() || self.applied.as_ref().is_some_and(|a| position < *a) {
            return None;
        }
        Some(ReaderEvent::CaughtUp {
            resume_from: self.oldest_prepared(),
            position,
        })
    }

    fn query(
        &mut self,
        schema: String,
        query: String,
        start: Position,
        end: Position,
        ts: u32,
    ) -> Result<Option<ReaderEvent>, BinlogError> {
        let kind = classify(&schema, &query);
        // MySQL writes XA START as a statement of its own: where its group starts, unless a
        // (MariaDB) GTID event opened the group already.
        if matches!(kind, QueryKind::Xa(XaVerb::Start, _)) && self.txn.is_none() {
            self.group_start = start.clone();
        }
        Ok(match kind {
            QueryKind::Comment => None,
            QueryKind::Begin => {
                self.group_start = start;
                self.open_bytes = 0;
                let gtid = self.opened_gtid();
                self.txn = Some(Transaction {
                    gtid,
                    ..Transaction::default()
                });
                None
            }
            // Savepoints inside a transaction: the rows a ROLLBACK TO undid are not in the
            // binlog; the transaction goes on.
            QueryKind::Savepoint => None,
            QueryKind::Commit => self.commit(end, ts),
            QueryKind::Xa(XaVerb::Prepare, _) => {
                self.refuse_fragmented_xa(&start)?;
                self.prepare(end, ts)
            }
            QueryKind::Xa(verb, xid) => self.xa(verb, xid, end, ts),
            QueryKind::Dml(tables) => {
                let included: Vec<TableName> = tables
                    .iter()
                    .filter(|t| self.tables.includes(t))
                    .cloned()
                    .collect();
                let record = if tables.is_empty() {
                    !SYSTEM_SCHEMAS.contains(&schema.as_str())
                } else {
                    !included.is_empty()
                };
                let statement = LoggedStatement {
                    position: start,
                    schema,
                    statement: query,
                    tables: included,
                };
                // Already handed on with a fragment (re-read after a reconnect).
                let again = self.handed_on_before(&end);
                match self.txn.as_mut() {
                    Some(txn) => {
                        if record && !again {
                            txn.statements.push(statement);
                        }
                        None
                    }
                    // Outside a transaction (a non-transactional table): a group of its own.
                    None => {
                        let gtid = self.opened_gtid();
                        self.emit(Transaction {
                            end,
                            commit_ts: ts,
                            gtid,
                            statements: if record { vec![statement] } else { Vec::new() },
                            ..Transaction::default()
                        })
                    }
                }
            }
            QueryKind::Ddl(tables) => self.ddl(tables, schema, query, end, ts, Rowless::None),
            QueryKind::Truncate(tables) => {
                let included = self.rowless(&tables, &schema, &query, start);
                self.ddl(tables, schema, query, end, ts, Rowless::Truncated(included))
            }
            QueryKind::PartitionRows(tables) => {
                let included = self.rowless(&tables, &schema, &query, start);
                self.ddl(
                    tables,
                    schema,
                    query,
                    end,
                    ts,
                    Rowless::Partitions(included),
                )
            }
        })
    }

    /// The included tables of a statement that changes rows without row events; when it
    /// could not be attributed to a table, it is recorded for a re-sync (as a data change
    /// logged as SQL is), with the transaction it commits.
    fn rowless(
        &mut self,
        tables: &[TableName],
        schema: &str,
        statement: &str,
        start: Position,
    ) -> Vec<TableName> {
        if tables.is_empty() && !SYSTEM_SCHEMAS.contains(&schema) {
            let txn = self.txn.get_or_insert_with(Transaction::default);
            txn.statements.push(LoggedStatement {
                position: start,
                schema: schema.to_owned(),
                statement: statement.to_owned(),
                tables: Vec::new(),
            });
        }
        tables
            .iter()
            .filter(|t| self.tables.includes(t))
            .cloned()
            .collect()
    }

    /// A DDL commits implicitly: whatever was open goes with it, not dropped.
    fn ddl(
        &mut self,
        tables: Vec<TableName>,
        schema: String,
        statement: String,
        end: Position,
        ts: u32,
        rowless: Rowless,
    ) -> Option<ReaderEvent> {
        let mut txn = self.txn.take().unwrap_or_default();
        if txn.gtid.is_none() {
            txn.gtid = self.opened_gtid();
        }
        txn.end = end;
        txn.commit_ts = ts;
        txn.ddl = Some(Ddl {
            tables,
            schema,
            statement,
        });
        match rowless {
            Rowless::None => {}
            Rowless::Truncated(t) => txn.truncated = t,
            Rowless::Partitions(t) => txn.partition_rows = t,
        }
        self.emit(txn)
    }

    fn xa(&mut self, verb: XaVerb, xid: String, end: Position, ts: u32) -> Option<ReaderEvent> {
        match verb {
            XaVerb::Start => {
                let gtid = self.opened_gtid();
                self.txn = Some(Transaction {
                    gtid,
                    ..Transaction::default()
                });
                self.xa = Some(canonical_xid(&xid));
                None
            }
            XaVerb::End => None,
            XaVerb::Prepare => self.prepare(end, ts),
            XaVerb::CommitOnePhase => {
                self.xa = None;
                self.commit(end, ts)
            }
            XaVerb::Commit | XaVerb::Rollback => {
                // Its own event group: what the GTID event opened carries nothing.
                let opened = self.txn.take();
                let mut txn = match (verb, self.prepared.remove(&canonical_xid(&xid))) {
                    (XaVerb::Commit, Some(p)) => p.txn,
                    (_, Some(_)) => Transaction::default(),
                    (_, None) => self.unknown_xa(verb, &xid, &end),
                };
                let pending = self.pending_gtid.take();
                txn.gtid = txn.gtid.or_else(|| opened.and_then(|t| t.gtid)).or(pending);
                self.finish(txn, end, ts)
            }
        }
    }

    /// An XA transaction completed whose prepare was read before this reader's start (a
    /// start at the source's current position while it was pending): its rows are not
    /// known. Recorded, so an operator re-syncs; never passed over silently.
    fn unknown_xa(&self, verb: XaVerb, xid: &str, end: &Position) -> Transaction {
        let mut txn = Transaction::default();
        if verb == XaVerb::Commit {
            tracing::warn!(%xid, position = %end, "XA COMMIT of a transaction prepared before concord started reading; its rows are unknown and recorded as an undecodable event");
            metrics::UNDECODABLE.inc();
            txn.undecodable.push(Undecodable {
                table: TableName::new("", format!("XA {xid}")),
                position: end.clone(),
                row_index: 0,
                error: format!(
                    "XA transaction {xid} was prepared before the position concord started \
                     reading from and committed at {end}; its row changes are not known: \
                     re-sync the tables it changed"
                ),
            });
        }
        txn
    }

    /// `XA PREPARE`: the transaction is durable on the source but may still be rolled
    /// back, so its rows are kept until `XA COMMIT`; the position moves on meanwhile.
    fn prepare(&mut self, end: Position, ts: u32) -> Option<ReaderEvent> {
        let txn = self.txn.take().unwrap_or_default();
        let gtid = txn.gtid.clone();
        match self.xa.take() {
            Some(xid) => {
                self.prepared.insert(
                    xid,
                    Prepared {
                        txn,
                        start: self.group_start.clone(),
                    },
                );
            }
            None => {
                tracing::warn!(position = %end, "XA PREPARE without XA START; its rows are handed on now")
            }
        }
        self.finish(
            Transaction {
                gtid,
                ..Transaction::default()
            },
            end,
            ts,
        )
    }

    /// The GTID of what opens now: announced standalone, or carried by the group a GTID
    /// event already opened.
    fn opened_gtid(&mut self) -> Option<String> {
        self.pending_gtid
            .take()
            .or_else(|| self.txn.as_ref().and_then(|t| t.gtid.clone()))
    }

    fn commit(&mut self, end: Position, ts: u32) -> Option<ReaderEvent> {
        let txn = self.txn.take().unwrap_or_default();
        self.finish(txn, end, ts)
    }

    fn finish(&mut self, mut txn: Transaction, end: Position, ts: u32) -> Option<ReaderEvent> {
        txn.end = end;
        txn.commit_ts = ts;
        for c in &mut txn.changes {
            c.commit_ts = ts;
        }
        self.emit(txn)
    }

    /// Hands a whole transaction on — unless it was handed on before this reader started
    /// (re-reading from an XA transaction's prepare).
    fn emit(&mut self, mut txn: Transaction) -> Option<ReaderEvent> {
        txn.resume_from = self.oldest_prepared();
        if let Some(applied) = &self.applied {
            if txn.end <= *applied {
                // Handed on before: not the fragmented transaction `sent` names, which
                // ends after `applied`.
                self.open_bytes = 0;
                return None;
            }
            self.applied = None;
        }
        self.sent = None;
        Some(ReaderEvent::Transaction(txn))
    }

    /// Whether the open group was handed on before this reader started and is read again
    /// only for an XA transaction's sake: its rows are not decoded (it is dropped at its
    /// end), so re-reading it takes no memory. An XA group's rows are kept.
    fn replaying_handed_on_group(&self) -> bool {
        self.applied.as_ref().is_some_and(|a| self.group_start < *a)
            && self.xa.is_none()
            && !self.xa_group
    }

    /// Whether a rows event ending at `end` belongs to a fragment handed on before (this
    /// stream re-reads the open transaction after a reconnect).
    fn handed_on_before(&self, end: &Position) -> bool {
        self.sent
            .as_ref()
            .is_some_and(|s| s.group == self.group_start && *end <= s.through)
    }

    /// Hands the open transaction's rows on as a fragment once they reach the bound — not
    /// for an XA transaction (it may still be rolled back), nor for one this stream is
    /// re-reading only for an XA transaction's sake (it was handed on before).
    fn fragment_if_full(&mut self, through: Position, ts: u32) -> Option<ReaderEvent> {
        let txn = self.txn.as_mut()?;
        let rows = txn.changes.len() + txn.undecodable.len();
        if rows < self.bound.rows && self.open_bytes < self.bound.bytes {
            return None;
        }
        let old = self.applied.as_ref().is_some_and(|a| self.group_start < *a);
        if self.xa.is_some() || self.xa_group || old {
            return None;
        }
        let mut part = Transaction {
            changes: std::mem::take(&mut txn.changes),
            undecodable: std::mem::take(&mut txn.undecodable),
            statements: std::mem::take(&mut txn.statements),
            gtid: txn.gtid.clone(),
            end: through.clone(),
            commit_ts: ts,
            ..Transaction::default()
        };
        for c in &mut part.changes {
            c.commit_ts = ts;
        }
        self.applied = None;
        self.sent = Some(Sent {
            group: self.group_start.clone(),
            through,
        });
        Some(ReaderEvent::Fragment(part))
    }

    /// An XA transaction is never handed on in fragments; should one have been (its GTID
    /// event not saying what it was), reading stops before its rows could stand.
    fn refuse_fragmented_xa(&self, at: &Position) -> Result<(), BinlogError> {
        match &self.sent {
            Some(s) if s.group == self.group_start => Err(BinlogError::Unsupported {
                position: at.clone(),
                code: 0,
                name: "XA PREPARE".into(),
                detail: format!(
                    "the XA transaction starting at {} outgrew source.fragment_rows or \
                     source.fragment_bytes and was handed on in fragments before its \
                     XA PREPARE was read; raise the bound above its size and restart",
                    s.group
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Where reading must start to see every prepared XA transaction again.
    fn oldest_prepared(&self) -> Option<Position> {
        self.prepared.values().map(|p| p.start.clone()).min()
    }
}

/// An xid as `XA COMMIT` spells it in the binlog (`X'6162',X'',1`), normalized: upper case,
/// no spaces.
fn canonical_xid(xid: &str) -> String {
    xid.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// The xid of an XA_PREPARE_LOG_EVENT (one-phase flag: 1 byte, format id, gtrid length,
/// bqual length: 4 bytes each, little-endian, then gtrid and bqual), spelled as the
/// binlog's `XA COMMIT` spells it.
fn prepared_xid(payload: &[u8]) -> Option<String> {
    let int = |at: usize| {
        Some(u32::from_le_bytes(
            payload.get(at..at + 4)?.try_into().ok()?,
        ))
    };
    let (format, gtrid_len, bqual_len) = (int(1)?, int(5)? as usize, int(9)? as usize);
    let gtrid = payload.get(13..13 + gtrid_len)?;
    let bqual = payload.get(13 + gtrid_len..13 + gtrid_len + bqual_len)?;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
    Some(canonical_xid(&format!(
        "X'{}',X'{}',{format}",
        hex(gtrid),
        hex(bqual)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mariadb_gtid_event_names_domain_server_and_sequence() {
        let mut data = Vec::new();
        data.extend_from_slice(&4711u64.to_le_bytes());
        data.extend_from_slice(&3u32.to_le_bytes());
        data.push(FL_STANDALONE);
        assert_eq!(
            mariadb_gtid(&data, 12),
            Some(("3-12-4711".to_owned(), FL_STANDALONE))
        );
        assert_eq!(mariadb_gtid(&data[..12], 12), None, "too short");
    }

    #[test]
    fn a_prepare_event_names_its_xid_as_xa_commit_spells_it() {
        let mut payload = vec![0];
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(&2u32.to_le_bytes());
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(b"x2q");
        assert_eq!(prepared_xid(&payload).as_deref(), Some("X'7832',X'71',1"));
        assert_eq!(canonical_xid(" X'7832', X'71', 1"), "X'7832',X'71',1");
        assert_eq!(prepared_xid(&payload[..14]), None, "truncated");
    }

    #[test]
    fn compressed_events_are_named() {
        assert!(mariadb_unreadable(166).is_some());
        assert!(mariadb_unreadable(171).is_some());
        assert!(mariadb_unreadable(165).is_some());
        assert!(mariadb_unreadable(160).is_none());
    }
}
