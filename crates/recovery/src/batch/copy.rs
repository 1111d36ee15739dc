//! Batch recovery by copying (`concord recovery batch --copy`, the console's "copy again"):
//! instead of checking the rows and repairing those that differ, the range — or the rows
//! a time window changed, read back from the binlogs — is copied again from the source
//! through the snapshot (docs/SNAPSHOT.md), which also deletes target rows the source does
//! not have. The strongest repair, for when the damage is not known row by row.
//!
//! Invariant: the copy writes only through the stream owner, in its order, so it is as safe
//! under concurrent writes as replication itself.

use super::{window, BatchError, BatchSpec};
use crate::Recovery;
use concord_change::Value;
use concord_config::Config;
use concord_control::SnapshotJob;
use concord_snapshot::Ask;

/// Queues the snapshot job that copies `spec`'s range (or window) again; returns it. The
/// stream owner runs it.
pub async fn queue_copy(
    config: &Config,
    recovery: &Recovery,
    spec: &BatchSpec,
) -> Result<Vec<SnapshotJob>, BatchError> {
    let table = &spec.table;
    let keys = match &spec.since {
        None => None,
        Some(since) => {
            let source = recovery
                .compare
                .source_schema
                .get(table)
                .await
                .map_err(|e| crate::RecoveryError::from(concord_compare::CompareError::from(e)))?
                .ok_or_else(|| {
                    BatchError::Refused(format!("table {table} does not exist on the source"))
                })?;
            let since_ms = super::parse_time(since).ok_or_else(|| {
                BatchError::Refused(format!("since `{since}`: not a time or a duration ago"))
            })?;
            let until_ms = match &spec.until {
                Some(u) => super::parse_time(u).ok_or_else(|| {
                    BatchError::Refused(format!("until `{u}`: not a time or a duration ago"))
                })?,
                None => super::parse_time("0s").expect("now parses"),
            };
            let w = window::keys_changed(config, table, &source, (since_ms, until_ms)).await?;
            tracing::info!(%table, keys = w.keys.len(), complete = w.complete, "batch copy: the window's keys");
            {
                let keys: Option<Vec<serde_json::Value>> =
                    w.keys.iter().map(|k| key_json(k)).collect();
                Some(keys.ok_or_else(|| {
                    BatchError::Refused(format!(
                        "{table}: its key holds bytes that are not text; copy a key range \
                         instead (--pk-from/--pk-to), or check the window without --copy"
                    ))
                })?)
            }
        }
    };
    let ask = Ask {
        tables: vec![table.clone()],
        pk_from: spec.pk_from.clone(),
        pk_to: spec.pk_to.clone(),
        keys,
        create_tables: false,
        actor: spec.actor.clone(),
    };
    concord_snapshot::queue(config, &recovery.compare.control, &ask, &mut |_| {})
        .await
        .map_err(|e| match e.is_transient() {
            true => BatchError::Copy(e),
            false => BatchError::Refused(concord_snapshot::chain(&e)),
        })
}

/// A key as `--keys` gives one: a JSON array of its values (numbers for integers, text for
/// the rest — the server compares text with each column's type). `None` for a key with a
/// value text cannot carry exactly (bytes that are not text of their character set).
fn key_json(key: &[Value]) -> Option<serde_json::Value> {
    key.iter()
        .map(|v| match v {
            Value::Int(i) => Some(serde_json::json!(i)),
            Value::UInt(u) => Some(serde_json::json!(u)),
            Value::Text(s) | Value::Decimal(s) | Value::Enum(s) => Some(serde_json::json!(s)),
            Value::Chars { charset, bytes } => charset.decode(bytes).map(|s| serde_json::json!(s)),
            Value::Bytes(b) => std::str::from_utf8(b).ok().map(|s| serde_json::json!(s)),
            Value::Null | Value::Absent => None,
            other => Some(serde_json::json!(other
                .to_mysql()
                .as_sql(false)
                .trim_matches('\'')
                .to_owned())),
        })
        .collect::<Option<Vec<_>>>()
        .map(serde_json::Value::Array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_the_json_keys_file_lines_hold() {
        let key = vec![
            Value::Text("eu".into()),
            Value::Int(7),
            Value::UInt(u64::MAX),
        ];
        assert_eq!(
            key_json(&key).unwrap().to_string(),
            r#"["eu",7,18446744073709551615]"#
        );
        assert_eq!(key_json(&[Value::Bytes(vec![0xff, 0x00])]), None);
    }
}
