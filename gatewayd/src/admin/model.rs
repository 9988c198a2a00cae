//! The admin API's wire format: serde types only, shared with `gwctl` (one source of truth).
//! Durations are in the unit their field name says; times are RFC 3339 UTC strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /v1/routes` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// Route name.
    pub name: String,
    /// Host condition: exact host or `*.suffix`; `None` matches any host.
    pub host: Option<String>,
    /// Path, prefix or template (`/pets/{id}`).
    pub path: String,
    /// `prefix`, `exact` or `template`.
    pub path_kind: String,
    /// Allowed methods (empty: any).
    pub methods: Vec<String>,
    /// Header conditions.
    pub headers: Vec<HeaderCondition>,
    /// Upstream timeout in milliseconds.
    pub timeout_ms: u64,
    /// Connect retries.
    pub retries: u32,
    /// `failover` or `fail`.
    pub on_empty_backend: String,
    /// Sticky key, e.g. `cookie session`.
    pub sticky: Option<String>,
    /// Cohort rules.
    pub cohorts: Vec<CohortInfo>,
    /// Backends with effective weights.
    pub backends: Vec<BackendInfo>,
    /// Where the effective weights come from.
    pub weights: WeightsInfo,
}

/// A header condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderCondition {
    /// Header name.
    pub name: String,
    /// Required value; `None`: present with any value.
    pub value: Option<String>,
}

/// A cohort rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortInfo {
    /// `cookie NAME` or `header NAME`.
    pub key: String,
    /// Value that selects the cohort.
    pub value: String,
    /// Backend name.
    pub backend: String,
    /// `force` or `avoid`.
    pub action: String,
}

/// A backend of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// Backend name.
    pub name: String,
    /// Service behind it.
    pub service: String,
    /// Effective weight.
    pub weight: u32,
    /// The config file's weight.
    pub file_weight: u32,
    /// Endpoints in the service's set.
    pub endpoints: usize,
    /// Endpoints not ejected.
    pub healthy_endpoints: usize,
}

/// Origin of a route's effective weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsInfo {
    /// `file`, `state_file` or `consul`.
    pub source: String,
    /// Revision of the override (0 for file weights).
    pub revision: u64,
    /// Who made the last change.
    pub changed_by: Option<String>,
    /// When (RFC 3339).
    pub changed_at: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

/// `GET /v1/routes/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteDetail {
    /// The route.
    pub route: RouteInfo,
    /// Weight changes, oldest first (at most 100).
    pub history: Vec<WeightChange>,
    /// The route's policies, in the route's order (absent from gateways before policies).
    #[serde(default)]
    pub policies: Vec<PolicyInfo>,
}

/// One of a route's policies and its decisions since it was compiled (a reload that leaves the
/// policy unchanged keeps its counters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// Policy name.
    pub name: String,
    /// `cors`, `rate_limit`, `jwt` or `forward_auth`.
    pub kind: String,
    /// What it is set to, in a few words (a rate limit's rate and, fleet-wide, its share).
    pub summary: String,
    /// Decisions by outcome (the `outcome` label of `meshgate_policy_decisions_total`), every
    /// outcome of its kind listed, zero included.
    pub decisions: BTreeMap<String, u64>,
    /// Its decisions of the last minute and its last refusals (absent from gateways before
    /// them: empty).
    #[serde(default)]
    pub recent: RecentDecisions,
}

/// A policy's recent decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentDecisions {
    /// Seconds the counts cover: 60, or fewer for a policy compiled less than a minute ago.
    pub window_seconds: u64,
    /// Decisions in that window by outcome (outcomes without any left out).
    pub decisions: BTreeMap<String, u64>,
    /// The last refusals, newest first (at most 10; a refusal made while another was being
    /// noted may be missing).
    pub refusals: Vec<RecentRefusal>,
}

/// A request a policy refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentRefusal {
    /// When (RFC 3339, UTC, milliseconds).
    pub at: String,
    /// Why: the outcome label (`limited`, `expired`, `denied`, `failed_closed`,
    /// `preflight_refused`, ...).
    pub outcome: String,
    /// The client's address, as the policies saw it (behind trusted proxies: the forwarded
    /// client's).
    pub client: String,
}

/// One weight change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightChange {
    /// Revision after the change.
    pub revision: u64,
    /// Weights before the change.
    pub previous: BTreeMap<String, u32>,
    /// Weights after the change.
    pub weights: BTreeMap<String, u32>,
    /// Who.
    pub changed_by: String,
    /// When (RFC 3339).
    pub changed_at: String,
    /// Why.
    pub reason: String,
}

/// `PUT /v1/routes/{name}/weights` body. Backends not named get 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsUpdate {
    /// Backend name → weight (0–10000, at least one above 0).
    pub weights: BTreeMap<String, u32>,
    /// Why (kept in the history).
    #[serde(default)]
    pub reason: Option<String>,
    /// Who (defaults to the caller's address).
    #[serde(default)]
    pub changed_by: Option<String>,
    /// Only apply if the current revision is this one (409 otherwise).
    #[serde(default)]
    pub expected_revision: Option<u64>,
}

/// `POST /v1/routes/{name}/flip` body (optional). Swaps the weights of a two-backend route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlipRequest {
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who.
    #[serde(default)]
    pub changed_by: Option<String>,
    /// Only apply at this revision.
    #[serde(default)]
    pub expected_revision: Option<u64>,
}

/// Answer to a weight change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsChanged {
    /// The route after the change.
    pub route: RouteInfo,
    /// The change.
    pub change: WeightChange,
}

