//! The validated configuration: newtypes and enums only, every invariant already checked.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A validated gateway configuration. Immutable; a reload builds a new one.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// File it was read from (for messages); "<inline>" style names in tests.
    pub origin: String,
    /// The file's text, as read (served by `GET /v1/config`).
    pub source: Arc<str>,
    /// Process-wide settings (restart to change `workers`).
    pub gateway: GatewayConfig,
    /// Proxy listeners (restart to change).
    pub listeners: Vec<ListenerConfig>,
    /// Admin API (restart to change).
    pub admin: AdminConfig,
    /// Logging (restart to change).
    pub log: LogConfig,
    /// Upstream services by name.
    pub services: BTreeMap<String, ServiceConfig>,
    /// Routes in declaration order.
    pub routes: Vec<RouteConfig>,
    /// Consul: discovery, shared weights, self-registration. `None`: static mode.
    pub consul: Option<ConsulSettings>,
    /// Named request policies (routes refer to them by name).
    pub policies: BTreeMap<String, super::PolicyConfig>,
    /// W3C trace context and span export (restart to change). `None`: the gateway takes no
    /// part in traces (a client's `traceparent` passes upstream unchanged).
    pub tracing: Option<TracingConfig>,
}

/// `[tracing]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// Share of new traces (requests without a valid `traceparent`) that are sampled, 0..=1.
    /// A valid parent's sampled flag is followed instead.
    pub sample_ratio: f64,
    /// Span export over OTLP/HTTP (protobuf). `None`: trace context only, nothing exported.
    pub otlp: Option<OtlpConfig>,
}

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector's traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: http::Uri,
    /// `service.name` of the spans' resource.
    pub service_name: String,
    /// Most spans in one export request.
    pub batch_size: usize,
    /// The queue is drained and sent at least this often (a whole batch waiting goes at once).
    pub batch_interval: Duration,
    /// Spans waiting for export at most; more are dropped (and counted).
    pub queue_size: usize,
    /// One export request's time limit.
    pub export_timeout: Duration,
}

/// How a Consul health read filters instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConsulHealth {
    /// Only instances whose every check passes.
    Passing,
    /// Passing and warning instances (warning ones with their `Weights.Warning`).
    PassingOrWarning,
}

/// Read consistency of Consul queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsulConsistency {
    /// The leader answers.
    Default,
    /// Any server answers (spreads load; judge age by staleness).
    Stale,
    /// The leader confirms quorum first.
    Consistent,
}

/// `[consul]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulSettings {
    /// Agent address, e.g. `http://127.0.0.1:8500` or `https://consul:8501`.
    pub address: http::Uri,
    /// PEM CA certificate(s) the agent's certificate is verified against (https only; resolved
    /// against the config file's directory). `None`: the Mozilla roots bundled in the binary.
    pub ca_file: Option<PathBuf>,
    /// File holding the ACL token (sent as `X-Consul-Token`).
    pub token_file: Option<PathBuf>,
    /// Default datacenter of queries.
    pub datacenter: Option<String>,
    /// Read consistency.
    pub consistency: ConsulConsistency,
    /// Blocking-query wait.
    pub wait: Duration,
    /// Keep runtime weights in Consul KV (`meshgate/<cluster>/routes/<route>/weights`) so every
    /// gateway of the cluster applies the same flip.
    pub kv_weights: bool,
    /// Register this gateway as service `meshgate` with a TTL check.
    pub register: bool,
    /// Service id of the registration (default `meshgate-<admin port>-<pid>`).
    pub register_id: Option<String>,
    /// TTL of the registration's check.
    pub register_ttl: Duration,
    /// Last known good endpoint sets, served after a restart while Consul is unreachable.
    pub cache_file: Option<PathBuf>,
    /// Longest wait between retries while Consul fails (retries start at 500 ms and double).
    pub backoff_max: Duration,
    /// How services are followed.
    pub watch_mode: WatchMode,
}

/// How Consul-backed services are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// `PerService` up to [`WatchMode::AUTO_FLEET_ABOVE`] services, `Fleet` above.
    Auto,
    /// One blocking query (one connection) per service: the fastest reaction.
    PerService,
    /// Two blocking queries for all services (`health/state/any`, `catalog/services`) plus
    /// bounded re-reads: stays far below Consul's 200 connections per client.
    Fleet,
}

