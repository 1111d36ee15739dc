//! `concord recovery`: the worker that looks at every detected mismatch once its grace
//! period is over, resolving it or — where auto-repair is on and the circuit is closed —
//! repairing it.
//!
//! The circuit: more records due at once than `recovery.max_auto_repairs_per_minute`, or
//! that many automatic repairs within a minute, opens it. While it is open the worker
//! writes nothing and leaves every record as it is, until an operator closes it
//! (`concord recovery resume`); a mass difference (a bad deploy, a restore on the target)
//! is for a person to look at, not for a loop to overwrite.

use crate::{Mode, Recovery, RecoveryError, Settled};
use concord_config::Config;
use concord_control::{MismatchState, Move};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::task::AbortOnDropHandle;

/// The control store's name of the auto-repair circuit, and its values.
pub const CIRCUIT: &str = "circuit";
pub const OPEN: &str = "open";
pub const CLOSED: &str = "closed";

/// How often the worker says it is alive (`role_heartbeats`).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// Records looked at per pass, at most.
const PASS: i64 = 1000;

pub async fn run(config: &Config, ready: Arc<AtomicBool>) -> Result<(), RecoveryError> {
    let recovery = Recovery::connect(config).await?;
    let control = recovery.compare.control.clone();
    let _counting = AbortOnDropHandle::new(tokio::spawn(
        concord_compare::metrics::report_open_records(control.clone(), Duration::from_secs(5)),
    ));
    crate::metrics::GRACE.set(recovery.grace().as_secs_f64());
    ready.store(true, Ordering::Relaxed);
    tracing::info!(grace = ?recovery.grace(), "recovery worker running");
    let limit = config.recovery.max_auto_repairs_per_minute as usize;
    let mut repairs: VecDeque<Instant> = VecDeque::new();
    let name = concord_control::process_name();
    let mut last_beat: Option<Instant> = None;
    loop {
        // The console's overview shows when the worker last went round.
        if last_beat.is_none_or(|at| at.elapsed() >= HEARTBEAT_EVERY) {
            match control.beat("recovery", &name, "worker pass").await {
                Ok(()) => last_beat = Some(Instant::now()),
                Err(e) => tracing::warn!(error = %e, "recovery heartbeat not stored"),
            }
        }
        if let Err(e) = pass(&recovery, limit, &mut repairs).await {
            if !e.is_transient() {
                return Err(e);
            }
            tracing::warn!(error = %e, "recovery pass interrupted; trying again");
        }
        tokio::time::sleep(config.recovery.every).await;
    }
}

/// One look at every due record (up to [`PASS`]).
async fn pass(
    recovery: &Recovery,
    limit: usize,
    repairs: &mut VecDeque<Instant>,
) -> Result<(), RecoveryError> {
    let control = &recovery.compare.control;
    requeue_interrupted(recovery).await?;
    let circuit = control.setting(CIRCUIT).await?;
    let open = circuit.as_ref().is_some_and(|s| s.value == OPEN);
    crate::metrics::CIRCUIT_OPEN.set(i64::from(open));
    if open {
        return Ok(());
    }
    // Records detected before an operator closed the circuit were seen and accepted by
    // them: they are paced at the limit, never a reason to open it again.
    let accepted_before = circuit.map_or(0, |s| s.updated_ms);
    let due_before = now_ms() - recovery.grace().as_millis() as i64;
    let due = control
        .mismatches_in_state_since(MismatchState::Detected, due_before, PASS)
        .await?;
    let new = due.iter().filter(|m| m.state_ms > accepted_before).count();
    if new > limit {
        let why = format!(
            "{new} mismatches due at once, more than recovery.max_auto_repairs_per_minute = \
             {limit}"
        );
        return open_circuit(recovery, &why).await;
    }
    for m in &due {
        while repairs
            .front()
            .is_some_and(|t| t.elapsed() > Duration::from_secs(60))
        {
            repairs.pop_front();
        }
        let write = if !recovery.auto_repair(&m.table) {
            Err(format!(
                "auto-repair is off for {} (recovery.auto_repair / recovery.tables)",
                m.table
            ))
        } else if repairs.len() >= limit && m.state_ms <= accepted_before {
            return Ok(()); // paced: the rest waits for the next minute
        } else if repairs.len() >= limit {
            let why = format!(
                "{} automatic repairs within a minute, the most \
                 recovery.max_auto_repairs_per_minute allows",
                repairs.len()
            );
            return open_circuit(recovery, &why).await;
        } else {
            Ok(())
        };
        match recovery.settle(m, Mode::Auto, "system", write).await {
            Ok(Settled::Repaired) => repairs.push_back(Instant::now()),
            Ok(Settled::Waiting(why)) if why.contains("lags") => {
                tracing::info!(%why, "recovery waits for the replicator");
                return Ok(());
            }
            Ok(_) => {}
            Err(e) if e.is_transient() || matches!(e, RecoveryError::Refused(_)) => {
                tracing::warn!(id = m.id, table = %m.table, error = %e, "mismatch not settled; looked at again later");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn open_circuit(recovery: &Recovery, why: &str) -> Result<(), RecoveryError> {
    if recovery
        .compare
        .control
        .set_setting(CIRCUIT, OPEN, why, "system")
        .await?
    {
        tracing::warn!(reason = why, "auto-repair circuit opened: nothing is written automatically until `concord recovery resume`");
    }
    crate::metrics::CIRCUIT_OPEN.set(1);
    Ok(())
}

/// Records left in `rechecking` by a look that never ended (its process stopped: a worker, or
/// an operator's `concord repair`) go back to `detected`. A look waits for the replicator at
/// most `recovery.grace` twice, so one older than that (and a minute) has stopped.
async fn requeue_interrupted(recovery: &Recovery) -> Result<(), RecoveryError> {
    let control = &recovery.compare.control;
    let stuck_before = now_ms() - 2 * recovery.grace().as_millis() as i64 - 60_000;
    let stuck = control
        .mismatches_in_state_since(MismatchState::Rechecking, stuck_before, PASS)
        .await?;
    for m in stuck {
        let mv = Move {
            actor: "system".into(),
            reason: "the look at this record never ended (its process stopped); looked at \
                     again"
                .into(),
            ..Move::default()
        };
        control
            .move_mismatch(
                m.id,
                MismatchState::Rechecking,
                MismatchState::Detected,
                &mv,
            )
            .await?;
    }
    Ok(())
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
