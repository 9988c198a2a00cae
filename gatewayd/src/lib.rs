//! gatewayd: meshgate's gateway daemon.
//!
//! The request path, in ten lines:
//! 1. `proxy::server` accepts on a SO_REUSEPORT listener owned by one worker thread;
//! 2. `proxy::handle` loads the current [`snapshot::Snapshot`] once;
//! 3. `route::RouteTable::match_request` picks the most specific route;
//! 4. `split::Split::choose` picks a backend (cohort rule → sticky hash → weighted);
//! 5. `balance::Balancer::pick` picks an endpoint of that backend's service;
//! 6. `proxy::client` sends on the worker's own keep-alive pool (retry if nothing was sent);
//! 7. the response streams back; `proxy::error::respond` answers for gateway-made failures;
//! 8. `metrics` records (route, backend, status class, latency) in the worker's shard;
//! 9. `health` ejects endpoints that keep failing;
//! 10. off the path, discovery, weight changes and reloads build a new snapshot and swap it.

pub mod admin;
pub mod app;
pub mod balance;
pub mod config;
pub mod consul;
pub mod demo;
pub mod events;
pub mod fxhash;
pub mod health;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod snapshot;
pub mod split;
pub mod telemetry;
pub mod weights;