impl WatchMode {
    /// Above this many Consul-backed services, `auto` uses the fleet watcher.
    pub const AUTO_FLEET_ABOVE: usize = 32;
}

/// Where a Consul-backed service's endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsulService {
    /// Consul service name.
    pub service: String,
    /// Tags every instance must carry.
    pub tags: Vec<String>,
    /// Datacenter (default: the agent's).
    pub datacenter: Option<String>,
    /// Health filter.
    pub health: ConsulHealth,
}

/// `[gateway]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Worker threads, each with its own runtime, listener (SO_REUSEPORT) and upstream pool.
    pub workers: usize,
    /// How long in-flight requests may finish after SIGTERM.
    pub drain_timeout: Duration,
    /// Cluster name: the Consul KV prefix is `meshgate/<cluster>/`.
    pub cluster: String,
    /// Where weight changes made without Consul are persisted.
    pub state_file: Option<PathBuf>,
    /// Unix socket on which the running gateway hands its listening sockets to a successor
    /// (`gatewayd run --takeover`, or SIGUSR2). `None`: no hand-over; a restart closes the
    /// listeners.
    pub handover_socket: Option<PathBuf>,
    /// Keep the client's `x-request-id` (or generate one), send it upstream and echo it in the
    /// response and error bodies. `false`: requests carry no id in logs or responses.
    pub request_id: bool,
    /// Set `X-Forwarded-For` (appending the peer), `X-Forwarded-Proto` and `X-Forwarded-Host` on
    /// proxied requests. `false`: gatewayd adds none of them, so upstreams do not learn the
    /// client's address.
    pub forwarded_headers: bool,
    /// Record per-route and per-backend latency histograms. `false`: request counters are still
    /// kept, but latency percentiles (`/v1/stats`, gwctl) stay empty.
    pub latency_histograms: bool,
    /// Peers whose `X-Forwarded-For` (appended to) and `X-Forwarded-Proto` / `-Host` (kept) are
    /// believed. Every other peer's are removed: the gateway writes its own.
    pub trusted_proxies: Vec<Cidr>,
    /// Requests the whole process serves at once at most (every listener and worker, from
    /// the request head to the response's end); beyond, a fast 503 with `Retry-After` (load
    /// shedding). None: no limit, and no cost.
    pub max_in_flight: Option<u32>,
}

impl GatewayConfig {
    /// True when `peer` is a trusted proxy.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        !self.trusted_proxies.is_empty() && self.trusted_proxies.iter().any(|c| c.contains(peer))
    }
}

/// An address block, `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits cleared).
    pub addr: std::net::IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl Cidr {
    /// Parses `ADDR[/LEN]`.
    pub fn parse(s: &str) -> Option<Self> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        (len <= max).then(|| Self {
            addr: mask(addr, len),
            len,
        })
    }

    /// True when `ip` is in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

fn mask(ip: std::net::IpAddr, len: u8) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            std::net::IpAddr::V4((u32::from(a) & m).into())
        }
        std::net::IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            std::net::IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// One `[[listeners]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Name used in logs.
    pub name: String,
    /// Bind address (port 0 picks an ephemeral port, reported in the startup log).
    pub addr: SocketAddr,
    /// TLS termination (`[listeners.tls]`); `None`: cleartext.
    pub tls: Option<ListenerTls>,
    /// Cleartext listener that answers every request with `308` to the same host and path on
    /// `https://` instead of proxying (never set together with `tls`).
    pub redirect_https: bool,
    /// Every connection starts with a PROXY protocol (v1 or v2) header naming the client, sent
    /// by an L4 balancer in front; one without it is closed. On a TLS listener the header
    /// comes first, then the handshake.
    pub proxy_protocol: bool,
    /// Open client connections this listener holds at most, across every worker; a connection
    /// beyond it is closed as soon as it is accepted (and counted).
    pub max_connections: usize,
    /// How long its clients may stay idle or take to send a request head, and how long a
    /// request target they may send.
    pub timeouts: ClientTimeouts,
}

