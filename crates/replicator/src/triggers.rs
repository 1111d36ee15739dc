//! Triggers on replicated target tables. A row-based native replica does not run triggers
//! for replicated rows; concord writes through ordinary statements, so the target's
//! triggers fire on every change it applies. At start the replicator names each one and
//! says what that means (`replicator.target_triggers = "warn"`), or refuses to start
//! (`"refuse"`).

use crate::error::ReplicatorError;
use concord_change::TableName;
use concord_config::{TableFilter, TargetTriggers};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// A trigger of a replicated target table: `db.table: name (AFTER INSERT)`.
fn describe(table: &TableName, name: &str, timing: &str, event: &str) -> String {
    format!("{table}: {name} ({timing} {event})")
}

/// Lists the triggers of the target tables concord writes to; warns about them, or
/// refuses them.
pub async fn check(
    conn: &mut Conn,
    filter: &TableFilter,
    mode: TargetTriggers,
) -> Result<(), ReplicatorError> {
    let rows: Vec<(String, String, String, String, String)> = conn
        .query(
            "SELECT EVENT_OBJECT_SCHEMA, EVENT_OBJECT_TABLE, TRIGGER_NAME, ACTION_TIMING, \
             EVENT_MANIPULATION FROM information_schema.TRIGGERS \
             ORDER BY EVENT_OBJECT_SCHEMA, EVENT_OBJECT_TABLE, TRIGGER_NAME",
        )
        .await
        .map_err(|source| ReplicatorError::Target {
            what: "listing the target's triggers",
            source,
        })?;
    let found: Vec<String> = rows
        .iter()
        .filter_map(|(db, table, name, timing, event)| {
            let table = TableName::new(db.clone(), table.clone());
            filter
                .writes_to(&table)
                .then(|| describe(&table, name, timing, event))
        })
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    match mode {
        TargetTriggers::Refuse => Err(ReplicatorError::TargetTriggers(found)),
        TargetTriggers::Warn => {
            for t in &found {
                tracing::warn!(trigger = %t,
                    "a replicated target table has a trigger: it fires on every change concord \
                     applies (a row-based native replica would not run it) — an audit trigger \
                     writes its rows on the target too, twice if its own table is replicated as \
                     well, and a trigger that changes the row makes the target differ from the \
                     source; drop it on the target, exclude the table, or set \
                     replicator.target_triggers = \"refuse\" to stop on it");
            }
            Ok(())
        }
    }
}
