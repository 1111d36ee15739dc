//! A generative test against the real servers: random tables over every column type and
//! character set, random rows and random DML (in random row-image modes, in a non-strict
//! session so that odd values — ENUM index 0, zero dates, truncated numbers — are stored
//! too), and after each case the target equals the source byte for byte.
//!
//! `CONCORD_GEN_CASES` sets the number of cases (default 400 in direct mode, 200 in kafka mode), `CONCORD_GEN_SEED` the seed
//! (printed at the start, and in a failure, so a failing run can be replayed).

use concord_e2e::charsets::CASES;
use concord_e2e::concord::{failed_events, mismatches};
use concord_e2e::pipeline::{Mode, Pipeline};
use concord_e2e::TestDb;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A column type; text types carry their character set.
#[derive(Clone, Debug)]
enum Ty {
    Int { bytes: u8, unsigned: bool },
    Decimal { precision: u8, scale: u8 },
    Float,
    Double,
    Bit(u8),
    Date,
    DateTime(u8),
    Time(u8),
    Timestamp(u8),
    Year,
    Char(u8, usize),
    VarChar(u8, usize),
    Text(usize),
    Binary(u8),
    VarBinary(u8),
    Blob,
    Enum,
    Set,
    Json,
}

/// The text character sets (`binary` is covered by the binary types).
fn text_sets() -> Vec<usize> {
    (0..CASES.len())
        .filter(|&i| CASES[i].charset != "binary")
        .collect()
}

fn int_name(bytes: u8) -> &'static str {
    match bytes {
        1 => "TINYINT",
        2 => "SMALLINT",
        3 => "MEDIUMINT",
        4 => "INT",
        _ => "BIGINT",
    }
}

impl Ty {
    fn ddl(&self) -> String {
        let cs = |i: &usize| CASES[*i].charset;
        match self {
            Ty::Int { bytes, unsigned } => {
                format!(
                    "{}{}",
                    int_name(*bytes),
                    if *unsigned { " UNSIGNED" } else { "" }
                )
            }
            Ty::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            Ty::Float => "FLOAT".into(),
            Ty::Double => "DOUBLE".into(),
            Ty::Bit(n) => format!("BIT({n})"),
            Ty::Date => "DATE".into(),
            Ty::DateTime(f) => format!("DATETIME({f})"),
            Ty::Time(f) => format!("TIME({f})"),
            Ty::Timestamp(f) => format!("TIMESTAMP({f}) NULL DEFAULT NULL"),
            Ty::Year => "YEAR".into(),
            Ty::Char(n, i) => format!("CHAR({n}) CHARACTER SET {}", cs(i)),
            Ty::VarChar(n, i) => format!("VARCHAR({n}) CHARACTER SET {}", cs(i)),
            Ty::Text(i) => format!("TEXT CHARACTER SET {}", cs(i)),
            Ty::Binary(n) => format!("BINARY({n})"),
            Ty::VarBinary(n) => format!("VARBINARY({n})"),
            Ty::Blob => "BLOB".into(),
            Ty::Enum => "ENUM('', 'a', 'b', 'é')".into(),
            Ty::Set => "SET('a', 'b', 'c', 'ü')".into(),
            Ty::Json => "JSON".into(),
        }
    }

    /// How a value is compared: its stored bytes (and an ENUM's or SET's number).
    fn probe(&self, column: &str) -> String {
        match self {
            Ty::Enum | Ty::Set => format!("HEX(CAST({column} AS BINARY)), {column} + 0"),
            _ => format!("HEX(CAST({column} AS BINARY))"),
        }
    }
}

