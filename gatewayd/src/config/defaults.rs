//! Defaults, in one place so `docs/configuration.md` can name them.

use std::time::Duration;

/// Listener when the file has none.
pub const LISTENER: &str = "127.0.0.1:8080";
/// Admin API address.
pub const ADMIN: &str = "127.0.0.1:9901";
/// SIGTERM drain deadline.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Cluster name (Consul KV prefix `meshgate/<cluster>/`).
pub const CLUSTER: &str = "default";
/// `gateway.request_id`: keep or generate `x-request-id` and echo it in responses.
pub const REQUEST_ID: bool = true;
/// `gateway.forwarded_headers`: set `X-Forwarded-For`/`-Proto`/`-Host` upstream.
pub const FORWARDED_HEADERS: bool = true;
/// `gateway.latency_histograms`: record per-route/backend latency histograms.
pub const LATENCY_HISTOGRAMS: bool = true;
/// Route timeout until the response head (Envoy's default too).
pub const ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Connect retries on another endpoint.
pub const RETRIES: u32 = 1;
/// Retries may add this share (percent) of a route's requests...
pub const RETRY_BUDGET_PERCENT: u32 = 20;
/// ...plus this many per second (so a quiet route can still retry).
pub const RETRY_BUDGET_MIN_PER_SECOND: u32 = 10;
/// Upstream answers retried on another endpoint (when the request may be sent again).
pub const RETRY_ON: [u16; 3] = [502, 503, 504];
/// Largest request body kept so the request can be sent again (`routes.retry_body_max`).
pub const RETRY_BODY_MAX: u64 = 64 * 1024;
/// A body relay with no byte either way for this long is cut (`routes.body_idle_timeout`).
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Upstream TCP connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle upstream keep-alive lifetime.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per endpoint and worker.
pub const MAX_IDLE_PER_ENDPOINT: usize = 64;
/// Consecutive failures that eject an endpoint.
pub const OUTLIER_CONSECUTIVE_FAILURES: u32 = 5;
/// Consecutive 5xx responses that eject an endpoint: off unless configured (a 5xx can be the
/// answer a client's request provoked).
pub const OUTLIER_CONSECUTIVE_5XX: u32 = 0;
/// Consecutive 502/503/504 answers that eject an endpoint: off unless configured.
pub const OUTLIER_CONSECUTIVE_GATEWAY_ERRORS: u32 = 0;
/// Below this share (percent) of usable endpoints a backend ignores ejections: 0, off (with
/// `max_ejected_percent = 100` a fully failed backend is skipped instead).
pub const OUTLIER_PANIC_THRESHOLD: u8 = 0;
/// First ejection.
pub const OUTLIER_BASE_EJECTION: Duration = Duration::from_secs(10);
/// Longest ejection.
pub const OUTLIER_MAX_EJECTION: Duration = Duration::from_secs(300);
/// Share of a backend's endpoints that may be ejected at once. 100 lets a fully failed backend
/// be skipped so its weight fails over to the others.
pub const OUTLIER_MAX_EJECTED_PERCENT: u8 = 100;
/// Log filter.
pub const LOG_LEVEL: &str = "info";

/// A TLS handshake not finished within this is dropped (`listeners.tls.handshake_timeout`).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A request head must end within this once its first byte came (`listeners[].header_timeout`).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle client connections are closed after this (`listeners[].keepalive_timeout`).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest request target a listener accepts (`listeners[].max_request_target`; longer: 414),
/// as nginx's default large header buffer.
pub const MAX_REQUEST_TARGET: usize = 8 * 1024;
/// Largest `max_request_target` accepted: a longer target could not fit in a request head
/// (64 KiB, beyond it 431) anyway.
pub const MAX_REQUEST_TARGET_LIMIT: u64 = 64 * 1024;

/// Open client connections a listener holds at most (`listeners[].max_connections`): far above
/// what one gateway serves well, far below what exhausts its file descriptors (the systemd unit
/// sets LimitNOFILE=1048576); tune it to the fleet.
pub const LISTENER_MAX_CONNECTIONS: usize = 65_536;

/// `tracing.sample_ratio`: every new trace is sampled.
pub const TRACE_SAMPLE_RATIO: f64 = 1.0;
/// `tracing.service_name`.
pub const TRACE_SERVICE_NAME: &str = "meshgate";
/// `tracing.batch_size` (OpenTelemetry's batch span processor default).
pub const TRACE_BATCH_SIZE: usize = 512;
/// `tracing.batch_interval`.
pub const TRACE_BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// `tracing.queue_size` (OpenTelemetry's batch span processor default).
pub const TRACE_QUEUE_SIZE: usize = 2048;
/// `tracing.export_timeout`.
pub const TRACE_EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
