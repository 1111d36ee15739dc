//! What the web console keeps and reads, on both backends (a SQLite file, and a real
//! MariaDB server — the target started by `scripts/services.sh`): sessions, bulk jobs
//! with their audit rows, heartbeats, the audit search and the list orders' keysets.

use concord_change::{Position, TableName};
use concord_control::{
    AuditFilter, ControlStore, FailedEvent, FailedFilter, FailureReason, ListOrder, Mismatch,
    MismatchFilter, MismatchState, Move, SavedPosition, Subject,
};
use sqlx::Connection;

mod common;
use common::record;

async fn exercise(store: ControlStore) {
    // Sessions: found by digest only, touched, ended, and ended when idle.
    store
        .create_session("h1", "ada", "admin", "tok")
        .await
        .unwrap();
    let s = store.session("h1").await.unwrap().expect("the session");
    assert_eq!(
        (s.user.as_str(), s.role.as_str(), s.csrf.as_str()),
        ("ada", "admin", "tok")
    );
    assert!(
        store
            .create_session("h1", "eve", "admin", "x")
            .await
            .is_err(),
        "one row per token"
    );
    store.touch_session("h1").await.unwrap();
    store
        .create_session("h2", "bob", "viewer", "t2")
        .await
        .unwrap();
    store.end_session("h2").await.unwrap();
    assert_eq!(store.session("h2").await.unwrap(), None);
    assert_eq!(store.end_idle_sessions(s.seen_ms - 1).await.unwrap(), 0);
    assert_eq!(store.end_idle_sessions(i64::MAX).await.unwrap(), 1);

    // Records of two tables; the list orders page by their own keys.
    let (t, u) = (TableName::new("shop", "t"), TableName::new("shop", "u"));
    let all: Vec<Mismatch> = (0..30)
        .map(|i| record(if i < 20 { &t } else { &u }, i))
        .collect();
    store.record_mismatches(&all).await.unwrap();
    let by_table = store
        .count_mismatches_by_table(&MismatchFilter::default())
        .await
        .unwrap();
    assert_eq!(by_table.len(), 2);
    assert!(by_table.contains(&(t.clone(), 20)) && by_table.contains(&(u.clone(), 10)));
    for order in [ListOrder::Newest, ListOrder::Oldest, ListOrder::LastSeen] {
        let mut f = MismatchFilter {
            order,
            ..MismatchFilter::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = store.find_mismatches(&f, 7).await.unwrap();
            let Some(last) = page.last() else { break };
            match order {
                ListOrder::Newest => f.before_id = Some(last.id),
                ListOrder::Oldest => f.after_id = Some(last.id),
                ListOrder::LastSeen => f.seen_before = Some((last.last_seen_ms, last.id)),
            }
            seen.extend(page.iter().map(|m| m.id));
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 30, "{order:?}: every record once: {seen:?}");
        if order == ListOrder::Oldest {
            assert_eq!(seen, sorted);
        }
    }

    // A bulk job and its audit row, in one step.
    let id = store
        .start_bulk(
            "olga",
            "ignore",
            "open records matching table=shop.t",
            "known",
            20,
        )
        .await
        .unwrap();
    let mut job = store.bulk_job(id).await.unwrap().expect("the job");
    assert_eq!((job.total, job.state.as_str()), (20, "running"));
    job.done = 20;
    job.succeeded = 19;
    job.failed = 1;
    job.state = "finished".into();
    store.save_bulk(&job).await.unwrap();
    let again = store.bulk_job(id).await.unwrap().unwrap();
    assert_eq!(
        (again.done, again.succeeded, again.state.as_str()),
        (20, 19, "finished")
    );
    assert_eq!(store.bulk_jobs(10).await.unwrap()[0].id, id);
    let second = store
        .start_bulk("olga", "repair", "records 1", "", 1)
        .await
        .unwrap();
    assert!(second > id, "each job its own id");
    // A running job whose console stopped is ended; a finished one is left alone.
    assert_eq!(store.end_stalled_bulk_jobs(0).await.unwrap(), 0);
    assert_eq!(store.end_stalled_bulk_jobs(i64::MAX).await.unwrap(), 1);
    let stalled = store.bulk_job(second).await.unwrap().unwrap();
    assert_eq!(stalled.state, "interrupted");
    assert!(stalled.error.unwrap().contains("start it again"));
    assert_eq!(store.bulk_job(id).await.unwrap().unwrap().state, "finished");

    // The audit search: a record's move joined with its table and key, the bulk row.
    let m = store.mismatches(Some(&t), 1).await.unwrap().remove(0);
    let mv = Move {
        actor: "olga".into(),
        reason: "known".into(),
        ..Move::default()
    };
    assert!(store
        .move_mismatch(m.id, MismatchState::Detected, MismatchState::Ignored, &mv)
        .await
        .unwrap());
    store
        .audit(Subject::Circuit, 0, "ada", "closed", "looked")
        .await
        .unwrap();
    let olga = store
        .find_audit(
            &AuditFilter {
                actor: Some("olga".into()),
                ..AuditFilter::default()
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(olga.len(), 3, "two bulk jobs and one move");
    let moved = olga.iter().find(|a| a.subject == "mismatch").unwrap();
    assert_eq!(moved.table.as_ref(), Some(&t));
    assert!(
        moved.key.as_deref().unwrap().contains("\"int\""),
        "{:?}",
        moved.key
    );
    assert_eq!(moved.history.to_state, "ignored");
    let of_table = store
        .find_audit(
            &AuditFilter {
                table: Some(t.clone()),
                ..AuditFilter::default()
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(of_table.len(), 1);
    let circuit = store
        .find_audit(
            &AuditFilter {
                subject: Some("circuit".into()),
                to_state: Some("closed".into()),
                ..AuditFilter::default()
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        (circuit.len(), circuit[0].history.actor.as_str()),
        (1, "ada")
    );
    let older = store
        .find_audit(
            &AuditFilter {
                before_id: Some(circuit[0].history.id),
                ..AuditFilter::default()
            },
            100,
        )
        .await
        .unwrap();
    assert!(older.iter().all(|a| a.history.id < circuit[0].history.id));

    // Heartbeats: the worker's, the capture's and the verifier's positions.
    store
        .beat("recovery", "pod-1", "worker pass")
        .await
        .unwrap();
    store
        .beat("recovery", "pod-1", "worker pass")
        .await
        .unwrap();
    store
        .save_capture_position(
            "cap",
            &SavedPosition {
                position: Position::new("mysql-bin.000003", 99),
                resume_from: None,
            },
        )
        .await
        .unwrap();
    let beats = store.heartbeats().await.unwrap();
    assert!(beats
        .iter()
        .any(|b| b.role == "recovery" && b.name == "pod-1"));
    assert!(beats
        .iter()
        .any(|b| b.role == "capture" && b.detail == "mysql-bin.000003:99"));
    assert_eq!(beats.iter().filter(|b| b.role == "recovery").count(), 1);
    // A process's published counters: the newest per process, only while recent.
    assert!(store.published_counters(0).await.unwrap().is_empty());
    store
        .publish(
            "concord replicate",
            "pod-2:7",
            "5 changes applied",
            "{\"a\":1}",
        )
        .await
        .unwrap();
    store
        .publish(
            "concord replicate",
            "pod-2:7",
            "6 changes applied",
            "{\"a\":2}",
        )
        .await
        .unwrap();
    let published = store.published_counters(0).await.unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(
        (published[0].0.as_str(), published[0].2.as_str()),
        ("pod-2:7", "{\"a\":2}")
    );
    assert!(store
        .published_counters(published[0].1 + 1)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .heartbeats()
        .await
        .unwrap()
        .iter()
        .any(|b| b.role == "concord replicate" && b.detail == "6 changes applied"));

    // Failed events by status.
    store
        .record_failed(&FailedEvent {
            position: Position::new("mysql-bin.000009", 777),
            row_index: 0,
            table: t.clone(),
            op: "insert".into(),
            reason: FailureReason::Rejected,
            error: "Data too long".into(),
            event: "{}".into(),
        })
        .await
        .unwrap();
    let open = FailedFilter {
        status: Some("open".into()),
        ..FailedFilter::default()
    };
    assert_eq!(store.find_failed(&open, 10).await.unwrap().len(), 1);
    let closed = FailedFilter {
        status: Some("ignored".into()),
        table: Some(t.clone()),
        before_id: Some(i64::MAX),
    };
    assert!(store.find_failed(&closed, 10).await.unwrap().is_empty());
    assert!(store.checksum_runs(true, 10).await.unwrap().is_empty());
    assert!(store.batch_jobs(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_console_store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    exercise(ControlStore::connect(&url, &url).await.unwrap()).await;
}

#[tokio::test]
async fn the_console_store_on_mariadb() {
    let server = std::env::var("CONCORD_TEST_TARGET")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3308".into());
    let db = format!("concord_console_{}", std::process::id());
    let mut admin = sqlx::MySqlConnection::connect(&server)
        .await
        .expect("target server is not running: scripts/services.sh start");
    for sql in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
    ] {
        sqlx::query(&sql).execute(&mut admin).await.unwrap();
    }
    let url = format!("{server}/{db}");
    exercise(ControlStore::connect(&url, &url).await.unwrap()).await;
    sqlx::query(&format!("DROP DATABASE {db}"))
        .execute(&mut admin)
        .await
        .unwrap();
}
