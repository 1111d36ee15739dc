//! Which tables a DDL statement from the binlog touches, so exactly their cached target
//! column sets are dropped. Parsing uses `sqlparser`'s MySQL dialect; a statement it cannot
//! read yields no names, and the caller then drops the whole schema instead.

use concord_change::TableName;
use sqlparser::ast::{ObjectName, Statement};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

/// Tables named by `statement` (run with default schema `schema`); empty when unknown.
pub fn touched_tables(schema: &str, statement: &str) -> Vec<TableName> {
    let Ok(parsed) = Parser::parse_sql(&MySqlDialect {}, statement) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for s in &parsed {
        match s {
            Statement::AlterTable(alter) => names.push(&alter.name),
            Statement::CreateTable(create) => names.push(&create.name),
            Statement::Drop { names: dropped, .. } => names.extend(dropped),
            Statement::RenameTable(renames) => {
                for r in renames {
                    names.push(&r.old_name);
                    names.push(&r.new_name);
                }
            }
            Statement::Truncate(t) => names.extend(t.table_names.iter().map(|t| &t.name)),
            _ => return Vec::new(),
        }
    }
    names
        .into_iter()
        .filter_map(|n| qualify(schema, n))
        .collect()
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

    #[test]
    fn names_tables_of_common_ddl() {
        assert_eq!(
            touched_tables("shop", "ALTER TABLE orders ADD COLUMN note VARCHAR(10)"),
            [TableName::new("shop", "orders")]
        );
        assert_eq!(
            touched_tables("", "ALTER TABLE `crm`.`people` DROP COLUMN age"),
            [TableName::new("crm", "people")]
        );
        assert_eq!(
            touched_tables("shop", "RENAME TABLE a TO b"),
            [TableName::new("shop", "a"), TableName::new("shop", "b")]
        );
        assert_eq!(
            touched_tables("shop", "DROP TABLE IF EXISTS x, other.y"),
            [TableName::new("shop", "x"), TableName::new("other", "y")]
        );
    }

    #[test]
    fn unknown_statements_name_nothing() {
        assert!(touched_tables("shop", "CREATE DATABASE shop2").is_empty());
        assert!(touched_tables("shop", "GRANT ALL ON *.* TO x").is_empty());
        assert!(touched_tables("", "ALTER TABLE orders ADD COLUMN c INT").is_empty());
        assert!(touched_tables("shop", "this is not sql").is_empty());
    }
}
