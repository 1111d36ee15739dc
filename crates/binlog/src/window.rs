//! The row changes committed in a time window, read back from the source's binlogs — what a
//! batch recovery of "everything changed between 10:00 and 10:20" checks.
//!
//! The start is found without reading the whole log: from the newest binlog file back, the
//! first transaction of each file is read, until a file whose first transaction committed
//! at or before the window's start; reading begins at that file's start. The window is read
//! up to the position the source had when the search began, so a busy source cannot keep
//! it going.
//!
//! Invariant: every change of an included table in a transaction committed within the
//! window, that the source's binlogs still hold, is handed to the caller — a transaction
//! read in fragments too, once its commit shows it belongs (a few changes committed just
//! outside the window may be handed on as well; that only costs a check).

use crate::reader::{BinlogReader, ReaderEvent, ReaderOptions, Resume};
use crate::settings::{current_position, ServerInfo};
use crate::BinlogError;
use concord_change::{Position, RowChange};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tracing::Instrument;

/// Commit times, seconds since the epoch, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub since: u32,
    pub until: u32,
}

/// What a read of a window covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scanned {
    /// Where reading began (the start of a binlog file) and where it stopped.
    pub from: Position,
    pub to: Position,
    /// Transactions committed within the window (with changes of included tables or not).
    pub transactions: u64,
    /// Whether the binlogs reach back to the window's start: `false` when even the oldest
    /// file the source still has began after it (changes before that are gone).
    pub complete: bool,
    /// Changes of included tables in the window whose rows the log does not show
    /// (undecodable rows, statements logged as SQL, truncates): their keys are unknown.
    pub unreadable: u64,
}

/// Reads the changes of included tables committed within `window` and hands each to `keep`
/// (see the module's docs).
pub async fn changes_in_window(
    options: &ReaderOptions,
    server: &ServerInfo,
    window: Window,
    keep: &mut (dyn FnMut(&RowChange) + Send),
) -> Result<Scanned, BinlogError> {
    let (files, end) = binlog_files(options).await?;
    let mut from = None;
    let mut complete = false;
    for file in files.iter().rev() {
        let at = Position::new(file.clone(), 4);
        let first = first_commit(options, server, &at, &end).await?;
        from = Some(at);
        if first.is_some_and(|ts| ts <= window.since) {
            complete = true;
            break;
        }
    }
    let from = from.ok_or_else(|| BinlogError::PositionGone {
        position: end.clone(),
        message: "the source lists no binlog files".into(),
    })?;
    tracing::info!(%from, to = %end, complete, "reading the window's changes");
    let mut scanned = Scanned {
        from: from.clone(),
        to: from.clone(),
        transactions: 0,
        complete,
        unreadable: 0,
    };
    // Fragments of a transaction whose commit has not been read yet.
    let mut pending: Vec<RowChange> = Vec::new();
    let mut read = Reading::start(options, server, &from);
    while let Some(event) = read.next().await {
        match event {
            ReaderEvent::Fragment(t) => pending.extend(t.changes),
            ReaderEvent::Transaction(t) => {
                if t.commit_ts > window.until {
                    break;
                }
                let fragments = std::mem::take(&mut pending);
                if t.commit_ts >= window.since {
                    scanned.transactions += 1;
                    scanned.unreadable += (t.undecodable.len()
                        + t.statements.len()
                        + t.truncated.len()
                        + t.partition_rows.len()) as u64;
                    fragments.iter().chain(&t.changes).for_each(&mut *keep);
                }
                scanned.to = t.end.clone();
                if t.end >= end {
                    break;
                }
            }
            ReaderEvent::CaughtUp { position, .. } => {
                scanned.to = position.clone();
                if position >= end {
                    break;
                }
            }
        }
    }
    read.finish().await?;
    Ok(scanned)
}

/// The source's binlog files, oldest first, and its position now.
async fn binlog_files(options: &ReaderOptions) -> Result<(Vec<String>, Position), BinlogError> {
    let at = Position::new("", 4);
    let connection = |source| BinlogError::Connection {
        position: at.clone(),
        source,
    };
    let mut conn = Conn::new(options.opts.clone()).await.map_err(connection)?;
    let end = current_position(&mut conn).await.map_err(connection)?;
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.map_err(connection)?;
    let files = rows.iter().filter_map(|r| r.get::<String, _>(0)).collect();
    let _ = conn.disconnect().await;
    Ok((files, end))
}

/// The commit time of the first transaction from `at` on, if one was committed before
/// `end`.
async fn first_commit(
    options: &ReaderOptions,
    server: &ServerInfo,
    at: &Position,
    end: &Position,
) -> Result<Option<u32>, BinlogError> {
    let mut read = Reading::start(options, server, at);
    let mut first = None;
    while let Some(event) = read.next().await {
        match event {
            ReaderEvent::Transaction(t) | ReaderEvent::Fragment(t) => {
                first = Some(t.commit_ts);
                break;
            }
            ReaderEvent::CaughtUp { position, .. } if position >= *end => break,
            _ => {}
        }
    }
    read.finish().await?;
    Ok(first)
}

/// A reader streaming from a position until it is finished.
struct Reading {
    rx: Option<crate::Receiver>,
    task: tokio::task::JoinHandle<Result<(), BinlogError>>,
}

/// Transactions read ahead; a window is read once, so a small queue is enough.
const QUEUE_TRANSACTIONS: usize = 64;
const QUEUE_BYTES: u64 = 64 << 20;
/// How long a stopped reader is given to end on its own before it is aborted.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Reading {
    fn start(options: &ReaderOptions, server: &ServerInfo, at: &Position) -> Self {
        let reader = BinlogReader::new(options.clone(), server.clone());
        let (tx, rx) = crate::queue(QUEUE_TRANSACTIONS, QUEUE_BYTES);
        let resume = Resume::at(at.clone());
        let task = tokio::spawn(async move { reader.run(resume, tx).await }.in_current_span());
        Self { rx: Some(rx), task }
    }

    async fn next(&mut self) -> Option<ReaderEvent> {
        self.rx.as_mut()?.recv().await
    }

    /// Stops the reader (it ends once its queue is gone) and returns why it ended, if it
    /// ended on its own with an error.
    async fn finish(mut self) -> Result<(), BinlogError> {
        drop(self.rx.take());
        // A reader waiting on a quiet source notices only at its next heartbeat.
        match tokio::time::timeout(STOP_WAIT, &mut self.task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) if e.is_cancelled() => Ok(()),
            Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {
                self.task.abort();
                Ok(())
            }
        }
    }
}
