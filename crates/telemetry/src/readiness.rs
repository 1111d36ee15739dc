//! Readiness of the roles one process runs. Each role owns a flag it raises once it is
//! connected and working; the process's supervisor lowers it, with the reason, when the
//! role stops, and may hold it down for a while after (a role that fails again soon after
//! each restart is down, not flapping). The process is ready only while every registered
//! role is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The roles of this process, in the order they were registered.
#[derive(Clone, Default)]
pub struct Readiness {
    roles: Arc<Mutex<Vec<RoleHealth>>>,
}

/// One role's readiness: its flag, and why it is down when its last run stopped.
#[derive(Clone)]
pub struct RoleHealth {
    name: &'static str,
    ready: Arc<AtomicBool>,
    down: Arc<Mutex<Down>>,
}

#[derive(Default)]
struct Down {
    why: Option<String>,
    until: Option<Instant>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a role, not ready until its flag is raised.
    pub fn role(&self, name: &'static str) -> RoleHealth {
        let role = RoleHealth {
            name,
            ready: Arc::new(AtomicBool::new(false)),
            down: Arc::new(Mutex::new(Down::default())),
        };
        lock(&self.roles).push(role.clone());
        role
    }

    /// Calls `f` with each role's name and whether it is ready.
    pub fn each(&self, mut f: impl FnMut(&'static str, bool)) {
        for role in lock(&self.roles).iter() {
            f(role.name, role.is_ready());
        }
    }

    /// `None` when every role is ready; otherwise one line per role saying how it is.
    pub fn report(&self) -> Option<String> {
        let roles = lock(&self.roles);
        if !roles.is_empty() && roles.iter().all(RoleHealth::is_ready) {
            return None;
        }
        let mut report = String::new();
        for role in roles.iter() {
            let state = if role.is_ready() {
                "ready".to_owned()
            } else {
                match &lock(&role.down).why {
                    Some(why) => format!("down: {why}"),
                    None => "starting".to_owned(),
                }
            };
            report.push_str(&format!("{}: {state}\n", role.name));
        }
        if roles.is_empty() {
            report.push_str("starting\n");
        }
        Some(report)
    }
}

impl RoleHealth {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The flag the role raises when it is ready.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// The flag is raised and no hold (see [`RoleHealth::set_down`]) is in force.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && lock(&self.down)
                .until
                .is_none_or(|until| Instant::now() >= until)
    }

    /// The role stopped: not ready, and why, until its next run raises the flag and `hold`
    /// has passed.
    pub fn set_down(&self, why: String, hold: Duration) {
        self.ready.store(false, Ordering::Relaxed);
        let mut down = lock(&self.down);
        down.why = Some(why);
        down.until = Some(Instant::now() + hold);
    }
}

/// A poisoned lock only means a panic elsewhere while holding it; the data (flags and
/// strings) is still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_role_is() {
        let r = Readiness::new();
        assert_eq!(r.report().as_deref(), Some("starting\n"));
        let a = r.role("replicator");
        let b = r.role("verifier");
        a.flag().store(true, Ordering::Relaxed);
        assert_eq!(
            r.report().as_deref(),
            Some("replicator: ready\nverifier: starting\n")
        );
        b.flag().store(true, Ordering::Relaxed);
        assert_eq!(r.report(), None);
        b.set_down("target: SELECT command denied".into(), Duration::ZERO);
        assert_eq!(
            r.report().as_deref(),
            Some("replicator: ready\nverifier: down: target: SELECT command denied\n")
        );
        b.flag().store(true, Ordering::Relaxed);
        assert_eq!(r.report(), None);

        b.set_down("again".into(), Duration::from_secs(3600));
        b.flag().store(true, Ordering::Relaxed);
        assert_eq!(
            r.report().as_deref(),
            Some("replicator: ready\nverifier: down: again\n"),
            "held down although its flag is raised"
        );
    }
}