/// `GET /v1/upstreams` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamInfo {
    /// Service name.
    pub service: String,
    /// `static`, `consul` or `saved`.
    pub source: String,
    /// Balancing policy.
    pub balance: String,
    /// `http1` or `h2c`.
    pub protocol: String,
    /// True while discovery cannot reach its source (the last good set keeps serving).
    pub stale: bool,
    /// Seconds since the set became stale.
    pub stale_seconds: Option<f64>,
    /// Why it is stale.
    pub stale_reason: Option<String>,
    /// Last successful discovery read (RFC 3339).
    pub last_update: Option<String>,
    /// Endpoints.
    pub endpoints: Vec<EndpointInfo>,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// `ip:port`.
    pub addr: String,
    /// Provider's instance id.
    pub id: String,
    /// Weight.
    pub weight: u32,
    /// `passing` or `warning`.
    pub health: String,
    /// Ejected by outlier detection now.
    pub ejected: bool,
    /// Seconds of ejection left.
    pub ejected_seconds: Option<f64>,
    /// Requests outstanding.
    pub in_flight: u32,
    /// Peak-EWMA latency estimate in ms (0 before any response).
    pub ewma_ms: f64,
    /// Requests sent.
    pub requests: u64,
    /// Failed requests.
    pub failures: u64,
    /// Times ejected.
    pub ejections: u64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
    /// Max.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// When (RFC 3339).
    pub generated_at: String,
    /// Seconds over which `rps` is computed.
    pub window_seconds: u64,
    /// Per route.
    pub routes: Vec<RouteStats>,
    /// Requests that matched no route.
    pub unmatched_requests: u64,
}

/// Stats of one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStats {
    /// Route name.
    pub route: String,
    /// Per backend.
    pub backends: Vec<BackendStats>,
}

/// Stats of one (route, backend).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendStats {
    /// Backend name ("" for requests of the route that reached no backend).
    pub backend: String,
    /// Requests in total.
    pub requests: u64,
    /// By status class (`1xx` … `5xx`).
    pub by_class: BTreeMap<String, u64>,
    /// 5xx / requests over all time (0 when no request).
    pub error_rate: f64,
    /// In flight now.
    pub in_flight: i64,
    /// Requests per second over the window.
    pub rps: f64,
    /// Latency percentiles (all time).
    pub latency_ms: LatencyMs,
    /// Base64 of the hdrhistogram V2 encoding of latencies in µs (mergeable).
    pub histogram: String,
    /// Per-second samples, when asked with `?history=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<SamplePoint>>,
}

/// One per-second sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplePoint {
    /// Unix seconds.
    pub at: u64,
    /// Requests in total at that second.
    pub requests: u64,
    /// 5xx in total at that second.
    pub errors: u64,
    /// p99 of the preceding second in ms.
    pub p99_ms: f64,
}

/// Error body of every 4xx/5xx answer of the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable code: `unauthorized`, `not_found`, `bad_request`, `conflict`, …
    pub error: String,
    /// Human message.
    pub message: String,
    /// Offending field, for `bad_request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Current revision, for `conflict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<u64>,
}

/// `GET /v1/config` and `POST /v1/reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// Config file.
    pub file: String,
    /// Snapshot generation serving now.
    pub generation: u64,
    /// When the serving config was loaded (RFC 3339).
    pub loaded_at: String,
    /// Result of the last reload attempt.
    pub last_reload: ReloadStatus,
    /// Text of the serving config.
    pub source: String,
    /// Certificates of each TLS listener, and whether its last reload was refused.
    #[serde(default)]
    pub tls: Vec<crate::tls::TlsListenerStatus>,
    /// Key sets of the JWT policies: loaded, stale (last good kept), last error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwks: Vec<crate::policy::JwksStatus>,
}

/// Result of a reload attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadStatus {
    /// True when the last attempt was applied (or nothing was tried yet).
    pub ok: bool,
    /// When (RFC 3339).
    pub at: Option<String>,
    /// Every problem found (`file:line:column: field: reason`).
    pub errors: Vec<String>,
    /// Settings that changed but need a restart (listeners, admin, workers, log).
    pub restart_required: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `GET /readyz` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// True while serving and not draining.
    pub ready: bool,
    /// True after SIGTERM.
    pub draining: bool,
    /// False when the last config reload was rejected (the previous config keeps serving).
    pub config_ok: bool,
    /// Why the last reload was rejected.
    pub config_errors: Vec<String>,
    /// False while a TLS listener's last certificate reload was refused (its previous
    /// certificates keep serving).
    #[serde(default = "yes")]
    pub tls_ok: bool,
    /// Why (each names the file).
    #[serde(default)]
    pub tls_errors: Vec<String>,
    /// False while Consul KV cannot be read (the weights last read keep serving).
    #[serde(default = "yes")]
    pub weights_ok: bool,
    /// The last Consul KV error and how long ago reads began to fail.
    #[serde(default)]
    pub weights_errors: Vec<String>,
    /// Snapshot generation.
    pub generation: u64,
}

/// One event of `GET /v1/events` (server-sent events; `event:` is `kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Increasing id (`Last-Event-ID` resumes after it).
    pub id: u64,
    /// When (RFC 3339).
    pub at: String,
    /// `config_reloaded`, `config_rejected`, `weights_changed`, `endpoints_changed`,
    /// `certificates_reloaded`, `certificates_rejected`.
    pub kind: String,
    /// Route concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Service concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Human summary.
    pub message: String,
}
