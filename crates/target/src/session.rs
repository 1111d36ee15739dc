//! The session every writer of rows opens on the target — the replicator's applier and the
//! guarded repair alike — so that the same row bound the same way is stored the same way.
//!
//! Invariant: writes run strict (bad content is an error, recorded, never silently
//! truncated), in UTC (TIMESTAMP values bind as the instants they are), with
//! NO_AUTO_VALUE_ON_ZERO (a source id of 0 stays 0); only an ENUM index 0 fix-up runs in
//! the lenient mode, for the one value only it can store.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use std::time::Duration;

/// The writers' SQL mode.
pub const STRICT_SQL_MODE: &str = "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION";
/// The same without strictness, for the one thing only it can store: ENUM index 0.
pub const LENIENT_SQL_MODE: &str = "NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION";

/// How long the server keeps a writer's session that says nothing (`wait_timeout`). A
/// writer cut off from the target mid-transaction (a network partition, a frozen pod)
/// holds row locks — and the checkpoint row — until the server ends its session; the
/// server's default of eight hours would keep a standby that took over from writing for
/// as long. Writers that idle longer reconnect first (see [`IDLE_RECONNECT`]).
pub const WRITER_WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// A writer idle this long opens a new session before its next transaction, so that it
/// never meets one the server has ended for idling.
pub const IDLE_RECONNECT: Duration = Duration::from_secs(20);

/// Connects a writer's session: found rows rather than changed rows (a partial update that
/// finds its row but changes nothing must not look like one that found no row), strict,
/// UTC, with foreign-key checks as given, the given lock wait, and
/// [`WRITER_WAIT_TIMEOUT`].
pub async fn connect_writer(
    opts: Opts,
    foreign_key_checks: bool,
    lock_wait: Duration,
) -> Result<Conn, mysql_async::Error> {
    let opts = OptsBuilder::from_opts(opts).client_found_rows(true);
    let mut conn = Conn::new(opts).await?;
    let fk = u8::from(foreign_key_checks);
    let lock_wait = lock_wait.as_secs().max(1);
    conn.query_drop(format!(
        "SET SESSION time_zone = '+00:00', sql_mode = '{STRICT_SQL_MODE}', \
         foreign_key_checks = {fk}, innodb_lock_wait_timeout = {lock_wait}, \
         wait_timeout = {idle}",
        idle = WRITER_WAIT_TIMEOUT.as_secs()
    ))
    .await?;
    Ok(conn)
}