fn ty() -> impl Strategy<Value = Ty> {
    let sets = text_sets();
    let set = proptest::sample::select(sets);
    prop_oneof![
        (1u8..=8, any::<bool>()).prop_map(|(b, unsigned)| Ty::Int {
            bytes: [1, 2, 3, 4, 8][usize::from(b % 5)],
            unsigned
        }),
        (1u8..=65)
            .prop_flat_map(|p| (Just(p), 0..=p.min(30)))
            .prop_map(|(precision, scale)| Ty::Decimal { precision, scale }),
        Just(Ty::Float),
        Just(Ty::Double),
        (1u8..=64).prop_map(Ty::Bit),
        Just(Ty::Date),
        (0u8..=6).prop_map(Ty::DateTime),
        (0u8..=6).prop_map(Ty::Time),
        (0u8..=6).prop_map(Ty::Timestamp),
        Just(Ty::Year),
        (1u8..=12, set.clone()).prop_map(|(n, i)| Ty::Char(n, i)),
        (1u8..=40, set.clone()).prop_map(|(n, i)| Ty::VarChar(n, i)),
        set.prop_map(Ty::Text),
        (1u8..=8).prop_map(Ty::Binary),
        (1u8..=20).prop_map(Ty::VarBinary),
        Just(Ty::Blob),
        Just(Ty::Enum),
        Just(Ty::Set),
        Just(Ty::Json),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Text of a character set, from its sample, ASCII and spaces: converted by the server, or
/// the set's own byte sequences as a literal.
fn text(i: usize, max: usize) -> BoxedStrategy<String> {
    let case = &CASES[i];
    let mut alphabet: Vec<char> = case.sample.chars().collect();
    alphabet.extend(['a', 'Z', ' ', '\'', '\\']);
    let cs = case.charset;
    let converted = proptest::collection::vec(proptest::sample::select(alphabet), 0..=max)
        .prop_map(move |chars| {
            let s: String = chars.into_iter().collect();
            format!("CONVERT(_utf8mb4 X'{}' USING {cs})", hex(s.as_bytes()))
        });
    let pieces = vec![case.accidental, case.native];
    let raw = proptest::collection::vec(proptest::sample::select(pieces), 1..=max.clamp(1, 3))
        .prop_map(move |p| format!("_{cs} X'{}'", p.concat()));
    prop_oneof![3 => converted, 1 => raw].boxed()
}

/// A literal for a column of type `t` (sometimes out of range or invalid: the non-strict
/// session stores what it makes of it), or NULL.
fn value(t: &Ty) -> BoxedStrategy<String> {
    let v: BoxedStrategy<String> = match t.clone() {
        Ty::Int { bytes, unsigned } => {
            let bits = u32::from(bytes) * 8;
            if unsigned {
                (0u64..=u64::MAX >> (64 - bits))
                    .prop_map(|n| n.to_string())
                    .boxed()
            } else {
                let max = i64::MAX >> (64 - bits);
                (-max - 1..=max).prop_map(|n| n.to_string()).boxed()
            }
        }
        Ty::Decimal { precision, scale } => {
            let int = usize::from(precision - scale).max(1);
            (
                any::<bool>(),
                proptest::collection::vec(0u8..10, 1..=int),
                proptest::collection::vec(0u8..10, usize::from(scale)),
            )
                .prop_map(|(neg, i, f)| {
                    let digits = |d: Vec<u8>| d.iter().map(|x| x.to_string()).collect::<String>();
                    let frac = digits(f);
                    let sign = if neg { "-" } else { "" };
                    if frac.is_empty() {
                        format!("{sign}{}", digits(i))
                    } else {
                        format!("{sign}{}.{frac}", digits(i))
                    }
                })
                .boxed()
        }
        Ty::Float => any::<f32>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}"))
            .boxed(),
        Ty::Double => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}"))
            .boxed(),
        Ty::Bit(n) => (0u64..=u64::MAX >> (64 - u32::from(n)))
            .prop_map(|b| format!("b'{b:b}'"))
            .boxed(),
        Ty::Date => prop_oneof![
            (1000u32..=9999, 1u32..=12, 1u32..=28)
                .prop_map(|(y, m, d)| format!("'{y:04}-{m:02}-{d:02}'")),
            Just("'0000-00-00'".to_owned()),
        ]
        .boxed(),
        Ty::DateTime(_) => (
            1000u32..=9999,
            1u32..=12,
            1u32..=28,
            0u32..86_400,
            0u32..1_000_000,
        )
            .prop_map(|(y, m, d, s, us)| {
                format!(
                    "'{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{us:06}'",
                    s / 3600,
                    s / 60 % 60,
                    s % 60
                )
            })
            .boxed(),
        // A negative TIME(1)/TIME(2) with a fraction is one mysql_common cannot decode (the
        // reader records it: lossless.rs tests that); other times are generated.
        Ty::Time(fsp) => (
            any::<bool>(),
            0u32..=838,
            0u32..60,
            0u32..60,
            0u32..1_000_000,
        )
            .prop_map(move |(neg, h, m, s, us)| {
                let neg = neg && !matches!(fsp, 1 | 2);
                format!("'{}{h}:{m:02}:{s:02}.{us:06}'", if neg { "-" } else { "" })
            })
            .boxed(),
        // Within TIMESTAMP's range, in the session's UTC.
        Ty::Timestamp(_) => (86_400i64..2_147_000_000, 0u32..1_000_000)
            .prop_map(|(s, us)| format!("FROM_UNIXTIME({s}.{us:06})"))
            .boxed(),
        Ty::Year => prop_oneof![
            (1901u32..=2155).prop_map(|y| y.to_string()),
            Just("0".into())
        ]
        .boxed(),
        Ty::Char(n, i) | Ty::VarChar(n, i) => text(i, usize::from(n)),
        Ty::Text(i) => text(i, 60),
        Ty::Binary(n) | Ty::VarBinary(n) => {
            proptest::collection::vec(any::<u8>(), 0..=usize::from(n))
                .prop_map(|b| format!("X'{}'", hex(&b)))
                .boxed()
        }
        Ty::Blob => proptest::collection::vec(any::<u8>(), 0..300)
            .prop_map(|b| format!("X'{}'", hex(&b)))
            .boxed(),
        Ty::Enum => proptest::sample::select(vec!["''", "'a'", "'b'", "'é'", "'bogus'", "0", "2"])
            .prop_map(str::to_owned)
            .boxed(),
        Ty::Set => proptest::sample::select(vec!["''", "'a'", "'a,c'", "'ü,b'", "'zz'", "15"])
            .prop_map(str::to_owned)
            .boxed(),
        Ty::Json => (any::<i32>(), "[a-z é😀]{0,8}")
            .prop_map(|(n, s)| format!("'{{\"n\": {n}, \"s\": \"{s}\", \"l\": [1, 2.5, null]}}'"))
            .boxed(),
    };
    prop_oneof![1 => Just("NULL".to_owned()), 7 => v].boxed()
}

