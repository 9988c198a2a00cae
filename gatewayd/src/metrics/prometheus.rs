//! Prometheus text exposition (format 0.0.4) with the names of DESIGN §7, clean under
//! `promtool check metrics`: every family has `HELP` and `TYPE`, counters end in `_total`, units
//! are base units in the name (`_seconds`), and series a dashboard divides by are written from
//! the start (zeros), so `rate()` and ratios have data before the first error.

use std::fmt::{Display, Write as _};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{Registry, Totals, CLASSES};
use crate::proxy::{ClientFault, RetryReason};

/// Bucket bounds of `meshgate_request_duration_seconds`: sub-millisecond (a gateway's own
/// answers, a local upstream) to a minute (long polls, slow uploads).
pub const BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
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
    /// Unix seconds of the last discovery update that changed the set or ended an outage (0
    /// when never).
    pub last_update: u64,
    /// True while discovery cannot reach its source.
    pub stale: bool,
    /// How long it has been stale (zero when fresh).
    pub stale_for: Duration,
}

/// Config facts of one route that operators alert on.
#[derive(Debug, Clone)]
pub struct RouteGauge {
    /// Route name.
    pub route: String,
    /// `latency_objective` of the route (None: not set, no series written).
    pub latency_objective: Option<Duration>,
    /// (backend, service, effective weight), in declaration order.
    pub backends: Vec<(String, String, u32)>,
}

/// Gauges read from the serving snapshot and the control state at scrape time.
#[derive(Debug, Clone)]
pub struct Gauges {
    /// One per service.
    pub services: Vec<ServiceGauge>,
    /// One per route.
    pub routes: Vec<RouteGauge>,
    /// Whether the last config reload attempt was applied (true before any attempt).
    pub last_reload_ok: bool,
}

/// Writes families: `family` opens one (HELP + TYPE), `sample` writes a line with escaped labels.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", esc(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric of the process (TLS certificate gauges are `tls::prometheus`).
pub fn render(reg: &Registry, gauges: &Gauges, policies: &crate::policy::PolicyRegistry) -> String {
    let mut o = Out(String::with_capacity(8192));
    process(&mut o, reg, gauges);
    let totals: Vec<_> = reg
        .all()
        .into_iter()
        .chain(std::iter::once(reg.unmatched.clone()))
        .map(|m| {
            let t = m.totals();
            (m, t)
        })
        .collect();
    requests(&mut o, &totals);
    routes(&mut o, gauges);
    upstreams(&mut o, &gauges.services, reg.weights_stale.load(Relaxed));
    resilience(&mut o, reg);
    policy(&mut o, policies);
    spans(&mut o, reg);
    o.0
}

fn process(o: &mut Out, reg: &Registry, gauges: &Gauges) {
    o.family(
        "meshgate_build_info",
        "gauge",
        "Always 1; the labels name the running build.",
    );
    o.sample(
        "meshgate_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    o.family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    o.sample(
        "process_start_time_seconds",
        &[],
        super::unix_secs(reg.started),
    );
    o.family(
        "meshgate_connections_open",
        "gauge",
        "Client connections open now, on every listener.",
    );
    o.sample(
        "meshgate_connections_open",
        &[],
        reg.connections_open.load(Relaxed),
    );
    o.family(
        "meshgate_connections_accepted_total",
        "counter",
        "Client connections accepted, on every listener.",
    );
    o.sample(
        "meshgate_connections_accepted_total",
        &[],
        reg.connections_accepted.load(Relaxed),
    );
    o.family(
        "meshgate_connections_refused_total",
        "counter",
        "Client connections closed at once because their listener held max_connections.",
    );
    o.sample(
        "meshgate_connections_refused_total",
        &[],
        reg.connections_refused.load(Relaxed),
    );
    o.family(
        "meshgate_config_reloads_total",
        "counter",
        "Config reloads by result.",
    );
    o.sample(
        "meshgate_config_reloads_total",
        &[("result", "ok")],
        reg.reloads_ok.load(Relaxed),
    );
    o.sample(
        "meshgate_config_reloads_total",
        &[("result", "rejected")],
        reg.reloads_failed.load(Relaxed),
    );
    o.family(
        "meshgate_config_last_reload_successful",
        "gauge",
        "1 when the last config reload was applied (or none was tried), 0 while a rejected one leaves the previous config serving.",
    );
    o.sample(
        "meshgate_config_last_reload_successful",
        &[],
        u8::from(gauges.last_reload_ok),
    );
}

