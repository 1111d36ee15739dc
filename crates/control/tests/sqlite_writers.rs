//! Two processes writing one SQLite control store (as `concord run` and `concord recovery`
//! do): a move reads the records' states and then writes them, and must wait for the other
//! writer rather than fail with "database is locked" when that one committed in between.
//! And a store that a newer concord migrated further still opens (a rollback).

use concord_change::TableName;
use concord_control::{ControlStore, Mismatch, MismatchState, Move};

mod common;
use common::record;

/// Moves records `ids` to `rechecking` and back, `rounds` times, beating between rounds.
async fn churn(store: ControlStore, name: &str, ids: Vec<i64>, rounds: usize) {
    let mv = Move {
        actor: name.into(),
        reason: "churn".into(),
        ..Move::default()
    };
    let (detected, rechecking) = (MismatchState::Detected, MismatchState::Rechecking);
    for round in 0..rounds {
        for (from, to) in [(detected, rechecking), (rechecking, detected)] {
            let moves: Vec<_> = ids.iter().map(|&id| (id, from, to, mv.clone())).collect();
            let moved = store
                .move_mismatches(&moves)
                .await
                .unwrap_or_else(|e| panic!("{name}, round {round}: {e}"));
            assert!(moved.iter().all(|m| *m), "{name}: every record moved");
        }
        store
            .beat("recovery", name, "churn")
            .await
            .unwrap_or_else(|e| panic!("{name}'s heartbeat, round {round}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_moving_records_wait_for_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let one = ControlStore::connect(&url, &url).await.unwrap();
    // A second pool is what another process has: its own connection to the file.
    let two = ControlStore::connect(&url, &url).await.unwrap();
    let t = TableName::new("shop", "t");
    let all: Vec<Mismatch> = (0..40).map(|i| record(&t, i)).collect();
    assert!(one
        .record_mismatches(&all)
        .await
        .unwrap()
        .iter()
        .all(|n| *n));
    let ids: Vec<i64> = one
        .mismatches_in_state_since(MismatchState::Detected, i64::MAX, 100)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids.len(), 40);
    let (a, b) = ids.split_at(20);
    let rounds = 150;
    let first = tokio::spawn(churn(one.clone(), "one", a.to_vec(), rounds));
    let second = tokio::spawn(churn(two, "two", b.to_vec(), rounds));
    first.await.unwrap();
    second.await.unwrap();
    let history = one
        .history(concord_control::Subject::Mismatch, ids[0])
        .await
        .unwrap();
    assert_eq!(history.len(), 2 * rounds, "each move has its history row");
}

/// A rollback of the binary: a store that a newer concord migrated further (a migration
/// this build does not know) is opened and used, not refused.
#[tokio::test]
async fn a_store_migrated_by_a_newer_version_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let store = ControlStore::connect(&url, &url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
         execution_time) VALUES (99990101000000, 'from a newer concord', 1, X'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    drop(store);
    let again = ControlStore::connect(&url, &url)
        .await
        .expect("an older binary opens a newer store");
    let t = TableName::new("shop", "t");
    assert_eq!(
        again.record_mismatches(&[record(&t, 1)]).await.unwrap(),
        [true]
    );
}
