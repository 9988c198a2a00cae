//! The TOML file as written: serde mirrors with spans. Nothing outside `config/` sees these.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// Whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub gateway: GatewayFile,
    #[serde(default)]
    pub listeners: Vec<Spanned<ListenerFile>>,
    #[serde(default)]
    pub admin: AdminFile,
    #[serde(default)]
    pub log: LogFile,
    #[serde(default)]
    pub services: BTreeMap<Spanned<String>, Spanned<ServiceFile>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RouteFile>>,
    pub consul: Option<Spanned<ConsulFile>>,
    #[serde(default)]
    pub policies: BTreeMap<Spanned<String>, Spanned<PolicyFile>>,
    pub tracing: Option<Spanned<TracingFile>>,
}

/// `[tracing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TracingFile {
    pub sample_ratio: Option<Spanned<f64>>,
    pub otlp_endpoint: Option<Spanned<String>>,
    pub service_name: Option<Spanned<String>>,
    pub batch_size: Option<Spanned<i64>>,
    pub batch_interval: Option<Spanned<String>>,
    pub queue_size: Option<Spanned<i64>>,
    pub export_timeout: Option<Spanned<String>>,
}

/// One `[policies.NAME]`: the keys of every kind; validation refuses those of another kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    pub kind: Spanned<String>,
    pub allow_origins: Option<Vec<Spanned<String>>>,
    pub allow_methods: Option<Vec<Spanned<String>>>,
    pub allow_headers: Option<Vec<Spanned<String>>>,
    pub expose_headers: Option<Vec<Spanned<String>>>,
    pub allow_credentials: Option<Spanned<bool>>,
    pub max_age: Option<Spanned<String>>,
    pub rate: Option<Spanned<String>>,
    pub burst: Option<Spanned<i64>>,
    pub key: Option<Spanned<String>>,
    pub max_keys: Option<Spanned<i64>>,
    pub scope: Option<Spanned<String>>,
    pub jwks_file: Option<Spanned<String>>,
    pub jwks_url: Option<Spanned<String>>,
    pub jwks_refresh_interval: Option<Spanned<String>>,
    pub issuer: Option<Spanned<String>>,
    pub audiences: Option<Vec<Spanned<String>>>,
    pub leeway: Option<Spanned<String>>,
    pub algorithms: Option<Vec<Spanned<String>>>,
    pub forward_claims: Option<BTreeMap<String, Spanned<String>>>,
    pub strip_authorization: Option<Spanned<bool>>,
    pub token_cache_entries: Option<Spanned<i64>>,
    pub service: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub request_headers: Option<Vec<Spanned<String>>>,
    pub response_headers: Option<Vec<Spanned<String>>>,
    pub failure_mode_allow: Option<Spanned<bool>>,
    pub cache_ttl: Option<Spanned<String>>,
    pub cache_key: Option<Vec<Spanned<String>>>,
    pub cache_max_entries: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsulFile {
    pub address: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub datacenter: Option<Spanned<String>>,
    pub consistency: Option<Spanned<String>>,
    pub wait: Option<Spanned<String>>,
    pub kv_weights: Option<bool>,
    pub register: Option<bool>,
    pub register_id: Option<Spanned<String>>,
    pub register_ttl: Option<Spanned<String>>,
    pub cache_file: Option<Spanned<String>>,
    pub backoff_max: Option<Spanned<String>>,
    pub watch_mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsulServiceFile {
    pub service: Spanned<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub datacenter: Option<String>,
    /// "passing" (default) or "passing_or_warning".
    pub health: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GatewayFile {
    pub workers: Option<Spanned<i64>>,
    pub drain_timeout: Option<Spanned<String>>,
    pub cluster: Option<Spanned<String>>,
    pub state_file: Option<Spanned<String>>,
    pub handover_socket: Option<Spanned<String>>,
    pub request_id: Option<bool>,
    pub forwarded_headers: Option<bool>,
    pub latency_histograms: Option<bool>,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    // Load shedding (issue 11).
    pub max_in_flight: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListenerFile {
    pub address: Spanned<String>,
    pub name: Option<Spanned<String>>,
    pub tls: Option<Spanned<ListenerTlsFile>>,
    pub redirect_https: Option<Spanned<bool>>,
    pub proxy_protocol: Option<Spanned<bool>>,
    pub max_connections: Option<Spanned<i64>>,
    pub header_timeout: Option<Spanned<String>>,
    pub keepalive_timeout: Option<Spanned<String>>,
    pub max_request_target: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListenerTlsFile {
    pub certificates: Spanned<Vec<Spanned<CertKeyFile>>>,
    pub default_certificate: Option<Spanned<String>>,
    pub strict_sni: Option<bool>,
    pub min_version: Option<Spanned<String>>,
    pub handshake_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CertKeyFile {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamTlsFile {
    pub ca_file: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminFile {
    pub address: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub public_metrics: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogFile {
    pub level: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
    pub directory: Option<Spanned<String>>,
    pub file_prefix: Option<Spanned<String>>,
    pub rotation: Option<Spanned<String>>,
    pub access_log: Option<bool>,
    pub access_log_sample: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServiceFile {
    #[serde(default)]
    pub endpoints: Vec<Spanned<EndpointFile>>,
    pub consul: Option<Spanned<ConsulServiceFile>>,
    pub balance: Option<Spanned<String>>,
    pub protocol: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_idle_per_endpoint: Option<Spanned<i64>>,
    pub max_in_flight_per_endpoint: Option<Spanned<i64>>,
    pub outlier: Option<OutlierFile>,
    pub tls: Option<Spanned<UpstreamTlsFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum EndpointFile {
    Address(String),
    Full(EndpointTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointTable {
    pub address: String,
    pub weight: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OutlierFile {
    pub consecutive_failures: Option<Spanned<i64>>,
    pub consecutive_5xx: Option<Spanned<i64>>,
    pub base_ejection: Option<Spanned<String>>,
    pub max_ejection: Option<Spanned<String>>,
    pub max_ejected_percent: Option<Spanned<i64>>,
    // Gateway errors and the panic threshold (issue 11).
    pub consecutive_gateway_errors: Option<Spanned<i64>>,
    pub panic_threshold: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    pub name: Spanned<String>,
    pub host: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub path_template: Option<Spanned<String>>,
    #[serde(default)]
    pub methods: Vec<Spanned<String>>,
    #[serde(default)]
    pub headers: Vec<Spanned<HeaderMatchFile>>,
    pub strip_prefix: Option<bool>,
    pub rewrite_prefix: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub latency_objective: Option<Spanned<String>>,
    pub try_timeout: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub retry_non_idempotent: Option<bool>,
    pub retry_budget_percent: Option<Spanned<i64>>,
    pub retry_budget_min_per_second: Option<Spanned<i64>>,
    // Retries on statuses, the replay buffer and the body-idle timeout (issue 11).
    pub retry_on: Option<Vec<Spanned<i64>>>,
    pub retry_body_max: Option<Spanned<String>>,
    pub body_idle_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub policies: Vec<Spanned<String>>,
    pub max_in_flight: Option<Spanned<i64>>,
    pub max_body: Option<Spanned<String>>,
    pub on_empty_backend: Option<Spanned<String>>,
    pub sticky: Option<Spanned<KeyFile>>,
    #[serde(default)]
    pub backends: Vec<Spanned<BackendFile>>,
    #[serde(default)]
    pub cohorts: Vec<Spanned<CohortFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeaderMatchFile {
    pub name: Spanned<String>,
    pub value: Option<Spanned<String>>,
}

/// `{ cookie = "session" }` or `{ header = "x-user" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyFile {
    pub cookie: Option<String>,
    pub header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackendFile {
    pub name: Spanned<String>,
    pub service: Option<Spanned<String>>,
    pub weight: Spanned<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CohortFile {
    pub cookie: Option<String>,
    pub header: Option<String>,
    pub value: Spanned<String>,
    pub backend: Spanned<String>,
    /// "force" (default) or "avoid".
    pub action: Option<Spanned<String>>,
}
