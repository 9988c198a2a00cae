//! Service discovery for meshgate: where a request's endpoints come from.
//!
//! Off the request path. A provider (the static list from the TOML, or a Consul blocking-query
//! watcher) yields whole [`EndpointSet`]s; the gateway builds a new routing snapshot when a set
//! differs from the previous one, and keeps the last known good set through errors.

pub mod endpoint;
pub mod static_provider;

pub use endpoint::{Endpoint, EndpointSet, Health, ServiceState, Source, Staleness};