/// A listener's client timeouts (`header_timeout`, `keepalive_timeout`) and request-target
/// limit (`max_request_target`), copied into each connection once when it is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// A request head started must end within this (slowloris: the client is cut off with a
    /// 408). On a `proxy_protocol` cleartext listener the PROXY header must arrive within it
    /// too.
    pub header: Duration,
    /// An idle connection (a new one before its first byte, a kept-alive one between requests,
    /// an HTTP/2 one with no stream open) is closed after this. A request head must also end
    /// within this of the connection's last activity.
    pub keepalive: Duration,
    /// Longest request target accepted, in bytes (HTTP/1.x: the target as sent; HTTP/2: the
    /// `:path`); a longer one is answered `414 uri_too_long`.
    pub max_target: usize,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        Self {
            header: super::defaults::HEADER_TIMEOUT,
            keepalive: super::defaults::KEEPALIVE_TIMEOUT,
            max_target: super::defaults::MAX_REQUEST_TARGET,
        }
    }
}

/// Oldest TLS version a listener accepts (nothing older than 1.2 is ever offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// A certificate chain (leaf first) and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertKeyPair {
    /// PEM certificate chain, leaf first (resolved against the config file's directory).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf.
    pub key: PathBuf,
}

/// `[listeners.tls]`: TLS termination with SNI-selected certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// Certificates served; the names each serves come from its SANs. Never empty.
    pub certificates: Vec<CertKeyPair>,
    /// Index in `certificates` of the one served to clients with no SNI or an unknown name.
    pub default_certificate: usize,
    /// Refuse handshakes whose SNI matches no certificate (and those without SNI).
    pub strict_sni: bool,
    /// Oldest protocol version accepted.
    pub min_version: TlsVersion,
    /// A handshake not finished within this is dropped.
    pub handshake_timeout: Duration,
}

/// A service's `tls = {…}`: its endpoints speak TLS (presence of the table means TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// PEM CA certificate(s) the endpoints' certificates are verified against. `None`: the
    /// Mozilla roots bundled in the binary (webpki-roots).
    pub ca_file: Option<PathBuf>,
    /// Name verified in the endpoints' certificates and sent as SNI. `None`: the endpoint's IP
    /// address is verified (an IP SAN) and no SNI is sent.
    pub server_name: Option<String>,
    /// Client certificate chain (PEM) presented to endpoints that ask for one (mTLS).
    pub client_cert: Option<PathBuf>,
    /// Private key of `client_cert` (PEM); given together with it.
    pub client_key: Option<PathBuf>,
    /// Accept any endpoint certificate. For tests only: it removes all protection TLS gives.
    pub insecure_skip_verify: bool,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Bind address; loopback by default.
    pub addr: SocketAddr,
    /// File holding the bearer token. Without it the admin API refuses every authenticated call.
    pub token_file: Option<PathBuf>,
    /// Serve `/metrics` without a token (for Prometheus scrapers on a trusted network).
    pub public_metrics: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `tracing` filter directive, e.g. `info` or `gatewayd=debug`.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
    /// Rolling log files instead of stdout.
    pub file: Option<LogFileConfig>,
    /// Fraction of requests written to the access log (0 = off, 1 = all).
    pub access_log_sample: f64,
}

/// Rolling log files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileConfig {
    /// Directory of the files.
    pub directory: PathBuf,
    /// File name prefix.
    pub prefix: String,
    /// Rotation period.
    pub rotation: Rotation,
}

/// Log file rotation period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// New file every minute.
    Minutely,
    /// New file every hour.
    Hourly,
    /// New file every day.
    Daily,
    /// One file forever.
    Never,
}

/// Load-balancing policy inside a backend's endpoint set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalancePolicy {
    /// Each endpoint in turn.
    RoundRobin,
    /// Smooth weighted round robin over endpoint weights (nginx's algorithm).
    WeightedRoundRobin,
    /// Power of two random choices, fewer outstanding requests wins (the default).
    P2cLeastRequest,
    /// Power of two random choices, lower peak-EWMA latency × load wins (linkerd).
    P2cEwma,
}

impl BalancePolicy {
    /// The name used in the TOML and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::WeightedRoundRobin => "weighted_round_robin",
            Self::P2cLeastRequest => "p2c_least_request",
            Self::P2cEwma => "p2c_ewma",
        }
    }
}

/// Protocol spoken to a service's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