fn requests(o: &mut Out, totals: &[(std::sync::Arc<super::BackendMetrics>, Totals)]) {
    o.family(
        "meshgate_requests_total",
        "counter",
        "Requests by route, backend and status class.",
    );
    for (m, t) in totals {
        let pair = full(m);
        for (i, c) in CLASSES.iter().enumerate() {
            // (route, backend) pairs write every class from the start so ratios and rate() have
            // data before the first error; requests that reached no backend (or no route) only
            // once they happen.
            if pair || t.by_class[i] > 0 {
                o.sample(
                    "meshgate_requests_total",
                    &[
                        ("route", &m.route),
                        ("backend", &m.backend),
                        ("code_class", c),
                    ],
                    t.by_class[i],
                );
            }
        }
    }
    o.family(
        "meshgate_requests_in_flight",
        "gauge",
        "Requests being proxied now.",
    );
    for (m, t) in totals.iter().filter(|(m, _)| !m.route.is_empty()) {
        o.sample(
            "meshgate_requests_in_flight",
            &[("route", &m.route), ("backend", &m.backend)],
            t.in_flight,
        );
    }
    o.family(
        "meshgate_request_duration_seconds",
        "histogram",
        "Time from request to response head (gateway-made answers included).",
    );
    for (m, t) in totals {
        if !full(m) && t.latency.is_empty() {
            continue;
        }
        histogram(o, &m.route, &m.backend, t);
    }
}

/// A configured (route, backend) pair, as opposed to the "no route" and "no backend" rows.
fn full(m: &super::BackendMetrics) -> bool {
    !m.route.is_empty() && !m.backend.is_empty()
}

fn histogram(o: &mut Out, route: &str, backend: &str, t: &Totals) {
    const NAME: &str = "meshgate_request_duration_seconds_bucket";
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
        let le = b.to_string();
        o.sample(
            NAME,
            &[("route", route), ("backend", backend), ("le", &le)],
            cum,
        );
    }
    let n = t.latency.len();
    let labels = [("route", route), ("backend", backend)];
    o.sample(
        NAME,
        &[("route", route), ("backend", backend), ("le", "+Inf")],
        n,
    );
    o.sample(
        "meshgate_request_duration_seconds_sum",
        &labels,
        t.latency.mean() * n as f64 / 1e6,
    );
    o.sample("meshgate_request_duration_seconds_count", &labels, n);
}

fn routes(o: &mut Out, gauges: &Gauges) {
    o.family(
        "meshgate_route_weight",
        "gauge",
        "Effective weight of each backend of a route (file default or runtime override).",
    );
    for r in &gauges.routes {
        for (backend, service, w) in &r.backends {
            o.sample(
                "meshgate_route_weight",
                &[
                    ("route", &r.route),
                    ("backend", backend),
                    ("service", service),
                ],
                w,
            );
        }
    }
    o.family(
        "meshgate_route_latency_objective_seconds",
        "gauge",
        "The route's latency_objective: the p99 it should stay under (routes without one write no series).",
    );
    for r in &gauges.routes {
        if let Some(d) = r.latency_objective {
            o.sample(
                "meshgate_route_latency_objective_seconds",
                &[("route", &r.route)],
                d.as_secs_f64(),
            );
        }
    }
}

