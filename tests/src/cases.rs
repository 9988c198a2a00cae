//! The end-to-end suite: one test binary, one module per area.
#![allow(clippy::unwrap_used)]

mod cases {
    pub mod admin;
    pub mod auth;
    pub mod client_faults;
    pub mod config_check;
    pub mod consul_clients;
    pub mod cors_browser;
    pub mod demo;
    pub mod discovery;
    pub mod duplex;
    pub mod faults;
    pub mod fleet_limits;
    pub mod flood;
    pub mod gwctl_cli;
    pub mod gwctl_tui;
    pub mod http1;

    pub mod lifecycle;
    pub mod limits;
    pub mod observability;
    pub mod openapi_import;
    pub mod policies;
    pub mod policy_decisions;
    pub mod prometheus;
    pub mod proxying;
    pub mod registration;
    pub mod reload;
    pub mod resilience;
    pub mod retries;
    pub mod routing;
    pub mod support;
    pub mod timeouts;
    pub mod tls;
    pub mod tls_reload;
    pub mod tls_scan;
    pub mod tls_sessions;
    pub mod tls_upstream;
    pub mod tracing;
    pub mod upgrade;
}
