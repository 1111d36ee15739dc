//! One writer at a time: a role that must never run twice (the capture of a source, a
//! direct-mode replicator of one `replicator.name`) holds a named lock on a MariaDB server
//! (`GET_LOCK`) for as long as it works. A second process for the same name waits as a hot
//! standby and takes over within seconds of the holder's end — killed (the server ends its
//! session at once and frees the lock) or cut off (below).
//!
//! Invariant: the holder stops before anyone else can hold the lock. The lock's session
//! has a short `wait_timeout`, so a holder the server no longer hears from loses it after
//! [`SERVER_GIVES_UP`]; the holder asks the server every [`CHECK_EVERY`] whether the lock
//! is still its own, and gives up the moment an answer does not come within
//! [`ANSWER_WITHIN`] — well before the server would hand the lock to a standby.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use std::time::Duration;

/// How long the server keeps a silent lock session (and its lock).
pub const SERVER_GIVES_UP: Duration = Duration::from_secs(10);
/// How often the holder checks its lock.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long the holder waits for an answer before it counts the lock as lost.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// How long one `GET_LOCK` waits before the standby says again who holds the lock.
const WAIT_ROUND: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lock {name:?}: cannot reach the server that keeps it")]
    Connect {
        name: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("lock {name:?}: the server refused GET_LOCK (it answered NULL)")]
    Refused { name: String },
    #[error("lock {name:?} lost: {why}; this process stops so the standby can take over")]
    Lost { name: String, why: String },
}

/// Who holds a lock, as a standby sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Held by this server connection id.
    HeldBy(u64),
    /// The server that keeps the lock cannot be reached; trying again.
    Unreachable(String),
}

/// A held lock, with the session that holds it.
pub struct Lease {
    conn: Conn,
    name: String,
}

/// Waits until this process holds lock `name` on the server at `opts`, telling `waiting`
/// who holds it meanwhile. Errors only when the server refuses the lock outright.
pub async fn acquire(
    opts: Opts,
    name: &str,
    mut waiting: impl FnMut(Waiting),
) -> Result<Lease, LeaseError> {
    let opts = session(opts);
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut conn = match Conn::new(opts.clone()).await {
            Ok(c) => c,
            Err(e) => {
                waiting(Waiting::Unreachable(e.to_string()));
                tokio::time::sleep(backoff).await;
                // Capped low: after an outage of the lock's server the role should be
                // back soon after the server is.
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        match try_lock(&mut conn, name, &mut waiting).await {
            Ok(true) => {
                tracing::info!(
                    lock = name,
                    "holding the lock: this process is the active one"
                );
                return Ok(Lease {
                    conn,
                    name: name.to_owned(),
                });
            }
            Ok(false) => return Err(LeaseError::Refused { name: name.into() }),
            // The connection broke while waiting: connect again.
            Err(e) => waiting(Waiting::Unreachable(e.to_string())),
        }
    }
}

/// Takes lock `name` if it is free, without waiting: `None` while another session holds
/// it.
pub async fn try_acquire(opts: Opts, name: &str) -> Result<Option<Lease>, LeaseError> {
    let mut conn = Conn::new(session(opts))
        .await
        .map_err(|source| LeaseError::Connect {
            name: name.to_owned(),
            source,
        })?;
    let got: Option<Option<i64>> = conn
        .exec_first("SELECT GET_LOCK(?, 0)", (name,))
        .await
        .map_err(|source| LeaseError::Connect {
            name: name.to_owned(),
            source,
        })?;
    match got.flatten() {
        Some(1) => Ok(Some(Lease {
            conn,
            name: name.to_owned(),
        })),
        Some(_) => Ok(None),
        None => Err(LeaseError::Refused { name: name.into() }),
    }
}

/// The lock session's options: no statement cache, and the server's `wait_timeout` set
/// short for the session as soon as it connects. (The driver's own `wait_timeout` option is
/// client-side only: it tells the pool when the server would drop a connection, and sets
/// nothing on the server.)
fn session(opts: Opts) -> Opts {
    OptsBuilder::from_opts(opts)
        .stmt_cache_size(0)
        .setup(vec![format!(
            "SET SESSION wait_timeout = {}",
            SERVER_GIVES_UP.as_secs()
        )])
        .into()
}

/// Waits on `conn` until it holds the lock (`true`) or the server refuses it (`false`).
async fn try_lock(
    conn: &mut Conn,
    name: &str,
    waiting: &mut impl FnMut(Waiting),
) -> Result<bool, mysql_async::Error> {
    loop {
        let got: Option<Option<i64>> = conn
            .exec_first("SELECT GET_LOCK(?, ?)", (name, WAIT_ROUND.as_secs()))
            .await?;
        match got.flatten() {
            Some(1) => return Ok(true),
            Some(_) => {
                let holder: Option<Option<u64>> =
                    conn.exec_first("SELECT IS_USED_LOCK(?)", (name,)).await?;
                if let Some(id) = holder.flatten() {
                    waiting(Waiting::HeldBy(id));
                }
            }
            None => return Ok(false),
        }
    }
}

impl Lease {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns when the lock is no longer this process's (its session broke, did not
    /// answer in time, or no longer holds it); never while it is held.
    pub async fn lost(&mut self) -> LeaseError {
        let lost = |why: String| LeaseError::Lost {
            name: self.name.clone(),
            why,
        };
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let check = self.conn.exec_first::<Option<i64>, _, _>(
                "SELECT IS_USED_LOCK(?) = CONNECTION_ID()",
                (&self.name,),
            );
            match tokio::time::timeout(ANSWER_WITHIN, check).await {
                Ok(Ok(Some(Some(1)))) => {}
                Ok(Ok(_)) => return lost("the server says another session holds it".into()),
                Ok(Err(e)) => return lost(format!("its session failed: {e}")),
                Err(_) => {
                    return lost(format!(
                        "the server did not answer within {ANSWER_WITHIN:?}"
                    ))
                }
            }
        }
    }
}

/// A lock name the server accepts (at most 64 characters): `concord:<what>`, with a long
/// `what` shortened to a prefix and a hash of the whole.
pub fn lock_name(what: &str) -> String {
    let full = format!("concord:{what}");
    if full.len() <= 64 {
        return full;
    }
    // FNV-1a: stable across builds and platforms, unlike the std hasher.
    let hash = what.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let mut cut = 64 - 17 - "concord:".len();
    while !what.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("concord:{}~{hash:016x}", &what[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_fit_the_server() {
        assert_eq!(lock_name("capture:shop"), "concord:capture:shop");
        let long = format!("replicator:{}", "é".repeat(60));
        let name = lock_name(&long);
        assert!(name.len() <= 64, "{name}");
        assert_ne!(
            name,
            lock_name(&format!("{long}x")),
            "different names stay apart"
        );
        assert_eq!(name, lock_name(&long), "stable");
    }
}
