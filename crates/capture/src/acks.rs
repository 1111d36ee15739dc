//! Saving the capture position once the broker has acknowledged everything before it.

use crate::error::CaptureError;
use crate::metrics;
use crate::progress::Progress;
use crate::publish::{now_ms, MAX_BACKOFF};
use concord_change::Position;
use concord_control::{until_stored, ControlStore, SavedPosition};
use rdkafka::producer::DeliveryFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// One source transaction's messages (or one fragment's), in publishing order.
pub(crate) struct Pending {
    /// Where the transaction ends; `None` for a fragment (nothing is saved after it).
    pub end: Option<Position>,
    /// Where reading must start again, when before `end` (a pending XA transaction).
    pub resume_from: Option<Position>,
    pub commit_ts: u32,
    pub deliveries: Vec<(String, Position, DeliveryFuture)>,
    /// Its share of `kafka.max_unacked`, given back once every message is acknowledged.
    pub _unacked: OwnedSemaphorePermit,
    /// Called once every message is acknowledged (a snapshot chunk's end).
    pub on_acked: Option<Box<dyn FnOnce() + Send>>,
}

pub(crate) struct Acker {
    control: ControlStore,
    name: String,
    progress: Arc<Progress>,
}

/// How often the acknowledged position is written (a crash re-publishes at most this
/// much).
const SAVE_EVERY: Duration = Duration::from_millis(250);

impl Acker {
    pub fn new(control: ControlStore, name: String, progress: Arc<Progress>) -> Self {
        Self {
            control,
            name,
            progress,
        }
    }

    /// Awaits acknowledgements strictly in order; a refused message stops the capture
    /// before its position could be saved.
    pub async fn run(self, mut rx: mpsc::Receiver<Pending>) -> Result<(), CaptureError> {
        let mut acked: Option<SavedPosition> = None;
        let mut saved: Option<SavedPosition> = None;
        let mut last_save = Instant::now();
        loop {
            let next = tokio::select! {
                p = rx.recv() => p,
                _ = tokio::time::sleep(SAVE_EVERY) => {
                    self.save(&acked, &mut saved).await;
                    continue;
                }
            };
            let Some(p) = next else {
                self.save(&acked, &mut saved).await;
                return Ok(());
            };
            for (topic, position, delivery) in p.deliveries {
                match delivery.await {
                    Ok(Ok(_)) => metrics::PUBLISHED.with_label_values(&[&topic]).inc(),
                    Ok(Err((e, _))) => {
                        return Err(CaptureError::Delivery {
                            position,
                            topic,
                            source: e,
                        })
                    }
                    Err(_) => {
                        return Err(CaptureError::Delivery {
                            position,
                            topic,
                            // The producer went away before the broker answered.
                            source: rdkafka::error::KafkaError::Canceled,
                        });
                    }
                }
            }
            if let Some(acked) = p.on_acked {
                acked();
            }
            self.progress.acked();
            let lag = (now_ms() as f64 / 1000.0 - f64::from(p.commit_ts)).max(0.0);
            metrics::LAG.set(lag);
            let Some(end) = p.end else { continue };
            metrics::ACKED_POSITION.set(end.pos as i64);
            acked = Some(SavedPosition {
                position: end,
                resume_from: p.resume_from,
            });
            if last_save.elapsed() >= SAVE_EVERY {
                self.save(&acked, &mut saved).await;
                last_save = Instant::now();
            }
        }
    }

    async fn save(&self, acked: &Option<SavedPosition>, saved: &mut Option<SavedPosition>) {
        let Some(position) = acked else { return };
        if saved.as_ref() == Some(position) {
            return;
        }
        until_stored("capture position", MAX_BACKOFF, || {
            self.control.save_capture_position(&self.name, position)
        })
        .await;
        *saved = Some(position.clone());
    }
}
