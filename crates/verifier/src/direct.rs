//! Direct mode: the verifier reads the source's binlog with its own reader, holding each
//! transaction back until its commit time + delay has passed.
//!
//! Invariants:
//! - waiting holds one transaction, or one fragment of a large one; the reader blocks on
//!   the bounded queue behind it, so memory stays bounded for any backlog and any
//!   transaction size;
//! - the saved position is the end of a transaction whose changes — and every change
//!   before them — were all verified (see [`crate::rounds`]), so a restart re-verifies at
//!   most the rounds that were in flight or held back by parked rows, and skips nothing. A
//!   round that ends inside a fragmented transaction saves nothing of its own.

use crate::check::Checker;
use crate::error::VerifierError;
use crate::metrics;
use crate::rounds::Rounds;
use crate::setup::{self, Setup};
use concord_binlog::{
    preflight, start_position, BinlogReader, FragmentBound, ReaderEvent, ReaderOptions, Resume,
};
use concord_binlog::{Receiver, TryRecvError};
use concord_change::{Position, TableName, Transaction};
use concord_compare::Item;
use concord_config::Config;
use concord_control::{until_stored, VerifierPosition};
use concord_target::{Checkpoints, Mark, Stream};
use mysql_async::Conn;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

const STREAM: &str = "binlog";

/// How long a round that is not full waits for the reader while other rounds run.
const FILL_WAIT: Duration = Duration::from_millis(10);

pub async fn run(config: &Config, ready: Arc<AtomicBool>) -> Result<(), VerifierError> {
    run_from(config, ready, None).await
}

/// As [`run`]; without a saved position the verifier begins at `replicator_start` — where
/// the replicator of the same process began — if given, else at the replicator's
/// checkpoint (which may have moved past changes it applied meanwhile).
pub async fn run_from(
    config: &Config,
    ready: Arc<AtomicBool>,
    replicator_start: Option<Resume>,
) -> Result<(), VerifierError> {
    let filter = config.tables.filter();
    let setup = Setup::connect(config).await?;
    let mut source = Conn::new(setup.source_opts.clone())
        .await
        .map_err(|source| VerifierError::Connect {
            server: format!("source {}", config.source.url.redacted()),
            source,
        })?;
    let server = preflight(&mut source, &filter, &config.target.checkpoint_schema).await?;
    let checkpoints = Checkpoints::new(&config.target.checkpoint_schema, &config.replicator.name);
    let name = &config.verifier.name;
    let saved = setup
        .control()
        .verifier_positions(name)
        .await?
        .into_iter()
        .find(|p| p.stream == STREAM)
        .map(|p| Resume::saved(Position::new(p.file, p.position), p.resume_from));
    let start = match (saved, replicator_start) {
        (Some(r), _) => {
            tracing::info!(position = %r, "verifier resuming from its saved position");
            r
        }
        (None, Some(r)) => r,
        (None, None) => {
            // Nothing verified yet: begin where the replicator is, or where it would start.
            let mut target =
                setup
                    .target()
                    .get_conn()
                    .await
                    .map_err(|source| VerifierError::Connect {
                        server: format!("target {}", config.target.url.redacted()),
                        source,
                    })?;
            checkpoints
                .ensure(&mut target)
                .await
                .map_err(|source| VerifierError::Setup {
                    side: "target",
                    what: "creating the checkpoint table",
                    source,
                })?;
            match checkpoints.resume(&mut target).await.ok().flatten() {
                Some(r) => r,
                None => Resume::at(start_position(&mut source, &config.source.start_from()).await?),
            }
        }
    };
    drop(source);
    tracing::info!(position = %start, delay = ?config.verifier.delay, "verifying");

    let checkpoint_schema = config.target.checkpoint_schema.clone();
    let include = filter.clone();
    let reader = BinlogReader::new(
        ReaderOptions {
            opts: setup.source_opts.clone(),
            server_id: config.verifier.server_id(config.source.server_id),
            heartbeat: config.source.heartbeat,
            include: Arc::new(move |t: &TableName| t.db != checkpoint_schema && include.matches(t)),
            max_backoff: config.replicator.max_backoff,
            fragment: FragmentBound::of(&config.source),
        },
        server,
    );
    let checker = setup.checker.clone();
    let _counting =
        AbortOnDropHandle::new(tokio::spawn(concord_compare::metrics::report_open_records(
            setup.control().clone(),
            Duration::from_secs(5),
        )));
    let (tx, rx) = concord_binlog::queue(
        config.replicator.queue_transactions,
        config.replicator.queue_bytes.as_u64(),
    );
    // Aborted with this run: a restarted role must not leave its old reader behind.
    let reading = AbortOnDropHandle::new(tokio::spawn(
        async move { reader.run(start, tx).await }.in_current_span(),
    ));
    ready.store(true, Ordering::Relaxed);
    // The loop ends when the reader does (its channel closes) or on an error of its own;
    // the reader's end says why it ended (a definite error must not pass for Ok).
    verify_loop(config, &setup, checker, rx).await?;
    match reading.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(source) => Err(VerifierError::Crashed {
            task: "binlog reader",
            source,
        }),
    }
}

