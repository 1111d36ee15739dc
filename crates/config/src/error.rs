use std::fmt;

/// A configuration the roles must not start with. Every variant names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(String),
    #[error("{0}")]
    Parse(String),
    #[error("config key `{key}` = {value}: {expected}")]
    Invalid {
        key: String,
        value: String,
        expected: String,
    },
    #[error("cannot read secret file {path} for `{key}`: {error}")]
    SecretFile {
        key: String,
        path: String,
        error: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(
        key: &str,
        value: impl fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            value: format!("`{value}`"),
            expected: expected.into(),
        }
    }

    /// figment's own messages already name the key, the offending value and the accepted
    /// shape; keep them and only add every error when there are several.
    pub(crate) fn from_figment(e: figment::Error) -> Self {
        let msgs: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        ConfigError::Parse(msgs.join("; "))
    }
}
