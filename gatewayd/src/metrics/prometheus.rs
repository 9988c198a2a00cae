//! Prometheus text exposition (format 0.0.4) with the names of DESIGN §7.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use super::{Registry, CLASSES};
use crate::proxy::{ClientFault, RetryReason};

/// Bucket bounds of `meshgate_request_duration_seconds`.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Endpoint gauges of one service.
#[derive(Debug, Clone)]
pub struct ServiceGauge {
    /// Service name.
    pub service: String,
    /// Endpoints usable now.
    pub healthy: usize,
    /// Endpoints ejected now.
    pub ejected: usize,
    /// Unix seconds of the last successful discovery read (0 when never).
    pub last_update: u64,
    /// True while discovery cannot reach its source.
    pub stale: bool,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric.
pub fn render(
    reg: &Registry,
    services: &[ServiceGauge],
    policies: &crate::policy::PolicyRegistry,
) -> String {
    let mut o = String::with_capacity(4096);
    let pairs = reg.all();
    let _ = writeln!(
        o,
        "# HELP meshgate_requests_total Requests by route, backend and status class."
    );
    let _ = writeln!(o, "# TYPE meshgate_requests_total counter");
    let mut totals = Vec::with_capacity(pairs.len() + 1);
    for m in pairs.iter().chain(std::iter::once(&reg.unmatched)) {
        let t = m.totals();
        for (i, c) in CLASSES.iter().enumerate() {
            if t.by_class[i] > 0 {
                let _ = writeln!(
                    o,
                    "meshgate_requests_total{{route=\"{}\",backend=\"{}\",code_class=\"{c}\"}} {}",
                    esc(&m.route),
                    esc(&m.backend),
                    t.by_class[i]
                );
            }
        }
        totals.push((m.clone(), t));
    }
    let _ = writeln!(
        o,
        "# HELP meshgate_requests_in_flight Requests being proxied now."
    );
    let _ = writeln!(o, "# TYPE meshgate_requests_in_flight gauge");
    for (m, t) in &totals {
        if !m.route.is_empty() {
            let _ = writeln!(
                o,
                "meshgate_requests_in_flight{{route=\"{}\",backend=\"{}\"}} {}",
                esc(&m.route),
                esc(&m.backend),
                t.in_flight
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP meshgate_request_duration_seconds Time from request to response head."
    );
    let _ = writeln!(o, "# TYPE meshgate_request_duration_seconds histogram");
    for (m, t) in &totals {
        if t.latency.is_empty() {
            continue;
        }
        let labels = format!(
            "route=\"{}\",backend=\"{}\"",
            esc(&m.route),
            esc(&m.backend)
        );
        let mut counts = [0u64; BUCKETS.len()];
        for v in t.latency.iter_recorded() {
            let secs = t.latency.highest_equivalent(v.value_iterated_to()) as f64 / 1e6;
            if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
                counts[i] += v.count_at_value();
            }
        }
        let mut cum = 0;
        for (b, c) in BUCKETS.iter().zip(counts) {
            cum += c;
            let _ = writeln!(
                o,
                "meshgate_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cum}"
            );
        }
        let n = t.latency.len();
        let _ = writeln!(
            o,
            "meshgate_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {n}"
        );
        let _ = writeln!(
            o,
            "meshgate_request_duration_seconds_sum{{{labels}}} {}",
            t.latency.mean() * n as f64 / 1e6
        );
        let _ = writeln!(o, "meshgate_request_duration_seconds_count{{{labels}}} {n}");
    }
    let _ = writeln!(
        o,
        "# HELP meshgate_upstream_endpoints Endpoints per service and state."
    );
    let _ = writeln!(o, "# TYPE meshgate_upstream_endpoints gauge");
    for s in services {
        let _ = writeln!(
            o,
            "meshgate_upstream_endpoints{{service=\"{}\",state=\"healthy\"}} {}",
            esc(&s.service),
            s.healthy
        );
        let _ = writeln!(
            o,
            "meshgate_upstream_endpoints{{service=\"{}\",state=\"ejected\"}} {}",
            esc(&s.service),
            s.ejected
        );
    }
    let _ = writeln!(
        o,
        "# HELP meshgate_discovery_last_update_seconds Unix time of the last successful discovery read."
    );
    let _ = writeln!(o, "# TYPE meshgate_discovery_last_update_seconds gauge");
    for s in services {
        let _ = writeln!(
            o,
            "meshgate_discovery_last_update_seconds{{service=\"{}\"}} {}",
            esc(&s.service),
            s.last_update
        );
    }
    let _ = writeln!(
        o,
        "# HELP meshgate_discovery_stale Whether a service's endpoints are stale (source unreachable)."
    );
    let _ = writeln!(o, "# TYPE meshgate_discovery_stale gauge");
    for s in services {
        let _ = writeln!(
            o,
            "meshgate_discovery_stale{{service=\"{}\"}} {}",
            esc(&s.service),
            u8::from(s.stale)
        );
    }
    let _ = writeln!(
        o,
        "# HELP meshgate_weights_stale Whether Consul KV cannot be read (the last good weights serve)."
    );
    let _ = writeln!(o, "# TYPE meshgate_weights_stale gauge");
    let _ = writeln!(
        o,
        "meshgate_weights_stale {}",
        reg.weights_stale.load(Relaxed)
    );
    labelled_counter(
        &mut o,
        ("meshgate_retries_total", "reason"),
        "Upstream attempts retried on another endpoint, by reason.",
        RetryReason::ALL.map(|r| (r.as_str(), reg.retries[r.index()].load(Relaxed))),
    );
    for (name, help, v) in [
        (
            "meshgate_retries_refused_total",
            "Retries not made because the route's retry budget was spent.",
            reg.retries_refused.load(Relaxed),
        ),
        (
            "meshgate_ejections_total",
            "Outlier ejections.",
            reg.ejections.load(Relaxed),
        ),
    ] {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
    labelled_counter(
        &mut o,
        ("meshgate_client_errors_total", "kind"),
        "Requests and connections that failed through the client's own doing, by kind (never counted against an endpoint).",
        ClientFault::ALL.map(|k| (k.as_str(), reg.client_faults[k.index()].load(Relaxed))),
    );
    let _ = writeln!(
        o,
        "# HELP meshgate_policy_decisions_total Decisions of route policies, by policy and outcome.\n# TYPE meshgate_policy_decisions_total counter"
    );
    for (policy, outcome, n) in policies.decisions() {
        let _ = writeln!(
            o,
            "meshgate_policy_decisions_total{{policy=\"{}\",outcome=\"{outcome}\"}} {n}",
            esc(&policy)
        );
    }
    let _ = writeln!(
        o,
        "# HELP meshgate_ratelimit_keys Rate-limit buckets held, by policy.\n# TYPE meshgate_ratelimit_keys gauge"
    );
    for (policy, n) in policies.keys_in_use() {
        let _ = writeln!(
            o,
            "meshgate_ratelimit_keys{{policy=\"{}\"}} {n}",
            esc(&policy)
        );
    }
    let _ = writeln!(
        o,
        "# HELP meshgate_config_reloads_total Config reloads by result.\n# TYPE meshgate_config_reloads_total counter"
    );
    let _ = writeln!(
        o,
        "meshgate_config_reloads_total{{result=\"ok\"}} {}",
        reg.reloads_ok.load(Relaxed)
    );
    let _ = writeln!(
        o,
        "meshgate_config_reloads_total{{result=\"rejected\"}} {}",
        reg.reloads_failed.load(Relaxed)
    );
    o
}

/// A counter family with one label whose values are fixed (every value written, zeros too).
fn labelled_counter<const N: usize>(
    o: &mut String,
    (name, label): (&str, &str),
    help: &str,
    values: [(&str, u64); N],
) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
    for (value, n) in values {
        let _ = writeln!(o, "{name}{{{label}=\"{value}\"}} {n}");
    }
}
