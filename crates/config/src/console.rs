//! `[console]`: the web console's address and who may use it (docs/CONSOLE.md).
//!
//! Invariant: a loaded `ConsoleConfig` has a way to tell who a request comes from — at
//! least one user with a well-formed argon2 hash (`auth = "users"`), or at least one
//! trusted proxy address (`auth = "header"`) — and every role named is a known one.

use crate::ConfigError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// What a console user may do. Ordered: each role may do everything the ones before it may.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleRole {
    /// Reads every page; changes nothing.
    Viewer,
    /// Also repairs, ignores, retries, starts and cancels jobs.
    Operator,
    /// Also closes the auto-repair circuit.
    Admin,
}

impl ConsoleRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleRole::Viewer => "viewer",
            ConsoleRole::Operator => "operator",
            ConsoleRole::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Viewer, Self::Operator, Self::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleAuth {
    /// Users listed in `[[console.users]]`, a login page, sessions in the control store.
    #[default]
    Users,
    /// A trusted reverse proxy names the user in a header.
    Header,
}

/// Whether the session cookie is marked `Secure`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CookieSecure {
    /// When the request came over TLS (a trusted proxy's `X-Forwarded-Proto: https`).
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUser {
    pub name: String,
    /// An argon2 PHC string, as `concord console hash-password` prints it.
    pub password_hash: String,
    pub role: ConsoleRole,
}

impl std::fmt::Debug for ConsoleUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleUser")
            .field("name", &self.name)
            .field("password_hash", &"***")
            .field("role", &self.role)
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderAuthConfig {
    /// The header the proxy names the user in.
    #[serde(default = "default_user_header")]
    pub user_header: String,
    /// A header listing the user's groups, comma-separated (oauth2-proxy's
    /// `X-Forwarded-Groups`).
    #[serde(default)]
    pub groups_header: Option<String>,
    /// Addresses (`10.0.0.7`) or networks (`10.0.0.0/8`) the headers are accepted from;
    /// a request from anywhere else is refused.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Role by user name or group name; the highest that applies wins.
    #[serde(default)]
    pub roles: BTreeMap<String, ConsoleRole>,
    /// The role of a user the proxy names but `roles` does not (none: refused).
    #[serde(default)]
    pub default_role: Option<ConsoleRole>,
}

impl Default for HeaderAuthConfig {
    fn default() -> Self {
        Self {
            user_header: default_user_header(),
            groups_header: None,
            trusted_proxies: Vec::new(),
            roles: BTreeMap::new(),
            default_role: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub auth: ConsoleAuth,
    #[serde(default)]
    pub users: Vec<ConsoleUser>,
    #[serde(default)]
    pub header: HeaderAuthConfig,
    /// A session unused this long is ended.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(default)]
    pub cookie_secure: CookieSecure,
    /// Failed logins allowed per user and address within `login_window`; more are refused
    /// until the window passes.
    #[serde(default = "default_attempts")]
    pub login_attempts: u32,
    #[serde(default = "default_window", with = "humantime_serde")]
    pub login_window: Duration,
    /// Origins (`https://concord.example.com`) a form may be posted from besides the
    /// console's own (the `Host` it was reached at).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Seconds between the overview's refreshes.
    #[serde(default = "default_refresh")]
    pub refresh_seconds: u32,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_user_header() -> String {
    "X-Forwarded-User".into()
}
fn default_idle() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_attempts() -> u32 {
    5
}
fn default_window() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_refresh() -> u32 {
    10
}

impl ConsoleConfig {
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated at load")
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "console.listen",
                &self.listen,
                "expected an address and port such as \"127.0.0.1:8080\"",
            ));
        }
        if self.idle_timeout < Duration::from_secs(60) {
            return Err(ConfigError::invalid(
                "console.idle_timeout",
                humantime::format_duration(self.idle_timeout),
                "expected at least 1m",
            ));
        }
        if self.login_attempts == 0 {
            return Err(ConfigError::invalid(
                "console.login_attempts",
                0,
                "expected at least 1",
            ));
        }
        match self.auth {
            ConsoleAuth::Users => self.validate_users(),
            ConsoleAuth::Header => self.validate_header(),
        }
    }

    fn validate_users(&self) -> Result<(), ConfigError> {
        if self.users.is_empty() {
            return Err(ConfigError::invalid(
                "console.users",
                "[]",
                "expected at least one [[console.users]] entry with auth = \"users\" \
                 (name, password_hash from `concord console hash-password`, role)",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("console.users[{i}]");
            if u.name.trim().is_empty() || u.name.len() > 64 {
                return Err(ConfigError::invalid(
                    &format!("{key}.name"),
                    &u.name,
                    "expected a name of 1 to 64 characters",
                ));
            }
            if !seen.insert(u.name.as_str()) {
                return Err(ConfigError::invalid(
                    &format!("{key}.name"),
                    &u.name,
                    "expected each user once",
                ));
            }
            if !is_argon2_phc(&u.password_hash) {
                return Err(ConfigError::invalid(
                    &format!("{key}.password_hash"),
                    "***",
                    "expected an argon2 PHC string ($argon2id$v=19$...), as `concord console \
                     hash-password` prints it",
                ));
            }
        }
        Ok(())
    }

    fn validate_header(&self) -> Result<(), ConfigError> {
        let h = &self.header;
        if h.user_header.trim().is_empty() {
            return Err(ConfigError::invalid(
                "console.header.user_header",
                &h.user_header,
                "expected a header name such as \"X-Forwarded-User\"",
            ));
        }
        if h.trusted_proxies.is_empty() {
            return Err(ConfigError::invalid(
                "console.header.trusted_proxies",
                "[]",
                "expected the proxy's addresses or networks (\"10.0.0.0/8\"): without them \
                 anyone could name themselves in the header",
            ));
        }
        for (i, p) in h.trusted_proxies.iter().enumerate() {
            if parse_network(p).is_none() {
                return Err(ConfigError::invalid(
                    &format!("console.header.trusted_proxies[{i}]"),
                    p,
                    "expected an IP address or a network such as \"10.0.0.0/8\"",
                ));
            }
        }
        Ok(())
    }

    /// The trusted proxies, parsed (validated at load).
    pub fn trusted_proxies(&self) -> Vec<ipnet::IpNet> {
        self.header
            .trusted_proxies
            .iter()
            .filter_map(|p| parse_network(p))
            .collect()
    }
}

/// `10.0.0.7` (one address) or `10.0.0.0/8`.
fn parse_network(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Whether `s` is an argon2 PHC string (parsed by the argon2 crate's PHC parser); the
/// console verifies passwords against it. Checked here so a pasted bcrypt hash or a plain
/// password is refused at start, not at the first login.
fn is_argon2_phc(s: &str) -> bool {
    argon2::PasswordHash::new(s).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}