/// One statement of a case's DML, on row ids 1..=12.
#[derive(Clone, Debug)]
enum Dml {
    Insert(u8, Vec<String>),
    Update(u8, usize, String),
    Delete(u8),
    MoveKey(u8, u8),
    Begin,
    Commit,
}

#[derive(Clone, Debug)]
struct Case {
    columns: Vec<Ty>,
    /// The primary key also holds a text column of this set, when given.
    text_key: Option<usize>,
    row_image: &'static str,
    dml: Vec<Dml>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(ty(), 1..=6),
        proptest::option::weighted(0.3, proptest::sample::select(text_sets())),
        proptest::sample::select(vec!["FULL", "FULL", "MINIMAL", "NOBLOB"]),
    )
        .prop_flat_map(|(columns, text_key, row_image)| {
            let n = columns.len();
            let row = columns.iter().map(value).collect::<Vec<_>>();
            let one = columns.clone();
            let dml = prop_oneof![
                4 => (1u8..=12, row).prop_map(|(id, vs)| Dml::Insert(id, vs)),
                3 => (1u8..=12, 0..n).prop_flat_map(move |(id, c)| {
                    value(&one[c]).prop_map(move |v| Dml::Update(id, c, v))
                }),
                1 => (1u8..=12).prop_map(Dml::Delete),
                1 => (1u8..=12, 13u8..=24).prop_map(|(a, b)| Dml::MoveKey(a, b)),
                1 => Just(Dml::Begin),
                1 => Just(Dml::Commit),
            ];
            (
                Just(columns),
                Just(text_key),
                Just(row_image),
                proptest::collection::vec(dml, 1..=25),
            )
        })
        .prop_map(|(columns, text_key, row_image, dml)| Case {
            columns,
            text_key,
            row_image,
            dml,
        })
}

