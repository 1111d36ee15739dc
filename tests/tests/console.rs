//! The console's handlers, driven in-process over its router against real servers, a real
//! control store and (where rows are repaired) a real `concord run` replicating beside it:
//! logins, sessions and roles, CSRF and origin checks, every page, the actions through the
//! recovery engine, bulk actions, keyset pages and escaping of hostile keys.

use axum::http::StatusCode;
use concord_change::{Position, TableName, Value};
use concord_control::{ColumnDiff, ControlStore, Detector, Mismatch, MismatchKind};
use concord_e2e::console::{free_port, password, router, users_section, Client};
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn store(config: &ConcordConfig) -> ControlStore {
    let url = format!("sqlite://{}", config.control_db().display());
    ControlStore::connect(&url, &url).await.unwrap()
}

/// A record of a difference in `table` with key `key`, made up (no row behind it).
fn made_up(table: &TableName, key: Value) -> Mismatch {
    Mismatch {
        table: table.clone(),
        key: vec![("id".into(), key.clone())],
        kind: MismatchKind::ColumnsDiffer,
        columns: vec![ColumnDiff {
            column: "v".into(),
            source: Value::Text("source's".into()),
            target: Value::Text("target's".into()),
        }],
        position: Position::new("mysql-bin.000001", 4),
        detected_by: Detector::Verifier,
        expected: None,
        source_row: Some(vec![
            ("id".into(), key.clone()),
            ("v".into(), Value::Text("source's".into())),
        ]),
        target_row: Some(vec![
            ("id".into(), key),
            ("v".into(), Value::Text("target's".into())),
        ]),
    }
}

