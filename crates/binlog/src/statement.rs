//! What an SQL statement in the binlog (a query event) is: transaction control, XA, a data
//! change logged as a statement (a session with `binlog_format` STATEMENT or MIXED), or
//! DDL — and which tables it names. Parsing uses `sqlparser`'s MySQL dialect.
//!
//! Invariant: a statement that may change rows is never taken for DDL. What the parser
//! cannot read is classified by its first keyword, so `INSERT …` that it fails on is
//! still a data change (attributed to no table), never something to skip.

use concord_change::{LoggedStatement, TableName};
use sqlparser::ast::{FromTable, ObjectName, Statement, TableFactor, TableObject, TableWithJoins};
use sqlparser::dialect::MySqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Counts a data change logged as SQL (`concord_statement_events_total{table}`) and warns
/// about it — at most once a minute per table, since a tool's session can log thousands.
/// Called by the role that records it, so each is counted once per process.
pub fn report_statement(s: &LoggedStatement) {
    static LAST_WARNED: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Default::default);
    let labels: Vec<String> = if s.tables.is_empty() {
        vec![format!("{}.*", s.schema)]
    } else {
        s.tables.iter().map(ToString::to_string).collect()
    };
    for table in labels {
        metrics::STATEMENTS.with_label_values(&[&table]).inc();
        let now = Instant::now();
        let mut warned = LAST_WARNED.lock().expect("warned-at lock");
        let due = warned
            .get(&table)
            .is_none_or(|at| now.duration_since(*at) >= Duration::from_secs(60));
        if due {
            warned.insert(table.clone(), now);
            tracing::warn!(
                %table,
                position = %s.position,
                statement = %s.statement,
                "the source logged a data change as an SQL statement (binlog_format STATEMENT \
                 or MIXED in its session); recorded as a failed event (statement_format) — \
                 re-sync the table; further ones for this table are counted in \
                 concord_statement_events_total and warned about once a minute"
            );
        }
    }
}

mod metrics {
    use prometheus::{register_int_counter_vec, IntCounterVec};
    use std::sync::LazyLock;

    pub static STATEMENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register_int_counter_vec!(
            "concord_statement_events_total",
            "Data changes the source logged as SQL statements instead of rows (recorded, not applied)",
            &["table"]
        )
        .expect("metric registers once")
    });
}

/// What a query event's statement does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryKind {
    Begin,
    /// `COMMIT`, or a `ROLLBACK` that ends the transaction.
    Commit,
    /// `SAVEPOINT`, `RELEASE SAVEPOINT`, `ROLLBACK TO …`: the transaction goes on.
    Savepoint,
    Xa(XaVerb, String),
    /// A data change logged as SQL; the tables it may change (empty: could not tell).
    Dml(Vec<TableName>),
    /// `TRUNCATE TABLE`: every row of the tables goes (empty: could not tell which —
    /// recorded, never passed over).
    Truncate(Vec<TableName>),
    /// `ALTER TABLE … TRUNCATE|DROP|EXCHANGE PARTITION`: a schema change that also removes
    /// (or swaps in) rows without row events, in the tables named (empty: could not tell).
    PartitionRows(Vec<TableName>),
    /// Anything else: a schema change (or a statement that changes no rows), with the
    /// tables it names (empty: could not tell).
    Ddl(Vec<TableName>),
    /// A comment-only event (what MariaDB sends in place of events an old-style replica
    /// cannot parse).
    Comment,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XaVerb {
    Start,
    End,
    Prepare,
    Commit,
    /// `XA COMMIT … ONE PHASE`: commits the transaction it ends, no prepare before it.
    CommitOnePhase,
    Rollback,
}

