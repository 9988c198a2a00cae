//! The dev server's data: one global Raft-like index plus the catalog and the KV store.
//!
//! Every write takes a fresh index from [`State::next_index`]; each resource remembers the index
//! of its last real change, and the per-endpoint index rules of consul-api.md §1 are computed
//! from those (see `catalog.rs` and `kv.rs`). Test hooks can bump every index without a content
//! change ([`State::bump`]) or move all indexes backwards ([`State::rewind`]).

use tokio::time::Instant;

mod agent;
mod catalog;
mod kv;
mod records;

pub(crate) use agent::{AgentError, CheckDefinition, CheckKind, ServiceDefinition};
pub(crate) use catalog::Catalog;
pub(crate) use kv::{Kv, KvEntry};
pub(crate) use records::{CheckRec, NodeRec, Probe, ServiceAddress, ServiceRec, Status, Weights};

/// Global index before the bootstrap writes; the first write gets `START_INDEX + 1`.
const START_INDEX: u64 = 10;

/// Everything the dev server stores. Guarded by one mutex in `Shared`.
#[derive(Debug)]
pub(crate) struct State {
    index: u64,
    /// Every observed per-resource index is at least this (set by [`State::bump`]).
    bump_floor: u64,
    pub(crate) datacenter: String,
    pub(crate) node_name: String,
    /// `Some(when)` while the "leader loss" hook is on.
    pub(crate) leader_lost_at: Option<Instant>,
    pub(crate) catalog: Catalog,
    pub(crate) kv: Kv,
}

// === impl State ===

impl State {
    /// A fresh store holding the agent's own node (with a passing `serfHealth` check) and,
    /// when `consul_service` is set, the `consul` service, as a real dev agent has.
    pub(crate) fn new(
        datacenter: &str,
        node_name: &str,
        consul_service: bool,
        now: Instant,
    ) -> Self {
        let mut st = Self {
            index: START_INDEX,
            bump_floor: 0,
            datacenter: datacenter.to_owned(),
            node_name: node_name.to_owned(),
            leader_lost_at: None,
            catalog: Catalog::default(),
            kv: Kv::default(),
        };
        let idx = st.next_index();
        st.catalog.upsert_node(
            idx,
            NodeRec::new(node_name, "127.0.0.1", node_id(node_name)),
        );
        let idx = st.next_index();
        st.catalog.upsert_check(
            idx,
            CheckRec::node_check(
                node_name,
                "serfHealth",
                "Serf Health Status",
                Status::Passing,
                "Agent alive and reachable",
            ),
            now,
        );
        if consul_service {
            let idx = st.next_index();
            let mut svc = ServiceRec::new(node_name, "consul", "consul", 8300);
            svc.address = String::new();
            st.catalog.upsert_service(idx, svc);
        }
        st
    }

    /// Takes the next global index (every write calls this once).
    pub(crate) fn next_index(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// The current global index.
    pub(crate) fn index(&self) -> u64 {
        self.index
    }

    /// What a client sees for a resource whose own index is `raw`: never below the bump floor,
    /// never 0.
    pub(crate) fn observed(&self, raw: u64) -> u64 {
        raw.max(self.bump_floor).max(1)
    }

    /// Advances the global index and makes every resource report it, without changing content
    /// (a no-op write as far as bodies are concerned).
    pub(crate) fn bump(&mut self) -> u64 {
        let idx = self.next_index();
        self.bump_floor = idx;
        idx
    }

    /// Moves the global index back to `to` (at least 1), clamping every stored index to it, as
    /// a snapshot restore would. Later writes continue from `to + 1`.
    pub(crate) fn rewind(&mut self, to: u64) {
        let to = to.max(1);
        self.index = to;
        self.bump_floor = self.bump_floor.min(to);
        self.catalog.clamp(to);
        self.kv.clamp(to);
    }
}

/// A stable UUID-shaped node id derived from the node name.
pub(crate) fn node_id(name: &str) -> String {
    // FNV-1a, twice with different seeds, to fill 128 bits deterministically.
    let hash = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn starts_above_one_and_advances() {
        let mut st = State::new("dc1", "n1", true, Instant::now());
        assert!(st.index() > 1);
        let before = st.index();
        assert_eq!(st.next_index(), before + 1);
        assert_eq!(st.observed(0), 1);
    }

    #[test]
    fn bump_raises_every_observed_index() {
        let mut st = State::new("dc1", "n1", true, Instant::now());
        let svc = st.catalog.service_index("consul");
        let idx = st.bump();
        assert!(idx > svc);
        assert_eq!(st.observed(svc), idx);
    }

    #[test]
    fn rewind_clamps_indexes() {
        let mut st = State::new("dc1", "n1", true, Instant::now());
        let idx = st.next_index();
        st.kv.put(idx, "a", b"1".to_vec(), 0, None);
        st.rewind(3);
        assert_eq!(st.index(), 3);
        assert!(st.kv.get("a").0.unwrap().modify_index <= 3);
        assert!(st.catalog.service_index("consul") <= 3);
        assert_eq!(st.next_index(), 4);
    }

    #[test]
    fn node_ids_look_like_uuids() {
        let id = node_id("devconsul");
        assert_eq!(id.len(), 36);
        assert_eq!(id, node_id("devconsul"));
        assert_ne!(id, node_id("other"));
    }
}