fn upstreams(o: &mut Out, services: &[ServiceGauge], weights_stale: u64) {
    o.family(
        "meshgate_upstream_endpoints",
        "gauge",
        "Endpoints per service and state.",
    );
    for s in services {
        for (state, n) in [("healthy", s.healthy), ("ejected", s.ejected)] {
            o.sample(
                "meshgate_upstream_endpoints",
                &[("service", &s.service), ("state", state)],
                n,
            );
        }
    }
    o.family(
        "meshgate_discovery_last_update_seconds",
        "gauge",
        "Unix time of the last discovery update that changed a service's endpoints or ended an outage (0: never).",
    );
    for s in services {
        o.sample(
            "meshgate_discovery_last_update_seconds",
            &[("service", &s.service)],
            s.last_update,
        );
    }
    o.family(
        "meshgate_discovery_stale",
        "gauge",
        "1 while a service's endpoints are stale (source unreachable, last known set serving).",
    );
    for s in services {
        o.sample(
            "meshgate_discovery_stale",
            &[("service", &s.service)],
            u8::from(s.stale),
        );
    }
    o.family(
        "meshgate_weights_stale",
        "gauge",
        "1 while Consul KV cannot be read (the last good weights serve).",
    );
    o.sample("meshgate_weights_stale", &[], weights_stale);
    o.family(
        "meshgate_discovery_stale_duration_seconds",
        "gauge",
        "How long a service's endpoints have been stale (0 while fresh).",
    );
    for s in services {
        o.sample(
            "meshgate_discovery_stale_duration_seconds",
            &[("service", &s.service)],
            s.stale_for.as_secs_f64(),
        );
    }
}

fn resilience(o: &mut Out, reg: &Registry) {
    o.family(
        "meshgate_retries_total",
        "counter",
        "Upstream attempts retried on another endpoint, by reason.",
    );
    for r in RetryReason::ALL {
        o.sample(
            "meshgate_retries_total",
            &[("reason", r.as_str())],
            reg.retries[r.index()].load(Relaxed),
        );
    }
    o.family(
        "meshgate_retries_refused_total",
        "counter",
        "Retries not made because the route's retry budget was spent.",
    );
    o.sample(
        "meshgate_retries_refused_total",
        &[],
        reg.retries_refused.load(Relaxed),
    );
    o.family(
        "meshgate_load_shed_total",
        "counter",
        "Requests answered 503 at once because the gateway held gateway.max_in_flight.",
    );
    o.sample("meshgate_load_shed_total", &[], reg.shed.load(Relaxed));
    o.family(
        "meshgate_body_idle_timeouts_total",
        "counter",
        "Body relays cut after the route's body_idle_timeout without a byte either way.",
    );
    o.sample(
        "meshgate_body_idle_timeouts_total",
        &[],
        reg.body_idle_timeouts.load(Relaxed),
    );
    o.family("meshgate_ejections_total", "counter", "Outlier ejections.");
    o.sample("meshgate_ejections_total", &[], reg.ejections.load(Relaxed));
    o.family(
        "meshgate_client_errors_total",
        "counter",
        "Requests and connections that failed through the client's own doing, by kind (never counted against an endpoint).",
    );
    for k in ClientFault::ALL {
        o.sample(
            "meshgate_client_errors_total",
            &[("kind", k.as_str())],
            reg.client_faults[k.index()].load(Relaxed),
        );
    }
}

/// Span export (`[tracing] otlp_endpoint`): zeros when it is off.
fn spans(o: &mut Out, reg: &Registry) {
    let s = &reg.spans;
    o.family(
        "meshgate_trace_spans_exported_total",
        "counter",
        "Spans the OTLP collector accepted.",
    );
    o.sample(
        "meshgate_trace_spans_exported_total",
        &[],
        s.exported.load(Relaxed),
    );
    o.family(
        "meshgate_trace_spans_dropped_total",
        "counter",
        "Spans dropped before export, by reason (queue_full: the collector slow or down; export_failed: refused, or every retry failed).",
    );
    for (reason, n) in [
        ("queue_full", &s.dropped_queue_full),
        ("export_failed", &s.dropped_export_failed),
    ] {
        o.sample(
            "meshgate_trace_spans_dropped_total",
            &[("reason", reason)],
            n.load(Relaxed),
        );
    }
    o.family(
        "meshgate_trace_export_failures_total",
        "counter",
        "OTLP export requests that failed (each retry counts).",
    );
    o.sample(
        "meshgate_trace_export_failures_total",
        &[],
        s.export_failures.load(Relaxed),
    );
}