/// Classifies `statement`, run with default schema `schema`.
pub fn classify(schema: &str, statement: &str) -> QueryKind {
    let trimmed = statement.trim_start();
    if trimmed.starts_with('#') {
        return QueryKind::Comment;
    }
    let mut words = trimmed.split_whitespace();
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    let second = words.next().unwrap_or("").to_ascii_uppercase();
    match first.as_str() {
        "BEGIN" => return QueryKind::Begin,
        "START" if second == "TRANSACTION" => return QueryKind::Begin,
        "COMMIT" => return QueryKind::Commit,
        "ROLLBACK" if second == "TO" => return QueryKind::Savepoint,
        "ROLLBACK" => return QueryKind::Commit,
        "SAVEPOINT" | "RELEASE" => return QueryKind::Savepoint,
        "XA" => {
            if let Some(xa) = xa(trimmed, &second) {
                return xa;
            }
        }
        _ => {}
    }
    if first == "ALTER" && changes_partition_rows(trimmed) {
        return QueryKind::PartitionRows(partition_tables(schema, trimmed));
    }
    let dml_keyword = matches!(
        first.as_str(),
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD" | "WITH" | "CALL"
    );
    let Ok(parsed) = Parser::parse_sql(&MySqlDialect {}, statement) else {
        return if first == "TRUNCATE" {
            QueryKind::Truncate(Vec::new())
        } else if dml_keyword {
            QueryKind::Dml(Vec::new())
        } else {
            QueryKind::Ddl(Vec::new())
        };
    };
    let mut dml = Vec::new();
    let mut ddl = Vec::new();
    let mut unknown_dml = false;
    for s in &parsed {
        match changed_tables(s) {
            Some(names) if names.is_empty() => unknown_dml = true,
            Some(names) => dml.extend(names),
            None => ddl.extend(ddl_tables(s)),
        }
    }
    let qualify_all = |names: Vec<&ObjectName>| -> Vec<TableName> {
        names
            .into_iter()
            .filter_map(|n| qualify(schema, n))
            .collect()
    };
    if let [Statement::Truncate(t)] = parsed.as_slice() {
        let names: Option<Vec<TableName>> = t
            .table_names
            .iter()
            .map(|n| qualify(schema, &n.name))
            .collect();
        return QueryKind::Truncate(names.unwrap_or_default());
    }
    if !dml.is_empty() || unknown_dml || dml_keyword {
        let names = qualify_all(dml);
        // A name the default schema cannot qualify leaves the statement unattributed.
        return QueryKind::Dml(if unknown_dml { Vec::new() } else { names });
    }
    match ddl.into_iter().collect::<Option<Vec<_>>>() {
        Some(names) => QueryKind::Ddl(qualify_all(names)),
        None => QueryKind::Ddl(Vec::new()),
    }
}

/// Whether an `ALTER TABLE` truncates, drops, exchanges, converts, discards or imports a
/// partition: its rows go (or come from another table or a tablespace file) without row
/// events. (`REORGANIZE`, `COALESCE`, `REMOVE PARTITIONING` keep every row.) Only
/// keywords count, not words inside quotes or comments.
fn changes_partition_rows(statement: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&MySqlDialect {}, statement).tokenize() else {
        return false;
    };
    let words: Vec<String> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .map(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
            _ => String::new(),
        })
        .collect();
    words.windows(2).any(|w| {
        let verb = matches!(
            w[0].as_str(),
            "TRUNCATE" | "DROP" | "EXCHANGE" | "CONVERT" | "DISCARD" | "IMPORT"
        );
        // `CONVERT TABLE t TO PARTITION p` names the table first.
        verb && (w[1] == "PARTITION" || (w[0] == "CONVERT" && w[1] == "TABLE"))
    })
}

/// The table an `ALTER TABLE` names and, for `EXCHANGE PARTITION … WITH TABLE`, the other
/// one; empty if a name cannot be read.
fn partition_tables(schema: &str, statement: &str) -> Vec<TableName> {
    let Ok(tokens) = Tokenizer::new(&MySqlDialect {}, statement).tokenize() else {
        return Vec::new();
    };
    let tokens: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut names = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let Token::Word(w) = t else { continue };
        if w.quote_style.is_none() && w.keyword == Keyword::TABLE {
            match table_name_at(schema, &tokens[i + 1..]) {
                Some(name) => names.push(name),
                None => return Vec::new(),
            }
        }
    }
    names
}

/// `[IF EXISTS] name` or `[IF EXISTS] db.name` at the start of `tokens`.
fn table_name_at(schema: &str, tokens: &[&Token]) -> Option<TableName> {
    let word = |t: Option<&&Token>| match t {
        Some(Token::Word(w)) => Some(w.clone()),
        _ => None,
    };
    let mut at = 0;
    if word(tokens.first()).is_some_and(|w| w.quote_style.is_none() && w.keyword == Keyword::IF) {
        at = 2;
    }
    let first = word(tokens.get(at))?;
    if matches!(tokens.get(at + 1), Some(Token::Period)) {
        let second = word(tokens.get(at + 2))?;
        return Some(TableName::new(first.value, second.value));
    }
    (!schema.is_empty()).then(|| TableName::new(schema, first.value))
}

/// `XA START|END|PREPARE|COMMIT|ROLLBACK xid`, with the xid as the server wrote it.
fn xa(statement: &str, verb: &str) -> Option<QueryKind> {
    let rest = statement.trim_start()[2..].trim_start()[verb.len()..].trim();
    let verb = match verb {
        "START" | "BEGIN" => XaVerb::Start,
        "END" => XaVerb::End,
        "PREPARE" => XaVerb::Prepare,
        "COMMIT" => {
            let upper = rest.to_ascii_uppercase();
            if let Some(xid) = upper.strip_suffix("ONE PHASE") {
                let xid = rest[..xid.trim_end().len()].trim().to_owned();
                return Some(QueryKind::Xa(XaVerb::CommitOnePhase, xid));
            }
            XaVerb::Commit
        }
        "ROLLBACK" => XaVerb::Rollback,
        _ => return None,
    };
    Some(QueryKind::Xa(verb, rest.to_owned()))
}

