//! concord's configuration: one TOML file, every key overridable from the environment as
//! `CONCORD_SECTION__KEY`, validated as a whole before any role starts.
//!
//! Invariant: a [`Config`] that was returned by [`Config::load`] is valid — every role can
//! rely on it without re-checking — and its `Debug` output never contains a secret.

mod console;
mod error;
mod recovery;
mod sections;
mod snapshot;
mod tables;
mod verifier;

pub use console::{
    ConsoleAuth, ConsoleConfig, ConsoleRole, ConsoleUser, CookieSecure, HeaderAuthConfig,
};
pub use error::ConfigError;
pub use recovery::{RecoveryConfig, RecoveryRules, TableRecovery};
pub use sections::*;
pub use snapshot::{SnapshotConfig, SnapshotMode};
pub use tables::{osc_helper, OscTool, TableFilter};
pub use verifier::{ChecksumConfig, VerifierConfig};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use std::path::Path;

impl Config {
    /// Reads `path` (if given), applies `CONCORD_*` environment overrides, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::Missing(path.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        Self::from_figment(figment.merge(env_provider()))
    }

    /// Parses a TOML document (no environment), for tests and `check-config --stdin`.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract().map_err(ConfigError::from_figment)?;
        config.resolve_secrets()?;
        config.validate()?;
        Ok(config)
    }
}

/// `CONCORD_SOURCE__URL` → `source.url`. Variables without a `__` (e.g. `CONCORD_BIN`) are
/// not configuration and are ignored rather than refused.
fn env_provider() -> Env {
    Env::prefixed("CONCORD_")
        .filter(|key| key.as_str().contains("__"))
        .split("__")
}

#[cfg(test)]
mod tests;
