//! Which source tables are replicated, and under which name they land on the target.
//!
//! Invariant: system schemas (`mysql`, `information_schema`, `performance_schema`, `sys`)
//! never match, whatever the patterns say; nor do the helper tables of online schema change
//! tools unless `tables.online_schema_change = "off"` or `tables.include` names the table
//! exactly (a real table called `_sessions_old`, say).

use crate::error::ConfigError;
use crate::sections::{is_identifier, OnlineSchemaChange, TablesConfig};
use concord_change::TableName;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::collections::{HashMap, HashSet};

const SYSTEM_SCHEMAS: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

#[derive(Clone, Debug)]
pub struct TableFilter {
    include: Option<GlobSet>,
    exclude: GlobSet,
    table_renames: HashMap<(String, String), TableName>,
    schema_renames: HashMap<String, String>,
    skip_osc_helpers: bool,
    /// `tables.include` entries without wildcards: they name a table, so they override the
    /// online-schema-change skip.
    exact: HashSet<String>,
}

/// An online schema change tool whose helper tables are recognised by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OscTool {
    PtOnlineSchemaChange,
    GhOst,
}

impl OscTool {
    pub fn as_str(self) -> &'static str {
        match self {
            OscTool::PtOnlineSchemaChange => "pt-online-schema-change",
            OscTool::GhOst => "gh-ost",
        }
    }
}

/// The tool and the table it is changing when `name` is one of its helper tables:
/// `_t_new`/`_t_old` (pt-online-schema-change, which adds more leading underscores when
/// the name is taken) or `_t_gho`/`_t_ghc`/`_t_del` (gh-ost).
pub fn osc_helper(name: &TableName) -> Option<(OscTool, TableName)> {
    let rest = name.table.strip_prefix('_')?;
    let (tool, original) = [
        ("_new", OscTool::PtOnlineSchemaChange),
        ("_old", OscTool::PtOnlineSchemaChange),
        ("_gho", OscTool::GhOst),
        ("_ghc", OscTool::GhOst),
        ("_del", OscTool::GhOst),
    ]
    .into_iter()
    .find_map(|(suffix, tool)| Some((tool, rest.strip_suffix(suffix)?)))?;
    let original = match tool {
        OscTool::PtOnlineSchemaChange => original.trim_start_matches('_'),
        OscTool::GhOst => original,
    };
    (!original.is_empty()).then(|| (tool, TableName::new(name.db.clone(), original)))
}

impl TableFilter {
    pub fn new(config: &TablesConfig) -> Result<Self, ConfigError> {
        let include = if config.include.is_empty() {
            None
        } else {
            Some(build_set("tables.include", &config.include)?)
        };
        let exclude = build_set("tables.exclude", &config.exclude)?;
        let mut table_renames = HashMap::new();
        let mut schema_renames = HashMap::new();
        for (from, to) in &config.rename {
            let key = format!("tables.rename.\"{from}\"");
            match (from.split_once('.'), to.split_once('.')) {
                (Some((fd, ft)), Some((td, tt)))
                    if [fd, ft, td, tt].iter().all(|s| is_identifier(s)) =>
                {
                    table_renames.insert((fd.to_owned(), ft.to_owned()), TableName::new(td, tt));
                }
                (None, None) if is_identifier(from) && is_identifier(to) => {
                    schema_renames.insert(from.clone(), to.clone());
                }
                _ => {
                    return Err(ConfigError::invalid(
                        &key,
                        to,
                        "expected \"db.table\" = \"db.table\" or \"db\" = \"db\" (plain names)",
                    ))
                }
            }
        }
        Ok(Self {
            include,
            exclude,
            table_renames,
            schema_renames,
            skip_osc_helpers: config.online_schema_change == OnlineSchemaChange::Skip,
            exact: config
                .include
                .iter()
                .filter(|p| !p.contains(['*', '?', '[', '{']))
                .cloned()
                .collect(),
        })
    }

    pub fn matches(&self, name: &TableName) -> bool {
        self.matches_patterns(name) && !self.skipped_as_osc_helper(name)
    }

    /// Whether the patterns include `name` but it is skipped as an online schema change
    /// tool's helper table (the start-up warning lists such tables).
    pub fn skipped_as_osc_helper(&self, name: &TableName) -> bool {
        self.skip_osc_helpers
            && osc_helper(name).is_some()
            && !self.exact.contains(&name.to_string())
            && self.matches_patterns(name)
    }

    fn matches_patterns(&self, name: &TableName) -> bool {
        if SYSTEM_SCHEMAS.contains(&name.db.as_str()) {
            return false;
        }
        let full = name.to_string();
        let included = self.include.as_ref().is_none_or(|set| set.is_match(&full));
        included && !self.exclude.is_match(&full)
    }

    /// Whether rows of some replicated source table are written to `target` (through
    /// `tables.rename`).
    pub fn writes_to(&self, target: &TableName) -> bool {
        self.source_of(target).is_some()
    }

    /// A replicated source table whose rows are written to `target`, if there is one.
    pub fn source_of(&self, target: &TableName) -> Option<TableName> {
        let mut sources: Vec<TableName> = self
            .table_renames
            .iter()
            .filter(|(_, t)| *t == target)
            .map(|((db, table), _)| TableName::new(db.clone(), table.clone()))
            .collect();
        sources.extend(
            self.schema_renames
                .iter()
                .filter(|(_, to)| **to == target.db)
                .map(|(from, _)| TableName::new(from.clone(), target.table.clone())),
        );
        sources.push(target.clone());
        sources
            .into_iter()
            .find(|s| self.matches(s) && self.target_name(s) == *target)
    }

    /// The target table a source table is written to.
    pub fn target_name(&self, source: &TableName) -> TableName {
        if let Some(t) = self
            .table_renames
            .get(&(source.db.clone(), source.table.clone()))
        {
            return t.clone();
        }
        match self.schema_renames.get(&source.db) {
            Some(db) => TableName::new(db.clone(), source.table.clone()),
            None => source.clone(),
        }
    }
}

fn build_set(key: &str, patterns: &[String]) -> Result<GlobSet, ConfigError> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        if !p.contains('.') {
            return Err(ConfigError::invalid(
                key,
                p,
                "expected a `db.table` pattern such as \"shop.*\" or \"shop.orders\"",
            ));
        }
        let glob = GlobBuilder::new(p)
            .literal_separator(false)
            .build()
            .map_err(|e| ConfigError::invalid(key, p, format!("expected a glob pattern ({e})")))?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| ConfigError::invalid(key, patterns.join(","), e.to_string()))
}
