//! The reads the guarded repair makes, as the comparison makes them: the locked target row
//! decoded exactly as the observed one was, and the source's current row.

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
    /// The key in the source's primary-key order.
    pub source_key: &'a [Value],
}

impl RepairReads for Reads<'_> {
    async fn target_locked(
        &self,
        conn: &mut Conn,
        table: &TargetTable,
        key: &[Value],
    ) -> Result<Option<Vec<Value>>, mysql_async::Error> {
        fetch_locked(conn, table, key).await
    }

    async fn source_now(
        &self,
    ) -> Result<Option<Vec<Value>>, Box<dyn std::error::Error + Send + Sync>> {
        let key = self.source_key.to_vec();
        let rows = self
            .compare
            .read_rows(Side::Source, self.source, std::slice::from_ref(&key))
            .await?;
        Ok(rows.get(&key_of(self.source, &key)).cloned())
    }
}
