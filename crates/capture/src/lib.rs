//! `concord capture`: reads the source's binlog and publishes every row change of the
//! included tables to Kafka as a change envelope (`docs/FORMAT.md`), keyed by table and
//! primary key so that one row's changes stay in order on one partition.
//!
//! Invariant: the capture position saved in the control store is the end of a source
//! transaction all of whose messages — and all messages before them — the broker has
//! acknowledged. After a crash the capture resumes there: it may publish a message twice,
//! never skip one. A transaction the reader hands on in fragments is published as it is
//! read; only its last part moves the position.

mod acks;
mod error;
mod metrics;
mod progress;
mod publish;
mod snapshot;

pub use error::CaptureError;
pub use publish::producer_config;

use acks::{Acker, Pending};
use concord_binlog::{
    preflight, start_position, BinlogReader, FragmentBound, ReaderEvent, ReaderOptions, Resume,
};
use concord_change::TableName;
use concord_config::Config;
use concord_control::ControlStore;
use concord_schema_cache::SchemaCache;
use concord_snapshot::{copies_first, Executor, Notes};
use mysql_async::{Conn, Pool};
use progress::Progress;
use rdkafka::producer::FutureProducer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

/// Runs the capture until a definite error.
pub async fn run(config: &Config, ready: Arc<AtomicBool>) -> Result<(), CaptureError> {
    let kafka = config.kafka.as_ref().ok_or(CaptureError::NotKafka)?;
    let filter = config.tables.filter();
    let mut source =
        Conn::new(config.source.opts())
            .await
            .map_err(|source| CaptureError::Connect {
                server: format!("source {}", config.source.url.redacted()),
                source,
            })?;
    let server = preflight(&mut source, &filter, "").await?;
    let control =
        ControlStore::connect(config.control.url.expose(), &config.control.url.redacted()).await?;
    let name = kafka.capture_position_name();
    let saved = control.capture_position(&name).await?;
    let first_start = saved.is_none();
    let start = match saved {
        Some(saved) => {
            let r = Resume::saved(saved.position, saved.resume_from);
            tracing::info!(position = %r, "resuming capture from its position");
            r
        }
        None => {
            let p = start_position(&mut source, &config.source.start_from()).await?;
            tracing::info!(position = %p, start = %config.source.start, "no capture position; starting");
            Resume::at(p)
        }
    };
    drop(source);

    let producer: FutureProducer = producer_config(kafka)
        .create()
        .map_err(CaptureError::Kafka)?;
    let reader = BinlogReader::new(
        ReaderOptions {
            opts: config.source.opts(),
            server_id: config.source.server_id,
            heartbeat: config.source.heartbeat,
            include: {
                let filter = filter.clone();
                Arc::new(move |t: &TableName| filter.matches(t))
            },
            max_backoff: config.replicator.max_backoff,
            fragment: FragmentBound::of(&config.source),
        },
        server,
    );
    let (tx, mut rx) = concord_binlog::queue(
        config.replicator.queue_transactions,
        config.replicator.queue_bytes.as_u64(),
    );
    // Aborted with this run: a restarted role must not leave its old reader behind.
    let reading = AbortOnDropHandle::new(tokio::spawn(
        async move { reader.run(start, tx).await }.in_current_span(),
    ));
    let (pending_tx, pending_rx) = mpsc::channel::<Pending>(config.replicator.queue_transactions);
    let progress = Progress::new();
    let _reporting = AbortOnDropHandle::new(tokio::spawn(progress.clone().report_forever()));
    let acker = Acker::new(control.clone(), name, progress.clone());
    let acking = AbortOnDropHandle::new(tokio::spawn(acker.run(pending_rx).in_current_span()));
    // The snapshot's jobs run beside the stream; their chunks are published in its order.
    let snapshots = Executor::new(config, control.clone(), Notes::default());
    snapshots
        .plan_initial(copies_first(config, first_start))
        .await?;
    let target = Pool::new(concord_compare::session_opts(config.target.opts()));
    let chunks = snapshot::ChunkPublisher::new(
        snapshots.notes().clone(),
        target.clone(),
        SchemaCache::new(target, config.target.schema_ttl),
    );
    let _snapshotting = AbortOnDropHandle::new(tokio::spawn(
        async move { snapshots.run().await }.in_current_span(),
    ));
    let publisher =
        publish::Publisher::new(producer, kafka.clone(), config.source.server_id, control);

    let publishing = async {
        // Messages of the open fragmented transaction published so far.
        let mut published = 0u32;
        // The end of the last whole transaction published (or caught-up position): where a
        // snapshot's chunks may go in between.
        let mut between: Option<concord_change::Position> = None;
        loop {
            if published == 0 {
                chunks
                    .publish_ready(&publisher, between.as_ref(), &pending_tx)
                    .await?;
            }
            let event = tokio::select! {
                event = rx.recv() => event,
                () = chunks.notes.wait_ready() => continue,
            };
            let Some(event) = event else { break };
            let (txn, whole) = match event {
                ReaderEvent::CaughtUp { position, .. } => {
                    progress.caught_up();
                    ready.store(true, Ordering::Relaxed);
                    metrics::LAG.set(0.0);
                    if published == 0 {
                        between = Some(position);
                    }
                    continue;
                }
                ReaderEvent::Transaction(txn) => (txn, true),
                ReaderEvent::Fragment(txn) => (txn, false),
            };
            let pending = publisher.publish(&txn, published, whole).await?;
            chunks.notes.observe(&txn);
            published = if whole {
                between = Some(txn.end.clone());
                0
            } else {
                published + pending.deliveries.len() as u32
            };
            progress.sent();
            if pending_tx.send(pending).await.is_err() {
                break; // the acker stopped; its error is reported below
            }
            ready.store(true, Ordering::Relaxed);
        }
        Ok::<(), CaptureError>(())
    };
    tokio::pin!(publishing);
    tokio::select! {
        r = &mut publishing => {
            r?;
            // Publishing ends when the reader does: its end says why.
            match reading.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.into()),
                Err(source) => Err(CaptureError::Crashed { task: "binlog reader", source }),
            }
        }
        r = acking => match r {
            Ok(r) => r,
            Err(source) => Err(CaptureError::Crashed { task: "acknowledgement", source }),
        },
    }
}