/// A config for `db` with the console on a free port; `more` goes into `[console]`.
fn console_config(db: &TestDb, more: &str, extra: &str) -> ConcordConfig {
    let mut config = ConcordConfig::new(db);
    config.extra = format!("{extra}\n{}", users_section(free_port(), more));
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_sessions_and_roles() {
    let db = TestDb::new("console_login").await;
    let config = console_config(&db, "login_attempts = 3", "");
    let app = router(&config.toml()).await;
    let mut c = Client::new(app.clone());

    let a = c.get("/mismatches?state=detected").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), "/login?next=%2Fmismatches%3Fstate%3Ddetected");
    let a = c.post("/mismatches/1/repair", &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "no session, no action");

    let a = c.login("olga", "not it").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("wrong name or password"));
    let a = c.login("nobody", "x").await;
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "an unknown name reads the same"
    );
    c.login("olga", "again not").await;
    c.login("olga", "still not").await;
    let a = c.login("olga", password("olga")).await;
    assert_eq!(
        a.status,
        StatusCode::TOO_MANY_REQUESTS,
        "three failures hold even the right password back: {}",
        a.body
    );
    let mut other = Client::new(app.clone());
    other.peer = "127.0.0.2:40000".parse().unwrap();
    let a = other.login("olga", password("olga")).await;
    assert_eq!(
        a.status,
        StatusCode::SEE_OTHER,
        "another address may log in"
    );
    let set = a
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(!set.contains("Secure"), "not behind TLS: {set}");
    let a = other.get("/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("olga") && a.body.contains("operator"));

    // A viewer reads every page and changes nothing.
    let mut v = Client::new(app.clone());
    v.peer = "127.0.0.3:40000".parse().unwrap();
    assert_eq!(
        v.login("vic", password("vic")).await.status,
        StatusCode::SEE_OTHER
    );
    for page in [
        "/",
        "/mismatches",
        "/failed",
        "/batch",
        "/checksums",
        "/audit",
    ] {
        assert_eq!(v.get(page).await.status, StatusCode::OK, "{page}");
    }
    for action in [
        "/mismatches/1/repair",
        "/mismatches/1/recheck",
        "/failed/1/retry",
        "/checksums",
    ] {
        let a = v.post(action, &[("reason", "r"), ("table", "x.y")]).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{action}: {}", a.body);
        assert!(a.body.contains("vic is a viewer"), "{}", a.body);
    }
    let a = v
        .post(
            "/mismatches/bulk",
            &[("do", "ignore:filter"), ("reason", "r")],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Operators may not close the circuit; admins may.
    let a = other.post("/circuit/close", &[("reason", "looked")]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("needs the admin role"), "{}", a.body);
    let mut admin = Client::new(app.clone());
    admin.peer = "127.0.0.4:40000".parse().unwrap();
    admin.login("ada", password("ada")).await;
    let a = admin
        .post("/circuit/close", &[("reason", "looked at it")])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let audit = admin.get("/audit?subject=circuit").await;
    assert!(
        audit.body.contains("looked at it") || audit.body.contains("No"),
        "{}",
        audit.body
    );

    // Logging out ends the session on the server, not only in the browser.
    let cookie = other.cookie.clone();
    let a = other.post("/logout", &[]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(other.cookie, None);
    other.cookie = cookie;
    assert_eq!(
        other.get("/").await.status,
        StatusCode::SEE_OTHER,
        "the old cookie is dead"
    );

    // A session unused past the idle timeout ends.
    let store = store(&config).await;
    sqlx::query("UPDATE console_sessions SET seen_ms = seen_ms - 3600000")
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(
        admin.get("/").await.status,
        StatusCode::SEE_OTHER,
        "idle for an hour"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn state_changing_requests_need_the_token_and_this_origin() {
    let db = TestDb::new("console_csrf").await;
    let config = console_config(&db, "", "");
    let store = store(&config).await;
    let table = TableName::new(db.name.clone(), "t");
    store
        .record_mismatch(&made_up(&table, Value::Int(1)))
        .await
        .unwrap();
    let id = store.mismatches(None, 1).await.unwrap()[0].id;
    let mut c = Client::new(router(&config.toml()).await);
    c.login("olga", password("olga")).await;
    let token = c.csrf.clone().expect("a page carries the token");
    let path = format!("/mismatches/{id}/ignore");
    let same = [
        ("origin", "http://console.test"),
        ("sec-fetch-site", "same-origin"),
    ];
    let reason = ("reason".to_string(), "known".to_string());

    let a = c
        .post_raw(&path, std::slice::from_ref(&reason), &same)
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("no CSRF token"), "{}", a.body);
    let wrong = [reason.clone(), ("csrf".into(), "0".repeat(64))];
    let a = c.post_raw(&path, &wrong, &same).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("not this session"), "{}", a.body);
    let good = [reason.clone(), ("csrf".into(), token.clone())];
    let a = c
        .post_raw(&path, &good, &[("origin", "https://evil.example")])
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.body.contains("Origin: https://evil.example"),
        "{}",
        a.body
    );
    let a = c
        .post_raw(&path, &good, &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("Sec-Fetch-Site: cross-site"), "{}", a.body);
    let open = store.mismatch(id).await.unwrap().unwrap();
    assert_eq!(open.state, "detected", "nothing refused changed anything");

    let a = c.post_raw(&path, &good, &same).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), format!("/mismatches/{id}?outcome=ignored"));
    let m = store.mismatch(id).await.unwrap().unwrap();
    assert_eq!(m.state, "ignored");
    let h = store
        .history(concord_control::Subject::Mismatch, id)
        .await
        .unwrap();
    assert_eq!(
        (h[0].actor.as_str(), h[0].reason.as_str()),
        ("olga", "known")
    );
    // A login form posted from elsewhere is refused too.
    let mut fresh = Client::new(c.app.clone());
    let a = fresh
        .post_raw(
            "/login",
            &[
                ("name".into(), "olga".into()),
                ("password".into(), password("olga").into()),
            ],
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_keys_render_as_text_and_pages_follow_their_keyset() {
    let db = TestDb::new("console_escape").await;
    let config = console_config(&db, "", "");
    let store = store(&config).await;
    let table = TableName::new(db.name.clone(), "t");
    let hostile = "<script>alert('x')</script>\"><img src=x>";
    let all: Vec<Mismatch> = (0..118).map(|i| made_up(&table, Value::Int(i))).collect();
    store.record_mismatches(&all).await.unwrap();
    store
        .record_mismatch(&made_up(&table, Value::Text(hostile.into())))
        .await
        .unwrap();
    store
        .record_mismatch(&made_up(&table, Value::Bytes(vec![0xff, 0x00, b'<'])))
        .await
        .unwrap();
    let mut c = Client::new(router(&config.toml()).await);
    c.login("vic", password("vic")).await;

    let list = c.get("/mismatches").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        !list.body.contains("<script>alert"),
        "a key is never markup"
    );
    assert!(!list.body.contains("<img src=x>"));
    assert!(
        list.body.contains("&#60;script&#62;alert(&#39;x&#39;)"),
        "it is shown as text"
    );
    assert!(
        list.body.contains("0xFF003C"),
        "bytes that are not text are hex"
    );
    let newest = store.mismatches(None, 200).await.unwrap();
    let hostile_id = newest
        .iter()
        .find(|m| m.key[0].1 == Value::Text(hostile.into()))
        .unwrap()
        .id;
    let detail = c.get(&format!("/mismatches/{hostile_id}")).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(!detail.body.contains("<script>alert") && !detail.body.contains("<img src=x>"));
    assert!(
        detail.body.contains("as recorded"),
        "no such table: the recorded rows are shown"
    );
    let search = c
        .get(&format!("/mismatches?key={}", urlencode("<script>")))
        .await;
    assert!(search.body.contains(&format!("/mismatches/{hostile_id}")));

    // Keyset pages: every record once, in order, 50 at a time.
    let mut seen = Vec::new();
    let mut next = Some(format!("/mismatches?table={}.t&limit=50", db.name));
    let mut pages = 0;
    while let Some(path) = next {
        pages += 1;
        assert!(pages <= 3, "120 records in pages of 50: {seen:?}");
        let page = c.get(&path.replace("&#38;", "&")).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        seen.extend(ids_in(&page.body));
        next = link(&page.body, "id=\"next\" href=\"");
    }
    let mut expected: Vec<i64> = newest.iter().map(|m| m.id).collect();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, expected, "120 records over three pages, none twice");
    let oldest = c
        .get(&format!(
            "/mismatches?table={}.t&sort=oldest&limit=5",
            db.name
        ))
        .await;
    let first: Vec<i64> = ids_in(&oldest.body);
    assert_eq!(
        first,
        expected.iter().rev().take(5).copied().collect::<Vec<_>>()
    );
    let bad = c.get("/mismatches?state=exploded").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("exploded"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_ignore_over_a_filter_audits_every_row_and_the_action() {
    let db = TestDb::new("console_bulk").await;
    let config = console_config(&db, "", "");
    let store = store(&config).await;
    let (t, u) = (
        TableName::new(db.name.clone(), "t"),
        TableName::new(db.name.clone(), "u"),
    );
    let rows: Vec<Mismatch> = (0..60)
        .map(|i| made_up(if i < 50 { &t } else { &u }, Value::Int(i)))
        .collect();
    store.record_mismatches(&rows).await.unwrap();
    let mut c = Client::new(router(&config.toml()).await);
    c.login("olga", password("olga")).await;
    let filter = format!("{}.t", db.name);
    let confirm = c
        .post(
            "/mismatches/bulk",
            &[
                ("do", "ignore:filter"),
                ("table", &filter),
                ("state", "detected"),
            ],
        )
        .await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    assert!(
        confirm.body.contains("Ignore 50 open records?"),
        "{}",
        confirm.body
    );
    assert!(confirm.body.contains(&filter));
    assert_eq!(
        store.count_mismatches(&Default::default()).await.unwrap(),
        vec![("detected".to_string(), 60)],
        "the confirmation changes nothing"
    );
    let started = c
        .post(
            "/mismatches/bulk",
            &[
                ("action", "ignore"),
                ("scope", "filter"),
                ("table", &filter),
                ("state", "detected"),
                ("confirm", "yes"),
                ("reason", "test data, dropped"),
            ],
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let job = started.location();
    assert!(job.starts_with("/bulk/"), "{job}");
    wait_for("the bulk job to finish", WAIT, || {
        let mut c = c.clone();
        let job = job.clone();
        async move {
            let p = c.get(&job).await;
            p.body.contains(">finished<").then_some(())
        }
    })
    .await;
    let p = c.get(&job).await;
    assert!(p.body.contains("id=\"succeeded\">50<"), "{}", p.body);
    let counts = store.count_mismatches(&Default::default()).await.unwrap();
    let mut counts = counts;
    counts.sort();
    assert_eq!(
        counts,
        vec![("detected".to_string(), 10), ("ignored".to_string(), 50)],
        "only the filter's records"
    );
    let audit = store
        .find_audit(
            &concord_control::AuditFilter {
                actor: Some("olga".into()),
                ..Default::default()
            },
            1000,
        )
        .await
        .unwrap();
    assert_eq!(audit.iter().filter(|a| a.subject == "mismatch").count(), 50);
    let bulk: Vec<_> = audit.iter().filter(|a| a.subject == "bulk").collect();
    assert_eq!(bulk.len(), 1, "one entry for the bulk action itself");
    assert!(bulk[0].history.reason.contains("test data, dropped"));
    let csv = c.get("/audit.csv?actor=olga").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(
        csv.body.lines().count(),
        1 + 51,
        "a header and a line per entry"
    );

    // Selected records only, and an ignore needs its reason.
    let some = store.mismatches(None, 3).await.unwrap();
    let ids: Vec<String> = some.iter().map(|m| m.id.to_string()).collect();
    let mut pairs = vec![
        ("action", "ignore"),
        ("scope", "selected"),
        ("confirm", "yes"),
    ];
    for id in &ids {
        pairs.push(("id", id));
    }
    let again = c.post("/mismatches/bulk", &pairs).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "without a reason it asks again"
    );
    assert!(
        again.body.contains("Ignore 3 open records?"),
        "{}",
        again.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repair_from_the_console_fixes_the_target_row() {
    let db = TestDb::new("console_repair").await;
    db.both("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(200) NOT NULL)")
        .await;
    let config = console_config(
        &db,
        "",
        "[verifier]\ndelay = \"1s\"\n\n[recovery]\ngrace = \"1s\"\nauto_repair = false\nevery = \"200ms\"\n",
    );
    // The same rows on both sides, as a copy made before concord started would be.
    db.both("INSERT INTO `{db}`.t VALUES (1, 'right'), (2, 'also right')")
        .await;
    let concord = Concord::start(&config).await;
    db.target("UPDATE `{db}`.t SET v = 'wrong' WHERE id = 1")
        .await;
    let mut c = Client::new(router(&config.toml()).await);
    c.login("olga", password("olga")).await;
    // The checksum started from the console finds the difference.
    let table = format!("{}.t", db.name);
    let a = c.post("/checksums", &[("table", &table)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let store = store(&config).await;
    let record = wait_for("a record waiting for a person", WAIT, || {
        let store = store.clone();
        async move {
            let m = store.mismatches(None, 10).await.ok()?;
            m.into_iter().find(|m| m.state == "needs_manual")
        }
    })
    .await;
    let detail = c.get(&format!("/mismatches/{}", record.id)).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(detail.body.contains("Rows (now)"), "{}", detail.body);
    assert!(detail.body.contains(">right<") && detail.body.contains(">wrong<"));
    assert!(
        detail.body.contains("class=\"differs\""),
        "the differing column is marked"
    );
    assert!(
        detail.body.contains("UPDATE") || detail.body.contains("INSERT"),
        "the plan: {}",
        detail.body
    );
    for page in [
        "/",
        "/failed",
        "/batch",
        "/checksums",
        "/audit",
        "/audit.csv",
    ] {
        assert_eq!(c.get(page).await.status, StatusCode::OK, "{page}");
    }
    let a = c
        .post(&format!("/mismatches/{}/repair", record.id), &[])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(
        a.location(),
        format!("/mismatches/{}?outcome=repaired", record.id)
    );
    db.assert_same("t", "id, v").await;
    let m = store.mismatch(record.id).await.unwrap().unwrap();
    assert_eq!(m.state, "repaired");
    let shown = c.get(&a.location()).await;
    assert!(
        shown.body.contains("Repaired: the source"),
        "{}",
        shown.body
    );
    assert!(
        shown.body.contains("<td>olga</td>"),
        "the history names the operator"
    );
    let runs = c.get("/checksums").await;
    assert!(
        runs.body.contains(&table),
        "the run is listed: {}",
        runs.body
    );
    let audit = c.get("/audit?actor=olga").await;
    assert!(audit.body.contains("checksum") && audit.body.contains(&format!("table {table}")));
    // The overview, served here apart from the `concord run` process, shows that
    // process's heartbeat and its rates from what it published in the control store.
    db.source("INSERT INTO `{db}`.t VALUES (3, 'replicated')")
        .await;
    let overview = wait_for("the run's published counters on the overview", WAIT, || {
        let mut c = c.clone();
        async move {
            let p = c.get("/").await;
            // Rates come from samples up to 5 s old; the heartbeat is read each time.
            (p.body.contains("concord run")
                && p.body.contains("changes applied")
                && p.body.contains("/s</td>"))
            .then_some(p)
        }
    })
    .await;
    assert!(
        !overview.body.contains("no running process reports it"),
        "{}",
        overview.body
    );
    drop(concord);
}

/// The console writes to the target beside the replicator: a bulk repair of 200 records
/// while a writer keeps changing the same rows on the source never writes an older row
/// over a newer one, and the target ends equal to the source.
#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_repair_racing_a_writer_never_writes_an_older_row() {
    use concord_e2e::race::{assert_never_older, hot_table, HotWriter};
    let db = TestDb::new("console_race").await;
    hot_table(&db, 200).await;
    let config = console_config(
        &db,
        "",
        "[checksum]\nchunk_time = \"20ms\"\n\n[recovery]\ngrace = \"1s\"\nauto_repair = false\n\
         every = \"200ms\"\n",
    );
    let concord = Concord::start(&config).await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    db.target("UPDATE `{db}`.hot SET payload = 'corrupt'").await;
    let mut c = Client::new(router(&config.toml()).await);
    c.login("olga", password("olga")).await;
    let table = format!("{}.hot", db.name);
    let a = c.post("/checksums", &[("table", &table)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let store = store(&config).await;
    wait_for("200 records waiting for a person", WAIT, || {
        let store = store.clone();
        async move {
            let counts = store.count_mismatches(&Default::default()).await.ok()?;
            (counts == vec![("needs_manual".to_string(), 200)]).then_some(())
        }
    })
    .await;

    let writer = HotWriter::start(&db, 200);
    wait_for("the writer to be under way", WAIT, || {
        let n = writer.updates();
        async move { (n >= 10).then_some(()) }
    })
    .await;
    let at_start = writer.updates();
    let started = c
        .post(
            "/mismatches/bulk",
            &[
                ("action", "repair"),
                ("scope", "filter"),
                ("table", &table),
                ("state", "needs_manual"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let id: i64 = started
        .location()
        .trim_start_matches("/bulk/")
        .parse()
        .unwrap();
    let job = wait_for("the bulk repair to end", WAIT, || {
        let store = store.clone();
        async move {
            store
                .bulk_job(id)
                .await
                .ok()?
                .filter(|j| j.state != "running")
        }
    })
    .await;
    let updates = writer.stop().await;
    assert_eq!((job.state.as_str(), job.done), ("finished", 200), "{job:?}");
    assert!(
        updates > at_start,
        "the writer wrote while the repairs ran ({at_start} updates before, {updates} after)"
    );
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(30))
        .await;
    db.assert_same("hot", "*").await;

    use sqlx::Row;
    let repairs: Vec<(String, String)> = sqlx::query(
        "SELECT before_image, after_image FROM recovery_history \
         WHERE statement IS NOT NULL ORDER BY id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_never_older(&repairs);
    drop(concord);
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_proxy_the_header_names_the_user_only_from_the_proxy() {
    let db = TestDb::new("console_header").await;
    let mut config = ConcordConfig::new(&db);
    config.extra = format!(
        "\n[console]\nlisten = \"127.0.0.1:{}\"\nauth = \"header\"\n\n[console.header]\n\
         trusted_proxies = [\"127.0.0.1\"]\ngroups_header = \"X-Forwarded-Groups\"\n\n\
         [console.header.roles]\nops = \"operator\"\nsre = \"admin\"\nbob = \"viewer\"\n",
        free_port()
    );
    let app = router(&config.toml()).await;
    let mut c = Client::new(app.clone());
    c.peer = "10.9.9.9:5000".parse().unwrap();
    c.headers = vec![
        ("x-forwarded-user".into(), "mallory".into()),
        ("x-forwarded-groups".into(), "sre".into()),
    ];
    let a = c.get("/").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "not from the proxy");
    assert!(a.body.contains("10.9.9.9"));

    let mut c = Client::new(app.clone());
    let a = c.get("/").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "the proxy named nobody");
    c.headers = vec![("x-forwarded-user".into(), "eve".into())];
    assert_eq!(
        c.get("/").await.status,
        StatusCode::FORBIDDEN,
        "eve has no role"
    );
    c.headers = vec![
        ("x-forwarded-user".into(), "bob".into()),
        ("x-forwarded-groups".into(), "ops, other".into()),
    ];
    let a = c.get("/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.body.contains("operator"),
        "the group's role is higher than the user's"
    );
    let a = c.post("/circuit/close", &[("reason", "r")]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    c.headers = vec![
        ("x-forwarded-user".into(), "carol".into()),
        ("x-forwarded-groups".into(), "sre".into()),
    ];
    c.get("/").await;
    let a = c.post("/circuit/close", &[("reason", "r")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let a = c
        .post_raw("/circuit/close", &[("reason".into(), "r".into())], &[])
        .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "the token is needed here too"
    );
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The record ids a list page links to, in its order.
fn ids_in(body: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for row in body.split("<tr class=").skip(1) {
        if let Some(at) = row.find("<td><a href=\"/mismatches/") {
            let rest = &row[at + "<td><a href=\"/mismatches/".len()..];
            if let Some(end) = rest.find('"') {
                if let Ok(id) = rest[..end].parse() {
                    out.push(id);
                }
            }
        }
    }
    out
}

fn link(body: &str, marker: &str) -> Option<String> {
    let at = body.find(marker)? + marker.len();
    let end = body[at..].find('"')?;
    Some(body[at..at + end].to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_jobs_start_and_cancel_from_the_console() {
    let db = TestDb::new("console_batch").await;
    db.both("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(200) NOT NULL)")
        .await;
    let rows: Vec<String> = (1..=200).map(|i| format!("({i}, 'row {i}')")).collect();
    db.both(&format!(
        "INSERT INTO `{{db}}`.t VALUES {}",
        rows.join(", ")
    ))
    .await;
    let config = console_config(&db, "", "[checksum]\nchunk_time = \"20ms\"\n");
    let concord = Concord::start(&config).await;
    db.target("UPDATE `{db}`.t SET v = 'wrong' WHERE id IN (5, 50, 150)")
        .await;
    let mut c = Client::new(router(&config.toml()).await);
    c.login("olga", password("olga")).await;
    let table = format!("{}.t", db.name);

    let bad = c
        .post("/batch", &[("table", &table), ("pk_from", "x")])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("not a whole number"), "{}", bad.body);
    let both = c
        .post(
            "/batch",
            &[("table", &table), ("pk_from", "1"), ("since", "1h")],
        )
        .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);

    // A dry run finds the rows and writes nothing; the real job repairs exactly them.
    let a = c
        .post(
            "/batch",
            &[
                ("table", &table),
                ("pk_from", "1"),
                ("pk_to", "100"),
                ("dry_run", "1"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let store = store(&config).await;
    let done = |dry: bool| {
        let store = store.clone();
        async move {
            let jobs = store.batch_jobs(10).await.ok()?;
            jobs.into_iter()
                .find(|j| j.dry_run == dry && j.state == "done")
        }
    };
    let dry = wait_for("the dry run to finish", WAIT, || done(true)).await;
    assert_eq!((dry.checked, dry.differing, dry.repaired), (100, 2, 0));
    assert_eq!(db.count(true, "t").await, 200, "the dry run wrote nothing");
    let a = c
        .post(
            "/batch",
            &[("table", &table), ("pk_from", "1"), ("pk_to", "100")],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let job = wait_for("the job to finish", WAIT, || done(false)).await;
    assert_eq!(
        (job.differing, job.repaired, job.actor.as_str()),
        (2, 2, "olga")
    );
    let page = c.get("/batch").await;
    assert!(page.body.contains("keys 1 to 100"), "{}", page.body);
    let wrong = {
        use mysql_async::prelude::Queryable;
        let mut conn = db.servers.target_conn().await;
        conn.query::<i64, _>(format!("SELECT id FROM `{}`.t WHERE v = 'wrong'", db.name))
            .await
            .unwrap()
    };
    assert_eq!(
        wrong,
        vec![150],
        "the range's rows repaired, the one outside left"
    );

    // A job another process runs is cancelled by its mark; a finished one cannot be.
    let (other, _) = store
        .start_batch(&concord_control::BatchRequest {
            table: TableName::new(db.name.clone(), "t"),
            pk_from: Some("101".into()),
            pk_to: None,
            since_text: None,
            until_text: None,
            window: None,
            dry_run: false,
            actor: "cli".into(),
        })
        .await
        .unwrap();
    let a = c.post(&format!("/batch/{}/cancel", other.id), &[]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let cancelled = store.batch_job(other.id).await.unwrap().unwrap();
    assert_eq!(cancelled.state, "cancelled");
    store.save_batch(&other, "done", None).await.unwrap();
    assert_eq!(
        store.batch_job(other.id).await.unwrap().unwrap().state,
        "cancelled",
        "the job's process cannot overwrite the cancel"
    );
    let again = c.post(&format!("/batch/{}/cancel", job.id), &[]).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    let audit = c.get("/audit?subject=batch_job").await;
    assert!(
        audit.body.contains("cancel") && audit.body.contains("start"),
        "{}",
        audit.body
    );
    drop(concord);
}

/// A batch recovery by copying, from the console: the snapshot job is queued for the
/// running replicator, which copies the range again — deleting the target row the source
/// lacks — while rows outside the range stay as they are; the batch page and the overview
/// show the job, the audit log who asked.
#[tokio::test(flavor = "multi_thread")]
async fn a_range_is_copied_again_from_the_console() {
    let db = TestDb::new("console_copy").await;
    db.both("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(200) NOT NULL)")
        .await;
    let rows: Vec<String> = (1..=300).map(|i| format!("({i}, 'row {i}')")).collect();
    db.both(&format!(
        "INSERT INTO `{{db}}`.t VALUES {}",
        rows.join(", ")
    ))
    .await;
    let config = console_config(&db, "", "");
    let concord = Concord::start(&config).await;
    db.target("UPDATE `{db}`.t SET v = 'wrong' WHERE id IN (10, 20, 250)")
        .await;
    db.target("INSERT INTO `{db}`.t VALUES (1000, 'only on the target')")
        .await;
    let mut c = Client::new(router(&config.toml()).await);
    c.login("vic", password("vic")).await;
    let table = format!("{}.t", db.name);
    let refused = c
        .post("/batch", &[("table", &table), ("method", "copy")])
        .await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "a viewer cannot copy"
    );
    let mut c = Client::new(router(&config.toml()).await);
    c.login("olga", password("olga")).await;
    let a = c
        .post(
            "/batch",
            &[
                ("table", &table),
                ("pk_from", "1"),
                ("method", "copy"),
                ("pk_to", "100"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let store = store(&config).await;
    let job = wait_for("the copy to be done", WAIT, || {
        let store = store.clone();
        async move {
            store
                .recent_snapshots(5)
                .await
                .ok()?
                .into_iter()
                .find(|j| j.state == "done")
        }
    })
    .await;
    assert_eq!((job.rows_copied, job.actor.as_str()), (100, "olga"));
    let wrong = {
        use mysql_async::prelude::Queryable;
        let mut conn = db.servers.target_conn().await;
        conn.query::<i64, _>(format!(
            "SELECT id FROM `{}`.t WHERE v = 'wrong' OR id = 1000 ORDER BY id",
            db.name
        ))
        .await
        .unwrap()
    };
    assert_eq!(wrong, vec![250, 1000], "the range copied, the rest left");
    // The whole table copied again: the planted row goes too.
    let a = c
        .post("/batch", &[("table", &table), ("method", "copy")])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    wait_for("the table to equal the source", WAIT, || async {
        (db.rows(false, "t", "*").await == db.rows(true, "t", "*").await).then_some(())
    })
    .await;
    let page = c.get("/batch").await;
    assert!(
        page.body.contains("keys 1 to 100") && page.body.contains("the whole table"),
        "{}",
        page.body
    );
    let overview = c.get("/").await;
    assert!(overview.body.contains("Snapshots"), "{}", overview.body);
    let audit = c.get("/audit?subject=snapshot_job").await;
    assert!(audit.body.contains("copied again"), "{}", audit.body);
    drop(concord);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_events_are_shown_and_settled_from_the_console() {
    let db = TestDb::new("console_failed").await;
    let config = console_config(&db, "", "");
    let store = store(&config).await;
    let table = TableName::new(db.name.clone(), "t");
    store
        .record_failed(&concord_control::FailedEvent {
            position: Position::new("mysql-bin.000042", 1234),
            row_index: 7,
            table: table.clone(),
            op: "insert".into(),
            reason: concord_control::FailureReason::Rejected,
            error: "Data too long for column 'v' at row 1 <b>bold</b>".into(),
            event: r#"{"not":"a change"}"#.into(),
        })
        .await
        .unwrap();
    let id = store.failed_events(None, 1).await.unwrap()[0].id;
    let mut c = Client::new(router(&config.toml()).await);
    c.login("olga", password("olga")).await;
    let list = c.get("/failed").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&format!("/failed/{id}")));
    assert!(!list.body.contains("<b>bold</b>"), "errors are text too");
    let detail = c.get(&format!("/failed/{id}")).await;
    assert!(
        detail.body.contains("mysql-bin.000042:1234 row 7"),
        "{}",
        detail.body
    );
    assert!(
        detail.body.contains("a change"),
        "the stored change is shown"
    );
    let retry = c.post(&format!("/failed/{id}/retry"), &[]).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    assert!(retry.body.contains("Nothing was done"), "{}", retry.body);
    let no_reason = c
        .post(&format!("/failed/{id}/ignore"), &[("reason", " ")])
        .await;
    assert_eq!(no_reason.status, StatusCode::BAD_REQUEST);
    let ignored = c
        .post(&format!("/failed/{id}/ignore"), &[("reason", "a test row")])
        .await;
    assert_eq!(ignored.status, StatusCode::SEE_OTHER);
    assert_eq!(
        store.failed_event(id).await.unwrap().unwrap().status,
        "ignored"
    );
    let open = c.get("/failed").await;
    assert!(
        !open.body.contains(&format!("/failed/{id}\"")),
        "only open events by default"
    );
    let all = c.get("/failed?status=all").await;
    assert!(all.body.contains(&format!("/failed/{id}\"")));
    assert_eq!(
        c.get("/failed/1/explode").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}
