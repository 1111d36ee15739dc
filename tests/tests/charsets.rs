//! Text in every character set a column can have arrives byte for byte (compared with
//! `HEX()` on both sides) when source and target share the set, converted by the target
//! server when they do not — in direct and in kafka mode — and the verifier flags a target
//! row whose bytes differ in any of them.

use concord_e2e::charsets::{Case, CASES, NOT_IN_MARIADB};
use concord_e2e::concord::mismatches;
use concord_e2e::pipeline::{Mode, Pipeline};
use concord_e2e::{wait_for, Concord, ConcordConfig, TestDb};
use mysql_async::prelude::Queryable;
use std::time::Duration;

fn table(c: &Case) -> String {
    format!("cs_{}", c.charset)
}

fn ddl(c: &Case) -> String {
    let cs = c.charset;
    format!(
        "CREATE TABLE `{{db}}`.`{t}` (id INT PRIMARY KEY, c CHAR(12) CHARACTER SET {cs}, \
         v VARCHAR(40) CHARACTER SET {cs}, t TEXT CHARACTER SET {cs})",
        t = table(c)
    )
}

/// A table keyed by text of the set: updates and deletes must find their rows by it.
fn keyed_ddl(c: &Case) -> String {
    let cs = c.charset;
    format!(
        "CREATE TABLE `{{db}}`.`k{t}` (k VARCHAR(20) CHARACTER SET {cs} PRIMARY KEY, n INT)",
        t = table(c)
    )
}

/// The source's writes for one set: literals of its own bytes, text the server converts
/// into it, empty strings and NULLs, trailing spaces; then updates and deletes.
fn writes(c: &Case) -> Vec<String> {
    let (cs, t) = (c.charset, table(c));
    let lit = |hex: &str| format!("_{cs} X'{hex}'");
    let text = |s: &str| format!("CONVERT(_utf8mb4'{s}' USING {cs})");
    let a = lit(c.accidental);
    let n = lit(c.native);
    let s = text(c.sample);
    vec![
        format!("INSERT INTO `{{db}}`.`{t}` VALUES (1, {a}, {a}, {a})"),
        format!("INSERT INTO `{{db}}`.`{t}` VALUES (2, {n}, {s}, CONCAT({s}, {n}, {a}))"),
        format!(
            "INSERT INTO `{{db}}`.`{t}` VALUES (3, '', NULL, {})",
            text(" spaced  ")
        ),
        format!("INSERT INTO `{{db}}`.`{t}` VALUES (4, {n}, {n}, {n})"),
        format!("UPDATE `{{db}}`.`{t}` SET v = CONCAT({n}, {a}), t = {s} WHERE id = 4"),
        format!("DELETE FROM `{{db}}`.`{t}` WHERE id = 3"),
        format!("INSERT INTO `{{db}}`.`k{t}` VALUES ({a}, 1), ({n}, 2), ({s}, 3)"),
        format!("UPDATE `{{db}}`.`k{t}` SET n = 10 WHERE k = {a}"),
        format!("UPDATE `{{db}}`.`k{t}` SET k = CONCAT({n}, {n}) WHERE k = {n}"),
        format!("DELETE FROM `{{db}}`.`k{t}` WHERE k = {s}"),
    ]
}

async fn hex_rows(db: &TestDb, target: bool, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut c = if target {
        db.servers.target_conn().await
    } else {
        db.servers.source_conn().await
    };
    let rows: Vec<mysql_async::Row> = c.query(sql.replace("{db}", &db.name)).await.unwrap();
    rows.into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .map(mysql_async::from_value::<Option<String>>)
                .collect()
        })
        .collect()
}

async fn assert_same_bytes(db: &TestDb, c: &Case) {
    let t = table(c);
    for sql in [
        format!("SELECT CAST(id AS CHAR), HEX(c), HEX(v), HEX(t) FROM `{{db}}`.`{t}` ORDER BY id"),
        format!("SELECT HEX(k), CAST(n AS CHAR) FROM `{{db}}`.`k{t}` ORDER BY HEX(k)"),
    ] {
        let source = hex_rows(db, false, &sql).await;
        let target = hex_rows(db, true, &sql).await;
        assert!(source.len() >= 2, "{}: the source has its rows", c.charset);
        assert_eq!(source, target, "{}: {sql}", c.charset);
    }
}

