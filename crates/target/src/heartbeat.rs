//! When each replicator last wrote its progress on the target: direct-mode checkpoints and
//! kafka-mode partition offsets, with their times — the replicators' heartbeats, for the
//! console's overview. A table not created yet (that mode never ran) reads as no rows.

use concord_schema_cache::quote_ident;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// One replicator's last write of its progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The replicator's name (direct mode) or the consumer group (kafka mode).
    pub name: String,
    /// The binlog position, or `topic[partition] next offset`.
    pub at: String,
    /// When it was written, in ms since the epoch.
    pub updated_ms: i64,
}

/// Every replicator's progress in checkpoint schema `schema`, newest first.
pub async fn progress(conn: &mut Conn, schema: &str) -> Result<Vec<Progress>, mysql_async::Error> {
    let schema = quote_ident(schema);
    let mut out = Vec::new();
    let checkpoints = format!(
        "SELECT replicator, CONCAT(binlog_file, ':', binlog_pos), \
         CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED) FROM {schema}.`checkpoints`"
    );
    let offsets = format!(
        "SELECT consumer_group, CONCAT(topic, '[', part, '] ', next_offset), \
         CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED) FROM {schema}.`kafka_offsets`"
    );
    for sql in [checkpoints, offsets] {
        match conn.query::<(String, String, i64), _>(sql).await {
            Ok(rows) => out.extend(rows.into_iter().map(|(name, at, updated_ms)| Progress {
                name,
                at,
                updated_ms,
            })),
            // 1146: no such table; 1049: no such schema — that mode has not run here.
            Err(mysql_async::Error::Server(e)) if e.code == 1146 || e.code == 1049 => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.updated_ms));
    Ok(out)
}