/// Retry settings of a route beyond the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Time to the response head on one endpoint, counted once the request (and its body) was
    /// sent; None: only the route's `timeout` bounds an attempt.
    pub try_timeout: Option<Duration>,
    /// Non-idempotent methods may be sent again too (their body kept like any other).
    pub non_idempotent: bool,
    /// Retries may add at most this share (percent) of the route's requests...
    pub budget_percent: u32,
    /// ...plus this many retries per second.
    pub budget_min_per_second: u32,
    /// Upstream answers sent again to another endpoint (the request must be one that may be
    /// sent again); the last answer is relayed as it is when no retry is left.
    pub on_status: StatusSet,
    /// A request body up to this many bytes is kept so the request can be sent again; a
    /// larger one is never sent twice.
    pub body_max: u64,
}

/// A set of HTTP statuses from 400 to 599 (the statuses a route retries on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusSet([u64; 4]);

impl StatusSet {
    /// The lowest status a set holds.
    pub const MIN: u16 = 400;
    /// The highest status a set holds.
    pub const MAX: u16 = 599;
    /// No status.
    pub const EMPTY: StatusSet = StatusSet([0; 4]);

    /// The set of `statuses`; `None` when one is outside [`Self::MIN`]..=[`Self::MAX`].
    pub fn try_from_slice(statuses: &[u16]) -> Option<Self> {
        let mut set = Self::default();
        for &s in statuses {
            if !(Self::MIN..=Self::MAX).contains(&s) {
                return None;
            }
            let i = usize::from(s - Self::MIN);
            set.0[i / 64] |= 1 << (i % 64);
        }
        Some(set)
    }

    /// True when `status` is in the set.
    pub fn contains(&self, status: u16) -> bool {
        match status.checked_sub(Self::MIN).map(usize::from) {
            Some(i) if status <= Self::MAX => self.0[i / 64] & (1 << (i % 64)) != 0,
            _ => false,
        }
    }

    /// True when the set holds no status.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            try_timeout: None,
            non_idempotent: false,
            budget_percent: super::defaults::RETRY_BUDGET_PERCENT,
            budget_min_per_second: super::defaults::RETRY_BUDGET_MIN_PER_SECOND,
            on_status: StatusSet::try_from_slice(&super::defaults::RETRY_ON).unwrap_or_default(),
            body_max: super::defaults::RETRY_BODY_MAX,
        }
    }
}

/// Passive outlier ejection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Consecutive failures of the endpoint's own (connect error, timeout, reset or malformed
    /// response before a complete head) that eject it; what clients do never counts. 0 disables.
    pub consecutive_failures: u32,
    /// Consecutive 5xx responses that eject an endpoint. 0 (the default) disables: a 5xx is then
    /// neither a failure nor a success for ejection.
    pub consecutive_5xx: u32,
    /// First ejection length; doubles with each consecutive ejection up to `max_ejection`.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// At most this share of a backend's endpoints is ejected at once (0–100).
    pub max_ejected_percent: u8,
    /// Consecutive 502, 503 or 504 answers that eject an endpoint (another status, or a
    /// success, ends the run). 0 (the default) disables.
    pub consecutive_gateway_errors: u32,
    /// When fewer than this share (percent) of a backend's endpoints are usable (not ejected),
    /// ejections are ignored and the balancer uses every endpoint: better some errors than
    /// all traffic on a few survivors, or none. 0 (the default) disables.
    pub panic_threshold: u8,
}

/// One `[services.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// Service name (the table key).
    pub name: String,
    /// Static endpoints: address and weight (≥ 1). Empty for Consul-backed services.
    pub endpoints: Vec<(SocketAddr, u32)>,
    /// Follow these instances in Consul instead of static endpoints.
    pub consul: Option<ConsulService>,
    /// Balancing policy.
    pub balance: BalancePolicy,
    /// Protocol to the endpoints.
    pub protocol: UpstreamProtocol,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Idle keep-alive connections are closed after this.
    pub idle_timeout: Duration,
    /// Idle connections kept per endpoint and worker.
    pub max_idle_per_endpoint: usize,
    /// Requests outstanding on one endpoint at most, counted across every worker (None: no
    /// limit). An endpoint at its limit is skipped by the balancer; when every usable endpoint
    /// is, the request gets a fast 503 with `Retry-After`.
    pub max_in_flight_per_endpoint: Option<u32>,
    /// Outlier ejection.
    pub outlier: OutlierConfig,
    /// TLS to the endpoints; `None`: cleartext.
    pub tls: Option<UpstreamTls>,
}

