//! JSON shapes the dev server answers with, in Consul's key case and order.
//!
//! Built (owned) from the state under the lock, serialized after it is released. Lists are
//! `[]`, never `null`; a service's `Meta` is `null` when none was registered; service tagged
//! addresses are objects and only present when the agent or the registration set them.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;

use super::state::{CheckRec, KvEntry, NodeRec, ServiceAddress, ServiceRec, Weights};

/// `{}`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Empty {}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct WeightsJson {
    passing: i64,
    warning: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceAddressJson {
    address: String,
    port: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ProxyJson {
    mode: String,
    mesh_gateway: Empty,
    expose: Empty,
}

/// `Node` of a health entry; also an element of `/v1/catalog/nodes`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NodeJson {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    datacenter: String,
    tagged_addresses: BTreeMap<String, String>,
    meta: BTreeMap<String, String>,
    create_index: u64,
    modify_index: u64,
}

/// `Service` of a health entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(rename = "ID")]
    id: String,
    service: String,
    tags: Vec<String>,
    address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tagged_addresses: BTreeMap<String, ServiceAddressJson>,
    meta: Option<BTreeMap<String, String>>,
    port: i64,
    weights: WeightsJson,
    enable_tag_override: bool,
    proxy: ProxyJson,
    connect: Empty,
    peer_name: String,
    create_index: u64,
    modify_index: u64,
}

/// A health check, in health entries, `/v1/health/state/:s` and `/v1/agent/checks`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CheckJson {
    node: String,
    #[serde(rename = "CheckID")]
    check_id: String,
    name: String,
    status: &'static str,
    notes: String,
    output: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    service_name: String,
    service_tags: Vec<String>,
    #[serde(rename = "Type")]
    kind: String,
    interval: String,
    timeout: String,
    exposed_port: u16,
    definition: Empty,
    create_index: u64,
    modify_index: u64,
}

/// One element of `/v1/health/service/:s`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HealthEntryJson {
    pub(crate) node: NodeJson,
    pub(crate) service: ServiceJson,
    pub(crate) checks: Vec<CheckJson>,
}

/// One element of `/v1/catalog/service/:s` (the flat shape).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CatalogServiceJson {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    datacenter: String,
    tagged_addresses: BTreeMap<String, String>,
    node_meta: BTreeMap<String, String>,
    service_kind: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    service_name: String,
    service_tags: Vec<String>,
    service_address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    service_tagged_addresses: BTreeMap<String, ServiceAddressJson>,
    service_weights: WeightsJson,
    service_meta: Option<BTreeMap<String, String>>,
    service_port: i64,
    service_enable_tag_override: bool,
    service_proxy: ProxyJson,
    service_connect: Empty,
    create_index: u64,
    modify_index: u64,
}

/// One value of `/v1/agent/services`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AgentServiceJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(rename = "ID")]
    id: String,
    service: String,
    tags: Vec<String>,
    meta: BTreeMap<String, String>,
    port: i64,
    address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tagged_addresses: BTreeMap<String, ServiceAddressJson>,
    weights: WeightsJson,
    enable_tag_override: bool,
    datacenter: String,
}

/// One element of a KV GET.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct KvJson {
    lock_index: u64,
    key: String,
    flags: u64,
    /// Base64, `null` when the value is empty.
    value: Option<String>,
    create_index: u64,
    modify_index: u64,
}

// === conversions ===

fn weights(w: Weights) -> WeightsJson {
    WeightsJson {
        passing: w.passing,
        warning: w.warning,
    }
}

fn service_addresses(m: &BTreeMap<String, ServiceAddress>) -> BTreeMap<String, ServiceAddressJson> {
    m.iter()
        .map(|(k, a)| {
            (
                k.clone(),
                ServiceAddressJson {
                    address: a.address.clone(),
                    port: a.port,
                },
            )
        })
        .collect()
}

impl NodeJson {
    pub(crate) fn new(n: &NodeRec, dc: &str) -> Self {
        Self {
            id: n.id.clone(),
            node: n.name.clone(),
            address: n.address.clone(),
            datacenter: dc.to_owned(),
            tagged_addresses: n.tagged_addresses.clone(),
            meta: n.meta.clone(),
            create_index: n.create_index,
            modify_index: n.modify_index,
        }
    }
}

