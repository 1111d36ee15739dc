//! Groups binlog events into transactions and tracks the position inside the stream.
//!
//! Invariant: `file` is always the binlog file the next event comes from — taken from a
//! rotate event's *payload*, since a rotate's header position belongs to the old file —
//! and `pos` is where the next event starts in it.

use crate::ddl::touched_tables;
use crate::decode::TableInfo;
use crate::reader::{metrics, ReaderEvent, TablePredicate};
use concord_change::{Ddl, Op, Position, RowChange, TableName, Transaction, Undecodable};
use mysql_async::binlog::events::{Event, EventData, RowsEventData, TableMapEvent};
use mysql_async::BinlogStream;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) struct Assembler {
    file: Arc<str>,
    pos: u64,
    is_mariadb: bool,
    seen_format_description: bool,
    include: TablePredicate,
    txn: Option<Transaction>,
    /// A GTID announced for the next statement or transaction, not yet opened.
    pending_gtid: Option<String>,
    tables: HashMap<u64, Known>,
}

/// What is known about a table id, valid while its table map stays the same: whether the
/// table is replicated (asked once, not per event) and its decoders (built from its first
/// row, which carries the column metadata).
struct Known {
    tme: TableMapEvent<'static>,
    included: bool,
    info: Option<Arc<TableInfo>>,
}

/// MariaDB's GTID event, which mysql_common does not parse.
const MARIADB_GTID_EVENT: u8 = 162;
/// Its flag for a statement outside any transaction (a DDL): no XID follows.
const FL_STANDALONE: u8 = 1;

/// `domain-server-sequence` from a MariaDB GTID event's payload (sequence: 8 bytes, then
/// domain: 4 bytes, then flags, all little-endian) and the event's server id; with the
/// flags.
fn mariadb_gtid(data: &[u8], server_id: u32) -> Option<(String, u8)> {
    let seq = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    let flags = *data.get(12)?;
    Some((format!("{domain}-{server_id}-{seq}"), flags))
}

impl Assembler {
    pub fn new(from: Position, is_mariadb: bool, include: TablePredicate) -> Self {
        Self {
            pos: from.pos,
            file: from.file,
            is_mariadb,
            seen_format_description: false,
            include,
            txn: None,
            pending_gtid: None,
            tables: HashMap::new(),
        }
    }

