//! The console in a real browser: headless Chromium (Debian's `chromium`) driven through
//! `chromedriver` over WebDriver, against a real `concord run` replicating between the real
//! servers. An operator logs in, filters the mismatches, opens a diff, repairs a row (the
//! target is fixed in the target database) and bulk-ignores 50 with a reason; a viewer's
//! repair and a form without its CSRF token are refused; a key holding a script renders as
//! text; the audit log shows who did it. Screenshots of the overview, the list, the
//! detail and the audit log are kept as artifacts
//! (`$CONCORD_SCREENSHOTS`, else `console-screenshots/` under the build's target dir).

use concord_e2e::console::{free_port, password, users_section};
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);
const HOSTILE: &str = "<script>alert('pk')</script>\"'><img src=x onerror=alert(1)>";

struct Driver {
    child: tokio::process::Child,
    port: u16,
}

impl Driver {
    async fn start() -> Self {
        let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        assert!(
            std::path::Path::new(&bin).exists(),
            "{bin} is missing: the browser tests need Debian's chromium and chromium-driver \
             (apt-get install chromium chromium-driver; .ci/run installs them)"
        );
        let port = free_port();
        let child = tokio::process::Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        wait_for("chromedriver to listen", WAIT, || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        Self { child, port }
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"],
            }),
        );
        ClientBuilder::native()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromium session")
    }
}

fn shots_dir() -> PathBuf {
    let dir = std::env::var("CONCORD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
                .join("console-screenshots")
        });
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn shot(b: &Client, name: &str) {
    let png = b.screenshot().await.expect("a screenshot");
    let path = shots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

async fn text(b: &Client, css: &str) -> String {
    b.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} on the page: {e}"))
        .text()
        .await
        .expect("its text")
}

async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} on the page: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

async fn type_in(b: &Client, css: &str, keys: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} on the page: {e}"))
        .send_keys(keys)
        .await
        .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
}

/// Waits until the browser's address satisfies `ok` (a form's answer has loaded).
async fn wait_url(b: &Client, what: &str, ok: impl Fn(&url::Url) -> bool) {
    wait_for(what, WAIT, || {
        let b = b.clone();
        let ok = &ok;
        async move { b.current_url().await.ok().filter(|u| ok(u)).map(|_| ()) }
    })
    .await;
}

async fn login(b: &Client, base: &str, name: &str) {
    b.goto(&format!("{base}/login")).await.unwrap();
    type_in(b, "#name", name).await;
    type_in(b, "#password", password(name)).await;
    click(b, "#login").await;
    assert_eq!(text(b, "#user").await, name);
}