/// The tables a data-changing statement may change; `None` when it changes no rows. An
/// empty list: it changes rows, but the tables cannot be named (a procedure call, say).
fn changed_tables(s: &Statement) -> Option<Vec<&ObjectName>> {
    match s {
        Statement::Insert(insert) => Some(match &insert.table {
            TableObject::TableName(name) => vec![name],
            _ => Vec::new(),
        }),
        // Every table an UPDATE joins may be one it sets columns of.
        Statement::Update(update) => Some(joined(std::slice::from_ref(&update.table))),
        Statement::Delete(delete) => Some(if delete.tables.is_empty() {
            match &delete.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => joined(t),
            }
        } else {
            delete.tables.iter().collect()
        }),
        Statement::LoadData { table_name, .. } => Some(vec![table_name]),
        Statement::Call(_) => Some(Vec::new()),
        Statement::Query(_) | Statement::Set(_) => None,
        _ => None,
    }
}

fn joined(tables: &[TableWithJoins]) -> Vec<&ObjectName> {
    let mut out = Vec::new();
    for t in tables {
        for factor in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
            if let TableFactor::Table { name, .. } = factor {
                out.push(name);
            }
        }
    }
    out
}

/// Tables a schema statement names, so exactly their cached column sets are dropped;
/// `None` inside when a statement's tables cannot be told.
fn ddl_tables(s: &Statement) -> Vec<Option<&ObjectName>> {
    match s {
        Statement::AlterTable(alter) => vec![Some(&alter.name)],
        Statement::CreateTable(create) => vec![Some(&create.name)],
        Statement::Drop { names, .. } => names.iter().map(Some).collect(),
        Statement::RenameTable(renames) => renames
            .iter()
            .flat_map(|r| [Some(&r.old_name), Some(&r.new_name)])
            .collect(),
        Statement::Truncate(t) => t.table_names.iter().map(|t| Some(&t.name)).collect(),
        _ => vec![None],
    }
}

