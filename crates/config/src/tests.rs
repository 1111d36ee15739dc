use super::*;
use concord_change::TableName;
use std::time::Duration;

const ISSUE_EXAMPLE: &str = r#"
[source]
url = "mysql://root@127.0.0.1:3307"
server_id = 4242

[target]
url = "mysql://root@127.0.0.1:3308"

[tables]
include = ["shop.*"]

[control]
url = "sqlite://concord.db"

[metrics]
listen = "127.0.0.1:9187"
"#;

/// The issue's example with one more section, `[section]` and its `lines`.
fn with_section(section: &str, lines: &str) -> Result<Config, ConfigError> {
    Config::from_toml(&format!("{ISSUE_EXAMPLE}\n[{section}]\n{lines}"))
}

#[test]
fn the_documented_example_loads_with_defaults() {
    let c = Config::from_toml(ISSUE_EXAMPLE).unwrap();
    assert_eq!(c.source.server_id, 4242);
    assert_eq!(c.source.start_from(), StartFrom::Current);
    assert_eq!(c.transport.kind, TransportKind::Direct);
    assert_eq!(c.replicator.name, "default");
    assert_eq!(c.target.checkpoint_schema, "concord");
    let f = c.tables.filter();
    assert!(f.matches(&TableName::new("shop", "orders")));
    assert!(!f.matches(&TableName::new("crm", "orders")));
}

#[test]
fn unknown_key_is_refused_by_name() {
    let text = ISSUE_EXAMPLE.replace("server_id = 4242", "server_id = 4242\nserverid = 1");
    let e = Config::from_toml(&text).unwrap_err().to_string();
    assert!(e.contains("serverid"), "{e}");
}