impl Case {
    fn ddl(&self, table: &str) -> String {
        let mut cols = vec!["id INT NOT NULL".to_owned()];
        let mut key = "id".to_owned();
        if let Some(i) = self.text_key {
            cols.push(format!(
                "k VARCHAR(8) CHARACTER SET {} NOT NULL DEFAULT 'k'",
                CASES[i].charset
            ));
            key.push_str(", k");
        }
        cols.extend(
            self.columns
                .iter()
                .enumerate()
                .map(|(i, t)| format!("c{i} {}", t.ddl())),
        );
        format!(
            "CREATE TABLE {table} ({}, PRIMARY KEY ({key}))",
            cols.join(", ")
        )
    }

    /// The case's DML; `whole_keys`: without its primary-key changes, and every insert
    /// names its whole key.
    fn statements(&self, table: &str, whole_keys: bool) -> Vec<String> {
        let mut names: Vec<String> = (0..self.columns.len()).map(|i| format!("c{i}")).collect();
        let named_key = whole_keys && self.text_key.is_some();
        if named_key {
            names.push("k".into());
        }
        self.dml
            .iter()
            .filter(|d| !(whole_keys && matches!(d, Dml::MoveKey(..))))
            .map(|d| match d {
                Dml::Insert(id, vs) => format!(
                    "INSERT INTO {table} (id, {}) VALUES ({id}, {}{})",
                    names.join(", "),
                    vs.join(", "),
                    if named_key { ", 'k'" } else { "" }
                ),
                Dml::Update(id, c, v) => {
                    format!("UPDATE {table} SET c{c} = {v} WHERE id = {id}")
                }
                Dml::Delete(id) => format!("DELETE FROM {table} WHERE id = {id}"),
                Dml::MoveKey(a, b) => format!("UPDATE {table} SET id = {b} WHERE id = {a}"),
                Dml::Begin => "BEGIN".into(),
                Dml::Commit => "COMMIT".into(),
            })
            .collect()
    }

    fn probe(&self, table: &str) -> String {
        let mut cols = vec!["id".to_owned()];
        if self.text_key.is_some() {
            cols.push("HEX(CAST(k AS BINARY))".into());
        }
        cols.extend(
            self.columns
                .iter()
                .enumerate()
                .map(|(i, t)| t.probe(&format!("c{i}"))),
        );
        format!("SELECT {} FROM {table} ORDER BY 1, 2", cols.join(", "))
    }
}

