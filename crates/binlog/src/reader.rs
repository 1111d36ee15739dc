//! The replica connection: requests the binlog from a position, keeps it alive with
//! heartbeats, reconnects with backoff, and hands transactions — whole, or in fragments
//! when they outgrow [`FragmentBound`] — to a queue bounded in events and bytes.
//!
//! Invariant: after any reconnect, reading resumes where the last transaction handed on
//! says (its `resume_from`, else its `end`) and nothing up to its `end` is handed on again;
//! of a transaction handed on in fragments, the rows events already handed on are read
//! again but not handed on again. So the consumer never sees a gap, and never sees a row
//! twice.

use crate::assemble::{Assembler, Sent};
use crate::queue::Sender;
use crate::settings::ServerInfo;
use crate::BinlogError;
use concord_change::{Position, TableName, Transaction};
use futures_util::{FutureExt, StreamExt};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Opts};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What the reader hands on.
#[derive(Debug)]
pub enum ReaderEvent {
    /// A whole transaction, or the last part of one handed on in fragments.
    Transaction(Transaction),
    /// Rows of a transaction still being read, handed on early because it outgrew the
    /// [`FragmentBound`]: more fragments, then its last part as a `Transaction`, follow
    /// before anything else. Its `end` is the end of its last rows event, a position inside
    /// the transaction that nothing may be saved at; its `commit_ts` (and its changes') is
    /// that event's timestamp, since the commit has not been read yet. Never an XA
    /// transaction (its rows are handed on only at `XA COMMIT`).
    Fragment(Transaction),
    /// The source had nothing newer than `position` when it sent a heartbeat.
    CaughtUp {
        position: Position,
        /// As [`Transaction::resume_from`].
        resume_from: Option<Position>,
    },
}

/// Where a reader starts: it reads from `from` and hands on only what ends after
/// `applied` (`from` is earlier while an XA transaction prepared before `applied` has not
/// been committed or rolled back: its rows come at its commit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    pub from: Position,
    pub applied: Position,
}

impl Resume {
    /// Start at `p`, with nothing before it pending.
    pub fn at(p: Position) -> Self {
        Self {
            from: p.clone(),
            applied: p,
        }
    }

    /// Continue after a transaction handed on (or after a caught-up position).
    pub fn after(end: &Position, resume_from: Option<&Position>) -> Self {
        Self {
            from: resume_from.unwrap_or(end).clone(),
            applied: end.clone(),
        }
    }

    /// What a consumer saved: its position and, if it saved one, the resume point.
    pub fn saved(applied: Position, from: Option<Position>) -> Self {
        match from {
            Some(from) if from < applied => Self { from, applied },
            _ => Self::at(applied),
        }
    }

    /// The resume point to save beside the position, when it differs from it.
    pub fn earlier_from(&self) -> Option<&Position> {
        (self.from < self.applied).then_some(&self.from)
    }
}

impl fmt::Display for Resume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.earlier_from() {
            Some(from) => write!(f, "{} (reading from {from})", self.applied),
            None => write!(f, "{}", self.applied),
        }
    }
}

pub type TablePredicate = Arc<dyn Fn(&TableName) -> bool + Send + Sync>;

/// How large an open transaction may grow before its rows are handed on as a
/// [`ReaderEvent::Fragment`]: rows (decoded changes and undecodable rows), or bytes of the
/// binlog rows events they were read from, whichever is reached first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentBound {
    pub rows: usize,
    pub bytes: u64,
}

impl FragmentBound {
    /// `source.fragment_rows` and `source.fragment_bytes`.
    pub fn of(source: &concord_config::SourceConfig) -> Self {
        Self {
            rows: source.fragment_rows,
            bytes: source.fragment_bytes.as_u64(),
        }
    }
}

#[derive(Clone)]
pub struct ReaderOptions {
    pub opts: Opts,
    pub server_id: u32,
    pub heartbeat: Duration,
    /// Tables whose rows are decoded; rows of other tables are skipped unread.
    pub include: TablePredicate,
    pub max_backoff: Duration,
    pub fragment: FragmentBound,
}

pub struct BinlogReader {
    options: ReaderOptions,
    server: ServerInfo,
}

/// MariaDB's error for a binlog position it cannot serve (purged file, bad offset).
const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;

impl BinlogReader {
    pub fn new(options: ReaderOptions, server: ServerInfo) -> Self {
        Self { options, server }
    }

