//! The sections of the config file. Unknown keys are refused (`deny_unknown_fields`) so a
//! typo is an error at start, not a silently ignored setting.

use crate::error::ConfigError;
use crate::tables::TableFilter;
use crate::verifier::{ChecksumConfig, VerifierConfig};
pub use bytesize::ByteSize;
use concord_change::Position;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub source: SourceConfig,
    pub target: TargetConfig,
    #[serde(default)]
    pub transport: TransportConfig,
    #[serde(default)]
    pub tables: TablesConfig,
    #[serde(default)]
    pub replicator: ReplicatorConfig,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Required when `transport.kind = "kafka"`.
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    #[serde(default)]
    pub verifier: VerifierConfig,
    #[serde(default)]
    pub checksum: ChecksumConfig,
    #[serde(default)]
    pub recovery: crate::RecoveryConfig,
    /// The web console; served by `concord run` and `concord recovery` when set.
    #[serde(default)]
    pub console: Option<crate::ConsoleConfig>,
    #[serde(default)]
    pub snapshot: crate::SnapshotConfig,
}

/// A secret string: read from the file, from the environment or from a `*_file`, and never
/// printed.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// A database URL; its password (if any) is hidden from `Debug` and [`DbUrl::redacted`].
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DbUrl(String);

impl DbUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any `user:password@` password replaced by `***`.
    pub fn redacted(&self) -> String {
        let s = &self.0;
        let Some(scheme_end) = s.find("://") else {
            return s.clone();
        };
        let rest = &s[scheme_end + 3..];
        match (rest.find('@'), rest.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                format!(
                    "{}{}:***{}",
                    &s[..scheme_end + 3],
                    &rest[..colon],
                    &rest[at..]
                )
            }
            _ => s.clone(),
        }
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `mysql://user@host:port`; the password may instead come from `password`/`password_file`.
    pub url: DbUrl,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Replica server id this reader registers with; unique among the source's replicas.
    pub server_id: u32,
    /// Where to start without a checkpoint: `current`, `earliest` or `FILE:POS`.
    #[serde(default = "default_start")]
    pub start: String,
    /// How often the source sends a heartbeat when idle; a silent stream for three
    /// heartbeats is treated as a dead connection.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat: Duration,
    /// A source transaction with more rows than this is handed on (applied, verified,
    /// published) in fragments of this many as it is read, so memory stays bounded for a
    /// transaction of any size; its position is still saved only after its last part.
    #[serde(default = "default_fragment_rows")]
    pub fragment_rows: usize,
    /// The same bound in bytes of binlog rows events (for wide rows), e.g. `"4 MiB"`.
    #[serde(default = "default_fragment_bytes")]
    pub fragment_bytes: ByteSize,
}

/// Resolved `source.start`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartFrom {
    Current,
    Earliest,
    At(Position),
}

/// Connection options for a MySQL-family server: the URL plus a separately given password.
fn mysql_opts(url: &DbUrl, password: &Option<Secret>) -> mysql_async::Opts {
    let opts = mysql_async::Opts::from_url(url.expose()).expect("validated at load");
    let mut builder = mysql_async::OptsBuilder::from_opts(opts);
    if let Some(p) = password {
        builder = builder.pass(Some(p.expose().to_owned()));
    }
    builder.into()
}

impl TargetConfig {
    pub fn opts(&self) -> mysql_async::Opts {
        mysql_opts(&self.url, &self.password)
    }
}

impl Config {
    /// How the verifier and the checksum connect to the target: as `verifier.target_user`
    /// when one is set, else as the replicator does.
    pub fn verifier_target_opts(&self) -> mysql_async::Opts {
        let opts = self.target.opts();
        let Some(user) = &self.verifier.target_user else {
            return opts;
        };
        let password = self
            .verifier
            .target_password
            .as_ref()
            .or(self.target.password.as_ref())
            .map(|p| p.expose().to_owned())
            .or_else(|| opts.pass().map(str::to_owned));
        mysql_async::OptsBuilder::from_opts(opts)
            .user(Some(user.clone()))
            .pass(password)
            .into()
    }
}

impl SourceConfig {
    pub fn opts(&self) -> mysql_async::Opts {
        mysql_opts(&self.url, &self.password)
    }

