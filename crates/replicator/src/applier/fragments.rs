//! Source transactions the reader hands on in fragments (they outgrew
//! `source.fragment_rows` or `source.fragment_bytes`): each part is written as it comes,
//! inside one target transaction that commits — with the checkpoint — only with the last.
//!
//! Invariant: exactly once, as for whole batches. Until the last part commits, everything
//! written is in one open target transaction and the checkpoint still names the end of
//! the transaction before; a crash or a lost connection rolls all of it back, and the run
//! that follows reads the source transaction again from the checkpoint. A part once
//! written is gone from memory and cannot be retried on its own, so any error before the
//! commit rolls back and ends the run ([`ReplicatorError::Interrupted`]) — the supervisor
//! restarts it from the checkpoint — instead of retrying the batch as a whole batch is.

use super::{Abort, Applier, Progress};
use crate::error::ReplicatorError;
use concord_binlog::{ReaderEvent, Receiver};
use concord_change::{Position, Transaction};
use std::time::Instant;

impl Applier {
    /// Applies `before` (whole transactions read ahead of it) and the fragmented
    /// transaction starting with `first`, reading its other parts from `rx`. Returns the
    /// end committed, or `None` if the reader stopped first (nothing committed; the
    /// reader's own end says why).
    pub(super) async fn apply_fragmented(
        &mut self,
        before: Vec<Transaction>,
        first: Transaction,
        rx: &mut Receiver,
    ) -> Result<Option<Position>, ReplicatorError> {
        tracing::info!(position = %first.end, gtid = ?first.gtid,
            "a large source transaction: applying it in fragments in one target transaction");
        let mut part = before;
        part.push(first);
        let mut last = false;
        self.begin().await.map_err(|a| self.interrupted(&part, a))?;
        loop {
            let started = Instant::now();
            self.forget_schemas_touched_by(&part).await;
            let failed = match self.write_part(&part, true).await {
                Ok(f) => f,
                Err(a) => return Err(self.interrupted(&part, a)),
            };
            if last {
                if let Err(a) = self.commit(&part, &Progress::Binlog).await {
                    self.rollback().await;
                    return Err(self.interrupted(&part, a));
                }
            }
            self.account(&part, &failed, started);
            if last {
                let end = part.last().map(|t| t.end.clone());
                tracing::info!(position = ?end, "large source transaction committed");
                return Ok(end);
            }
            // The reader sends nothing else while a transaction is open; a caught-up
            // notice cannot come, and would say nothing new.
            let next = loop {
                match rx.recv().await {
                    Some(ReaderEvent::CaughtUp { .. }) => continue,
                    other => break other,
                }
            };
            part = match next {
                Some(ReaderEvent::Fragment(f)) => vec![f],
                Some(ReaderEvent::Transaction(t)) => {
                    last = true;
                    vec![t]
                }
                Some(ReaderEvent::CaughtUp { .. }) => unreachable!("skipped above"),
                None => {
                    self.rollback().await;
                    return Ok(None);
                }
            };
        }
    }

    /// The error ending the run, after the connection (and with it the open target
    /// transaction, if the ROLLBACK did not get through) is dropped.
    fn interrupted(&mut self, part: &[Transaction], abort: Abort) -> ReplicatorError {
        self.conn = None;
        let position = part.last().map(|t| t.end.clone()).unwrap_or_default();
        let source: Box<dyn std::error::Error + Send + Sync> = match abort {
            Abort::Transient(e) => e,
            Abort::SchemaMoved => "the target table changed under the statement".into(),
            Abort::Fenced => "fenced by another replicator".into(),
        };
        ReplicatorError::Interrupted { position, source }
    }
}
