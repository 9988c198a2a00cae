//! State shared by the listener, the connections, the timers and the handles.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::hooks::Fault;
use super::state::State;

/// State shared by the listener, the connections, the timers and the handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    /// Write generation: every write sends, waking blocked queries.
    pub(crate) changes: watch::Sender<u64>,
    /// Number of queries currently blocked (test synchronisation).
    pub(crate) blocked: watch::Sender<usize>,
    pub(crate) ttl_wake: Notify,
    pub(crate) probe_wake: Notify,
    pub(crate) settings: Settings,
    pub(crate) faults: Mutex<Vec<(Fault, usize)>>,
    pub(crate) latency: Mutex<Duration>,
    pub(crate) max_conns: AtomicUsize,
    pub(crate) conns: Mutex<HashMap<IpAddr, usize>>,
}

/// Fixed server settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) token: Option<String>,
    pub(crate) default_wait: Duration,
    pub(crate) max_wait: Duration,
    pub(crate) datacenter: String,
    pub(crate) node_name: String,
}
// === impl Shared ===

impl Shared {
    /// Runs `f` on the state under the lock.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&lock(&self.state))
    }

    /// Runs a write under the lock, then wakes blocked queries and the TTL timer.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut lock(&self.state));
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
        self.ttl_wake.notify_one();
        self.probe_wake.notify_one();
        out
    }

    /// Changes bookkeeping no client can observe (probe schedules) without waking anyone.
    pub(crate) fn write_quiet<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut lock(&self.state))
    }

    /// A receiver that sees every later write.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Counts a blocked query until the guard drops.
    pub(crate) fn blocked_guard(self: &Arc<Self>) -> BlockedGuard {
        self.blocked.send_modify(|b| *b += 1);
        BlockedGuard {
            shared: self.clone(),
        }
    }

    /// Takes the next injected fault matching `path`, if any.
    pub(crate) fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let pos = faults.iter().position(|(f, _)| {
            f.path_prefix
                .as_deref()
                .map_or(true, |p| path.starts_with(p))
        })?;
        let fault = faults[pos].0.clone();
        faults[pos].1 -= 1;
        if faults[pos].1 == 0 {
            faults.remove(pos);
        }
        Some(fault)
    }

    /// The injected latency.
    pub(crate) fn latency(&self) -> Duration {
        *lock(&self.latency)
    }

    /// Registers a connection from `ip`; `true` if it exceeds the per-IP cap.
    pub(crate) fn open_conn(&self, ip: IpAddr) -> bool {
        let mut conns = lock(&self.conns);
        let n = conns.entry(ip).or_insert(0);
        *n += 1;
        *n > self.max_conns.load(Ordering::SeqCst)
    }

    /// Forgets a connection from `ip`.
    pub(crate) fn close_conn(&self, ip: IpAddr) {
        let mut conns = lock(&self.conns);
        if let Some(n) = conns.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                conns.remove(&ip);
            }
        }
    }
}

/// Decrements the blocked-query gauge on drop.
#[derive(Debug)]
pub(crate) struct BlockedGuard {
    shared: Arc<Shared>,
}

impl Drop for BlockedGuard {
    fn drop(&mut self) {
        self.shared
            .blocked
            .send_modify(|b| *b = b.saturating_sub(1));
    }
}
/// Locks a std mutex, ignoring poisoning (the data stays consistent: writers never panic
/// half-way through an update they care about).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