/// Submits a hand-made form from the page (what a forged request would be): `csrf`
/// decides whether it carries the page's token.
async fn forge(b: &Client, action: &str, csrf: bool) {
    let script = r#"
        const [action, withToken] = arguments;
        const f = document.createElement("form");
        f.method = "post"; f.action = action;
        const add = (n, v) => { const i = document.createElement("input");
            i.type = "hidden"; i.name = n; i.value = v; f.appendChild(i); };
        add("reason", "forged");
        if (withToken) add("csrf", document.querySelector("input[name=csrf]").value);
        document.body.appendChild(f); f.submit();"#;
    b.execute(script, vec![action.into(), csrf.into()])
        .await
        .expect("the form is sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_repairs_and_bulk_ignores_in_a_real_browser() {
    let db = TestDb::new("console_browser").await;
    db.both("CREATE TABLE `{db}`.t (id VARCHAR(100) PRIMARY KEY, v VARCHAR(200) NOT NULL)")
        .await;
    let mut rows = vec![
        "('r1', 'right')".to_owned(),
        format!("({}, 'hostile')", quote(HOSTILE)),
    ];
    rows.extend((0..50).map(|i| format!("('bulk-{i:02}', 'row {i}')")));
    db.both(&format!(
        "INSERT INTO `{{db}}`.t VALUES {}",
        rows.join(", ")
    ))
    .await;
    let port = free_port();
    let mut config = ConcordConfig::new(&db);
    config.extra = format!(
        "\n[recovery]\ngrace = \"1s\"\nauto_repair = false\nevery = \"200ms\"\n\n\
         [checksum]\nchunk_time = \"20ms\"\n{}",
        users_section(port, "")
    );
    let concord = Concord::start(&config).await;
    db.target("UPDATE `{db}`.t SET v = 'wrong' WHERE id = 'r1' OR id LIKE 'bulk-%'")
        .await;
    db.target(&format!(
        "UPDATE `{{db}}`.t SET v = 'tampered' WHERE id = {}",
        quote(HOSTILE)
    ))
    .await;
    let mut check = Concord::spawn(
        &config.sibling(),
        &["checksum", "--table", &format!("{}.t", db.name)],
    )
    .await;
    assert_eq!(
        check.wait_exit(WAIT).await,
        Some(3),
        "the checksum records the 52 rows"
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the console to answer", WAIT, || async move {
        concord_e2e::concord::http_get(port, "/login")
            .await
            .map(|_| ())
    })
    .await;

    let driver = Driver::start().await;
    let b = driver.browser().await;
    login(&b, &base, "olga").await;
    wait_for("the records to wait for a person", WAIT, || {
        let b = b.clone();
        let base = base.clone();
        async move {
            b.goto(&format!("{base}/mismatches")).await.ok()?;
            text(&b, "#counts")
                .await
                .contains("needs_manual 52")
                .then_some(())
        }
    })
    .await;
    b.goto(&format!("{base}/")).await.unwrap();
    assert!(text(&b, "#tables").await.contains("52"));
    shot(&b, "overview").await;

    // Filter the list to one key, open its diff, repair it.
    b.goto(&format!("{base}/mismatches")).await.unwrap();
    type_in(&b, "#key", "r1").await;
    click(&b, "#apply").await;
    wait_url(&b, "the filtered list", |u| u.as_str().contains("key=r1")).await;
    let listed = text(&b, "#records tbody").await;
    assert!(
        listed.contains("id=r1") && !listed.contains("bulk-"),
        "{listed}"
    );
    shot(&b, "list").await;
    click(&b, "#records td.key a").await;
    let diff = text(&b, "#diff").await;
    assert!(diff.contains("right") && diff.contains("wrong"), "{diff}");
    assert!(text(&b, "#plan").await.contains("UPDATE"));
    shot(&b, "detail").await;
    click(&b, "#repair").await;
    assert!(text(&b, "#outcome").await.starts_with("Repaired"));
    let r1 = target_v(&db, "r1").await;
    assert_eq!(
        r1, "right",
        "the target row is fixed in the target database"
    );

    // Bulk-ignore the 50 with a reason.
    b.goto(&format!(
        "{base}/mismatches?key=bulk-&state=needs_manual&limit=100"
    ))
    .await
    .unwrap();
    click(&b, "#all").await;
    click(&b, "button[value='ignore:selected']").await;
    // Every page has an h1: wait for the confirmation's, not the list's still showing.
    wait_for("the confirmation page", WAIT, || {
        let b = b.clone();
        async move {
            let h1 = b.find(Locator::Css("h1")).await.ok()?.text().await.ok()?;
            h1.contains("Ignore 50 open records?").then_some(())
        }
    })
    .await;
    type_in(&b, "#reason", "test rows, known to differ").await;
    click(&b, "#go").await;
    // Reloading is safe only once the browser is on the job's page (the confirmation was
    // a POST).
    wait_url(&b, "the bulk job's page", |u| {
        u.path().starts_with("/bulk/")
    })
    .await;
    wait_for("the bulk ignore to finish", WAIT, || {
        let b = b.clone();
        async move {
            b.refresh().await.ok()?;
            (text(&b, "#state").await == "finished").then_some(())
        }
    })
    .await;
    assert_eq!(text(&b, "#succeeded").await, "50");

    // The audit log has the repair, the 50 ignores and the bulk action, under olga's name;
    // the checksum that found them is listed with its result.
    b.goto(&format!("{base}/audit?actor=olga&action=ignored"))
        .await
        .unwrap();
    let audit = text(&b, "#audit tbody").await;
    assert_eq!(
        audit.matches("test rows, known to differ").count(),
        50,
        "{audit}"
    );
    b.goto(&format!("{base}/audit?actor=olga")).await.unwrap();
    let audit = text(&b, "#audit tbody").await;
    assert!(
        audit.contains("bulk") && audit.contains("repaired"),
        "{audit}"
    );
    shot(&b, "audit").await;
    b.goto(&format!("{base}/checksums")).await.unwrap();
    let runs = text(&b, "#checksum-runs tbody").await;
    assert!(runs.contains(&format!("{}.t", db.name)), "{runs}");

    // A key holding a script is text on every page.
    b.goto(&format!("{base}/mismatches?key={}", "%3Cscript"))
        .await
        .unwrap();
    assert!(text(&b, "#records tbody")
        .await
        .contains("<script>alert('pk')</script>"));
    click(&b, "#records td.key a").await;
    assert_eq!(text(&b, "#key").await, format!("id={HOSTILE}"));
    assert!(b.get_alert_text().await.is_err(), "no script ran");
    assert!(
        b.find_all(Locator::Css("main img"))
            .await
            .unwrap()
            .is_empty(),
        "no markup was made"
    );
    let hostile_page = b.current_url().await.unwrap();

    // A form without its token is refused, even from the console's own page.
    let repair = hostile_page.path().to_owned() + "/repair";
    forge(&b, &repair, false).await;
    assert!(text(&b, "#problem").await.contains("no CSRF token"));

    // A viewer sees no buttons, and a repair sent anyway is refused.
    b.goto(&format!("{base}/")).await.unwrap();
    click(&b, ".who button").await;
    text(&b, "#login").await;
    login(&b, &base, "vic").await;
    b.goto(hostile_page.as_str()).await.unwrap();
    assert!(b
        .find_all(Locator::Css("#repair"))
        .await
        .unwrap()
        .is_empty());
    forge(&b, &repair, true).await;
    assert!(text(&b, "#problem").await.contains("vic is a viewer"));
    assert_eq!(
        target_v(&db, HOSTILE).await,
        "tampered",
        "nothing was written"
    );

    b.close().await.ok();
    drop(driver.child);
    drop(concord);
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

async fn target_v(db: &TestDb, id: &str) -> String {
    use mysql_async::prelude::Queryable;
    let mut conn = db.servers.target_conn().await;
    conn.exec_first::<String, _, _>(format!("SELECT v FROM `{}`.t WHERE id = ?", db.name), (id,))
        .await
        .unwrap()
        .expect("the row")
}