impl ServiceJson {
    pub(crate) fn new(s: &ServiceRec) -> Self {
        Self {
            kind: s.kind.clone(),
            id: s.id.clone(),
            service: s.name.clone(),
            tags: s.tags.clone(),
            address: s.address.clone(),
            tagged_addresses: service_addresses(&s.tagged_addresses),
            meta: s.meta.clone(),
            port: s.port,
            weights: weights(s.weights),
            enable_tag_override: s.enable_tag_override,
            proxy: ProxyJson::default(),
            connect: Empty {},
            peer_name: String::new(),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

impl CheckJson {
    pub(crate) fn new(c: &CheckRec) -> Self {
        Self {
            node: c.node.clone(),
            check_id: c.id.clone(),
            name: c.name.clone(),
            status: c.status.as_str(),
            notes: c.notes.clone(),
            output: c.output.clone(),
            service_id: c.service_id.clone(),
            service_name: c.service_name.clone(),
            service_tags: c.service_tags.clone(),
            kind: c.kind.clone(),
            interval: c.interval.clone(),
            timeout: c.timeout.clone(),
            exposed_port: 0,
            definition: Empty {},
            create_index: c.create_index,
            modify_index: c.modify_index,
        }
    }
}

impl CatalogServiceJson {
    pub(crate) fn new(n: &NodeRec, s: &ServiceRec, dc: &str) -> Self {
        Self {
            id: n.id.clone(),
            node: n.name.clone(),
            address: n.address.clone(),
            datacenter: dc.to_owned(),
            tagged_addresses: n.tagged_addresses.clone(),
            node_meta: n.meta.clone(),
            service_kind: s.kind.clone(),
            service_id: s.id.clone(),
            service_name: s.name.clone(),
            service_tags: s.tags.clone(),
            service_address: s.address.clone(),
            service_tagged_addresses: service_addresses(&s.tagged_addresses),
            service_weights: weights(s.weights),
            service_meta: s.meta.clone(),
            service_port: s.port,
            service_enable_tag_override: s.enable_tag_override,
            service_proxy: ProxyJson::default(),
            service_connect: Empty {},
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

impl AgentServiceJson {
    pub(crate) fn new(s: &ServiceRec, dc: &str) -> Self {
        Self {
            kind: s.kind.clone(),
            id: s.id.clone(),
            service: s.name.clone(),
            tags: s.tags.clone(),
            meta: s.meta.clone().unwrap_or_default(),
            port: s.port,
            address: s.address.clone(),
            tagged_addresses: service_addresses(&s.tagged_addresses),
            weights: weights(s.weights),
            enable_tag_override: s.enable_tag_override,
            datacenter: dc.to_owned(),
        }
    }
}

impl KvJson {
    pub(crate) fn new(key: &str, e: &KvEntry) -> Self {
        Self {
            lock_index: e.lock_index,
            key: key.to_owned(),
            flags: e.flags,
            value: (!e.value.is_empty())
                .then(|| base64::engine::general_purpose::STANDARD.encode(&e.value)),
            create_index: e.create_index,
            modify_index: e.modify_index,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::devconsul::state::Status;

    #[test]
    fn service_shape_keeps_empty_address_and_null_meta() {
        let s = ServiceRec::new("n1", "api-1", "api", 8080);
        let v = serde_json::to_value(ServiceJson::new(&s)).unwrap();
        assert_eq!(v["Address"], "");
        assert!(v["Meta"].is_null());
        assert!(v.get("TaggedAddresses").is_none());
        assert_eq!(v["Tags"], serde_json::json!([]));
        assert_eq!(
            v["Weights"],
            serde_json::json!({"Passing": 1, "Warning": 1})
        );
        assert_eq!(
            v["Proxy"],
            serde_json::json!({"Mode": "", "MeshGateway": {}, "Expose": {}})
        );
        assert!(v.get("Kind").is_none());
    }

    #[test]
    fn check_shape() {
        let c = CheckRec::node_check(
            "n1",
            "serfHealth",
            "Serf Health Status",
            Status::Passing,
            "ok",
        );
        let text = serde_json::to_string(&CheckJson::new(&c)).unwrap();
        assert!(text.starts_with(r#"{"Node":"n1","CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing""#), "{text}");
        assert!(text.contains(r#""ServiceTags":[],"Type":"","Interval":"","Timeout":"","ExposedPort":0,"Definition":{}"#));
    }

    #[test]
    fn kv_value_is_null_when_empty() {
        let mut e = KvEntry {
            value: Vec::new(),
            flags: 0,
            create_index: 1,
            modify_index: 2,
            lock_index: 0,
        };
        assert!(serde_json::to_value(KvJson::new("k", &e)).unwrap()["Value"].is_null());
        e.value = b"hi".to_vec();
        assert_eq!(
            serde_json::to_value(KvJson::new("k", &e)).unwrap()["Value"],
            "aGk="
        );
    }
}
