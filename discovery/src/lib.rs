//! Service discovery for meshgate: where a request's endpoints come from.
//!
//! Off the request path. A provider (the static list from the TOML, or a Consul blocking-query
//! watcher) yields whole [`EndpointSet`]s; the gateway builds a new routing snapshot when a set
//! differs from the previous one, and keeps the last known good set through errors.
//!
//! What a watcher yields, and when:
//! - [`ServiceWatcher`] → `watch::Receiver<`[`ServiceState`]`>`: a first value once the first
//!   read succeeded (`last_success` set, possibly an empty set), then a new value only when the
//!   endpoint set or the staleness changes. On errors the set is kept and `stale` says since
//!   when and why.
//! - [`KvWatcher`] → `watch::Receiver<`[`watch::KvState`]`>`: every key under a prefix, same rules
//!   (`index == 0` until the first read).
//! - [`CatalogWatcher`] → `watch::Receiver<`[`watch::CatalogState`]`>`: service names and tags.
//!
//! Building blocks: [`consul::ConsulClient`] (health, catalog, KV with CAS, agent endpoints),
//! [`Backoff`], [`register_self`] (TTL-checked self-registration), [`static_provider`], and,
//! behind the default `devconsul` feature, [`devconsul`]: an in-memory Consul for tests and demos.

#![warn(missing_docs)]

pub mod backoff;
pub mod consul;
#[cfg(feature = "devconsul")]
pub mod devconsul;
pub mod endpoint;
pub mod error;
pub mod go_duration;
pub mod register;
pub mod static_provider;
pub mod watch;

pub use backoff::{Backoff, InvalidBackoff};
pub use consul::{Consistency, ConsulClient, ConsulConfig};
pub use endpoint::{Endpoint, EndpointSet, Health, ServiceState, Source, Staleness};
pub use error::{DiscoveryError, RetryClass};
pub use register::{register_self, Registration};
pub use watch::{CatalogWatcher, KvWatcher, ServiceWatcher, EMPTY_AFTER_OUTAGE_GRACE};
