//! The keys a batch recovery's time window covers: every key of the table that a transaction
//! committed in the window wrote (before and after images), read back from the source's
//! binlogs — in kafka mode too, since the topic's changes came from the same log.
//!
//! Invariant: the keys come back deduplicated and in one order (their canonical form's), so
//! a resumed job checks the same list and can continue after its last finished page.

use concord_binlog::{changes_in_window, FragmentBound, ReaderOptions, Window};
use concord_change::{TableName, Value};
use concord_compare::rows::key_of;
use concord_config::Config;
use concord_schema_cache::TargetTable;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The most keys a window may cover; a larger one is refused (use a key range).
const MAX_KEYS: usize = 5_000_000;

/// The window's keys, and whether the binlogs reached back to its start.
pub struct WindowKeys {
    pub keys: Vec<Vec<Value>>,
    pub complete: bool,
    pub transactions: u64,
    /// Changes in the window whose keys the log does not show (see `Scanned::unreadable`).
    pub unreadable: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("reading the source's binlogs for the window")]
    Binlog(#[from] concord_binlog::BinlogError),
    #[error("the source: {0}")]
    Source(#[from] mysql_async::Error),
    #[error(
        "the window changed more than {MAX_KEYS} keys of {0}; give a shorter window or a key \
         range (--pk-from/--pk-to)"
    )]
    TooMany(TableName),
}

/// The keys of `table` (described by the source's schema as `source`) that transactions
/// committed between `since_ms` and `until_ms` changed.
pub async fn keys_changed(
    config: &Config,
    table: &TableName,
    source: &TargetTable,
    (since_ms, until_ms): (i64, i64),
) -> Result<WindowKeys, WindowError> {
    let mut conn = mysql_async::Conn::new(config.source.opts()).await?;
    let server = concord_binlog::check_settings(&mut conn).await?;
    let _ = conn.disconnect().await;
    let only = table.clone();
    let options = ReaderOptions {
        opts: config.source.opts(),
        // The replicator reads as `source.server_id`, the verifier as the next id; a
        // window is read as the one after, so none of them is disconnected by the server.
        server_id: match config.source.server_id.wrapping_add(2) {
            0 => 2,
            id => id,
        },
        heartbeat: config.source.heartbeat,
        include: Arc::new(move |t: &TableName| *t == only),
        max_backoff: config.replicator.max_backoff,
        fragment: FragmentBound::of(&config.source),
    };
    let window = Window {
        since: seconds(since_ms),
        // Commit times are whole seconds: the second the window ends in belongs to it.
        until: seconds(until_ms),
    };
    let mut keys: BTreeMap<Vec<u8>, Vec<Value>> = BTreeMap::new();
    let mut too_many = false;
    let mut keep = |c: &concord_change::RowChange| {
        for image in [c.before.as_deref(), c.after.as_deref()]
            .into_iter()
            .flatten()
        {
            let key: Option<Vec<Value>> = c
                .table
                .primary_key
                .iter()
                .map(|&i| image.get(i).filter(|v| !v.is_absent()).cloned())
                .collect();
            if let Some(key) = key {
                if keys.len() < MAX_KEYS {
                    keys.entry(key_of(source, &key)).or_insert(key);
                } else {
                    too_many = true;
                }
            }
        }
    };
    let scanned = changes_in_window(&options, &server, window, &mut keep).await?;
    if too_many {
        return Err(WindowError::TooMany(table.clone()));
    }
    tracing::info!(%table, keys = keys.len(), transactions = scanned.transactions,
        from = %scanned.from, to = %scanned.to, complete = scanned.complete, "window read");
    Ok(WindowKeys {
        keys: keys.into_values().collect(),
        complete: scanned.complete,
        transactions: scanned.transactions,
        unreadable: scanned.unreadable,
    })
}

fn seconds(ms: i64) -> u32 {
    (ms.max(0) / 1000).min(i64::from(u32::MAX)) as u32
}