async fn available(db: &TestDb) -> Vec<&'static Case> {
    let names: Vec<String> = db
        .servers
        .source_conn()
        .await
        .query("SELECT CHARACTER_SET_NAME FROM information_schema.CHARACTER_SETS")
        .await
        .unwrap();
    for missing in NOT_IN_MARIADB {
        assert!(
            !names.iter().any(|n| n == missing),
            "{missing} exists now: add a case"
        );
    }
    CASES
        .iter()
        .inspect(|c| {
            assert!(
                names.iter().any(|n| n == c.charset),
                "{} missing",
                c.charset
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_character_set_round_trips_byte_for_byte_direct() {
    every_character_set_round_trips(Mode::Direct).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_character_set_round_trips_byte_for_byte_kafka() {
    every_character_set_round_trips(Mode::Kafka).await;
}

/// And the verifier, which reads both sides exactly, finds nothing to record.
async fn every_character_set_round_trips(mode: Mode) {
    let db = TestDb::new(match mode {
        Mode::Direct => "charsets",
        Mode::Kafka => "kcharsets",
    })
    .await;
    let cases = available(&db).await;
    for c in &cases {
        db.both(&ddl(c)).await;
        db.both(&keyed_ddl(c)).await;
    }
    let pipeline = Pipeline::start(&db, mode, "2s", false).await;
    for c in &cases {
        for w in writes(c) {
            db.source(&w).await;
        }
    }
    for c in &cases {
        let t = table(c);
        db.wait_same(&t, "HEX(c), HEX(v), HEX(t)", Duration::from_secs(60))
            .await;
        db.wait_same(&format!("k{t}"), "HEX(k), n", Duration::from_secs(60))
            .await;
    }
    for c in &cases {
        assert_same_bytes(&db, c).await;
    }
    let failed = concord_e2e::concord::failed_events(&pipeline.config).await;
    assert!(failed.is_empty(), "nothing refused: {failed:?}");
    pipeline.wait_verified(&db, Duration::from_secs(90)).await;
    let found = mismatches(&pipeline.config).await;
    assert!(
        found.is_empty(),
        "exact copies are not mismatches: {found:?}"
    );
}

/// (source set, target set, text the source server converts into the source set).
const PAIRS: &[(&str, &str, &str)] = &[
    ("latin1", "utf8mb4", "déjà vu €"),
    ("cp1251", "utf8mb4", "Привет"),
    ("sjis", "utf8mb4", "日本語"),
    ("utf16", "utf8mb4", "😀Ω"),
    ("utf8mb4", "latin1", "déjà vu €"),
    ("latin1", "utf16", "ÅÄÖ"),
    ("gbk", "utf8mb3", "汉字"),
];

#[tokio::test(flavor = "multi_thread")]
async fn text_is_converted_when_the_target_column_has_another_character_set() {
    let db = TestDb::new("charset_pairs").await;
    for (i, (from, to, _)) in PAIRS.iter().enumerate() {
        let cols =
            |cs: &str| format!("(id INT PRIMARY KEY, v VARCHAR(40) CHARACTER SET {cs}, k INT)");
        db.source(&format!("CREATE TABLE `{{db}}`.p{i} {}", cols(from)))
            .await;
        db.target(&format!("CREATE TABLE `{{db}}`.p{i} {}", cols(to)))
            .await;
    }
    let concord = Concord::start(&ConcordConfig::new(&db)).await;
    for (i, (from, _, text)) in PAIRS.iter().enumerate() {
        db.source(&format!(
            "INSERT INTO `{{db}}`.p{i} VALUES (1, CONVERT(_utf8mb4'{text}' USING {from}), 1)"
        ))
        .await;
    }
    // latin1 bytes that happen to be UTF-8 are still two latin1 characters, 'Ã©'.
    db.source("INSERT INTO `{db}`.p0 VALUES (2, _latin1 X'C3A9', 2)")
        .await;
    // A character the target's set cannot hold: refused and recorded, never altered.
    db.source("INSERT INTO `{db}`.p4 VALUES (2, _utf8mb4 X'F09F9880', 2)")
        .await;
    concord
        .wait_caught_up(&db.servers, Duration::from_secs(60))
        .await;
    for (i, _) in PAIRS.iter().enumerate() {
        let sql = format!(
            "SELECT CAST(id AS CHAR), HEX(CONVERT(v USING utf8mb4)) FROM `{{db}}`.p{i} \
             WHERE id = 1 OR {i} = 0 ORDER BY id"
        );
        assert_eq!(
            hex_rows(&db, false, &sql).await,
            hex_rows(&db, true, &sql).await,
            "pair {:?}",
            PAIRS[i]
        );
    }
    let latin1 = hex_rows(&db, true, "SELECT HEX(v) FROM `{db}`.p0 WHERE id = 2").await;
    assert_eq!(
        latin1,
        vec![vec![Some("C383C2A9".to_owned())]],
        "'Ã©' in utf8mb4"
    );
    let failed = concord.failed_events().await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].1, "rejected");
    assert!(failed[0].0.ends_with(".p4"), "{failed:?}");
    assert_eq!(
        db.count(true, "p4").await,
        1,
        "the refused row is not written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_row_mangled_in_any_character_set_is_flagged() {
    let db = TestDb::new("charset_mangled").await;
    let cases = available(&db).await;
    for c in &cases {
        db.both(&ddl(c)).await;
    }
    // The mangling must land inside the delay.
    let pipeline = Pipeline::start(&db, Mode::Direct, "15s", false).await;
    let config = pipeline.config.clone();
    // Let the verifier get going: the mangling below must land inside its delay.
    pipeline.wait_verified(&db, Duration::from_secs(30)).await;
    let started = std::time::Instant::now();
    for c in &cases {
        db.source(&writes(c)[0]).await;
    }
    for c in &cases {
        db.wait_same(&table(c), "id, HEX(v)", Duration::from_secs(30))
            .await;
    }
    for c in &cases {
        let (cs, t) = (c.charset, table(c));
        // Where the set has 'é', the classic mistake: the bytes read as UTF-8 and stored as
        // those characters (latin1 'Ã©' becomes 'é'). Elsewhere one more character.
        let mangled = match cs {
            "latin1" | "latin2" | "cp1250" | "ucs2" | "utf16" | "utf16le" | "utf32" => {
                format!("CONVERT(CONVERT(CONVERT(v USING binary) USING utf8mb4) USING {cs})")
            }
            _ => format!("CONCAT(v, CONVERT(_utf8mb4'A' USING {cs}))"),
        };
        db.target(&format!(
            "UPDATE `{{db}}`.`{t}` SET v = {mangled} WHERE id = 1"
        ))
        .await;
        let sql = format!("SELECT HEX(v) FROM `{{db}}`.`{t}` WHERE id = 1");
        assert_ne!(
            hex_rows(&db, false, &sql).await,
            hex_rows(&db, true, &sql).await,
            "{cs}: the target row differs now"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "the rows were mangled within the delay"
    );
    let found = wait_for(
        "a mismatch per character set",
        Duration::from_secs(90),
        || {
            let config = config.clone();
            let want = cases.len();
            async move {
                let m = mismatches(&config).await;
                (m.len() >= want).then_some(m)
            }
        },
    )
    .await;
    for c in &cases {
        let t = format!("{}.{}", db.name, table(c));
        let m: Vec<_> = found.iter().filter(|m| m.table == t).collect();
        assert_eq!(m.len(), 1, "{}: {found:?}", c.charset);
        assert_eq!(m[0].kind, "differs");
        assert_eq!(m[0].columns, ["v"], "{}", c.charset);
    }
}

/// A key of another set and collation on the target: updates and deletes find their rows by
/// the target's comparison (a latin1 key in a `utf8mb4_german2_ci` column, a UCA 14.0.0
/// collation beside it), and the verifier finds nothing to report.
#[tokio::test(flavor = "multi_thread")]
async fn keys_compare_in_the_targets_character_set_and_collation() {
    let db = TestDb::new("charset_collations").await;
    db.source(
        "CREATE TABLE `{db}`.c (k VARCHAR(20) CHARACTER SET latin1 COLLATE latin1_bin \
         PRIMARY KEY, u VARCHAR(20) CHARACTER SET latin1, n INT)",
    )
    .await;
    db.target(
        "CREATE TABLE `{db}`.c (k VARCHAR(20) CHARACTER SET utf8mb4 COLLATE \
         utf8mb4_german2_ci PRIMARY KEY, u VARCHAR(20) CHARACTER SET utf8mb4 COLLATE \
         utf8mb4_uca1400_ai_ci, n INT)",
    )
    .await;
    let pipeline = Pipeline::start(&db, Mode::Direct, "2s", false).await;
    pipeline.wait_verified(&db, Duration::from_secs(30)).await;
    for (i, k) in ["Müller", "Straße", "Ärger", "Œuvre"].iter().enumerate() {
        db.source(&format!(
            "INSERT INTO `{{db}}`.c VALUES (CONVERT(_utf8mb4'{k}' USING latin1), \
             CONVERT(_utf8mb4'{k}' USING latin1), {i})"
        ))
        .await;
    }
    db.source("UPDATE `{db}`.c SET n = n + 10 WHERE k = CONVERT(_utf8mb4'Straße' USING latin1)")
        .await;
    db.source("UPDATE `{db}`.c SET k = CONVERT(_utf8mb4'Müllerin' USING latin1) WHERE n = 0")
        .await;
    db.source("DELETE FROM `{db}`.c WHERE k = CONVERT(_utf8mb4'Ärger' USING latin1)")
        .await;
    let sql = "SELECT HEX(CONVERT(k USING utf8mb4)), HEX(CONVERT(u USING utf8mb4)), \
               CAST(n AS CHAR) FROM `{db}`.c ORDER BY n";
    wait_for("the target to match", Duration::from_secs(30), || async {
        (hex_rows(&db, true, sql).await == hex_rows(&db, false, sql).await).then_some(())
    })
    .await;
    assert_eq!(hex_rows(&db, true, sql).await.len(), 3);
    pipeline.wait_verified(&db, Duration::from_secs(60)).await;
    let found = mismatches(&pipeline.config).await;
    assert!(found.is_empty(), "{found:?}");
}
