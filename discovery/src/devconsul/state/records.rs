//! The catalog's records: nodes, service instances, checks, and what counts as a change.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// A check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Status {
    Passing,
    Warning,
    Critical,
}

/// A node of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeRec {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) address: String,
    /// Node tagged addresses are plain strings (`lan`, `wan`, …).
    pub(crate) tagged_addresses: BTreeMap<String, String>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// A service tagged address: an object, unlike node tagged addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceAddress {
    pub(crate) address: String,
    pub(crate) port: i64,
}

/// `Weights` of a service instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Weights {
    pub(crate) passing: i64,
    pub(crate) warning: i64,
}

/// One service instance on one node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceRec {
    pub(crate) node: String,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    /// Kept `""` when not registered: clients fall back to the node address.
    pub(crate) address: String,
    pub(crate) tagged_addresses: BTreeMap<String, ServiceAddress>,
    /// `None` renders as JSON `null`.
    pub(crate) meta: Option<BTreeMap<String, String>>,
    pub(crate) port: i64,
    pub(crate) weights: Weights,
    pub(crate) enable_tag_override: bool,
    pub(crate) kind: String,
    /// Registered through `/v1/agent/...` (listed by `/v1/agent/services`).
    pub(crate) agent_local: bool,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// One check: a node check when `service_id` is empty.
#[derive(Debug, Clone)]
pub(crate) struct CheckRec {
    pub(crate) node: String,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) status: Status,
    pub(crate) notes: String,
    pub(crate) output: String,
    pub(crate) service_id: String,
    pub(crate) service_name: String,
    pub(crate) service_tags: Vec<String>,
    /// `ttl`, `http`, `tcp`, … or `""` (serfHealth, catalog-registered checks).
    pub(crate) kind: String,
    pub(crate) interval: String,
    pub(crate) timeout: String,
    pub(crate) ttl: Option<Duration>,
    pub(crate) ttl_deadline: Option<Instant>,
    pub(crate) deregister_after: Option<Duration>,
    pub(crate) critical_since: Option<Instant>,
    /// What an `http`/`tcp` check probes; the agent runs it every `probe_every`.
    pub(crate) probe: Option<Probe>,
    pub(crate) probe_every: Duration,
    pub(crate) probe_timeout: Duration,
    pub(crate) next_probe: Option<Instant>,
    pub(crate) agent_local: bool,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// A check the agent runs itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// `HTTP`: 2xx passing, 429 warning, anything else critical.
    Http { url: String, method: String },
    /// `TCP`: a connection is passing.
    Tcp { addr: String },
}

// === impl Status ===

impl Status {
    /// The wire spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Passing => "passing",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    /// Parses the wire spelling (exact, lower case, as Consul requires).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "passing" => Some(Self::Passing),
            "warning" => Some(Self::Warning),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

// === impl NodeRec ===

impl NodeRec {
    /// A node with Consul's default tagged addresses and segment meta.
    pub(crate) fn new(name: &str, address: &str, id: String) -> Self {
        let tagged_addresses = ["lan", "lan_ipv4", "wan", "wan_ipv4"]
            .into_iter()
            .map(|k| (k.to_owned(), address.to_owned()))
            .collect();
        let meta = BTreeMap::from([("consul-network-segment".to_owned(), String::new())]);
        Self {
            id,
            name: name.to_owned(),
            address: address.to_owned(),
            tagged_addresses,
            meta,
            create_index: 0,
            modify_index: 0,
        }
    }

    pub(crate) fn same_content(&self, other: &Self) -> bool {
        self.id == other.id
            && self.address == other.address
            && self.tagged_addresses == other.tagged_addresses
            && self.meta == other.meta
    }
}

// === impl ServiceRec ===

impl ServiceRec {
    /// An instance with default weights, no tags, no meta and an empty address.
    pub(crate) fn new(node: &str, id: &str, name: &str, port: i64) -> Self {
        Self {
            node: node.to_owned(),
            id: id.to_owned(),
            name: name.to_owned(),
            tags: Vec::new(),
            address: String::new(),
            tagged_addresses: BTreeMap::new(),
            meta: None,
            port,
            weights: Weights {
                passing: 1,
                warning: 1,
            },
            enable_tag_override: false,
            kind: String::new(),
            agent_local: false,
            create_index: 0,
            modify_index: 0,
        }
    }

    pub(crate) fn same_content(&self, other: &Self) -> bool {
        self.name == other.name
            && self.tags == other.tags
            && self.address == other.address
            && self.tagged_addresses == other.tagged_addresses
            && self.meta == other.meta
            && self.port == other.port
            && self.weights == other.weights
            && self.enable_tag_override == other.enable_tag_override
            && self.kind == other.kind
    }
}

// === impl CheckRec ===

impl CheckRec {
    /// A node-level check (no service).
    pub(crate) fn node_check(
        node: &str,
        id: &str,
        name: &str,
        status: Status,
        output: &str,
    ) -> Self {
        Self {
            node: node.to_owned(),
            id: id.to_owned(),
            name: name.to_owned(),
            status,
            notes: String::new(),
            output: output.to_owned(),
            service_id: String::new(),
            service_name: String::new(),
            service_tags: Vec::new(),
            kind: String::new(),
            interval: String::new(),
            timeout: String::new(),
            ttl: None,
            ttl_deadline: None,
            deregister_after: None,
            critical_since: None,
            probe: None,
            probe_every: Duration::ZERO,
            probe_timeout: Duration::ZERO,
            next_probe: None,
            agent_local: false,
            create_index: 0,
            modify_index: 0,
        }
    }

    pub(crate) fn same_content(&self, other: &Self) -> bool {
        self.name == other.name
            && self.status == other.status
            && self.notes == other.notes
            && self.output == other.output
            && self.service_id == other.service_id
            && self.service_name == other.service_name
            && self.service_tags == other.service_tags
            && self.kind == other.kind
            && self.interval == other.interval
            && self.timeout == other.timeout
    }

    /// Tracks how long the check has been critical (for `DeregisterCriticalServiceAfter`).
    pub(crate) fn track_critical(&mut self, previous: Option<&CheckRec>, now: Instant) {
        self.critical_since = match (self.status, previous) {
            (Status::Critical, Some(prev)) if prev.status == Status::Critical => {
                prev.critical_since.or(Some(now))
            }
            (Status::Critical, _) => Some(now),
            _ => None,
        };
    }
}
