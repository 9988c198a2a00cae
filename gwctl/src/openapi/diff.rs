//! `--diff CONFIG`: what importing would change in an existing config.
//!
//! The routes compared on the config's side are those that send only to the imported service
//! (the ones an earlier import wrote, or hand-written routes of that API); routes of other
//! services are never reported. Routes are paired by name; a pair differs when what it matches
//! (host, path, methods, headers) or where it sends differs — timeouts and retries set by hand in
//! the config are not the import's business.

use gatewayd::config::{Config, RouteConfig};

/// One difference, by route name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChange {
    /// In the import, not in the config.
    Added(String),
    /// In the config (sending to the service), not in the import.
    Removed(String),
    /// In both, matching or sending differently: (name, before, after) as one-line summaries.
    Changed(String, String, String),
}

impl RouteChange {
    /// The route's name.
    pub fn route(&self) -> &str {
        match self {
            Self::Added(n) | Self::Removed(n) | Self::Changed(n, ..) => n,
        }
    }
}

/// Differences between the config's routes for `service` and the imported ones, in the import's
/// order, then the removed ones in the config's order. A route whose policy tables written by
/// the import (`generated`) differ from the config's tables of those names is changed too.
pub fn diff(
    config: &Config,
    imported: &Config,
    generated: &[String],
    service: &str,
) -> Vec<RouteChange> {
    let mut out = diff_routes(&config.routes, &imported.routes, service);
    for new in &imported.routes {
        if out.iter().any(|c| c.route() == new.name) {
            continue;
        }
        let Some(old) = config.routes.iter().find(|r| r.name == new.name) else {
            continue;
        };
        for p in new.policies.iter().filter(|p| generated.contains(p)) {
            let (before, after) = (config.policies.get(p), imported.policies.get(p));
            if before != after {
                out.push(RouteChange::Changed(
                    old.name.clone(),
                    format!("[policies.{p}] {:?}", before.map(|b| &b.kind)),
                    format!("[policies.{p}] {:?}", after.map(|a| &a.kind)),
                ));
                break;
            }
        }
    }
    out
}

fn diff_routes(
    config: &[RouteConfig],
    imported: &[RouteConfig],
    service: &str,
) -> Vec<RouteChange> {
    let ours: Vec<&RouteConfig> = config
        .iter()
        .filter(|r| !r.backends.is_empty() && r.backends.iter().all(|b| b.service == service))
        .collect();
    let mut out = Vec::new();
    for new in imported {
        match config.iter().find(|r| r.name == new.name) {
            None => out.push(RouteChange::Added(new.name.clone())),
            Some(old) if summary(old) != summary(new) => out.push(RouteChange::Changed(
                new.name.clone(),
                summary(old),
                summary(new),
            )),
            Some(_) => {}
        }
    }
    for old in ours {
        if !imported.iter().any(|r| r.name == old.name) {
            out.push(RouteChange::Removed(old.name.clone()));
        }
    }
    out
}

/// What a route matches and where it sends, on one line.
fn summary(r: &RouteConfig) -> String {
    use gatewayd::config::{HostMatch, PathMatch};
    let host = match &r.host {
        Some(HostMatch::Exact(h)) => h.clone(),
        Some(HostMatch::Suffix(s)) => format!("*{s}"),
        None => String::new(),
    };
    let path = match &r.path {
        PathMatch::Exact(p) => format!("path {p}"),
        PathMatch::Prefix(p) => format!("path_prefix {p}"),
        PathMatch::Template(t) => format!("path_template {}", t.as_str()),
    };
    let methods: Vec<&str> = r.methods.iter().map(|m| m.as_str()).collect();
    let headers: Vec<String> = r
        .headers
        .iter()
        .map(|h| match &h.value {
            Some(v) => format!("{}={v}", h.name),
            None => h.name.to_string(),
        })
        .collect();
    let backends: Vec<String> = r
        .backends
        .iter()
        .map(|b| format!("{}:{}", b.name, b.service))
        .collect();
    let mut s = format!("{host}{path} [{}]", methods.join(","));
    if !headers.is_empty() {
        s.push_str(&format!(" headers {}", headers.join(",")));
    }
    if !r.policies.is_empty() {
        s.push_str(&format!(" policies {}", r.policies.join(",")));
    }
    s.push_str(&format!(" -> {}", backends.join(",")));
    s
}
