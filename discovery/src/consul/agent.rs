//! Agent endpoints used for self-registration (consul-api.md §6).

use std::collections::BTreeMap;

use bytes::Bytes;
use http::Method;
use serde::Serialize;

use super::client::{escape, Query};
use super::health::{CheckStatus, HealthCheck};
use super::{ConsulClient, QueryOptions, ServiceWeights};
use crate::error::DiscoveryError;

/// A `PUT /v1/agent/service/register` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentServiceRegistration {
    /// Instance id (defaults to `name` on the agent when `None`).
    #[serde(rename = "ID", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Service name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address; empty means "the node's address".
    pub address: String,
    /// Port.
    pub port: u16,
    /// Metadata.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Weights (`{1, 1}` on the agent when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<RegistrationWeights>,
    /// One check (CheckID `service:<ID>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<AgentServiceCheck>,
}

/// Weights as sent in a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegistrationWeights {
    /// Weight while passing (at least 1).
    pub passing: u32,
    /// Weight while warning.
    pub warning: u32,
}

/// A check attached to a registration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentServiceCheck {
    /// Explicit id (default `service:<ID>`).
    #[serde(rename = "CheckID", skip_serializing_if = "Option::is_none")]
    pub check_id: Option<String>,
    /// Explicit name (default `Service '<Name>' check`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// TTL as a Go duration (`"15s"`).
    #[serde(rename = "TTL", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Initial status (the agent starts checks critical otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Remove the service after being critical this long (Go duration, min 1m).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deregister_critical_service_after: Option<String>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl From<ServiceWeights> for RegistrationWeights {
    fn from(w: ServiceWeights) -> Self {
        Self {
            passing: w.passing,
            warning: w.warning,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CheckUpdate<'a> {
    status: &'a str,
    output: &'a str,
}

impl ConsulClient {
    /// Registers a service on the agent (`?replace-existing-checks` when asked).
    pub async fn agent_service_register(
        &self,
        registration: &AgentServiceRegistration,
        replace_existing_checks: bool,
    ) -> Result<(), DiscoveryError> {
        let body = serde_json::to_vec(registration).map_err(|e| DiscoveryError::Request {
            path: "/v1/agent/service/register".to_owned(),
            reason: e.to_string(),
        })?;
        let q: Query<'_> = if replace_existing_checks {
            vec![("replace-existing-checks", None)]
        } else {
            Vec::new()
        };
        self.write(
            Method::PUT,
            "/v1/agent/service/register",
            q,
            Bytes::from(body),
        )
        .await?
        .success()?;
        Ok(())
    }

    /// Deregisters a service by id (404 for an unknown id).
    pub async fn agent_service_deregister(&self, id: &str) -> Result<(), DiscoveryError> {
        let path = format!("/v1/agent/service/deregister/{}", escape(id, false));
        self.write(Method::PUT, &path, Vec::new(), Bytes::new())
            .await?
            .success()?;
        Ok(())
    }

    /// Sets a TTL check's status and output (and restarts its TTL).
    pub async fn agent_check_update(
        &self,
        check_id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<(), DiscoveryError> {
        let path = format!("/v1/agent/check/update/{}", escape(check_id, false));
        let body = serde_json::to_vec(&CheckUpdate {
            status: status.as_str(),
            output,
        })
        .map_err(|e| DiscoveryError::Request {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        self.write(Method::PUT, &path, Vec::new(), Bytes::from(body))
            .await?
            .success()?;
        Ok(())
    }

    /// Marks a TTL check passing (`/v1/agent/check/pass/:id?note=`).
    pub async fn agent_check_pass(
        &self,
        check_id: &str,
        note: Option<&str>,
    ) -> Result<(), DiscoveryError> {
        let path = format!("/v1/agent/check/pass/{}", escape(check_id, false));
        let q: Query<'_> = note
            .map(|n| ("note", Some(n.to_owned())))
            .into_iter()
            .collect();
        self.write(Method::PUT, &path, q, Bytes::new())
            .await?
            .success()?;
        Ok(())
    }

    /// The agent's local checks, keyed by check id.
    pub async fn agent_checks(&self) -> Result<BTreeMap<String, HealthCheck>, DiscoveryError> {
        let resp = self
            .read("/v1/agent/checks", Vec::new(), QueryOptions::default())
            .await?
            .success()?;
        resp.json()
    }

    /// The ids of the agent's local services.
    pub async fn agent_service_ids(&self) -> Result<Vec<String>, DiscoveryError> {
        let resp = self
            .read("/v1/agent/services", Vec::new(), QueryOptions::default())
            .await?
            .success()?;
        let map: BTreeMap<String, serde_json::Value> = resp.json()?;
        Ok(map.into_keys().collect())
    }
}
