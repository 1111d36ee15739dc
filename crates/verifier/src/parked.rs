//! Rows whose target state differed from the change being verified, held back for a while
//! before the source is asked about them.
//!
//! When the verifier reads a row, the target has usually moved past the change being
//! verified: the replicator runs `verifier.delay` ahead. A difference then mostly means the
//! row changed again later — and that later change is in the stream the verifier is
//! reading. So a differing row is *parked* instead of being read from the source at once;
//! when a later round brings another change of the same row, that change is verified
//! instead and the parked one is *superseded* (the same rule that coalesces the changes of
//! one round, stretched across rounds). Only rows that see no later change within
//! `verifier.park_for` go to the source recheck — on a backlog, almost none.
//!
//! Invariants:
//! - a parked row is not verified yet: the round that parked it is not counted as done
//!   for the saved position while the row is parked or being rechecked
//!   ([`Parked::oldest_round`]), so a restart verifies it again;
//! - only a change from a *later* round supersedes a parked row;
//! - at most `verifier.park_rows` rows are parked; a difference that finds the lot full is
//!   rechecked at once, as if parking were off.

use concord_change::TableName;
use concord_compare::Expectation;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Slot {
    table: Arc<TableName>,
    /// The row's canonical key on the target (see `concord_compare::rows::key_of`).
    key: Vec<u8>,
    round: u64,
    at: Instant,
    expectation: Expectation,
    /// Taken for a recheck that has not finished: still holds its round back, but can no
    /// longer be superseded or taken again.
    taken: bool,
}

/// One target table's parked rows: the name the slots share, and each row's ticket.
type TableRows = (Arc<TableName>, HashMap<Vec<u8>, u64>);

#[derive(Default)]
struct Lot {
    tables: HashMap<TableName, TableRows>,
    /// By ticket, which grows with every row parked: the oldest come first.
    slots: BTreeMap<u64, Slot>,
    /// How many rows each round has parked (or in a recheck): the smallest key holds the
    /// saved position back.
    rounds: BTreeMap<u64, usize>,
    next_ticket: u64,
}

impl Lot {
    fn ticket(&self, table: &TableName, key: &[u8]) -> Option<u64> {
        self.tables.get(table)?.1.get(key).copied()
    }

    fn remove(&mut self, ticket: u64) -> Option<Slot> {
        let slot = self.slots.remove(&ticket)?;
        if let Some((_, rows)) = self.tables.get_mut(&*slot.table) {
            rows.remove(&slot.key);
        }
        if let Some(n) = self.rounds.get_mut(&slot.round) {
            *n -= 1;
            if *n == 0 {
                self.rounds.remove(&slot.round);
            }
        }
        Some(slot)
    }
}

pub(crate) struct Parked {
    lot: Mutex<Lot>,
    capacity: usize,
    park_for: Duration,
}

/// One target table's rows taken out for a recheck, with the tickets to hand back to
/// [`Parked::done`].
pub(crate) struct Taken {
    pub table: TableName,
    pub expectations: Vec<Expectation>,
    pub tickets: Vec<u64>,
}

impl Parked {
    /// `capacity` 0 or `park_for` zero: nothing is ever parked.
    pub fn new(capacity: usize, park_for: Duration) -> Self {
        Self {
            lot: Mutex::new(Lot::default()),
            capacity: if park_for.is_zero() { 0 } else { capacity },
            park_for,
        }
    }

    fn lot(&self) -> std::sync::MutexGuard<'_, Lot> {
        // A panic while holding the lock leaves the lot consistent enough (at worst a
        // row's ticket without its slot, which is ignored), so a poisoned lock is used.
        self.lot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A change of round `round` for the row `key` of `table` is being verified: a row
    /// parked by an earlier round is superseded by it. Returns how many changes the parked
    /// row stood for (0: none was).
    pub fn supersede(&self, table: &TableName, key: &[u8], round: u64) -> usize {
        let mut lot = self.lot();
        let Some(ticket) = lot.ticket(table, key) else {
            return 0;
        };
        match lot.slots.get(&ticket) {
            Some(slot) if !slot.taken && slot.round < round => lot
                .remove(ticket)
                .map_or(0, |slot| slot.expectation.changes),
            _ => 0,
        }
    }

