//! The read-ahead queue between a binlog reader and its consumer, bounded twice: in events
//! (`replicator.queue_transactions`) and in the binlog bytes they were read from
//! (`replicator.queue_bytes`).
//!
//! Invariant: the events waiting in the queue were read from at most `bytes` of binlog
//! between them — one larger event waits until the queue is empty and then goes alone —
//! so a backlog of big transactions (or fragments of one) cannot fill memory. An event's
//! share of the budget is given back when the consumer takes it out; what a consumer then
//! holds is its own bound (a batch, a round).

use crate::reader::ReaderEvent;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

pub use tokio::sync::mpsc::error::TryRecvError;

/// An event with its share of the byte budget.
struct Queued {
    event: ReaderEvent,
    _bytes: OwnedSemaphorePermit,
}

/// Events handed over at once: one wake-up of the consumer for many small transactions.
const BATCH: usize = 128;

/// The reader's end. Events gather in a batch that is handed over when it is full, or when
/// the reader is about to wait ([`Sender::flush`]) — never held back while it waits.
pub struct Sender {
    tx: mpsc::Sender<Vec<Queued>>,
    budget: Arc<Semaphore>,
    capacity: u32,
    batch: Vec<Queued>,
}

/// The consumer's end.
pub struct Receiver {
    rx: mpsc::Receiver<Vec<Queued>>,
    /// The rest of the batch taken last.
    local: VecDeque<Queued>,
}

/// The consumer went away.
#[derive(Debug)]
pub struct Closed;

/// A queue holding about `events` events read from at most `bytes` of binlog.
pub fn queue(events: usize, bytes: u64) -> (Sender, Receiver) {
    let capacity = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
    let (tx, rx) = mpsc::channel((events / BATCH).max(2));
    let sender = Sender {
        tx,
        budget: Arc::new(Semaphore::new(capacity as usize)),
        capacity,
        batch: Vec::with_capacity(BATCH),
    };
    (
        sender,
        Receiver {
            rx,
            local: VecDeque::new(),
        },
    )
}

impl Sender {
    /// Waits for room for `bytes` (the binlog the event was read from), then adds the event
    /// to the batch (handed over once full). Before waiting for room, the batch so far is
    /// handed over: the room it holds is given back only once the consumer takes it.
    pub async fn send(&mut self, event: ReaderEvent, bytes: u64) -> Result<(), Closed> {
        let wanted = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.capacity);
        let permit = match self.budget.clone().try_acquire_many_owned(wanted) {
            Ok(p) => p,
            Err(_) => {
                self.flush().await?;
                self.budget
                    .clone()
                    .acquire_many_owned(wanted)
                    .await
                    .map_err(|_| Closed)?
            }
        };
        self.batch.push(Queued {
            event,
            _bytes: permit,
        });
        if self.batch.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Hands the batch over now (the reader is about to wait for the source).
    pub async fn flush(&mut self) -> Result<(), Closed> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx.send(batch).await.map_err(|_| Closed)
    }
}

impl Receiver {
    /// The next event; `None` once the reader has stopped and the queue is empty.
    pub async fn recv(&mut self) -> Option<ReaderEvent> {
        if self.local.is_empty() {
            self.local.extend(self.rx.recv().await?);
        }
        self.local.pop_front().map(|q| q.event)
    }

    pub fn try_recv(&mut self) -> Result<ReaderEvent, TryRecvError> {
        if self.local.is_empty() {
            self.local.extend(self.rx.try_recv()?);
        }
        self.local
            .pop_front()
            .map(|q| q.event)
            .ok_or(TryRecvError::Empty)
    }

    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.rx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_change::Position;
    use std::time::Duration;

    fn event(pos: u64) -> ReaderEvent {
        ReaderEvent::CaughtUp {
            position: Position::new("f", pos),
            resume_from: None,
        }
    }

    #[tokio::test]
    async fn the_byte_budget_holds_the_sender_until_the_consumer_takes_events_out() {
        let (mut tx, mut rx) = queue(100, 1000);
        tx.send(event(1), 600).await.unwrap();
        assert!(rx.is_empty(), "held in the batch until a flush");
        // 600 + 600 > 1000: the second waits — after handing the first over.
        let second = tokio::time::timeout(Duration::from_millis(50), tx.send(event(2), 600));
        assert!(second.await.is_err(), "over the byte budget");
        assert!(
            matches!(rx.recv().await, Some(ReaderEvent::CaughtUp { position, .. }) if position.pos == 1)
        );
        tx.send(event(2), 600).await.unwrap();
        // Larger than the whole budget: goes alone, once the queue is empty.
        let big = tokio::time::timeout(Duration::from_millis(50), tx.send(event(3), 5000));
        assert!(big.await.is_err(), "waits for the queue to empty");
        rx.recv().await.unwrap();
        tx.send(event(3), 5000).await.unwrap();
        tx.flush().await.unwrap();
        assert!(
            matches!(rx.try_recv(), Ok(ReaderEvent::CaughtUp { position, .. }) if position.pos == 3)
        );
        assert!(rx.is_empty());
        drop(rx);
        tx.send(event(4), 1).await.unwrap();
        assert!(tx.flush().await.is_err(), "consumer gone");
    }
}
