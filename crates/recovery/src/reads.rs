//! The reads the guarded repair makes, as the comparison makes them: the locked target rows
//! decoded exactly as the observed ones were, and the source's current rows.

use concord_change::Value;
use concord_compare::rows::{fetch_locked, key_of};
use concord_compare::{Comparer, Side};
use concord_schema_cache::TargetTable;
use concord_target::repair::RepairReads;
use mysql_async::Conn;

pub(crate) struct Reads<'a> {
    pub compare: &'a Comparer,
    /// The source table as the source's schema cache describes it.
    pub source: &'a TargetTable,
    /// The page's keys in the source's primary-key order, one per row of the page.
    pub source_keys: &'a [Vec<Value>],
}

impl RepairReads for Reads<'_> {
    async fn target_locked(
        &self,
        conn: &mut Conn,
        table: &TargetTable,
        keys: &[Vec<Value>],
    ) -> Result<Vec<Option<Vec<Value>>>, mysql_async::Error> {
        let rows = fetch_locked(conn, table, keys).await?;
        Ok(keys
            .iter()
            .map(|k| rows.get(&key_of(table, k)).cloned())
            .collect())
    }

    async fn source_now(
        &self,
        which: &[usize],
    ) -> Result<Vec<Option<Vec<Value>>>, Box<dyn std::error::Error + Send + Sync>> {
        let keys: Vec<Vec<Value>> = which.iter().map(|&i| self.source_keys[i].clone()).collect();
        let rows = self
            .compare
            .read_rows(Side::Source, self.source, &keys)
            .await?;
        Ok(keys
            .iter()
            .map(|k| rows.get(&key_of(self.source, k)).cloned())
            .collect())
    }
}