async fn rows(c: &mut Conn, sql: &str) -> Vec<Vec<mysql_async::Value>> {
    let rows: Vec<mysql_async::Row> = c.query(sql).await.expect("probe");
    rows.into_iter().map(|r| r.unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn random_tables_rows_and_dml_arrive_byte_for_byte_direct() {
    generate(Mode::Direct, 400).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn random_tables_rows_and_dml_arrive_byte_for_byte_kafka() {
    generate(Mode::Kafka, 200).await;
}

/// Runs the cases through a whole pipeline (the verifier included, with a short delay);
/// after the last one the verifier must have recorded nothing: exact copies are never
/// mismatches, whatever the types and character sets.
async fn generate(mode: Mode, default_cases: u32) {
    let cases: u32 = std::env::var("CONCORD_GEN_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let seed: u64 = std::env::var("CONCORD_GEN_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("generative ({mode:?}): {cases} cases, CONCORD_GEN_SEED={seed}");
    let db = TestDb::new(match mode {
        Mode::Direct => "generative",
        Mode::Kafka => "kgenerative",
    })
    .await;
    let pipeline = Pipeline::start(&db, mode, "1s", false).await;
    let config = pipeline.config.clone();
    let mut source = db.servers.source_conn().await;
    source
        .query_drop("SET SESSION sql_mode = '', time_zone = '+00:00'")
        .await
        .unwrap();
    let target = db.servers.target_conn().await;

    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            max_shrink_iters: 50,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &key),
    );
    let counter = AtomicUsize::new(0);
    // The runner takes a `Fn`: the two sessions are borrowed case by case.
    let sessions = tokio::sync::Mutex::new((source, target));
    let ddls = std::cell::RefCell::new(Vec::new());
    let handle = tokio::runtime::Handle::current();
    let result = runner.run(&case(), |case| {
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let mut guard = sessions.lock().await;
                let (source, target) = &mut *guard;
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let failed_before = failed_events(&config).await.len();
                let table = format!("`{}`.g{n}", db.name);
                let ddl = case.ddl(&table);
                ddls.borrow_mut().push(ddl.clone());
                for c in [&mut *source, &mut *target] {
                    c.query_drop(&ddl)
                        .await
                        .map_err(|e| TestCaseError::fail(format!("{ddl}: {e}")))?;
                }
                source
                    .query_drop(format!(
                        "SET SESSION binlog_row_image = '{}'",
                        case.row_image
                    ))
                    .await
                    .unwrap();
                // In kafka mode a key move in a partial image, and a minimal insert that
                // leaves a key column to its default, are recorded by design (a partition
                // needs the whole key): lossless.rs tests them.
                let keep_out_moves = mode == Mode::Kafka && case.row_image != "FULL";
                for s in case.statements(&table, keep_out_moves) {
                    // A statement the source refuses (a duplicate key, say) changes nothing.
                    let _ = source.query_drop(&s).await;
                }
                source.query_drop("COMMIT").await.unwrap();
                let probe = case.probe(&table);
                let s = rows(source, &probe).await;
                let started = std::time::Instant::now();
                let t = loop {
                    let t = rows(target, &probe).await;
                    if t == s || started.elapsed() > Duration::from_secs(20) {
                        break t;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                if started.elapsed() > Duration::from_secs(5) {
                    eprintln!(
                        "generative: case {n} took {:?} to arrive",
                        started.elapsed()
                    );
                }
                let failed = failed_events(&config).await.split_off(failed_before);
                if s != t || !failed.is_empty() {
                    let message = format!(
                        "{table} differs (seed {seed}):\n{ddl}\nrow image {}\n{}\nsource: \
                         {s:?}\ntarget: {t:?}\nfailed events: {failed:?}",
                        case.row_image,
                        case.statements(&table, keep_out_moves).join(";\n")
                    );
                    // Shown at once: shrinking a failure takes a while.
                    eprintln!("generative: case {n} failed: {message}");
                    return Err(TestCaseError::fail(message));
                }
                Ok(())
            })
        })
    });
    if let Err(e) = result {
        panic!("CONCORD_GEN_SEED={seed}: {e}");
    }
    pipeline.wait_verified(&db, Duration::from_secs(120)).await;
    let found = mismatches(&config).await;
    assert!(
        found.is_empty(),
        "CONCORD_GEN_SEED={seed}: the verifier recorded {} mismatches of exact copies: \
         {found:?}\ntables: {:?}",
        found.len(),
        ddls.borrow()
    );
}
