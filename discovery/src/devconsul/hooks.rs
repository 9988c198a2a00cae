//! Test hooks on a running dev server: index games, injected faults and latency, leader loss,
//! connection caps, check status overrides.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ::http::StatusCode;
use tokio::time::Instant;

use super::shared::{lock, Shared};
use super::state::{State, Status};
use super::TOO_MANY_CONNECTIONS;

/// A cheap, cloneable handle onto a running dev server's state, with the test hooks.
#[derive(Debug, Clone)]
pub struct DevConsulHandle {
    pub(crate) shared: Arc<Shared>,
}
/// A canned failure answered instead of the real response (see [`DevConsulHandle::inject`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    status: StatusCode,
    body: String,
    close: bool,
    pub(crate) path_prefix: Option<String>,
}
// === impl DevConsulHandle ===

impl DevConsulHandle {
    /// The current global index.
    pub fn index(&self) -> u64 {
        self.shared.read(State::index)
    }

    /// A write that changes no content: every resource reports a new, higher index (blocked
    /// queries return with identical bodies). Returns the new index.
    pub fn bump_index(&self) -> u64 {
        self.shared.write(State::bump)
    }

    /// Moves the global index and every stored index back to at most `index` (snapshot
    /// restore, tombstone reaping): clients holding a higher index must reset.
    pub fn set_index(&self, index: u64) {
        self.shared.write(|st| st.rewind(index));
    }

    /// Drops every KV tombstone (prefix indexes may go down).
    pub fn reap_tombstones(&self) {
        self.shared.write(|st| st.kv.reap_tombstones());
    }

    /// Answers the next `count` matching requests with `fault` instead of serving them.
    pub fn inject(&self, fault: Fault, count: usize) {
        if count > 0 {
            lock(&self.shared.faults).push((fault, count));
        }
    }

    /// Delays every request by `latency` before it is served (zero turns it off).
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.shared.latency) = latency;
    }

    /// Leader loss: `false` makes default and `?consistent` reads and all catalog/KV writes
    /// answer 500 `No cluster leader`; `?stale` reads still work with `X-Consul-KnownLeader:
    /// false` and a growing `X-Consul-LastContact`. `true` restores the leader.
    pub fn set_leader(&self, leader: bool) {
        self.shared.write(|st| {
            st.leader_lost_at = match (leader, st.leader_lost_at) {
                (true, _) => None,
                (false, Some(since)) => Some(since),
                (false, None) => Some(Instant::now()),
            };
        });
    }

    /// Per-client-IP connection cap; connections beyond it get 429 with `Connection: close`.
    pub fn set_max_conns_per_client(&self, max: usize) {
        self.shared.max_conns.store(max, Ordering::SeqCst);
    }

    /// Blocking queries currently waiting.
    pub fn blocked_queries(&self) -> usize {
        *self.shared.blocked.borrow()
    }

    /// Resolves once at least `n` blocking queries are waiting (pair with a timeout).
    pub async fn wait_for_blocked(&self, n: usize) {
        let mut rx = self.shared.blocked.subscribe();
        let _ = rx.wait_for(|b| *b >= n).await;
    }

    /// Sets the status (`passing`, `warning`, `critical`) and output of any check, node checks
    /// such as `serfHealth` included. Returns false for an unknown check or status.
    pub fn set_check_status(&self, node: &str, check_id: &str, status: &str, output: &str) -> bool {
        let Some(status) = Status::parse(status) else {
            return false;
        };
        self.shared.write(|st| {
            let idx = st.next_index();
            st.catalog
                .set_check_status(idx, node, check_id, status, output, Instant::now())
                .is_some()
        })
    }

    /// The agent's node name.
    pub fn node_name(&self) -> String {
        self.shared.settings.node_name.clone()
    }
}
// === impl Fault ===

impl Fault {
    /// 429 with Consul's per-IP connection-limit message and `Connection: close`.
    pub fn too_many_requests() -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: TOO_MANY_CONNECTIONS.to_owned(),
            close: true,
            path_prefix: None,
        }
    }

    /// 500 as an RPC error surfaces.
    pub fn server_error() -> Self {
        Self::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "rpc error making call: EOF",
        )
    }

    /// 500 `No cluster leader`.
    pub fn no_leader() -> Self {
        Self::status(StatusCode::INTERNAL_SERVER_ERROR, "No cluster leader")
    }

    /// Any status with a plain-text body.
    pub fn status(status: StatusCode, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            close: false,
            path_prefix: None,
        }
    }

    /// Only requests whose path starts with `prefix` (e.g. `/v1/health/`) get this fault.
    pub fn on_path(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }
}
impl Fault {
    /// Status, body and whether to close the connection.
    pub(crate) fn parts(&self) -> (StatusCode, &str, bool) {
        (self.status, &self.body, self.close)
    }
}
