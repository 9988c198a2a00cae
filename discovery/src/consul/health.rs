//! `GET /v1/health/service/:service` (consul-api.md §3): lenient decoding of entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::{ConsulClient, QueryOptions, QueryResponse};
use crate::error::DiscoveryError;

/// Options of a health read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthQuery {
    /// Send `?passing`: the server keeps only instances whose every check passes.
    pub passing_only: bool,
    /// `?tag=` (repeated, ANDed).
    pub tags: Vec<String>,
    /// `?filter=` expression.
    pub filter: Option<String>,
    /// `?dc=` for this read (overrides the client's datacenter).
    pub datacenter: Option<String>,
}

/// One instance with its node and checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntry {
    /// The node.
    pub node: HealthNode,
    /// The instance.
    pub service: HealthService,
    /// Node and service checks.
    #[serde(default, deserialize_with = "null_default")]
    pub checks: Vec<HealthCheck>,
}

/// `Node` of an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthNode {
    /// Node UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub node: String,
    /// Node address: dial this when `Service.Address` is empty.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Node metadata.
    #[serde(deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
}

/// `Service` of an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthService {
    /// Instance id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    pub service: String,
    /// Tags.
    #[serde(deserialize_with = "null_default")]
    pub tags: Vec<String>,
    /// Registered address; `""` means "use the node's".
    pub address: String,
    /// Port.
    pub port: u16,
    /// Metadata (`null` decodes as empty).
    #[serde(deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
    /// Weights; `{Passing: 1, Warning: 1}` when absent.
    #[serde(deserialize_with = "null_default")]
    pub weights: ServiceWeights,
    /// Tagged addresses (`lan_ipv4`, …).
    #[serde(deserialize_with = "null_default")]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
}

/// A service tagged address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceAddress {
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// Instance weights for weighted balancing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceWeights {
    /// Weight while every check passes.
    #[serde(default = "one")]
    pub passing: u32,
    /// Weight while some check warns (0 means "send no traffic").
    #[serde(default = "one")]
    pub warning: u32,
}

/// A health check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheck {
    /// Node name.
    pub node: String,
    /// Check id (`serfHealth`, `service:api-1`).
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Check name.
    pub name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    /// Last output.
    pub output: String,
    /// Service id; empty for node checks.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Service name; empty for node checks.
    pub service_name: String,
}

/// Aggregated or single check status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckStatus {
    /// All good.
    Passing,
    /// Degraded.
    Warning,
    /// Failing (also any unknown status string).
    Critical,
}

// === impl ===

impl Default for ServiceWeights {
    fn default() -> Self {
        Self {
            passing: 1,
            warning: 1,
        }
    }
}

impl CheckStatus {
    /// Parses a status; anything unknown is critical (fail closed).
    pub fn parse(s: &str) -> Self {
        match s {
            "passing" => Self::Passing,
            "warning" => Self::Warning,
            _ => Self::Critical,
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passing => "passing",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

impl ServiceEntry {
    /// Critical if any check is critical, else warning if any warns, else passing (no checks:
    /// passing).
    pub fn status(&self) -> CheckStatus {
        self.checks
            .iter()
            .map(|c| CheckStatus::parse(&c.status))
            .max()
            .unwrap_or(CheckStatus::Passing)
    }

    /// The host to dial: `Service.Address`, or `Node.Address` when that is empty.
    pub fn host(&self) -> &str {
        if self.service.address.is_empty() {
            &self.node.address
        } else {
            &self.service.address
        }
    }
}

impl ConsulClient {
    /// Reads the instances of `service` with their checks. An unknown service is `Ok([])`.
    pub async fn health_service(
        &self,
        service: &str,
        query: &HealthQuery,
        opts: QueryOptions,
    ) -> Result<QueryResponse<Vec<ServiceEntry>>, DiscoveryError> {
        let mut q: super::client::Query<'_> = Vec::new();
        if query.passing_only {
            q.push(("passing", None));
        }
        for tag in &query.tags {
            q.push(("tag", Some(tag.clone())));
        }
        if let Some(filter) = &query.filter {
            q.push(("filter", Some(filter.clone())));
        }
        if let Some(dc) = &query.datacenter {
            q.push(("dc", Some(dc.clone())));
        }
        let path = format!(
            "/v1/health/service/{}",
            super::client::escape(service, false)
        );
        let resp = self.read(&path, q, opts).await?.success()?;
        let value: Option<Vec<ServiceEntry>> = resp.json()?;
        Ok(QueryResponse {
            value: value.unwrap_or_default(),
            meta: resp.meta,
        })
    }
}

impl ConsulClient {
    /// Reads every check in a state (`any`, `passing`, `warning`, `critical`): a flat list with
    /// node, check id, status and service name, but no address, port or weights.
    pub async fn health_state(
        &self,
        state: &str,
        opts: QueryOptions,
    ) -> Result<QueryResponse<Vec<HealthCheck>>, DiscoveryError> {
        let path = format!("/v1/health/state/{}", super::client::escape(state, false));
        let resp = self.read(&path, Vec::new(), opts).await?.success()?;
        let value: Option<Vec<HealthCheck>> = resp.json()?;
        Ok(QueryResponse {
            value: value.unwrap_or_default(),
            meta: resp.meta,
        })
    }
}

fn one() -> u32 {
    1
}

/// `null` (or absent, with `#[serde(default)]`) decodes as the type's default.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SPEC: &str = r#"[{"Node":{"ID":"e29","Node":"n1","Address":"10.0.0.5","Datacenter":"dc1",
      "TaggedAddresses":{"lan":"10.0.0.5"},"Meta":{"consul-network-segment":""},"CreateIndex":13,"ModifyIndex":14},
     "Service":{"ID":"api-1","Service":"api","Tags":["v2"],"Address":"",
      "Meta":null,"Port":8080,"Weights":{"Passing":10,"Warning":1},"EnableTagOverride":false,
      "Proxy":{"Mode":"","MeshGateway":{},"Expose":{}},"Connect":{},"PeerName":"","CreateIndex":20,"ModifyIndex":20},
     "Checks":[{"Node":"n1","CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing","Output":"Agent alive and reachable","ServiceID":"","ServiceName":"","ServiceTags":[]},
      {"Node":"n1","CheckID":"service:api-1","Name":"Service 'api' check","Status":"warning","Output":"","ServiceID":"api-1","ServiceName":"api","ServiceTags":["v2"],"Type":"ttl"}]}]"#;

    #[test]
    fn decodes_spec_shape() {
        let entries: Vec<ServiceEntry> = serde_json::from_str(SPEC).unwrap();
        let e = &entries[0];
        assert_eq!(
            e.host(),
            "10.0.0.5",
            "empty Service.Address falls back to the node's"
        );
        assert!(e.service.meta.is_empty());
        assert_eq!(
            e.service.weights,
            ServiceWeights {
                passing: 10,
                warning: 1
            }
        );
        assert_eq!(e.status(), CheckStatus::Warning);
    }

    #[test]
    fn tolerates_nulls_and_missing_weights() {
        let json = r#"[{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"s","Tags":null,"Port":1},"Checks":null}]"#;
        let entries: Vec<ServiceEntry> = serde_json::from_str(json).unwrap();
        assert_eq!(entries[0].service.weights, ServiceWeights::default());
        assert_eq!(entries[0].status(), CheckStatus::Passing);
    }

    #[test]
    fn unknown_status_is_critical() {
        assert_eq!(CheckStatus::parse("maintenance"), CheckStatus::Critical);
    }
}
