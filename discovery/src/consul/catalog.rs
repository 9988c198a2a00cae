//! `GET /v1/catalog/services` (consul-api.md §4): service name → union of tags.

use std::collections::BTreeMap;

use super::{ConsulClient, QueryOptions, QueryResponse};
use crate::error::DiscoveryError;

/// Service name → tags (union over instances). No health information.
pub type CatalogServices = BTreeMap<String, Vec<String>>;

impl ConsulClient {
    /// Reads the catalog's service names. Its index moves on any service write (a port change
    /// too) but not on health flaps.
    pub async fn catalog_services(
        &self,
        opts: QueryOptions,
    ) -> Result<QueryResponse<CatalogServices>, DiscoveryError> {
        let resp = self
            .read("/v1/catalog/services", Vec::new(), opts)
            .await?
            .success()?;
        let raw: Option<BTreeMap<String, Option<Vec<String>>>> = resp.json()?;
        let value = raw
            .unwrap_or_default()
            .into_iter()
            .map(|(name, tags)| (name, tags.unwrap_or_default()))
            .collect();
        Ok(QueryResponse {
            value,
            meta: resp.meta,
        })
    }
}