async fn verify_loop(
    config: &Config,
    setup: &Setup,
    checker: Arc<Checker>,
    mut rx: Receiver,
) -> Result<(), VerifierError> {
    let delay = config.verifier.delay;
    let filter = checker.filter.clone();
    let mut rounds: Rounds<Token> = Rounds::new(
        checker,
        config.verifier.rounds_in_flight,
        config.replicator.max_backoff,
    );
    let mut held: Option<Unit> = None;
    let mut saved_at = Instant::now();
    loop {
        let first = match held.take() {
            Some(t) => t,
            None => match rx.recv().await {
                None => {
                    drain(&mut rounds, config, setup, &mut saved_at, true).await?;
                    return Ok(());
                }
                Some(ReaderEvent::CaughtUp {
                    position,
                    resume_from,
                }) => {
                    drain(&mut rounds, config, setup, &mut saved_at, true).await?;
                    metrics::LAG.set(0.0);
                    let at = Resume::after(&position, resume_from.as_ref());
                    save(config, setup, &at, &mut saved_at).await;
                    continue;
                }
                Some(other) => Unit::of(other).expect("caught up is handled above"),
            },
        };
        // Hold the reader back (the queue is bounded) until this one is due. The rounds
        // before it are older: let them finish and save their position meanwhile.
        let wait = setup::until_due(first.txn.commit_ts, delay);
        if !wait.is_zero() {
            drain(&mut rounds, config, setup, &mut saved_at, false).await?;
            tokio::time::sleep(setup::until_due(first.txn.commit_ts, delay)).await;
        }
        let mut round = vec![first];
        let mut rows = round[0].txn.changes.len();
        while rows < config.verifier.batch_rows {
            let next = match rx.try_recv() {
                Ok(event) => Some(event),
                // Rounds are still running, so starting this one now gains nothing; a
                // fuller round coalesces more changes of a row into one comparison.
                Err(TryRecvError::Empty) if rounds.running() > 0 => {
                    tokio::time::timeout(FILL_WAIT, rx.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            match next.and_then(Unit::of) {
                Some(u) => {
                    if setup::until_due(u.txn.commit_ts, delay).is_zero() {
                        rows += u.txn.changes.len();
                        round.push(u);
                    } else {
                        held = Some(u);
                        break;
                    }
                }
                None => break,
            }
        }
        if round.iter().any(|u| u.txn.ddl.is_some()) {
            // Rounds still running, and rows parked, read the schema as it was before this
            // DDL.
            drain(&mut rounds, config, setup, &mut saved_at, true).await?;
            for ddl in round.iter().filter_map(|u| u.txn.ddl.as_ref()) {
                setup.forget(ddl, &filter).await;
            }
        }
        // A TRUNCATE empties its tables: the round's changes of them before it (in its own
        // transaction too) have nothing left to be compared with.
        let mut emptied: HashSet<TableName> = HashSet::new();
        for u in round.iter_mut().rev() {
            emptied.extend(u.txn.truncated.iter().cloned());
            if !emptied.is_empty() {
                u.txn.changes.retain(|c| !emptied.contains(&c.table.name));
            }
        }
        let token = (
            round
                .iter()
                .rev()
                .find(|u| u.whole)
                .map(|u| Resume::after(&u.txn.end, u.txn.resume_from.as_ref())),
            round.last().expect("rounds are never empty").txn.commit_ts,
        );
        let items: Vec<Item> = round
            .into_iter()
            .map(|u| u.txn)
            .flat_map(|t| {
                let mark = Mark::Binlog(t.end);
                t.changes.into_iter().map(move |c| Item {
                    mark: mark.clone(),
                    stream: Stream::Binlog,
                    origin: c.position.clone(),
                    change: c,
                })
            })
            .collect();
        let done = rounds.start(items, token).await?;
        finished(config, setup, done, delay, &mut saved_at).await;
    }
}

/// Waits for every round in flight, then records them as [`finished`]. `settle`: every
/// parked row is rechecked too, so everything read so far is verified; otherwise parked
/// rows keep their rounds from being recorded.
/// What a finished round lets the verifier save: where to resume (nothing, for a round
/// of fragments of one large transaction), and the commit time of its last transaction.
type Token = (Option<Resume>, u32);

/// A transaction to verify, or a fragment of one. A fragment's `end` is inside its
/// transaction: as a [`Mark`] it is reached once the replicator committed the whole
/// transaction (its checkpoint moves only to transaction ends), never saved as a position.
struct Unit {
    txn: Transaction,
    whole: bool,
}

impl Unit {
    fn of(event: ReaderEvent) -> Option<Self> {
        match event {
            ReaderEvent::Transaction(txn) => Some(Unit { txn, whole: true }),
            ReaderEvent::Fragment(txn) => Some(Unit { txn, whole: false }),
            ReaderEvent::CaughtUp { .. } => None,
        }
    }
}

async fn drain(
    rounds: &mut Rounds<Token>,
    config: &Config,
    setup: &Setup,
    saved_at: &mut Instant,
    settle: bool,
) -> Result<(), VerifierError> {
    let done = if settle {
        rounds.settle().await?
    } else {
        rounds.drain().await?
    };
    finished(config, setup, done, config.verifier.delay, saved_at).await;
    Ok(())
}

/// Rounds verified (oldest first): the lag as of the newest, and its position saved.
async fn finished(
    config: &Config,
    setup: &Setup,
    done: Vec<Token>,
    delay: Duration,
    saved_at: &mut Instant,
) {
    if let Some((_, commit_ts)) = done.last() {
        metrics::LAG.set(setup::late_by(*commit_ts, delay));
    }
    if let Some(end) = done.iter().rev().find_map(|(end, _)| end.as_ref()) {
        save(config, setup, end, saved_at).await;
    }
}

async fn save(config: &Config, setup: &Setup, r: &Resume, saved_at: &mut Instant) {
    if saved_at.elapsed() < config.verifier.save_every {
        return;
    }
    let entry = [VerifierPosition {
        stream: STREAM.into(),
        part: 0,
        file: r.applied.file.to_string(),
        position: r.applied.pos,
        resume_from: r.earlier_from().cloned(),
    }];
    until_stored("verifier position", config.replicator.max_backoff, || {
        setup
            .control()
            .save_verifier_positions(&config.verifier.name, &entry)
    })
    .await;
    *saved_at = Instant::now();
}
