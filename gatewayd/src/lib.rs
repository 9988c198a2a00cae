//! gatewayd: meshgate's gateway daemon.
//!
//! The request path, in ten steps (one request context, `proxy::exchange::Exchange`, carried
//! through them):
//! 1. `proxy::server` accepts on a SO_REUSEPORT listener owned by one worker thread;
//! 2. `proxy::h1`, in the connection's own task, reads the HTTP/1.x head (strict framing) and
//!    loads the current [`snapshot::Snapshot`] once; HTTP/2 clients and requests for h2c or TLS
//!    services are handed to hyper and `proxy::handle`, which go through the same phases;
//! 3. `route::RouteTable::match_request` picks the most specific route, then the route's
//!    request policies run (`policy`);
//! 4. `split::Split::choose` picks a backend (cohort rule → sticky hash → weighted);
//! 5. `balance::Balancer::pick` picks an endpoint of that backend's service (`proxy::attempts`,
//!    which also retries elsewhere when it is safe and within budget);
//! 6. `proxy::h1::upstream` writes the head field by field onto the worker's own keep-alive
//!    pool, in the same task, and streams the request body while it reads the answer;
//! 7. the response streams back (full duplex with the request body); `proxy::error::respond`
//!    answers for gateway-made failures;
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
pub mod handover;
pub mod health;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod snapshot;
pub mod split;
pub mod telemetry;
pub mod tls;
pub mod weights;