    /// Parks a differing row, or gives it back for an immediate recheck if the lot is full
    /// (or parking is off). Returns how many changes this superseded: with rounds verified
    /// at once, the same row may already be parked by another round, and the later of the
    /// two stands for both.
    pub fn park(
        &self,
        table: &TableName,
        key: Vec<u8>,
        round: u64,
        expectation: Expectation,
    ) -> Result<usize, Expectation> {
        let mut lot = self.lot();
        let mut superseded = 0;
        match lot
            .ticket(table, &key)
            .and_then(|t| lot.slots.get(&t).map(|s| (t, s)))
        {
            // Being rechecked for an earlier round: this difference gets its own recheck.
            Some((_, slot)) if slot.taken => return Err(expectation),
            // Parked by a later round: that one stands for this change too.
            Some((_, slot)) if slot.round > round => return Ok(expectation.changes),
            // Parked by an earlier round (which a later one supersedes), or by this round
            // before it was retried: the new slot replaces the old.
            Some((ticket, slot)) => {
                if slot.round < round {
                    superseded = slot.expectation.changes;
                }
                lot.remove(ticket);
            }
            None if lot.slots.len() >= self.capacity => return Err(expectation),
            None => {}
        }
        let ticket = lot.next_ticket;
        lot.next_ticket += 1;
        let (name, rows) = lot
            .tables
            .entry(table.clone())
            .or_insert_with(|| (Arc::new(table.clone()), HashMap::new()));
        let name = name.clone();
        rows.insert(key.clone(), ticket);
        lot.slots.insert(
            ticket,
            Slot {
                table: name,
                key,
                round,
                at: Instant::now(),
                expectation,
                taken: false,
            },
        );
        *lot.rounds.entry(round).or_default() += 1;
        Ok(superseded)
    }

    /// Takes the rows parked for `park_for` or longer (`all`: every row) for a recheck,
    /// per target table. They stay counted against their rounds until [`Parked::done`].
    pub fn take(&self, all: bool) -> Vec<Taken> {
        let mut lot = self.lot();
        let now = Instant::now();
        let mut by_table: HashMap<TableName, Taken> = HashMap::new();
        // Oldest first: without `all`, the first row parked too recently ends the walk.
        for (&ticket, slot) in lot.slots.iter_mut() {
            if !all && now.duration_since(slot.at) < self.park_for {
                break;
            }
            if slot.taken {
                continue;
            }
            slot.taken = true;
            let taken = by_table
                .entry((*slot.table).clone())
                .or_insert_with(|| Taken {
                    table: (*slot.table).clone(),
                    expectations: Vec::new(),
                    tickets: Vec::new(),
                });
            taken.expectations.push(slot.expectation.clone());
            taken.tickets.push(ticket);
        }
        by_table.into_values().collect()
    }

    /// The recheck of the rows of `tickets` ended: settled rows leave the lot; after a
    /// failure they are parked again, to be taken by the next try. (A recheck cancelled in
    /// between leaves its rows taken; that only happens when the verifier stops.)
    pub fn done(&self, tickets: Vec<u64>, settled: bool) {
        let mut lot = self.lot();
        for ticket in tickets {
            if settled {
                lot.remove(ticket);
            } else if let Some(slot) = lot.slots.get_mut(&ticket) {
                slot.taken = false;
            }
        }
    }

    /// The oldest round with a row still parked or being rechecked.
    pub fn oldest_round(&self) -> Option<u64> {
        self.lot().rounds.keys().next().copied()
    }

