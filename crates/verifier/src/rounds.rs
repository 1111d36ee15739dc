//! Verification rounds in flight: up to `verifier.rounds_in_flight` rounds are verified at
//! once, each in its own task, so that one round waiting on the servers (or sleeping
//! between the two looks of a recheck) does not hold up the next.
//!
//! Invariant: a round's progress token (what the caller saves as its position) is handed
//! back only once that round *and every round started before it* are verified, and none
//! of them has a row still parked (see [`crate::parked`]), so a saved position never
//! passes a change that was not verified.

use crate::check::Checker;
use crate::error::VerifierError;
use crate::setup::{recheck_parked_with_retry, verify_with_retry};
use concord_compare::Item;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

/// Aborted when dropped: rounds of a verifier run that stopped end with it.
type Round = AbortOnDropHandle<Result<(), VerifierError>>;

pub(crate) struct Rounds<T> {
    checker: Arc<Checker>,
    max: usize,
    max_backoff: Duration,
    /// Each running round's task, number and token.
    running: VecDeque<(Round, u64, T)>,
    /// Verified rounds whose tokens wait for parked rows of theirs (or of an older round).
    held: VecDeque<(u64, T)>,
    /// The number the next round gets.
    next: u64,
}

impl<T> Rounds<T> {
    pub fn new(checker: Arc<Checker>, max: usize, max_backoff: Duration) -> Self {
        Self {
            checker,
            max: max.max(1),
            max_backoff,
            running: VecDeque::new(),
            held: VecDeque::new(),
            next: 0,
        }
    }

    /// Starts verifying `items` (waiting first while `max` rounds run). Returns the tokens
    /// of the rounds that finished, oldest first.
    pub async fn start(&mut self, items: Vec<Item>, token: T) -> Result<Vec<T>, VerifierError> {
        let round = self.next;
        self.next += 1;
        if self.max == 1 {
            // One at a time: verified right here, no task of its own.
            verify_with_retry(&self.checker, &items, round, self.max_backoff).await?;
            self.held.push_back((round, token));
            return Ok(self.release());
        }
        while self.running.len() >= self.max {
            self.finish_oldest().await?;
        }
        let checker = self.checker.clone();
        let max_backoff = self.max_backoff;
        let task = AbortOnDropHandle::new(tokio::spawn(
            async move { verify_with_retry(&checker, &items, round, max_backoff).await }
                .in_current_span(),
        ));
        self.running.push_back((task, round, token));
        while self.running.front().is_some_and(|(t, ..)| t.is_finished()) {
            self.finish_oldest().await?;
        }
        Ok(self.release())
    }

    /// How many rounds are running.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Waits for every running round; the tokens that can be saved, oldest first (rows
    /// still parked keep theirs back).
    pub async fn drain(&mut self) -> Result<Vec<T>, VerifierError> {
        self.wait_all().await?;
        Ok(self.release())
    }

    /// Waits for every running round and rechecks every parked row: every token, oldest
    /// first. For when the verifier has caught up, or before a DDL changes the tables.
    pub async fn settle(&mut self) -> Result<Vec<T>, VerifierError> {
        self.wait_all().await?;
        recheck_parked_with_retry(&self.checker, self.max_backoff).await?;
        Ok(self.release())
    }

    async fn wait_all(&mut self) -> Result<(), VerifierError> {
        while !self.running.is_empty() {
            self.finish_oldest().await?;
        }
        Ok(())
    }

    async fn finish_oldest(&mut self) -> Result<(), VerifierError> {
        let (task, round, token) = self.running.pop_front().expect("a round is running");
        task.await.map_err(|source| VerifierError::Crashed {
            task: "verification round",
            source,
        })??;
        self.held.push_back((round, token));
        Ok(())
    }

    /// The tokens of verified rounds older than every parked row.
    fn release(&mut self) -> Vec<T> {
        let oldest_parked = self.checker.parked.oldest_round().unwrap_or(u64::MAX);
        let mut done = Vec::new();
        while self.held.front().is_some_and(|(r, _)| *r < oldest_parked) {
            done.push(self.held.pop_front().expect("front exists").1);
        }
        done
    }
}

impl<T> Drop for Rounds<T> {
    /// A verifier that stops (on a definite error) stops its other rounds too; they are
    /// verified again after a restart, since no position past them was saved.
    fn drop(&mut self) {
        for (task, ..) in &self.running {
            task.abort();
        }
    }
}