    pub fn start_from(&self) -> StartFrom {
        match self.start.as_str() {
            "current" => StartFrom::Current,
            "earliest" => StartFrom::Earliest,
            s => StartFrom::At(s.parse().expect("validated at load")),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub url: DbUrl,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Schema on the target holding concord's checkpoint table (created if missing).
    #[serde(default = "default_checkpoint_schema")]
    pub checkpoint_schema: String,
    /// How long a cached target column set is trusted before it is read again.
    #[serde(default = "default_schema_ttl", with = "humantime_serde")]
    pub schema_ttl: Duration,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    #[default]
    Direct,
    Kafka,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConfig {
    #[serde(default)]
    pub kind: TransportKind,
}

/// How changes are laid out on Kafka topics.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TopicMode {
    /// Every table's changes on `kafka.topic`.
    #[default]
    Single,
    /// `<kafka.topic>.<db>.<table>` per table.
    PerTable,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The change topic (or the prefix of per-table topics).
    pub topic: String,
    /// The replicators' consumer group.
    #[serde(default = "default_group")]
    pub group: String,
    #[serde(default)]
    pub topic_mode: TopicMode,
    /// Where undecodable or unappliable messages go; default `<topic>.dlq`.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Extra librdkafka properties for producers and consumers (e.g. security settings).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Most messages a replicator holds unapplied before it pauses fetching.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Most messages the capture has handed to the producer and the broker has not yet
    /// acknowledged; past it, the capture waits for acknowledgements.
    #[serde(default = "default_max_unacked")]
    pub max_unacked: usize,
    /// Also commit offsets to the broker after each batch. The offsets stored on the target
    /// are the truth either way; broker commits only let a new assignment start closer.
    #[serde(default = "default_true")]
    pub commit_broker_offsets: bool,
    /// A stable identity for this replicator in the group (Kafka static membership,
    /// `group.instance.id`), e.g. a StatefulSet pod name. A restarted replicator with the
    /// same id takes its partitions back at once instead of waiting for the group to
    /// notice the old process is gone.
    #[serde(default)]
    pub instance_id: Option<String>,
}

impl KafkaConfig {
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.topic))
    }

    /// The control-store name of the capture's saved position: one per topic (prefix).
    pub fn capture_position_name(&self) -> String {
        format!("capture:{}", self.topic)
    }

    /// What consumers subscribe to: the topic, or (a topic per table) a pattern matching
    /// every table's topic under the prefix.
    pub fn subscription(&self) -> String {
        match self.topic_mode {
            TopicMode::Single => self.topic.clone(),
            TopicMode::PerTable => format!("^{}\\..*", regex_escape(&self.topic)),
        }
    }

    /// The topic a table's changes go to.
    pub fn topic_for(&self, db: &str, table: &str) -> String {
        match self.topic_mode {
            TopicMode::Single => self.topic.clone(),
            TopicMode::PerTable => format!("{}.{db}.{table}", self.topic),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TablesConfig {
    /// `db.*` or `db.table` patterns (`*` and `?` wildcards). Empty: every user table.
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `"db.table" = "db2.table2"` or a whole schema `"db" = "db2"`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// The helper tables of online schema change tools (pt-online-schema-change's
    /// `_t_new`/`_t_old`, gh-ost's `_t_gho`/`_t_ghc`/`_t_del`): `skip` never replicates them,
    /// whatever `include` says; `off` treats them as ordinary tables.
    #[serde(default)]
    pub online_schema_change: OnlineSchemaChange,
}

/// `tables.online_schema_change`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnlineSchemaChange {
    #[default]
    Skip,
    Off,
}

impl TablesConfig {
    pub fn filter(&self) -> TableFilter {
        TableFilter::new(self).expect("validated at load")
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicatorConfig {
    /// Names this replicator's checkpoint row; two replicators of different sources into one
    /// target need different names.
    #[serde(default = "default_name")]
    pub name: String,
    /// Most rows of whole source transactions gathered into one target transaction (one
    /// larger than `source.fragment_rows` is written in fragments, in a target transaction
    /// of its own).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Longest time spent gathering one batch while more transactions keep arriving.
    #[serde(default = "default_batch_time", with = "humantime_serde")]
    pub batch_time: Duration,
    /// Source transactions (or fragments of one) read ahead of the applier — and of the
    /// verifier and the capture, each with its own reader.
    #[serde(default = "default_queue")]
    pub queue_transactions: usize,
    /// The same read-ahead bounded in bytes of binlog, e.g. `"8 MiB"`.
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: ByteSize,
    /// The source already enforced its foreign keys; checking them again on the target
    /// would reject rows only because a batch applies tables in a different order.
    #[serde(default)]
    pub foreign_key_checks: bool,
    #[serde(default = "default_audit_flag")]
    pub audit_flag_column: String,
    #[serde(default = "default_audit_ts")]
    pub audit_ts_column: String,
    /// Longest pause between retries of a transient target error.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// The applier's `innodb_lock_wait_timeout`: how long it waits for a row another
    /// target session holds before retrying the batch (whole seconds, at least 1s).
    #[serde(default = "default_lock_wait", with = "humantime_serde")]
    pub lock_wait_timeout: Duration,
    /// What a source `TRUNCATE` of a replicated table does to the target.
    #[serde(default)]
    pub truncate: TruncateMode,
    /// What a replicated target table with triggers does at start: a warning naming each
    /// (`warn`), or the replicator refuses to start (`refuse`). Triggers fire on concord's
    /// writes, unlike on a row-based native replica.
    #[serde(default)]
    pub target_triggers: TargetTriggers,
}

/// `replicator.target_triggers`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TargetTriggers {
    #[default]
    Warn,
    Refuse,
}

/// `replicator.truncate`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TruncateMode {
    /// Empty the target table too, in order with the changes around it.
    #[default]
    Apply,
    /// Leave the target table alone; record the TRUNCATE as a failed event (`truncate`).
    Record,
}

impl Default for ReplicatorConfig {
    fn default() -> Self {
        Self {
            name: default_name(),
            batch_rows: default_batch_rows(),
            batch_time: default_batch_time(),
            queue_transactions: default_queue(),
            queue_bytes: default_queue_bytes(),
            foreign_key_checks: false,
            truncate: TruncateMode::Apply,
            target_triggers: TargetTriggers::Warn,
            audit_flag_column: default_audit_flag(),
            audit_ts_column: default_audit_ts(),
            max_backoff: default_max_backoff(),
            lock_wait_timeout: default_lock_wait(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// `sqlite://FILE` (created if missing) or `mysql://…` for a shared store.
    #[serde(default = "default_control_url")]
    pub url: DbUrl,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            url: default_control_url(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address serving `/metrics`, `/healthz` and `/readyz`.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: default_metrics_listen(),
        }
    }
}

impl MetricsConfig {
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated at load")
    }
}

fn default_start() -> String {
    "current".into()
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(1)
}
fn default_checkpoint_schema() -> String {
    "concord".into()
}
fn default_schema_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_name() -> String {
    "default".into()
}
fn default_batch_rows() -> usize {
    20_000
}
fn default_batch_time() -> Duration {
    Duration::from_millis(50)
}
fn default_queue() -> usize {
    4096
}
fn default_queue_bytes() -> ByteSize {
    ByteSize::mib(8)
}
fn default_fragment_rows() -> usize {
    5000
}
fn default_fragment_bytes() -> ByteSize {
    ByteSize::mib(4)
}
fn default_audit_flag() -> String {
    "concord_replicated".into()
}
fn default_audit_ts() -> String {
    "concord_source_ts".into()
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_lock_wait() -> Duration {
    Duration::from_secs(50)
}
fn default_true() -> bool {
    true
}
fn default_group() -> String {
    "concord-replicator".into()
}
fn default_max_in_flight() -> usize {
    50_000
}
fn default_max_unacked() -> usize {
    2_000
}
fn default_control_url() -> DbUrl {
    DbUrl("sqlite://concord.db".into())
}
fn default_metrics_listen() -> String {
    "127.0.0.1:9187".into()
}

impl Config {
    pub(crate) fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        for (key, file, slot) in [
            (
                "source.password_file",
                &self.source.password_file,
                &mut self.source.password,
            ),
            (
                "target.password_file",
                &self.target.password_file,
                &mut self.target.password,
            ),
            (
                "verifier.target_password_file",
                &self.verifier.target_password_file,
                &mut self.verifier.target_password,
            ),
        ] {
            if let Some(path) = file {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::SecretFile {
                    key: key.into(),
                    path: path.display().to_string(),
                    error: e.to_string(),
                })?;
                *slot = Some(Secret(text.trim_end_matches(['\r', '\n']).to_owned()));
            }
        }
        Ok(())
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.recovery.rules()?;
        self.snapshot.validate()?;
        if let Some(console) = &self.console {
            console.validate()?;
        }
        if self.recovery.max_auto_repairs_per_minute == 0 {
            return Err(ConfigError::invalid(
                "recovery.max_auto_repairs_per_minute",
                0,
                "expected at least 1 (turn automatic repair off with recovery.auto_repair = false)",
            ));
        }
        for (key, url) in [
            ("source.url", &self.source.url),
            ("target.url", &self.target.url),
        ] {
            if let Err(e) = mysql_async::Opts::from_url(url.expose()) {
                return Err(ConfigError::invalid(
                    key,
                    url.redacted(),
                    format!("expected mysql://USER[:PASSWORD]@HOST:PORT ({e})"),
                ));
            }
        }
        if self.source.server_id == 0 {
            return Err(ConfigError::invalid(
                "source.server_id",
                0,
                "expected a replica server id from 1 to 4294967295, unique among the source's replicas",
            ));
        }
        match self.source.start.as_str() {
            "current" | "earliest" => {}
            s => {
                if s.parse::<Position>().is_err() {
                    return Err(ConfigError::invalid(
                        "source.start",
                        s,
                        "expected \"current\", \"earliest\" or \"FILE:POS\" (e.g. \"mysql-bin.000003:4\")",
                    ));
                }
            }
        }
        if self.source.heartbeat < Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                "source.heartbeat",
                humantime::format_duration(self.source.heartbeat),
                "expected at least 100ms",
            ));
        }
        if !is_identifier(&self.target.checkpoint_schema) {
            return Err(ConfigError::invalid(
                "target.checkpoint_schema",
                &self.target.checkpoint_schema,
                "expected a schema name of letters, digits, `_` or `$`",
            ));
        }
        if self.replicator.name.is_empty() || self.replicator.name.len() > 191 {
            return Err(ConfigError::invalid(
                "replicator.name",
                &self.replicator.name,
                "expected 1 to 191 characters",
            ));
        }
        if self.replicator.batch_rows == 0 {
            return Err(ConfigError::invalid(
                "replicator.batch_rows",
                0,
                "expected at least 1",
            ));
        }
        if self.replicator.lock_wait_timeout < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "replicator.lock_wait_timeout",
                humantime::format_duration(self.replicator.lock_wait_timeout),
                "expected at least 1s",
            ));
        }
        if self.replicator.queue_transactions == 0 {
            return Err(ConfigError::invalid(
                "replicator.queue_transactions",
                0,
                "expected at least 1",
            ));
        }
        if self.source.fragment_rows == 0 {
            return Err(ConfigError::invalid(
                "source.fragment_rows",
                0,
                "expected at least 1",
            ));
        }
        for (key, size, least) in [
            (
                "source.fragment_bytes",
                self.source.fragment_bytes,
                ByteSize::kib(8),
            ),
            (
                "replicator.queue_bytes",
                self.replicator.queue_bytes,
                ByteSize::kib(64),
            ),
        ] {
            if size < least || size > ByteSize::gib(1) {
                return Err(ConfigError::invalid(
                    key,
                    size.display().iec(),
                    format!("expected {} to 1 GiB", least.display().iec()),
                ));
            }
        }
        let control = self.control.url.expose();
        if !(control.starts_with("sqlite:")
            || control.starts_with("mysql://")
            || control.starts_with("mariadb://"))
        {
            return Err(ConfigError::invalid(
                "control.url",
                self.control.url.redacted(),
                "expected sqlite://FILE or mysql://USER@HOST:PORT/DB",
            ));
        }
        if self.metrics.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "metrics.listen",
                &self.metrics.listen,
                "expected HOST:PORT with a numeric address, e.g. 127.0.0.1:9187",
            ));
        }
        TableFilter::new(&self.tables)?;
        self.verifier.validate(self.source.server_id)?;
        self.checksum.validate()?;
        match (&self.transport.kind, &self.kafka) {
            (TransportKind::Kafka, None) => {
                return Err(ConfigError::invalid(
                    "kafka",
                    "(missing)",
                    "transport.kind = \"kafka\" needs a [kafka] section with brokers and topic",
                ))
            }
            (_, Some(k)) => {
                if k.brokers.trim().is_empty() {
                    return Err(ConfigError::invalid(
                        "kafka.brokers",
                        &k.brokers,
                        "expected host:port[,host:port…]",
                    ));
                }
                let legal = |t: &str| {
                    !t.is_empty()
                        && t.len() <= 200
                        && t.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                };
                if !legal(&k.topic) {
                    return Err(ConfigError::invalid(
                        "kafka.topic",
                        &k.topic,
                        "expected a topic name of letters, digits, `.`, `_` or `-`",
                    ));
                }
                if !legal(&k.dead_letter_topic()) {
                    return Err(ConfigError::invalid(
                        "kafka.dead_letter_topic",
                        k.dead_letter_topic(),
                        "expected a topic name of letters, digits, `.`, `_` or `-`",
                    ));
                }
                if k.group.is_empty() {
                    return Err(ConfigError::invalid(
                        "kafka.group",
                        "",
                        "expected a consumer group name",
                    ));
                }
                if k.max_unacked == 0 {
                    return Err(ConfigError::invalid(
                        "kafka.max_unacked",
                        0,
                        "expected at least 1",
                    ));
                }
                if k.max_in_flight == 0 {
                    return Err(ConfigError::invalid(
                        "kafka.max_in_flight",
                        0,
                        "expected at least 1",
                    ));
                }
            }
            (TransportKind::Direct, None) => {}
        }
        Ok(())
    }
}

pub(crate) fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// `s` as a regular expression matching itself (librdkafka's subscription patterns).
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}