/// How a route's path is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Byte-wise prefix of the path (as nginx `location` and Envoy `prefix`).
    Prefix(String),
    /// Whole path, query excluded.
    Exact(String),
    /// Whole path with `{name}` parameters, query excluded (`/pets/{id}`, `/Calls/{sid}.json`).
    Template(crate::route::PathTemplate),
}

/// How a route's host is matched (lower-cased, port ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Whole host.
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com` (stored as `.example.com`).
    Suffix(String),
}

/// A header condition: present (any value) or equal to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Lower-case header name.
    pub name: http::HeaderName,
    /// Required value; `None` means the header must be present.
    pub value: Option<String>,
}

/// How a request's path is changed before it goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Remove the matched prefix (the result always starts with `/`).
    StripPrefix,
    /// Replace the matched prefix by this one.
    ReplacePrefix(String),
}

/// What a route does when the chosen backend has no usable endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEmptyBackend {
    /// Skip it; its share goes to the other backends (default).
    Failover,
    /// Answer 503.
    Fail,
}

/// A request attribute used as a key: a cookie or a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKey {
    /// Cookie by name.
    Cookie(String),
    /// Header by (lower-case) name.
    Header(http::HeaderName),
}

impl fmt::Display for RequestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cookie(n) => write!(f, "cookie {n}"),
            Self::Header(n) => write!(f, "header {n}"),
        }
    }
}

/// What a cohort rule does when its key has its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CohortAction {
    /// Send the request to the backend (when it has endpoints).
    Force,
    /// Keep the request off the backend (kill switch).
    Avoid,
}

/// `[[routes.cohorts]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortRule {
    /// Cookie or header inspected.
    pub key: RequestKey,
    /// Value that selects the cohort (exact match).
    pub value: String,
    /// Index of the backend in the route's `backends`.
    pub backend: usize,
    /// Force or avoid.
    pub action: CohortAction,
}

/// `[[routes.backends]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Backend name, unique in its route (`blue`, `green`, `canary` …).
    pub name: String,
    /// Service whose endpoints serve it.
    pub service: String,
    /// Default weight from the file; runtime overrides replace it.
    pub weight: u32,
}

/// `[[routes]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Unique route name.
    pub name: String,
    /// Host condition.
    pub host: Option<HostMatch>,
    /// Path condition (`Prefix("/")` when none is given).
    pub path: PathMatch,
    /// Allowed methods (empty: any).
    pub methods: Vec<http::Method>,
    /// Header conditions, all required.
    pub headers: Vec<HeaderMatch>,
    /// Path rewrite.
    pub rewrite: Option<Rewrite>,
    /// Time allowed until the upstream's response head, all attempts together.
    pub timeout: Duration,
    /// The p99 latency this route should stay under; exported as
    /// `meshgate_route_latency_objective_seconds` for alert rules (None: no objective).
    pub latency_objective: Option<Duration>,
    /// Extra attempts, each on another endpoint than the one that just failed: after a connect
    /// failure (any request), and after a per-try timeout, a connection closed before the
    /// response head or an answer in `retry.on_status` (requests that can be sent again: see
    /// [`RetryPolicy`]).
    pub retries: u32,
    /// When a sent request may be sent again, and how many retries the route may make.
    pub retry: RetryPolicy,
    /// Names of the policies applied, as listed (they run in a fixed order whatever the list
    /// order: CORS, then rate limits).
    pub policies: Vec<String>,
    /// A response (or request) body relay with no byte either way for this long is cut: the
    /// client sees a broken response, the upstream connection is closed.
    pub body_idle_timeout: Duration,
    /// Requests of this route outstanding at most (until their response head), across every
    /// worker; beyond, a fast 503 with `Retry-After` (None: no limit).
    pub max_in_flight: Option<u32>,
    /// Largest request body in bytes (None: no limit): a declared larger length gets 413 before
    /// anything is read; a chunked or HTTP/2 body gets 413 (or a closed connection, if the
    /// upstream already answered) at the limit.
    pub max_body: Option<u64>,
    /// Behaviour when a chosen backend has no endpoint.
    pub on_empty_backend: OnEmptyBackend,
    /// Sticky key: one client stays on one backend while weights allow it.
    pub sticky: Option<RequestKey>,
    /// Backends with weights, in declaration order.
    pub backends: Vec<BackendConfig>,
    /// Cohort rules, checked in order.
    pub cohorts: Vec<CohortRule>,
}
