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
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

pub use tokio::sync::mpsc::error::TryRecvError;

/// An event with its share of the byte budget.
struct Queued {
    event: ReaderEvent,
    _bytes: OwnedSemaphorePermit,
}

/// The reader's end.
pub struct Sender {
    tx: mpsc::Sender<Queued>,
    budget: Arc<Semaphore>,
    capacity: u32,
}

/// The consumer's end.
pub struct Receiver {
    rx: mpsc::Receiver<Queued>,
}

/// The consumer went away.
#[derive(Debug)]
pub struct Closed;

/// A queue holding at most `events` events read from at most `bytes` of binlog.
pub fn queue(events: usize, bytes: u64) -> (Sender, Receiver) {
    let capacity = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
    let (tx, rx) = mpsc::channel(events.max(1));
    let sender = Sender {
        tx,
        budget: Arc::new(Semaphore::new(capacity as usize)),
        capacity,
    };
    (sender, Receiver { rx })
}

impl Sender {
    /// Waits for room for `bytes` (the binlog the event was read from), then queues it.
    pub async fn send(&self, event: ReaderEvent, bytes: u64) -> Result<(), Closed> {
        let wanted = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.capacity);
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(wanted)
            .await
            .map_err(|_| Closed)?;
        self.tx
            .send(Queued {
                event,
                _bytes: permit,
            })
            .await
            .map_err(|_| Closed)
    }
}

impl Receiver {
    /// The next event; `None` once the reader has stopped and the queue is empty.
    pub async fn recv(&mut self) -> Option<ReaderEvent> {
        self.rx.recv().await.map(|q| q.event)
    }

    pub fn try_recv(&mut self) -> Result<ReaderEvent, TryRecvError> {
        self.rx.try_recv().map(|q| q.event)
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
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
        let (tx, mut rx) = queue(100, 1000);
        tx.send(event(1), 600).await.unwrap();
        // 600 + 600 > 1000: the second waits.
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
        assert!(
            matches!(rx.try_recv(), Ok(ReaderEvent::CaughtUp { position, .. }) if position.pos == 3)
        );
        assert!(rx.is_empty());
        drop(rx);
        assert!(tx.send(event(4), 1).await.is_err(), "consumer gone");
    }
}