fn qualify(schema: &str, name: &ObjectName) -> Option<TableName> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(|i| i.value.clone()))
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [table] if !schema.is_empty() => Some(TableName::new(schema, table.clone())),
        [db, table] => Some(TableName::new(db.clone(), table.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(db: &str, table: &str) -> TableName {
        TableName::new(db, table)
    }

    #[test]
    fn names_tables_of_common_ddl() {
        let ddl = |schema, sql| match classify(schema, sql) {
            QueryKind::Ddl(names) => names,
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(
            ddl("shop", "ALTER TABLE orders ADD COLUMN note VARCHAR(10)"),
            [t("shop", "orders")]
        );
        assert_eq!(
            ddl("", "ALTER TABLE `crm`.`people` DROP COLUMN age"),
            [t("crm", "people")]
        );
        assert_eq!(
            ddl("shop", "RENAME TABLE a TO b"),
            [t("shop", "a"), t("shop", "b")]
        );
        assert_eq!(
            ddl("shop", "DROP TABLE IF EXISTS x, other.y"),
            [t("shop", "x"), t("other", "y")]
        );
        assert!(ddl("shop", "CREATE DATABASE shop2").is_empty());
        assert!(ddl("shop", "GRANT ALL ON *.* TO x").is_empty());
        assert!(ddl("", "ALTER TABLE orders ADD COLUMN c INT").is_empty());
        assert!(ddl("shop", "this is not sql").is_empty());
    }

    #[test]
    fn truncate_names_what_it_empties() {
        let truncated = |schema, sql| match classify(schema, sql) {
            QueryKind::Truncate(names) => names,
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(
            truncated("shop", "TRUNCATE TABLE orders"),
            [t("shop", "orders")]
        );
        assert_eq!(
            truncated("", "truncate `sbtest`.`sbtest2`"),
            [t("sbtest", "sbtest2")]
        );
        // No default schema for an unqualified name, or a form the parser does not read:
        // which table is not known (the caller records it).
        assert!(truncated("", "TRUNCATE TABLE orders").is_empty());
        assert!(truncated("shop", "TRUNCATE TABLE orders WAIT 5 garbage(").is_empty());
    }

    #[test]
    fn partition_statements_that_remove_rows_name_their_tables() {
        let rows = |schema, sql| match classify(schema, sql) {
            QueryKind::PartitionRows(tables) => tables,
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(
            rows("shop", "ALTER TABLE logs TRUNCATE PARTITION p1, p2"),
            [t("shop", "logs")]
        );
        assert_eq!(
            rows("", "alter table `shop`.`logs` drop partition p2019"),
            [t("shop", "logs")]
        );
        assert_eq!(
            rows(
                "shop",
                "ALTER TABLE IF EXISTS logs EXCHANGE PARTITION p1 WITH TABLE archive.logs_p1"
            ),
            [t("shop", "logs"), t("archive", "logs_p1")]
        );
        assert!(rows("", "ALTER TABLE logs DROP PARTITION p1").is_empty());
        assert_eq!(
            rows(
                "shop",
                "ALTER TABLE logs CONVERT PARTITION p1 TO TABLE logs_p1"
            ),
            [t("shop", "logs"), t("shop", "logs_p1")]
        );
        assert_eq!(
            rows(
                "shop",
                "ALTER TABLE logs CONVERT TABLE staged TO PARTITION p3 VALUES LESS THAN (30)"
            ),
            [t("shop", "logs"), t("shop", "staged")]
        );
        assert_eq!(
            rows("shop", "ALTER TABLE logs DISCARD PARTITION p1 TABLESPACE"),
            [t("shop", "logs")]
        );
        for keeps_rows in [
            "ALTER TABLE logs REORGANIZE PARTITION p1 INTO (PARTITION p1a VALUES LESS THAN (5))",
            "ALTER TABLE logs REMOVE PARTITIONING",
            "ALTER TABLE logs ADD PARTITION (PARTITION p9 VALUES LESS THAN (99))",
            "ALTER TABLE logs DROP COLUMN partition_key",
            "ALTER TABLE logs COMMENT 'drop partition p1 later'",
        ] {
            assert!(
                matches!(classify("shop", keeps_rows), QueryKind::Ddl(_)),
                "{keeps_rows}"
            );
        }
    }

    #[test]
    fn data_changes_logged_as_statements_are_dml_with_their_tables() {
        let dml = |schema, sql| match classify(schema, sql) {
            QueryKind::Dml(names) => names,
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(
            dml("shop", "INSERT INTO orders (id) VALUES (1)"),
            [t("shop", "orders")]
        );
        assert_eq!(
            dml("shop", "insert into other.t select * from orders"),
            [t("other", "t")],
            "INSERT … SELECT changes only its target"
        );
        assert_eq!(
            dml("shop", "REPLACE INTO `we``ird` VALUES (1)"),
            [t("shop", "we`ird")]
        );
        assert_eq!(
            dml("shop", "UPDATE a JOIN b ON a.id = b.id SET a.x = b.x"),
            [t("shop", "a"), t("shop", "b")]
        );
        assert_eq!(
            dml("shop", "DELETE FROM orders WHERE id = 3"),
            [t("shop", "orders")]
        );
        assert_eq!(
            dml("shop", "DELETE a FROM a JOIN b ON a.id = b.id"),
            [t("shop", "a")]
        );
        assert!(dml("shop", "INSERT INTO t VALUES (1) RETURNING (((").is_empty());
        assert!(dml("shop", "CALL refill()").is_empty());
        // A name the default schema cannot qualify: not attributed to a table.
        assert!(dml("", "UPDATE orders SET x = 1").is_empty());
    }

    #[test]
    fn transaction_control_and_xa() {
        assert_eq!(classify("", "BEGIN"), QueryKind::Begin);
        assert_eq!(classify("", "COMMIT"), QueryKind::Commit);
        assert_eq!(classify("", "ROLLBACK"), QueryKind::Commit);
        assert_eq!(
            classify("", "ROLLBACK TO SAVEPOINT a"),
            QueryKind::Savepoint
        );
        assert_eq!(classify("", "SAVEPOINT a"), QueryKind::Savepoint);
        assert_eq!(classify("", "# Dummy event"), QueryKind::Comment);
        assert_eq!(
            classify("", "XA START X'7831',X'',1"),
            QueryKind::Xa(XaVerb::Start, "X'7831',X'',1".into())
        );
        assert_eq!(
            classify("", "XA COMMIT X'7831',X'',1"),
            QueryKind::Xa(XaVerb::Commit, "X'7831',X'',1".into())
        );
        assert_eq!(
            classify("", "XA COMMIT X'7831',X'',1 ONE PHASE"),
            QueryKind::Xa(XaVerb::CommitOnePhase, "X'7831',X'',1".into())
        );
        assert_eq!(
            classify("", "XA ROLLBACK X'7831',X'',1"),
            QueryKind::Xa(XaVerb::Rollback, "X'7831',X'',1".into())
        );
    }
}