    /// Streams from `resume` until the receiver is dropped (`Ok`) or a definite error.
    pub async fn run(&self, mut resume: Resume, mut tx: Sender) -> Result<(), BinlogError> {
        let mut backoff = Duration::from_millis(100);
        // The fragments of the open transaction handed on so far.
        let mut sent: Option<Sent> = None;
        loop {
            let before = resume.clone();
            match self.stream_from(&mut resume, &mut sent, &mut tx).await {
                Ok(()) | Err(BinlogError::Closed) => return Ok(()),
                Err(e) if e.is_transient() => {
                    metrics::RECONNECTS.inc();
                    if resume != before {
                        backoff = Duration::from_millis(100);
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, "binlog stream interrupted; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
                // The file holding a pending XA transaction's prepare was purged: its
                // rows cannot be read again. Go on from the applied position; its commit
                // is then recorded as an undecodable event, not passed over.
                Err(BinlogError::PositionGone { position, message })
                    if resume.earlier_from() == Some(&position) =>
                {
                    tracing::error!(%position, %message, applied = %resume.applied, "the binlog holding a pending XA transaction's prepare is gone; reading on from the applied position");
                    resume = Resume::at(resume.applied.clone());
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn stream_from(
        &self,
        resume: &mut Resume,
        sent: &mut Option<Sent>,
        tx: &mut Sender,
    ) -> Result<(), BinlogError> {
        let from = &resume.from.clone();
        // Errors after connecting name the last position handed on.
        let conn_err = |position: &Position| {
            let position = position.clone();
            move |source| BinlogError::Connection { position, source }
        };
        let mut conn = Conn::new(self.options.opts.clone())
            .await
            .map_err(conn_err(from))?;
        // The source sends a heartbeat after this much silence; its absence for three
        // periods means the connection is dead even if TCP has not noticed.
        let period_ns = self.options.heartbeat.as_nanos() as u64;
        conn.query_drop(format!("SET @master_heartbeat_period = {period_ns}"))
            .await
            .map_err(conn_err(from))?;
        if self.server.is_mariadb {
            // Announce a GTID-aware replica: MariaDB then sends its GTID events (which the
            // assembler turns into `Transaction::gtid`) instead of rewriting each one into
            // a plain BEGIN.
            conn.query_drop("SET @mariadb_slave_capability = 4")
                .await
                .map_err(conn_err(from))?;
        }
        let request = BinlogStreamRequest::new(self.options.server_id)
            .with_filename(from.file.as_bytes())
            .with_pos(from.pos);
        let mut stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(conn_err(from))?;
        tracing::info!(position = %from, "reading binlog");

        let silence = self.options.heartbeat * 3 + Duration::from_secs(1);
        let mut assembler = Assembler::new(
            resume,
            sent.clone(),
            self.server.is_mariadb,
            self.options.include.clone(),
            self.server.collations.clone(),
            self.options.fragment,
        );
        loop {
            // An event already read is taken without a timer; before waiting for the
            // source, what was read is handed over.
            let ready = match stream.next().now_or_never() {
                Some(ready) => Ok(ready),
                None => {
                    tx.flush().await.map_err(|_| BinlogError::Closed)?;
                    tokio::time::timeout(silence, stream.next()).await
                }
            };
            let event = match ready {
                Err(_) => {
                    return Err(BinlogError::Silent {
                        position: resume.applied.clone(),
                        seconds: silence.as_secs(),
                    })
                }
                Ok(None) => {
                    return Err(BinlogError::Connection {
                        position: resume.applied.clone(),
                        source: mysql_async::Error::Other("source closed the binlog stream".into()),
                    })
                }
                Ok(Some(Err(mysql_async::Error::Server(e))))
                    if e.code == ER_MASTER_FATAL_ERROR_READING_BINLOG =>
                {
                    // The position the server cannot serve: where this stream was asked to
                    // start.
                    return Err(BinlogError::PositionGone {
                        position: from.clone(),
                        message: e.message,
                    });
                }
                Ok(Some(Err(e))) => return Err(conn_err(&resume.applied)(e)),
                Ok(Some(Ok(event))) => event,
            };
            if let Some((out, bytes)) = assembler.handle(&event, &stream)? {
                if let ReaderEvent::Transaction(t) = &out {
                    *resume = Resume::after(&t.end, t.resume_from.as_ref());
                    metrics::POSITION.set(t.end.pos as i64);
                }
                *sent = assembler.sent().cloned();
                tx.send(out, bytes).await.map_err(|_| BinlogError::Closed)?;
            }
        }
    }
}

pub(crate) mod metrics {
    use prometheus::{register_int_counter, register_int_gauge, IntCounter, IntGauge};
    use std::sync::LazyLock;

    pub static RECONNECTS: LazyLock<IntCounter> = LazyLock::new(|| {
        register_int_counter!(
            "concord_binlog_reconnects_total",
            "Times the binlog stream was re-established after a transient error"
        )
        .expect("metric registers once")
    });
    pub static POSITION: LazyLock<IntGauge> = LazyLock::new(|| {
        register_int_gauge!(
            "concord_binlog_read_position",
            "Byte offset in the current binlog file of the last whole transaction read"
        )
        .expect("metric registers once")
    });
    pub static UNDECODABLE: LazyLock<IntCounter> = LazyLock::new(|| {
        register_int_counter!(
            "concord_binlog_undecodable_rows_total",
            "Rows the reader could not decode (recorded as failed events)"
        )
        .expect("metric registers once")
    });
}