#[test]
fn bad_values_name_key_value_and_accepted_forms() {
    let e = Config::from_toml(&ISSUE_EXAMPLE.replace(
        "server_id = 4242",
        "server_id = 4242\nstart = \"yesterday\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("source.start") && e.contains("yesterday") && e.contains("earliest"),
        "{e}"
    );

    let e = Config::from_toml(&ISSUE_EXAMPLE.replace("server_id = 4242", "server_id = \"x\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("server_id"), "{e}");

    let e = Config::from_toml(&ISSUE_EXAMPLE.replace("127.0.0.1:9187", "localhost"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("metrics.listen") && e.contains("localhost"),
        "{e}"
    );

    let e = Config::from_toml(&ISSUE_EXAMPLE.replace(
        "[control]",
        "[transport]\nkind = \"carrier-pigeon\"\n[control]",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("carrier-pigeon") && e.contains("direct"), "{e}");

    let e = Config::from_toml(&ISSUE_EXAMPLE.replace("\"shop.*\"", "\"shop\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("tables.include") && e.contains("shop"), "{e}");
}

#[test]
fn durations_accept_human_forms() {
    let text = format!("{ISSUE_EXAMPLE}\n[replicator]\nbatch_time = \"5ms\"\n");
    let c = Config::from_toml(&text).unwrap();
    assert_eq!(c.replicator.batch_time, std::time::Duration::from_millis(5));
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own large error
fn environment_overrides_file_and_ignores_unrelated_variables() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("c.toml", ISSUE_EXAMPLE)?;
        jail.set_env("CONCORD_SOURCE__SERVER_ID", "77");
        jail.set_env("CONCORD_TARGET__PASSWORD", "hunter2");
        jail.set_env("CONCORD_BIN", "/usr/bin/concord");
        let c = Config::load(Some(std::path::Path::new("c.toml"))).unwrap();
        assert_eq!(c.source.server_id, 77);
        assert_eq!(c.target.password.as_ref().unwrap().expose(), "hunter2");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "secret leaked into Debug: {dbg}");
        Ok(())
    });
}

#[test]
fn url_passwords_are_redacted() {
    let text = ISSUE_EXAMPLE.replace("root@127.0.0.1:3308", "app:s3cret@127.0.0.1:3308");
    let c = Config::from_toml(&text).unwrap();
    assert_eq!(c.target.url.redacted(), "mysql://app:***@127.0.0.1:3308");
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn renames_and_excludes() {
    let text = ISSUE_EXAMPLE.replace(
        "include = [\"shop.*\"]",
        "include = [\"shop.*\", \"crm.*\"]\nexclude = [\"shop.tmp_*\"]\n[tables.rename]\n\"shop.orders\" = \"shop2.orders_v2\"\n\"crm\" = \"crm_copy\"",
    );
    let f = Config::from_toml(&text).unwrap().tables.filter();
    assert!(!f.matches(&TableName::new("shop", "tmp_1")));
    assert!(f.matches(&TableName::new("shop", "items")));
    assert!(!f.matches(&TableName::new("mysql", "user")));
    assert_eq!(
        f.target_name(&TableName::new("shop", "orders")),
        TableName::new("shop2", "orders_v2")
    );
    assert_eq!(
        f.target_name(&TableName::new("crm", "people")),
        TableName::new("crm_copy", "people")
    );
    assert_eq!(
        f.target_name(&TableName::new("shop", "items")),
        TableName::new("shop", "items")
    );
}

#[test]
fn kafka_mode_needs_its_section_and_takes_the_issue_example() {
    let text = format!("{ISSUE_EXAMPLE}\n[transport]\nkind = \"kafka\"\n");
    let e = Config::from_toml(&text).unwrap_err().to_string();
    assert!(e.contains("kafka") && e.contains("brokers"), "{e}");
    let text = format!(
        "{ISSUE_EXAMPLE}\n[transport]\nkind = \"kafka\"\n\n[kafka]\nbrokers = \"127.0.0.1:9092\"\ntopic = \"concord.changes\"\ngroup = \"concord-replicator\"\n"
    );
    let c = Config::from_toml(&text).unwrap();
    assert_eq!(c.transport.kind, TransportKind::Kafka);
    let k = c.kafka.unwrap();
    assert_eq!(k.dead_letter_topic(), "concord.changes.dlq");
    assert_eq!(k.topic_for("shop", "orders"), "concord.changes");
    let bad = text.replace("concord.changes", "bad topic!");
    let e = Config::from_toml(&bad).unwrap_err().to_string();
    assert!(e.contains("kafka.topic") && e.contains("bad topic!"), "{e}");
    assert_eq!(k.max_unacked, 2000);
    let none = text.replace(
        "group = \"concord-replicator\"",
        "group = \"g\"\nmax_unacked = 0",
    );
    let e = Config::from_toml(&none).unwrap_err().to_string();
    assert!(
        e.contains("kafka.max_unacked") && e.contains("at least 1"),
        "{e}"
    );
}

#[test]
fn verifier_rounds_in_flight_defaults_to_one_and_refuses_zero() {
    let c = Config::from_toml(ISSUE_EXAMPLE).unwrap();
    assert_eq!(c.verifier.rounds_in_flight, 1);
    let c = with_section("verifier", "rounds_in_flight = 3\n").unwrap();
    assert_eq!(c.verifier.rounds_in_flight, 3);
    let e = with_section("verifier", "rounds_in_flight = 0\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("verifier.rounds_in_flight"), "{e}");
}

#[test]
fn verifier_parking_has_defaults_and_can_be_turned_off() {
    let c = Config::from_toml(ISSUE_EXAMPLE).unwrap();
    assert_eq!(c.verifier.park_rows, 150_000);
    assert_eq!(c.verifier.park_for, Duration::from_secs(10));
    let c = with_section("verifier", "park_rows = 0\npark_for = \"0s\"\n").unwrap();
    assert_eq!(
        (c.verifier.park_rows, c.verifier.park_for),
        (0, Duration::ZERO)
    );
    let e = with_section("verifier", "park_for = \"soon\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("park_for"), "{e}");
}

#[test]
fn verifier_section_defaults_and_the_issue_forms() {
    let c = Config::from_toml(ISSUE_EXAMPLE).unwrap();
    assert_eq!(c.verifier.delay, std::time::Duration::from_secs(120));
    assert_eq!(c.verifier.group, "concord-verifier");
    assert_eq!(c.verifier.server_id(c.source.server_id), 4243);
    assert_eq!(c.checksum.chunk_time, std::time::Duration::from_millis(500));

    let c = with_section("verifier", "delay = \"5s\"\ngroup = \"v2\"\n").unwrap();
    assert_eq!(c.verifier.delay, std::time::Duration::from_secs(5));
    assert_eq!(c.verifier.group, "v2");

    let e = with_section("verifier", "server_id = 4242\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("verifier.server_id") && e.contains("4242"),
        "{e}"
    );
    let e = with_section("checksum", "chunk_time = \"2m\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("checksum.chunk_time") && e.contains("60s"),
        "{e}"
    );
}

#[test]
fn the_verifier_may_read_the_target_as_its_own_user() {
    let c = Config::from_toml(ISSUE_EXAMPLE).unwrap();
    assert_eq!(c.verifier_target_opts().user(), Some("root"));

    let c = with_section(
        "verifier",
        "target_user = \"checker\"\ntarget_password = \"s3cret\"",
    )
    .unwrap();
    let opts = c.verifier_target_opts();
    assert_eq!(opts.user(), Some("checker"));
    assert_eq!(opts.pass(), Some("s3cret"));
    assert_eq!(opts.tcp_port(), 3308, "same server as the replicator's");
    assert_eq!(
        c.target.opts().user(),
        Some("root"),
        "the replicator's is kept"
    );
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "the password is never printed"
    );
}

#[test]
fn online_schema_change_helper_tables_are_skipped_unless_turned_off() {
    let c = Config::from_toml(ISSUE_EXAMPLE).unwrap();
    let f = c.tables.filter();
    for helper in [
        "_orders_new",
        "__orders_new",
        "_orders_old",
        "_orders_gho",
        "_orders_ghc",
        "_orders_del",
    ] {
        assert!(!f.matches(&TableName::new("shop", helper)), "{helper}");
        let (_, original) = osc_helper(&TableName::new("shop", helper)).unwrap();
        assert_eq!(original, TableName::new("shop", "orders"), "{helper}");
    }
    assert_eq!(
        osc_helper(&TableName::new("shop", "_orders_gho")).map(|(t, _)| t),
        Some(OscTool::GhOst)
    );
    for ordinary in [
        "orders",
        "orders_new",
        "_new",
        "_orders_newer",
        "new_orders",
    ] {
        assert!(f.matches(&TableName::new("shop", ordinary)), "{ordinary}");
    }
    let text = ISSUE_EXAMPLE.replace(
        "include = [\"shop.*\"]",
        "include = [\"shop.*\"]\nonline_schema_change = \"off\"",
    );
    let f = Config::from_toml(&text).unwrap().tables.filter();
    assert!(f.matches(&TableName::new("shop", "_orders_new")));
}

#[test]
fn a_real_table_named_like_a_helper_is_replicated_when_named_exactly() {
    let text = ISSUE_EXAMPLE.replace(
        "include = [\"shop.*\"]",
        "include = [\"shop.*\", \"shop._sessions_old\"]",
    );
    let f = Config::from_toml(&text).unwrap().tables.filter();
    let named = TableName::new("shop", "_sessions_old");
    assert!(f.matches(&named));
    assert!(!f.skipped_as_osc_helper(&named));
    let other = TableName::new("shop", "_jobs_del");
    assert!(!f.matches(&other), "only by an exact entry");
    assert!(
        f.skipped_as_osc_helper(&other),
        "listed in the start-up warning"
    );
    assert!(
        !f.skipped_as_osc_helper(&TableName::new("crm", "_jobs_del")),
        "not included anyway: nothing to warn about"
    );
}

#[test]
fn fragment_and_queue_bounds_read_sizes_and_refuse_nonsense() {
    let c = Config::from_toml(ISSUE_EXAMPLE).unwrap();
    assert_eq!(c.source.fragment_rows, 5000);
    assert_eq!(c.source.fragment_bytes, ByteSize::mib(4));
    assert_eq!(c.replicator.queue_bytes, ByteSize::mib(8));
    let text = ISSUE_EXAMPLE.replace(
        "server_id = 4242",
        "server_id = 4242\nfragment_rows = 100\nfragment_bytes = \"256 KiB\"",
    );
    let c = Config::from_toml(&text).unwrap();
    assert_eq!(c.source.fragment_rows, 100);
    assert_eq!(c.source.fragment_bytes.as_u64(), 256 * 1024);
    let c = with_section("replicator", "queue_bytes = 1048576").unwrap();
    assert_eq!(c.replicator.queue_bytes, ByteSize::mib(1));

    let e = with_section("replicator", "queue_bytes = \"2 GiB\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("replicator.queue_bytes") && e.contains("1 GiB"),
        "{e}"
    );
    let text = ISSUE_EXAMPLE.replace("server_id = 4242", "server_id = 4242\nfragment_rows = 0");
    let e = Config::from_toml(&text).unwrap_err().to_string();
    assert!(e.contains("source.fragment_rows"), "{e}");
    let text = ISSUE_EXAMPLE.replace(
        "server_id = 4242",
        "server_id = 4242\nfragment_bytes = \"lots\"",
    );
    let e = Config::from_toml(&text).unwrap_err().to_string();
    assert!(e.contains("fragment_bytes"), "{e}");
}

#[test]
fn the_target_tables_written_to_are_known_through_renames() {
    let text = ISSUE_EXAMPLE.replace(
        "include = [\"shop.*\"]",
        "include = [\"shop.*\", \"crm.*\"]",
    );
    let c = Config::from_toml(&format!(
        "{text}\n[tables.rename]\n\"shop.orders\" = \"archive.orders_copy\"\n\"crm\" = \"crm2\"\n"
    ))
    .unwrap();
    assert_eq!(c.replicator.target_triggers, TargetTriggers::Warn);
    let f = c.tables.filter();
    assert!(f.writes_to(&TableName::new("archive", "orders_copy")));
    assert!(
        !f.writes_to(&TableName::new("shop", "orders")),
        "renamed away"
    );
    assert!(f.writes_to(&TableName::new("shop", "lines")));
    assert!(f.writes_to(&TableName::new("crm2", "people")));
    assert!(
        !f.writes_to(&TableName::new("crm", "people")),
        "its schema is renamed"
    );
    assert!(
        !f.writes_to(&TableName::new("hr", "people")),
        "not included"
    );
    let c = with_section("replicator", "target_triggers = \"refuse\"").unwrap();
    assert_eq!(c.replicator.target_triggers, TargetTriggers::Refuse);
}

/// A well-formed argon2id PHC string (its parts are arbitrary).
const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2Kl4fHbmDLu3/1S7qs4cDxvDUu9XwMwMCvK6I6O1lTU";

#[test]
fn the_console_needs_users_with_argon2_hashes_or_trusted_proxies() {
    let users = format!(
        "listen = \"127.0.0.1:8080\"\n[[console.users]]\nname = \"ada\"\npassword_hash = \"{HASH}\"\nrole = \"admin\"\n"
    );
    let c = with_section("console", &users).unwrap();
    let console = c.console.unwrap();
    assert_eq!(console.users[0].role, ConsoleRole::Admin);
    assert_eq!(console.auth, ConsoleAuth::Users);
    assert!(
        !format!("{:?}", console.users[0]).contains("argon2"),
        "the hash is not printed"
    );

    let none = with_section("console", "auth = \"users\"")
        .unwrap_err()
        .to_string();
    assert!(none.contains("console.users"), "{none}");
    let plain = with_section(
        "console",
        "[[console.users]]\nname = \"ada\"\npassword_hash = \"hunter2\"\nrole = \"admin\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(plain.contains("console.users[0].password_hash"), "{plain}");
    assert!(
        !plain.contains("hunter2"),
        "the value is not echoed: {plain}"
    );
    let role = with_section(
        "console",
        &format!(
            "[[console.users]]\nname = \"ada\"\npassword_hash = \"{HASH}\"\nrole = \"root\"\n"
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(role.contains("root"), "{role}");

    let open = with_section("console", "auth = \"header\"")
        .unwrap_err()
        .to_string();
    assert!(open.contains("console.header.trusted_proxies"), "{open}");
    let bad = with_section(
        "console",
        "auth = \"header\"\n[console.header]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("trusted_proxies[0]"), "{bad}");
    let proxy = with_section(
        "console",
        "auth = \"header\"\n[console.header]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n\
         groups_header = \"X-Forwarded-Groups\"\n[console.header.roles]\nsre = \"admin\"\n",
    )
    .unwrap()
    .console
    .unwrap();
    assert_eq!(proxy.trusted_proxies().len(), 2);
    assert_eq!(proxy.header.user_header, "X-Forwarded-User");
    assert_eq!(proxy.header.roles["sre"], ConsoleRole::Admin);
}
