//! What an operator asks for (`concord snapshot`, batch recovery, the console): jobs for
//! tables — whole, a key range, or listed keys — checked before any is queued, so a
//! refusal (a table without a key, a target table that does not exist, a key that is not
//! one) names the table and queues nothing.

use crate::error::SnapshotError;
use crate::executor::stream_of;
use crate::shape::Shape;
use concord_change::TableName;
use concord_chunking::{parse_key, parse_parts};
use concord_config::Config;
use concord_control::{ControlStore, SnapshotJob, SnapshotKind, SnapshotRequest};
use concord_schema_cache::{quote_ident, quote_table, RefreshReason, SchemaCache};
use mysql_async::prelude::Queryable;
use mysql_async::Pool;

/// A request for snapshot jobs.
#[derive(Clone, Debug, Default)]
pub struct Ask {
    /// Source tables; empty: every replicated table.
    pub tables: Vec<TableName>,
    /// A key range's ends (inclusive; a value, or a JSON array for a composite key).
    pub pk_from: Option<String>,
    pub pk_to: Option<String>,
    /// Exactly these keys (each a JSON value, or an array for a composite key).
    pub keys: Option<Vec<serde_json::Value>>,
    /// Create missing target tables from the source's definition.
    pub create_tables: bool,
    /// Who asks.
    pub actor: String,
}

/// Checks `ask` against both servers and queues its jobs; `say` is told each target table
/// created (with its DDL).
pub async fn queue(
    config: &Config,
    control: &ControlStore,
    ask: &Ask,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<Vec<SnapshotJob>, SnapshotError> {
    let source = Pool::new(concord_compare::session_opts(config.source.opts()));
    let target = Pool::new(concord_compare::session_opts(config.target.opts()));
    let source_schema = SchemaCache::new(source.clone(), config.target.schema_ttl);
    let target_schema = SchemaCache::new(target.clone(), config.target.schema_ttl);
    let filter = config.tables.filter();
    let tables = if ask.tables.is_empty() {
        let mut conn = source
            .get_conn()
            .await
            .map_err(source_error("connecting"))?;
        concord_chunking::replicated_tables(&mut conn, &filter, &config.target.checkpoint_schema)
            .await
            .map_err(source_error("listing tables"))?
    } else {
        for t in &ask.tables {
            if !filter.matches(t) {
                return Err(SnapshotError::NotReplicated(t.clone()));
            }
        }
        ask.tables.clone()
    };
    let stream = stream_of(config);
    let copied_once = control.initial_snapshot_tables(&stream).await?;
    let mut requests = Vec::new();
    for table in &tables {
        let shape = match Shape::describe(&source_schema, &target_schema, &filter, table).await {
            Err(SnapshotError::NoTargetTable { target: name, .. }) if ask.create_tables => {
                let ddl = create_target_table(&source, &target, table, &name).await?;
                say(format!("created {name} on the target:\n{ddl}"));
                target_schema
                    .refresh(&name, RefreshReason::MissingTable)
                    .await;
                Shape::describe(&source_schema, &target_schema, &filter, table).await?
            }
            other => other?,
        };
        requests.push(request(ask, &shape, &stream, &copied_once, &source).await?);
    }
    let mut jobs = Vec::with_capacity(requests.len());
    for r in requests {
        jobs.push(control.queue_snapshot(&r).await?);
    }
    Ok(jobs)
}

/// One table's job, its keys checked.
async fn request(
    ask: &Ask,
    shape: &Shape,
    stream: &str,
    copied_once: &[TableName],
    source: &Pool,
) -> Result<SnapshotRequest, SnapshotError> {
    let types = shape.key_types();
    let bad = |given: &str, why: String| SnapshotError::BadKey {
        table: shape.name.clone(),
        given: given.to_owned(),
        why,
    };
    for given in [&ask.pk_from, &ask.pk_to].into_iter().flatten() {
        parse_key(given, &types).map_err(|why| bad(given, why))?;
    }
    let keys_json = match &ask.keys {
        Some(keys) => {
            for k in keys {
                let parts = match k {
                    serde_json::Value::Array(parts) => parts.clone(),
                    one => vec![one.clone()],
                };
                parse_parts(&parts, &types).map_err(|why| bad(&k.to_string(), why))?;
            }
            Some(serde_json::Value::Array(keys.clone()).to_string())
        }
        None => None,
    };
    let kind = match (&ask.keys, &ask.pk_from, &ask.pk_to) {
        (Some(_), _, _) => SnapshotKind::Keys,
        (None, None, None) if !copied_once.contains(&shape.name) => SnapshotKind::Initial,
        (None, None, None) => SnapshotKind::Table,
        _ => SnapshotKind::Range,
    };
    let rows_estimate = match &ask.keys {
        Some(keys) => keys.len() as i64,
        None => {
            let mut conn = source
                .get_conn()
                .await
                .map_err(source_error("connecting"))?;
            crate::source::estimate(&mut conn, shape).await as i64
        }
    };
    Ok(SnapshotRequest {
        stream: stream.to_owned(),
        table: shape.name.clone(),
        kind,
        pk_from: ask.pk_from.clone(),
        pk_to: ask.pk_to.clone(),
        keys_json,
        rows_estimate,
        actor: ask.actor.clone(),
    })
}

/// Runs the source's `SHOW CREATE TABLE` of `table` on the target as `name` (creating its
/// database if needed); returns the statement run.
async fn create_target_table(
    source: &Pool,
    target: &Pool,
    table: &TableName,
    name: &TableName,
) -> Result<String, SnapshotError> {
    let mut conn = source
        .get_conn()
        .await
        .map_err(source_error("connecting"))?;
    // The name is replaced by its quoted form below: identifiers must come quoted.
    conn.query_drop("SET SESSION sql_quote_show_create = 1")
        .await
        .map_err(source_error("preparing the session"))?;
    let shown: Option<(String, String)> = conn
        .query_first(format!("SHOW CREATE TABLE {}", quote_table(table)))
        .await
        .map_err(source_error("reading the table's definition"))?;
    let (_, ddl) = shown.ok_or_else(|| SnapshotError::NoSourceTable(table.clone()))?;
    // The definition names the table without its schema: `CREATE TABLE `t` (…`.
    let ddl = ddl.replacen(&quote_ident(&table.table), &quote_table(name), 1);
    let mut conn = target
        .get_conn()
        .await
        .map_err(target_error(name, "connecting"))?;
    conn.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS {}",
        quote_ident(&name.db)
    ))
    .await
    .map_err(target_error(name, "creating the database"))?;
    // Foreign keys may name tables the target does not have yet.
    conn.query_drop("SET SESSION foreign_key_checks = 0")
        .await
        .map_err(target_error(name, "preparing the session"))?;
    tracing::info!(table = %name, %ddl, "snapshot: creating the target table from the source's definition");
    conn.query_drop(&ddl)
        .await
        .map_err(target_error(name, "creating the table"))?;
    Ok(ddl)
}

fn source_error(what: &'static str) -> impl Fn(mysql_async::Error) -> SnapshotError {
    move |source| SnapshotError::Source {
        table: TableName::new("", ""),
        what,
        source: Box::new(source),
    }
}

fn target_error<'a>(
    table: &'a TableName,
    what: &'static str,
) -> impl Fn(mysql_async::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Target {
        table: table.clone(),
        what,
        source: Box::new(source),
    }
}
