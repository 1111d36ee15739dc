//! Verification rounds in flight: up to `verifier.rounds_in_flight` rounds are verified at
//! once, each in its own task, so that one round waiting on the servers (or sleeping
//! between the two looks of a recheck) does not hold up the next.
//!
//! Invariant: a round's progress token (what the caller saves as its position) is handed
//! back only once that round *and every round started before it* are verified, so a saved
//! position never passes a change that was not verified.

use crate::check::{Checker, Item};
use crate::error::VerifierError;
use crate::setup::verify_with_retry;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

pub(crate) struct Rounds<T> {
    checker: Arc<Checker>,
    max: usize,
    max_backoff: Duration,
    running: VecDeque<(JoinHandle<Result<(), VerifierError>>, T)>,
}

impl<T> Rounds<T> {
    pub fn new(checker: Arc<Checker>, max: usize, max_backoff: Duration) -> Self {
        Self {
            checker,
            max: max.max(1),
            max_backoff,
            running: VecDeque::new(),
        }
    }

    /// Starts verifying `items` (waiting first while `max` rounds run). Returns the tokens
    /// of the rounds that finished, oldest first.
    pub async fn start(&mut self, items: Vec<Item>, token: T) -> Result<Vec<T>, VerifierError> {
        let mut done = Vec::new();
        if self.max == 1 {
            // One at a time: verified right here, no task of its own.
            verify_with_retry(&self.checker, &items, self.max_backoff).await?;
            done.push(token);
            return Ok(done);
        }
        while self.running.len() >= self.max {
            done.push(self.finish_oldest().await?);
        }
        let checker = self.checker.clone();
        let max_backoff = self.max_backoff;
        let task =
            tokio::spawn(async move { verify_with_retry(&checker, &items, max_backoff).await });
        self.running.push_back((task, token));
        while self.running.front().is_some_and(|(t, _)| t.is_finished()) {
            done.push(self.finish_oldest().await?);
        }
        Ok(done)
    }

    /// How many rounds are running.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Waits for every running round; their tokens, oldest first.
    pub async fn drain(&mut self) -> Result<Vec<T>, VerifierError> {
        let mut done = Vec::with_capacity(self.running.len());
        while !self.running.is_empty() {
            done.push(self.finish_oldest().await?);
        }
        Ok(done)
    }

    async fn finish_oldest(&mut self) -> Result<T, VerifierError> {
        let (task, token) = self.running.pop_front().expect("a round is running");
        task.await
            .map_err(|e| VerifierError::Crashed(format!("a verification round crashed: {e}")))??;
        Ok(token)
    }
}

impl<T> Drop for Rounds<T> {
    /// A verifier that stops (on a definite error) stops its other rounds too; they are
    /// verified again after a restart, since no position past them was saved.
    fn drop(&mut self) {
        for (task, _) in &self.running {
            task.abort();
        }
    }
}
