//! Direct mode: one process reads the source's binlog and applies it to the target, with
//! no broker in between — the embedded default.

use crate::applier::Applier;
use crate::error::ReplicatorError;
use concord_binlog::{
    preflight, start_position, BinlogReader, FragmentBound, ReaderOptions, Resume,
};
use concord_change::TableName;
use concord_config::Config;
use concord_control::ControlStore;
use concord_schema_cache::SchemaCache;
use concord_snapshot::{copies_first, Executor, Notes};
use concord_target::Checkpoints;
use mysql_async::{Conn, OptsBuilder, Pool};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

/// Checks the source, then replicates until an unrecoverable error.
pub async fn run(config: &Config, ready: Arc<AtomicBool>) -> Result<(), ReplicatorError> {
    run_telling_start(config, ready, None).await
}

/// As [`run`]; `started` is told where reading starts, once the source has been checked,
/// unless it already holds a start from an earlier run of this process (`concord run`
/// starts its verifier there, so the two see the same changes).
pub async fn run_telling_start(
    config: &Config,
    ready: Arc<AtomicBool>,
    started: Option<&tokio::sync::watch::Sender<Option<Resume>>>,
) -> Result<(), ReplicatorError> {
    let filter = config.tables.filter();
    let source_opts = config.source.opts();
    let mut source = Conn::new(source_opts.clone())
        .await
        .map_err(ReplicatorError::connecting("source", &config.source.url))?;
    let server = preflight(&mut source, &filter, &config.target.checkpoint_schema).await?;
    tracing::info!(version = %server.version, "source checked");

    let target_opts: mysql_async::Opts = OptsBuilder::from_opts(config.target.opts())
        .stmt_cache_size(1024)
        .into();
    let mut target = Conn::new(target_opts.clone())
        .await
        .map_err(ReplicatorError::connecting("target", &config.target.url))?;
    crate::triggers::check(&mut target, &filter, config.replicator.target_triggers).await?;
    let checkpoints = Checkpoints::new(&config.target.checkpoint_schema, &config.replicator.name);
    checkpoints
        .ensure(&mut target)
        .await
        .map_err(|source| ReplicatorError::Target {
            what: "creating the checkpoint table",
            source,
        })?;
    let resume =
        checkpoints
            .resume(&mut target)
            .await
            .map_err(|source| ReplicatorError::Target {
                what: "reading the checkpoint",
                source,
            })?;
    let first_start = resume.is_none();
    let start = match resume {
        Some(r) => {
            tracing::info!(position = %r, "resuming from checkpoint");
            r
        }
        None => {
            let p = start_position(&mut source, &config.source.start_from()).await?;
            tracing::info!(position = %p, start = %config.source.start, "no checkpoint; starting");
            Resume::at(p)
        }
    };
    drop(target);
    drop(source);

    let control =
        ControlStore::connect(config.control.url.expose(), &config.control.url.redacted()).await?;
    // Told only now: the control store is migrated, so the verifier connecting next does
    // not run the migrations at the same time.
    if let Some(started) = started {
        started.send_if_modified(|first| {
            let unset = first.is_none();
            if unset {
                *first = Some(start.clone());
            }
            unset
        });
    }
    let schema = SchemaCache::new(Pool::new(config.target.opts()), config.target.schema_ttl);

    let checkpoint_schema = config.target.checkpoint_schema.clone();
    let include_filter = filter.clone();
    let reader = BinlogReader::new(
        ReaderOptions {
            opts: source_opts,
            server_id: config.source.server_id,
            heartbeat: config.source.heartbeat,
            include: Arc::new(move |t: &TableName| {
                t.db != checkpoint_schema && include_filter.matches(t)
            }),
            max_backoff: config.replicator.max_backoff,
            fragment: FragmentBound::of(&config.source),
        },
        server,
    );
    // The snapshot's jobs run beside the stream, which writes their chunks in its order.
    let snapshots = Executor::new(config, control.clone(), Notes::default());
    snapshots
        .plan_initial(copies_first(config, first_start))
        .await?;
    let applier = Applier::new(
        target_opts,
        schema,
        control,
        filter,
        checkpoints,
        config.replicator.clone(),
    )
    .with_snapshot(snapshots.notes().clone(), config.snapshot.threads);
    let _snapshotting = AbortOnDropHandle::new(tokio::spawn(
        async move { snapshots.run().await }.in_current_span(),
    ));
    let (tx, rx) = concord_binlog::queue(
        config.replicator.queue_transactions,
        config.replicator.queue_bytes.as_u64(),
    );
    // Aborted with this run: a restarted role must not leave its old reader behind.
    let reading = AbortOnDropHandle::new(tokio::spawn(
        async move { reader.run(start, tx).await }.in_current_span(),
    ));
    // The applier ends when the reader does (its channel closes) or on an error of its
    // own; the reader's end says why it ended (a definite error must not pass for Ok).
    applier.run(rx, ready).await?;
    match reading.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(source) => Err(ReplicatorError::Crashed {
            task: "binlog reader",
            source,
        }),
    }
}