    pub fn len(&self) -> usize {
        self.lot().slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_change::{Position, SourceTable, Value};
    use concord_target::Stream;
    use std::sync::Arc;

    fn expectation(changes: usize) -> Expectation {
        Expectation {
            source: Arc::new(SourceTable {
                name: TableName::new("shop", "orders"),
                columns: vec!["id".into()],
                primary_key: vec![0],
            }),
            key: vec![Value::Int(1)],
            after: None,
            stream: Stream::Binlog,
            origin: Position::new("b.000001", 4),
            changes,
        }
    }

    fn orders() -> TableName {
        TableName::new("shop", "orders")
    }

    #[test]
    fn only_a_later_round_supersedes_and_the_oldest_round_follows_the_lot() {
        let lot = Parked::new(10, Duration::from_secs(60));
        lot.park(&orders(), vec![1], 5, expectation(2)).unwrap();
        lot.park(&orders(), vec![2], 7, expectation(1)).unwrap();
        assert_eq!(lot.oldest_round(), Some(5));
        assert_eq!(lot.supersede(&orders(), &[1], 5), 0, "same round");
        assert_eq!(lot.supersede(&orders(), &[1], 4), 0, "earlier round");
        assert_eq!(lot.supersede(&orders(), &[1], 6), 2);
        assert_eq!(lot.oldest_round(), Some(7));
        assert_eq!(lot.supersede(&orders(), &[9], 8), 0, "never parked");
        assert_eq!(lot.supersede(&orders(), &[2], 8), 1);
        assert_eq!(lot.oldest_round(), None);
    }

    #[test]
    fn of_two_rounds_parking_one_row_the_later_stands_for_both() {
        let lot = Parked::new(10, Duration::from_secs(60));
        // Round 6 parks first, then the earlier round 5 finds the same row differing.
        assert_eq!(
            lot.park(&orders(), vec![1], 6, expectation(2)).ok(),
            Some(0)
        );
        assert_eq!(
            lot.park(&orders(), vec![1], 5, expectation(3)).ok(),
            Some(3)
        );
        assert_eq!((lot.len(), lot.oldest_round()), (1, Some(6)));
        // The usual order: round 7 parks over round 6, which it supersedes.
        assert_eq!(
            lot.park(&orders(), vec![1], 7, expectation(1)).ok(),
            Some(2)
        );
        assert_eq!((lot.len(), lot.oldest_round()), (1, Some(7)));
        // A retried round parks its row again: nothing superseded.
        assert_eq!(
            lot.park(&orders(), vec![1], 7, expectation(1)).ok(),
            Some(0)
        );
        assert_eq!(lot.len(), 1);
    }

    #[test]
    fn a_full_lot_gives_the_row_back_and_zero_capacity_parks_nothing() {
        let lot = Parked::new(1, Duration::from_secs(60));
        lot.park(&orders(), vec![1], 1, expectation(1)).unwrap();
        assert!(lot.park(&orders(), vec![2], 1, expectation(1)).is_err());
        // The row already parked may be parked again (a retried round).
        lot.park(&orders(), vec![1], 1, expectation(1)).unwrap();
        assert_eq!(lot.len(), 1);
        assert_eq!(lot.oldest_round(), Some(1));
        let off = Parked::new(1000, Duration::ZERO);
        assert!(off.park(&orders(), vec![1], 1, expectation(1)).is_err());
    }

    #[test]
    fn taken_rows_hold_their_round_until_done_and_come_back_after_a_failure() {
        let lot = Parked::new(10, Duration::from_secs(60));
        lot.park(&orders(), vec![1], 3, expectation(1)).unwrap();
        assert!(lot.take(false).is_empty(), "not parked long enough");
        let mut taken = lot.take(true);
        assert_eq!(taken.len(), 1, "one table");
        let taken = taken.pop().unwrap();
        assert_eq!(taken.tickets.len(), 1);
        assert_eq!(lot.supersede(&orders(), &[1], 4), 0, "being rechecked");
        assert!(
            lot.park(&orders(), vec![1], 4, expectation(1)).is_err(),
            "rechecked at once"
        );
        assert!(lot.take(true).is_empty(), "taken once");
        lot.done(taken.tickets, false);
        assert_eq!(lot.oldest_round(), Some(3));
        let again = lot.take(true).pop().expect("back after the failure");
        lot.done(again.tickets, true);
        assert_eq!((lot.len(), lot.oldest_round()), (0, None));
    }

    #[test]
    fn rows_are_taken_once_parked_long_enough_oldest_first() {
        let lot = Parked::new(10, Duration::from_millis(40));
        lot.park(&orders(), vec![1], 1, expectation(1)).unwrap();
        assert!(lot.take(false).is_empty());
        std::thread::sleep(Duration::from_millis(50));
        lot.park(&orders(), vec![2], 2, expectation(1)).unwrap();
        let taken = lot.take(false).pop().expect("the row parked 50 ms ago");
        assert_eq!(taken.tickets.len(), 1, "only that one");
        lot.done(taken.tickets, true);
        assert_eq!((lot.len(), lot.oldest_round()), (1, Some(2)));
        assert_eq!(lot.supersede(&orders(), &[2], 3), 1);
        assert_eq!(lot.len(), 0);
    }
}