    pub fn handle(&mut self, event: &Event, stream: &BinlogStream) -> Option<ReaderEvent> {
        let header = event.header();
        let end = Position::new(self.file.clone(), u64::from(header.log_pos()));
        // Artificial events (the first rotate, heartbeats) carry no position of their own.
        let artificial = header.log_pos() == 0
            || header.event_type() == Ok(mysql_async::binlog::EventType::HEARTBEAT_EVENT);
        if !artificial {
            self.pos = u64::from(header.log_pos());
        }
        if self.is_mariadb && event.header().event_type_raw() == MARIADB_GTID_EVENT {
            match mariadb_gtid(event.data(), header.server_id()) {
                // A DDL follows, on its own.
                Some((gtid, flags)) if flags & FL_STANDALONE != 0 => self.pending_gtid = Some(gtid),
                // A transaction opens here; there is no BEGIN in MariaDB's binlog.
                Some((gtid, _)) => {
                    self.txn = Some(Transaction {
                        gtid: Some(gtid),
                        ..Transaction::default()
                    })
                }
                None => tracing::warn!(position = %end, "short MariaDB GTID event ignored"),
            }
            return None;
        }
        let data = match event.read_data() {
            Ok(Some(d)) => d,
            // MariaDB-only events (GTID, GTID list, annotate, checkpoint) are unknown to the
            // parser; file+position tracking does not need them.
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(position = %end, error = %e, "unparseable binlog event skipped");
                return None;
            }
        };
        match data {
            EventData::FormatDescriptionEvent(_) => {
                self.seen_format_description = true;
                None
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
                None
            }
            EventData::HeartbeatEvent => match self.txn {
                None => Some(ReaderEvent::CaughtUp {
                    position: Position::new(self.file.clone(), self.pos),
                }),
                Some(_) => None,
            },
            EventData::QueryEvent(q) => {
                let query = q.query();
                let trimmed = query.trim_start();
                // MariaDB replaces events an old-style replica cannot parse (annotate rows,
                // …) with a comment-only query; it is not a statement.
                if trimmed.starts_with('#') {
                    return None;
                }
                let mut words = trimmed.split_whitespace();
                let verb = words.next().unwrap_or("");
                if verb.eq_ignore_ascii_case("XA") {
                    // XA START opens the rows; they are handed on at XA PREPARE (below),
                    // when the source has made them durable. XA END carries nothing; XA
                    // COMMIT/ROLLBACK close the (row-less) group a GTID event opened.
                    let what = words.next().unwrap_or("");
                    if what.eq_ignore_ascii_case("START") {
                        let gtid = self.opened_gtid();
                        self.txn = Some(Transaction {
                            gtid,
                            ..Transaction::default()
                        });
                        None
                    } else if what.eq_ignore_ascii_case("END") {
                        None
                    } else if self.txn.as_ref().is_some_and(|t| !t.changes.is_empty()) {
                        self.commit(end, header.timestamp())
                    } else {
                        self.txn = None;
                        self.pending_gtid = None;
                        None
                    }
                } else if self.txn.is_some()
                    && (verb.eq_ignore_ascii_case("SAVEPOINT")
                        || verb.eq_ignore_ascii_case("RELEASE")
                        || (verb.eq_ignore_ascii_case("ROLLBACK")
                            && words.next().is_some_and(|w| w.eq_ignore_ascii_case("TO"))))
                {
                    // Savepoints inside a transaction: the rows a ROLLBACK TO undid are not
                    // in the binlog; the transaction goes on.
                    None
                } else if verb.eq_ignore_ascii_case("BEGIN") {
                    let gtid = self.opened_gtid();
                    self.txn = Some(Transaction {
                        gtid,
                        ..Transaction::default()
                    });
                    None
                } else if verb.eq_ignore_ascii_case("COMMIT")
                    || verb.eq_ignore_ascii_case("ROLLBACK")
                {
                    self.commit(end, header.timestamp())
                } else {
                    let gtid = self.opened_gtid();
                    self.txn = None;
                    Some(ReaderEvent::Transaction(Transaction {
                        end,
                        commit_ts: header.timestamp(),
                        gtid,
                        ddl: Some(Ddl {
                            tables: touched_tables(&q.schema(), &query),
                            schema: q.schema().into_owned(),
                            statement: query.into_owned(),
                        }),
                        ..Transaction::default()
                    }))
                }
            }
            EventData::XidEvent(_) | EventData::XaPrepareLogEvent(_) => {
                self.commit(end, header.timestamp())
            }
            EventData::RowsEvent(rows) => {
                let start = Position::new(
                    self.file.clone(),
                    u64::from(header.log_pos()).saturating_sub(u64::from(header.event_size())),
                );
                self.rows(&rows, start, stream);
                None
            }
            _ => None,
        }
    }

    /// The GTID of what opens now: announced standalone, or carried by the group a GTID
    /// event already opened.
    fn opened_gtid(&mut self) -> Option<String> {
        self.pending_gtid
            .take()
            .or_else(|| self.txn.as_ref().and_then(|t| t.gtid.clone()))
    }

    fn commit(&mut self, end: Position, ts: u32) -> Option<ReaderEvent> {
        let mut txn = self.txn.take().unwrap_or_default();
        txn.end = end;
        txn.commit_ts = ts;
        for c in &mut txn.changes {
            c.commit_ts = ts;
        }
        Some(ReaderEvent::Transaction(txn))
    }

    fn rows(&mut self, rows: &RowsEventData<'_>, position: Position, stream: &BinlogStream) {
        let table_id = rows.table_id();
        let Some(tme) = stream.get_tme(table_id) else {
            tracing::warn!(%position, table_id, "rows event without a table map; skipped");
            return;
        };
        if !matches!(self.tables.get(&table_id), Some(k) if k.tme == *tme) {
            let included = (self.include)(&TableName::new(tme.database_name(), tme.table_name()));
            let known = Known {
                tme: tme.clone().into_owned(),
                included,
                info: None,
            };
            self.tables.insert(table_id, known);
        }
        let known = self.tables.get_mut(&table_id).expect("inserted above");
        if !known.included {
            return;
        }
        let op = match rows {
            RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => Op::Insert,
            RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => Op::Delete,
            _ => Op::Update,
        };
        let txn = self.txn.get_or_insert_with(Transaction::default);
        let name = || TableName::new(tme.database_name(), tme.table_name());
        for (i, row) in rows.rows(tme).enumerate() {
            let (before, after) = match row {
                Ok(images) => images,
                Err(e) => {
                    metrics::UNDECODABLE.inc();
                    txn.undecodable.push(Undecodable {
                        table: name(),
                        position: position.clone(),
                        row_index: i as u32,
                        error: format!("rows event could not be parsed: {e}"),
                    });
                    break;
                }
            };
            let Some(first) = before.as_ref().or(after.as_ref()) else {
                continue;
            };
            let info = known
                .info
                .get_or_insert_with(|| Arc::new(TableInfo::new(tme, first)))
                .clone();
            let decoded = before
                .map(|r| info.decode(r))
                .transpose()
                .and_then(|b| after.map(|r| info.decode(r)).transpose().map(|a| (b, a)));
            match decoded {
                Ok((before, after)) => txn.changes.push(RowChange {
                    table: info.source.clone(),
                    op,
                    before,
                    after,
                    position: position.clone(),
                    row_index: i as u32,
                    commit_ts: 0,
                }),
                Err(e) => {
                    metrics::UNDECODABLE.inc();
                    txn.undecodable.push(Undecodable {
                        table: name(),
                        position: position.clone(),
                        row_index: i as u32,
                        error: e.to_string(),
                    });
                }
            }
        }
    }
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
}
