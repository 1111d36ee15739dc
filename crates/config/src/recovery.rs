//! `[recovery]`: when and how mismatches are rechecked and repaired (docs/RECOVERY.md).

use crate::ConfigError;
use concord_change::TableName;
use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryConfig {
    /// A detected mismatch is rechecked (and maybe repaired) this long after it was first
    /// seen; the replicator lagging by more than this holds every repair back.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace: Duration,
    /// Repair mismatches automatically after the grace period (per table below).
    #[serde(default = "default_true")]
    pub auto_repair: bool,
    /// Above this many automatic repairs in a minute — or this many due at once — the
    /// circuit opens: no automatic writes until an operator resumes them.
    #[serde(default = "default_max_auto")]
    pub max_auto_repairs_per_minute: u32,
    /// How often the worker looks for due records.
    #[serde(default = "default_every", with = "humantime_serde")]
    pub every: Duration,
    /// Per-table settings; keys are `db.table` patterns as in `tables.include`.
    #[serde(default)]
    pub tables: BTreeMap<String, TableRecovery>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRecovery {
    pub auto_repair: Option<bool>,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            grace: default_grace(),
            auto_repair: true,
            max_auto_repairs_per_minute: default_max_auto(),
            every: default_every(),
            tables: BTreeMap::new(),
        }
    }
}

fn default_grace() -> Duration {
    Duration::from_secs(300)
}
fn default_true() -> bool {
    true
}
fn default_max_auto() -> u32 {
    600
}
fn default_every() -> Duration {
    Duration::from_secs(2)
}

/// The per-table rules, compiled. Of several patterns matching a table, an exact name wins,
/// then the longest pattern (the most specific), so `"shop.ledger"` overrides `"shop.*"`.
#[derive(Clone, Debug)]
pub struct RecoveryRules {
    default: bool,
    rules: Vec<(String, GlobMatcher, TableRecovery)>,
}

impl RecoveryConfig {
    pub fn rules(&self) -> Result<RecoveryRules, ConfigError> {
        let mut rules = Vec::new();
        for (pattern, t) in &self.tables {
            let key = format!("recovery.tables.\"{pattern}\"");
            if !pattern.contains('.') {
                return Err(ConfigError::invalid(
                    &key,
                    pattern,
                    "expected a `db.table` pattern such as \"shop.*\" or \"shop.ledger\"",
                ));
            }
            let glob = GlobBuilder::new(pattern)
                .literal_separator(false)
                .build()
                .map_err(|e| {
                    ConfigError::invalid(&key, pattern, format!("expected a glob pattern ({e})"))
                })?;
            rules.push((pattern.clone(), glob.compile_matcher(), t.clone()));
        }
        // Most specific first: exact names, then longer patterns.
        rules.sort_by_key(|(p, ..)| {
            let exact = !p.contains(['*', '?', '[', '{']);
            (std::cmp::Reverse(exact), std::cmp::Reverse(p.len()))
        });
        Ok(RecoveryRules {
            default: self.auto_repair,
            rules,
        })
    }
}

impl RecoveryRules {
    /// Whether mismatches of `table` (a source name) are repaired automatically.
    pub fn auto_repair(&self, table: &TableName) -> bool {
        let name = format!("{}.{}", table.db, table.table);
        self.rules
            .iter()
            .find(|(_, m, t)| t.auto_repair.is_some() && m.is_match(&name))
            .and_then(|(.., t)| t.auto_repair)
            .unwrap_or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_pattern_decides() {
        let config: RecoveryConfig = toml_from(
            r#"
            grace = "5s"
            [tables."shop.*"]
            auto_repair = false
            [tables."shop.orders"]
            auto_repair = true
            "#,
        );
        assert_eq!(config.grace, Duration::from_secs(5));
        let rules = config.rules().unwrap();
        assert!(rules.auto_repair(&TableName::new("shop", "orders")));
        assert!(!rules.auto_repair(&TableName::new("shop", "ledger")));
        assert!(rules.auto_repair(&TableName::new("crm", "people")));
    }

    #[test]
    fn a_pattern_without_a_schema_is_refused_naming_it() {
        let config: RecoveryConfig = toml_from("[tables.ledger]\nauto_repair = false\n");
        let e = config.rules().unwrap_err().to_string();
        assert!(e.contains("recovery.tables.\"ledger\""), "{e}");
    }

    fn toml_from(text: &str) -> RecoveryConfig {
        figment::Figment::new()
            .merge(<figment::providers::Toml as figment::providers::Format>::string(text))
            .extract()
            .unwrap()
    }
}