fn policy(o: &mut Out, policies: &crate::policy::PolicyRegistry) {
    o.family(
        "meshgate_policy_decisions_total",
        "counter",
        "Decisions of route policies, by policy and outcome.",
    );
    for (policy, outcome, n) in policies.decisions() {
        o.sample(
            "meshgate_policy_decisions_total",
            &[("policy", &policy), ("outcome", outcome)],
            n,
        );
    }
    o.family(
        "meshgate_ratelimit_keys",
        "gauge",
        "Rate-limit buckets held, by policy.",
    );
    for (policy, n) in policies.keys_in_use() {
        o.sample("meshgate_ratelimit_keys", &[("policy", &policy)], n);
    }
    o.family(
        "meshgate_ratelimit_fleet_gateways",
        "gauge",
        "Gateways a scope = \"fleet\" rate limit is divided among (alive in Consul), by policy.",
    );
    for (policy, gateways, _, _) in policies.fleet_shares() {
        o.sample(
            "meshgate_ratelimit_fleet_gateways",
            &[("policy", &policy)],
            gateways,
        );
    }
    policy_auth(o, policies);
}

/// JWKS reads and staleness; forward-auth latency histograms and cache sizes.
fn policy_auth(o: &mut Out, policies: &crate::policy::PolicyRegistry) {
    let jwks = policies.jwks();
    o.family(
        "meshgate_jwks_fetches_total",
        "counter",
        "Reads of JWT policies' key sets, by result.",
    );
    for j in &jwks {
        for (result, n) in [("ok", j.fetches - j.failures), ("failed", j.failures)] {
            o.sample(
                "meshgate_jwks_fetches_total",
                &[("policy", &j.policy), ("result", result)],
                n,
            );
        }
    }
    o.family(
        "meshgate_jwks_stale",
        "gauge",
        "1 while a JWT policy's keys are not fresh: its last read failed, or none succeeded yet.",
    );
    for j in &jwks {
        let stale = u8::from(j.stale || !j.loaded);
        o.sample("meshgate_jwks_stale", &[("policy", &j.policy)], stale);
    }
    o.family(
        "meshgate_jwks_keys",
        "gauge",
        "Usable keys held by a JWT policy's key set.",
    );
    for j in &jwks {
        o.sample("meshgate_jwks_keys", &[("policy", &j.policy)], j.keys);
    }
    o.family(
        "meshgate_jwt_token_cache_hits_total",
        "counter",
        "Requests whose bearer token a JWT policy found already verified (no signature check).",
    );
    for j in &jwks {
        o.sample(
            "meshgate_jwt_token_cache_hits_total",
            &[("policy", &j.policy)],
            j.token_cache_hits,
        );
    }
    o.family(
        "meshgate_jwt_token_cache_entries",
        "gauge",
        "Verified tokens a JWT policy remembers.",
    );
    for j in &jwks {
        o.sample(
            "meshgate_jwt_token_cache_entries",
            &[("policy", &j.policy)],
            j.token_cache_entries,
        );
    }
    let auths = policies.forward_auths();
    o.family(
        "meshgate_forward_auth_duration_seconds",
        "histogram",
        "Time the auth service took to answer or fail, by policy.",
    );
    for (name, fa) in &auths {
        let mut cumulative = 0;
        let bounds = crate::policy::LATENCY_BUCKETS.iter().map(|b| b.to_string());
        for (le, count) in bounds
            .chain(std::iter::once("+Inf".to_string()))
            .zip(&fa.latency.buckets)
        {
            cumulative += count.load(Relaxed);
            o.sample(
                "meshgate_forward_auth_duration_seconds_bucket",
                &[("policy", name), ("le", &le)],
                cumulative,
            );
        }
        let sum = fa.latency.sum_micros.load(Relaxed) as f64 / 1e6;
        o.sample(
            "meshgate_forward_auth_duration_seconds_sum",
            &[("policy", name)],
            sum,
        );
        o.sample(
            "meshgate_forward_auth_duration_seconds_count",
            &[("policy", name)],
            cumulative,
        );
    }
    o.family(
        "meshgate_forward_auth_cache_entries",
        "gauge",
        "Allowing answers cached, by policy.",
    );
    for (name, fa) in &auths {
        o.sample(
            "meshgate_forward_auth_cache_entries",
            &[("policy", name)],
            fa.cached(),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn gauges() -> Gauges {
        Gauges {
            services: vec![ServiceGauge {
                service: "blue\"x".into(),
                healthy: 2,
                ejected: 1,
                last_update: 7,
                stale: true,
                stale_for: Duration::from_millis(1500),
            }],
            routes: vec![RouteGauge {
                route: "web".into(),
                latency_objective: Some(Duration::from_millis(250)),
                backends: vec![("blue".into(), "blue\"x".into(), 80)],
            }],
            last_reload_ok: false,
        }
    }

    #[test]
    fn pairs_start_at_zero_and_buckets_are_cumulative() {
        let reg = Registry::new(1);
        let m = reg.backend("web", "blue");
        let _no_backend = reg.backend("web", "");
        m.shard(0).record(200, Some(Duration::from_millis(3)));
        m.shard(0).record(503, Some(Duration::from_millis(40)));
        let text = render(&reg, &gauges(), &crate::policy::PolicyRegistry::default());
        for (class, n) in [("1xx", 0), ("2xx", 1), ("3xx", 0), ("4xx", 0), ("5xx", 1)] {
            let line =
                format!("meshgate_requests_total{{route=\"web\",backend=\"blue\",code_class=\"{class}\"}} {n}\n");
            assert!(text.contains(&line), "{line}");
        }
        // The route's "no backend" row only once something happens there.
        assert!(!text.contains("backend=\"\",code_class"));
        let b = |le: &str| {
            let key = format!(
                "meshgate_request_duration_seconds_bucket{{route=\"web\",backend=\"blue\",le=\"{le}\"}} "
            );
            let line = text.lines().find(|l| l.starts_with(&key)).unwrap();
            line[key.len()..].parse::<u64>().unwrap()
        };
        assert_eq!(
            (b("0.0025"), b("0.005"), b("0.025"), b("0.05")),
            (0, 1, 1, 2)
        );
        assert_eq!((b("60"), b("+Inf")), (2, 2));
        assert!(text.contains(
            "meshgate_request_duration_seconds_count{route=\"web\",backend=\"blue\"} 2\n"
        ));
        assert!(text.contains(
            "meshgate_route_weight{route=\"web\",backend=\"blue\",service=\"blue\\\"x\"} 80\n"
        ));
        assert!(text.contains("meshgate_route_latency_objective_seconds{route=\"web\"} 0.25\n"));
        assert!(
            text.contains("meshgate_discovery_stale_duration_seconds{service=\"blue\\\"x\"} 1.5\n")
        );
        assert!(text.contains("meshgate_config_last_reload_successful 0\n"));
        assert!(text.contains(&format!(
            "meshgate_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn every_family_has_help_and_type_once() {
        let reg = Registry::new(1);
        let _ = reg.backend("web", "blue");
        let text = render(&reg, &gauges(), &crate::policy::PolicyRegistry::default());
        let mut seen = std::collections::HashSet::new();
        for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = l.split(' ').skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(seen.insert(name.to_string()), "{name} twice");
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
            assert_eq!(
                kind == "counter",
                name.ends_with("_total"),
                "{name} is a {kind}"
            );
        }
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| seen.contains(*f)))
                .unwrap_or(name);
            assert!(seen.contains(family), "{name} has no TYPE");
        }
    }
}
