//! From the file's serde mirror to the validated [`Config`]: every problem is collected, each
//! with its file, line, column and dotted field path.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::defaults as d;
use super::file::{self, FileConfig};
use super::types::*;
use super::{ConfigError, ConfigErrors};
use crate::route::PathTemplate;

mod auth;
mod policies;
mod trace;

/// Most backends one route may split between.
pub const MAX_BACKENDS: usize = 64;

struct Ctx<'a> {
    origin: &'a str,
    src: &'a str,
    base_dir: Option<&'a Path>,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Range<usize>, field: impl Into<String>, reason: impl Into<String>) {
        let (line, column) = line_col(self.src, span.start);
        self.errors.push(ConfigError {
            file: self.origin.to_string(),
            line,
            column,
            field: field.into(),
            reason: reason.into(),
        });
    }

    fn duration(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Duration {
        let Some(v) = v else { return default };
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.err(v.span(), field, "must be longer than zero");
                default
            }
            Err(_) => {
                let reason = format!(
                    "'{}' is not a duration (examples: '500ms', '15s', '2m')",
                    v.get_ref()
                );
                self.err(v.span(), field, reason);
                default
            }
        }
    }

    fn int<T: TryFrom<i64>>(
        &mut self,
        v: &Spanned<i64>,
        field: &str,
        min: i64,
        max: i64,
    ) -> Option<T> {
        let n = *v.get_ref();
        if n < min || n > max {
            self.err(
                v.span(),
                field,
                format!("{n} is out of range {min}..={max}"),
            );
            return None;
        }
        T::try_from(n).ok()
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        match self.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        }
    }

    fn choice<T: Copy>(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(v) = v else { return default };
        if let Some((_, t)) = options.iter().find(|(name, _)| *name == v.get_ref()) {
            return *t;
        }
        let names: Vec<_> = options.iter().map(|(n, _)| format!("'{n}'")).collect();
        let reason = format!("'{}' is not one of {}", v.get_ref(), names.join(", "));
        self.err(v.span(), field, reason);
        default
    }
}

/// 1-based line and column of a byte offset.
pub(super) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// A name usable in URLs, metric labels and KV keys.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

pub(super) fn validate(
    raw: FileConfig,
    src: &str,
    origin: &str,
    base_dir: Option<&Path>,
) -> Result<Config, ConfigErrors> {
    let mut cx = Ctx {
        origin,
        src,
        base_dir,
        errors: Vec::new(),
    };
    let gateway = gateway(&mut cx, &raw.gateway);
    let listeners = listeners(&mut cx, &raw.listeners);
    let admin = admin(&mut cx, &raw.admin);
    let log = log(&mut cx, &raw.log);
    let mut services = BTreeMap::new();
    for (name, svc) in &raw.services {
        if !valid_name(name.get_ref()) {
            cx.err(
                name.span(),
                format!("services.{}", name.get_ref()),
                "service names use letters, digits, '_', '-', '.'",
            );
        }
        let s = service(&mut cx, name.get_ref(), svc);
        services.insert(name.get_ref().clone(), s);
    }
    let consul = raw.consul.as_ref().map(|c| consul(&mut cx, c));
    let tracing = raw.tracing.as_ref().map(|t| trace::tracing(&mut cx, t));
    for (name, svc) in &raw.services {
        if let (Some(c), None) = (&svc.get_ref().consul, &consul) {
            cx.err(
                c.span(),
                format!("services.{}.consul", name.get_ref()),
                "needs a [consul] section with the agent's address",
            );
        }
    }
    let mut policy_set = BTreeMap::new();
    for (name, p) in &raw.policies {
        if let Some(pc) = policies::policy(
            &mut cx,
            name,
            p,
            &services,
            consul.as_ref().is_some_and(|c| c.register),
        ) {
            policy_set.insert(name.get_ref().clone(), pc);
        }
    }
    let mut routes = Vec::new();
    let mut seen = HashSet::new();
    for r in &raw.routes {
        let name = r.get_ref().name.get_ref();
        if !seen.insert(name.clone()) {
            cx.err(
                r.get_ref().name.span(),
                format!("routes.{name}.name"),
                format!("duplicate route name '{name}'"),
            );
        }
        if let Some(route) = route(&mut cx, r, &services, &raw.policies) {
            routes.push(route);
        }
    }
    if cx.errors.is_empty() {
        Ok(Config {
            origin: origin.to_string(),
            source: Arc::from(src),
            gateway,
            listeners,
            admin,
            log,
            services,
            routes,
            consul,
            policies: policy_set,
            tracing,
        })
    } else {
        cx.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(cx.errors))
    }
}

/// Longest file name a hand-over socket can have: a path longer than `sockaddr_un` holds is
/// reached as `/proc/self/fd/N/NAME`, which must itself fit in its 107 bytes.
const MAX_UNIX_NAME: usize = 64;

fn gateway(cx: &mut Ctx<'_>, g: &file::GatewayFile) -> GatewayConfig {
    let workers = match &g.workers {
        Some(w) => match cx.int::<usize>(w, "gateway.workers", 0, 256) {
            Some(0) | None => default_workers(),
            Some(n) => n,
        },
        None => default_workers(),
    };
    let cluster = match &g.cluster {
        Some(c) if !valid_name(c.get_ref()) => {
            cx.err(
                c.span(),
                "gateway.cluster",
                "cluster names use letters, digits, '_', '-', '.'",
            );
            d::CLUSTER.to_string()
        }
        Some(c) => c.get_ref().clone(),
        None => d::CLUSTER.to_string(),
    };
    GatewayConfig {
        workers,
        drain_timeout: cx.duration(&g.drain_timeout, "gateway.drain_timeout", d::DRAIN_TIMEOUT),
        cluster,
        state_file: g.state_file.as_ref().map(|p| cx.path(p.get_ref())),
        handover_socket: g.handover_socket.as_ref().map(|p| {
            let path = cx.path(p.get_ref());
            let name = path.file_name().map_or(0, |n| n.len());
            if name == 0 || name > MAX_UNIX_NAME {
                cx.err(
                    p.span(),
                    "gateway.handover_socket",
                    format!(
                        "'{}' must end in a file name of 1 to {MAX_UNIX_NAME} bytes",
                        path.display()
                    ),
                );
            }
            path
        }),
        request_id: g.request_id.unwrap_or(d::REQUEST_ID),
        forwarded_headers: g.forwarded_headers.unwrap_or(d::FORWARDED_HEADERS),
        latency_histograms: g.latency_histograms.unwrap_or(d::LATENCY_HISTOGRAMS),
        trusted_proxies: g
            .trusted_proxies
            .iter()
            .filter_map(|c| {
                let parsed = Cidr::parse(c.get_ref().trim());
                if parsed.is_none() {
                    cx.err(
                        c.span(),
                        "gateway.trusted_proxies",
                        format!("'{}' is not an address or ADDR/LEN block", c.get_ref()),
                    );
                }
                parsed
            })
            .collect(),
        max_in_flight: g
            .max_in_flight
            .as_ref()
            .and_then(|v| cx.int(v, "gateway.max_in_flight", 1, 100_000_000)),
    }
}

/// One worker per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn socket_addr(cx: &mut Ctx<'_>, v: &Spanned<String>, field: &str) -> Option<SocketAddr> {
    match v.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let reason = format!(
                "'{}' is not an IP:port address (examples: '127.0.0.1:8080', '[::1]:8080')",
                v.get_ref()
            );
            cx.err(v.span(), field, reason);
            None
        }
    }
}

fn listeners(cx: &mut Ctx<'_>, ls: &[Spanned<file::ListenerFile>]) -> Vec<ListenerConfig> {
    let mut out: Vec<ListenerConfig> = Vec::new();
    for (i, l) in ls.iter().enumerate() {
        let l = l.get_ref();
        let name = l
            .name
            .as_ref()
            .map_or_else(|| format!("listener-{i}"), |n| n.get_ref().clone());
        let field = format!("listeners[{i}].address");
        let tls = l
            .tls
            .as_ref()
            .and_then(|t| listener_tls(cx, &format!("listeners[{i}].tls"), t));
        let redirect_https = match &l.redirect_https {
            Some(r) if *r.get_ref() && l.tls.is_some() => {
                cx.err(
                    r.span(),
                    format!("listeners[{i}].redirect_https"),
                    "redirects cleartext to https: a listener with [listeners.tls] already is https",
                );
                false
            }
            Some(r) => *r.get_ref(),
            None => false,
        };
        let proxy_protocol = match &l.proxy_protocol {
            Some(p) if *p.get_ref() && redirect_https => {
                cx.err(
                    p.span(),
                    format!("listeners[{i}].proxy_protocol"),
                    "a PROXY header on a redirect listener is not implemented yet",
                );
                false
            }
            Some(p) => *p.get_ref(),
            None => false,
        };
        let max_connections = l
            .max_connections
            .as_ref()
            .and_then(|v| cx.int(v, &format!("listeners[{i}].max_connections"), 1, 10_000_000))
            .unwrap_or(d::LISTENER_MAX_CONNECTIONS);
        let timeouts = ClientTimeouts {
            header: cx.duration(
                &l.header_timeout,
                &format!("listeners[{i}].header_timeout"),
                d::HEADER_TIMEOUT,
            ),
            keepalive: cx.duration(
                &l.keepalive_timeout,
                &format!("listeners[{i}].keepalive_timeout"),
                d::KEEPALIVE_TIMEOUT,
            ),
            max_target: max_request_target(cx, &l.max_request_target, i),
        };
        if let Some(addr) = socket_addr(cx, &l.address, &field) {
            if addr.port() != 0 && out.iter().any(|o| o.addr == addr) {
                cx.err(l.address.span(), field, format!("{addr} is listed twice"));
            }
            out.push(ListenerConfig {
                name,
                addr,
                tls,
                redirect_https,
                proxy_protocol,
                max_connections,
                timeouts,
            });
        }
    }
    if ls.is_empty() {
        if let Ok(addr) = d::LISTENER.parse() {
            out.push(ListenerConfig {
                name: "listener-0".into(),
                addr,
                tls: None,
                redirect_https: false,
                proxy_protocol: false,
                max_connections: d::LISTENER_MAX_CONNECTIONS,
                timeouts: ClientTimeouts::default(),
            });
        }
    }
    out
}

/// `listeners[i].max_request_target`: a size from 1 byte to 64 KiB (default 8 KiB).
fn max_request_target(cx: &mut Ctx<'_>, v: &Option<Spanned<String>>, i: usize) -> usize {
    let Some(v) = v else {
        return d::MAX_REQUEST_TARGET;
    };
    match byte_size(v.get_ref()) {
        Some(n) if (1..=d::MAX_REQUEST_TARGET_LIMIT).contains(&n) => {
            usize::try_from(n).unwrap_or(d::MAX_REQUEST_TARGET)
        }
        n => {
            let reason = match n {
                Some(_) => format!(
                    "'{}' is out of range 1..=64KiB (a longer target would not fit in a request head)",
                    v.get_ref()
                ),
                None => format!(
                    "'{}' is not a size like \"8KiB\" or \"4096\"",
                    v.get_ref()
                ),
            };
            cx.err(
                v.span(),
                format!("listeners[{i}].max_request_target"),
                reason,
            );
            d::MAX_REQUEST_TARGET
        }
    }
}

/// `[listeners.tls]`. Only the shape is checked here: the files are read when the listener
/// starts (and by `gatewayd check`), so a certificate renewed on disk needs no config change.
fn listener_tls(
    cx: &mut Ctx<'_>,
    p: &str,
    t: &Spanned<file::ListenerTlsFile>,
) -> Option<ListenerTls> {
    let before = cx.errors.len();
    let f = t.get_ref();
    let mut certificates = Vec::new();
    if f.certificates.get_ref().is_empty() {
        cx.err(
            f.certificates.span(),
            format!("{p}.certificates"),
            "a TLS listener needs at least one { cert = \"…\", key = \"…\" }",
        );
    }
    for (i, c) in f.certificates.get_ref().iter().enumerate() {
        let c = c.get_ref();
        for (v, name) in [(&c.cert, "cert"), (&c.key, "key")] {
            if v.get_ref().trim().is_empty() {
                cx.err(
                    v.span(),
                    format!("{p}.certificates[{i}].{name}"),
                    "must name a PEM file",
                );
            }
        }
        let pair = CertKeyPair {
            cert: cx.path(c.cert.get_ref()),
            key: cx.path(c.key.get_ref()),
        };
        if certificates.contains(&pair) {
            cx.err(
                c.cert.span(),
                format!("{p}.certificates[{i}]"),
                format!("'{}' is listed twice", c.cert.get_ref()),
            );
        }
        certificates.push(pair);
    }
    let default_certificate = match &f.default_certificate {
        Some(v) => {
            let want = cx.path(v.get_ref());
            match certificates.iter().position(|c| c.cert == want) {
                Some(i) => i,
                None => {
                    let known: Vec<_> = f
                        .certificates
                        .get_ref()
                        .iter()
                        .map(|c| format!("'{}'", c.get_ref().cert.get_ref()))
                        .collect();
                    cx.err(
                        v.span(),
                        format!("{p}.default_certificate"),
                        format!(
                            "'{}' is not one of this listener's certificates ({})",
                            v.get_ref(),
                            known.join(", ")
                        ),
                    );
                    0
                }
            }
        }
        None => 0,
    };
    let min_version = cx.choice(
        &f.min_version,
        &format!("{p}.min_version"),
        &[("1.2", TlsVersion::Tls12), ("1.3", TlsVersion::Tls13)],
        TlsVersion::Tls12,
    );
    let handshake_timeout = cx.duration(
        &f.handshake_timeout,
        &format!("{p}.handshake_timeout"),
        d::TLS_HANDSHAKE_TIMEOUT,
    );
    (cx.errors.len() == before).then_some(ListenerTls {
        certificates,
        default_certificate,
        strict_sni: f.strict_sni.unwrap_or(false),
        min_version,
        handshake_timeout,
    })
}

/// A service's `tls = {…}`.
fn upstream_tls(
    cx: &mut Ctx<'_>,
    p: &str,
    t: &Spanned<file::UpstreamTlsFile>,
) -> Option<UpstreamTls> {
    let before = cx.errors.len();
    let f = t.get_ref();
    match (&f.client_cert, &f.client_key) {
        (Some(c), None) => cx.err(
            c.span(),
            format!("{p}.client_key"),
            "client_cert needs client_key (the certificate's private key)",
        ),
        (None, Some(k)) => cx.err(
            k.span(),
            format!("{p}.client_cert"),
            "client_key needs client_cert (the certificate it belongs to)",
        ),
        _ => {}
    }
    let insecure = f
        .insecure_skip_verify
        .as_ref()
        .is_some_and(|v| *v.get_ref());
    if let (true, Some(ca)) = (insecure, &f.ca_file) {
        cx.err(
            ca.span(),
            format!("{p}.ca_file"),
            "give ca_file or insecure_skip_verify = true, not both (nothing is verified)",
        );
    }
    if let Some(n) = &f.server_name {
        if rustls::pki_types::ServerName::try_from(n.get_ref().as_str()).is_err() {
            cx.err(
                n.span(),
                format!("{p}.server_name"),
                format!("'{}' is not a DNS name or IP address", n.get_ref()),
            );
        }
    }
    (cx.errors.len() == before).then(|| UpstreamTls {
        ca_file: f.ca_file.as_ref().map(|v| cx.path(v.get_ref())),
        server_name: f.server_name.as_ref().map(|v| v.get_ref().clone()),
        client_cert: f.client_cert.as_ref().map(|v| cx.path(v.get_ref())),
        client_key: f.client_key.as_ref().map(|v| cx.path(v.get_ref())),
        insecure_skip_verify: insecure,
    })
}

fn admin(cx: &mut Ctx<'_>, a: &file::AdminFile) -> AdminConfig {
    let default: SocketAddr = d::ADMIN
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9901)));
    AdminConfig {
        addr: a
            .address
            .as_ref()
            .and_then(|v| socket_addr(cx, v, "admin.address"))
            .unwrap_or(default),
        token_file: a.token_file.as_ref().map(|p| cx.path(p.get_ref())),
        public_metrics: a.public_metrics.unwrap_or(false),
    }
}

fn log(cx: &mut Ctx<'_>, l: &file::LogFile) -> LogConfig {
    let level = match &l.level {
        Some(v) => match tracing_subscriber::EnvFilter::builder().parse(v.get_ref()) {
            Ok(_) => v.get_ref().clone(),
            Err(e) => {
                cx.err(
                    v.span(),
                    "log.level",
                    format!("'{}' is not a log filter: {e}", v.get_ref()),
                );
                d::LOG_LEVEL.to_string()
            }
        },
        None => d::LOG_LEVEL.to_string(),
    };
    let format = cx.choice(
        &l.format,
        "log.format",
        &[("json", LogFormat::Json), ("text", LogFormat::Text)],
        LogFormat::Json,
    );
    let rotation = cx.choice(
        &l.rotation,
        "log.rotation",
        &[
            ("minutely", Rotation::Minutely),
            ("hourly", Rotation::Hourly),
            ("daily", Rotation::Daily),
            ("never", Rotation::Never),
        ],
        Rotation::Daily,
    );
    let file = l.directory.as_ref().map(|dir| LogFileConfig {
        directory: cx.path(dir.get_ref()),
        prefix: l
            .file_prefix
            .as_ref()
            .map_or_else(|| "gatewayd.log".to_string(), |p| p.get_ref().clone()),
        rotation,
    });
    let mut sample = if l.access_log.unwrap_or(false) {
        1.0
    } else {
        0.0
    };
    if let Some(s) = &l.access_log_sample {
        let v = *s.get_ref();
        if (0.0..=1.0).contains(&v) {
            sample = v;
        } else {
            cx.err(
                s.span(),
                "log.access_log_sample",
                format!("{v} is not a fraction between 0 and 1"),
            );
        }
    }
    LogConfig {
        level,
        format,
        file,
        access_log_sample: sample,
    }
}

fn service(cx: &mut Ctx<'_>, name: &str, svc: &Spanned<file::ServiceFile>) -> ServiceConfig {
    let s = svc.get_ref();
    let mut endpoints = Vec::new();
    for (i, ep) in s.endpoints.iter().enumerate() {
        let field = format!("services.{name}.endpoints[{i}]");
        let (addr, weight) = match ep.get_ref() {
            file::EndpointFile::Address(a) => (a.as_str(), 1),
            file::EndpointFile::Full(t) => (t.address.as_str(), t.weight.unwrap_or(1)),
        };
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            cx.err(
                ep.span(),
                field,
                format!("'{addr}' is not an IP:port address"),
            );
            continue;
        };
        if !(1..=1_000_000).contains(&weight) {
            cx.err(
                ep.span(),
                format!("{field}.weight"),
                format!("{weight} is out of range 1..=1000000"),
            );
            continue;
        }
        endpoints.push((addr, weight as u32));
    }
    let consul = s.consul.as_ref().map(|c| {
        if !s.endpoints.is_empty() {
            cx.err(
                c.span(),
                format!("services.{name}.consul"),
                "give 'endpoints' or 'consul', not both",
            );
        }
        let cf = c.get_ref();
        if cf.service.get_ref().is_empty() {
            cx.err(
                cf.service.span(),
                format!("services.{name}.consul.service"),
                "must not be empty",
            );
        }
        ConsulService {
            service: cf.service.get_ref().clone(),
            tags: cf.tags.clone(),
            datacenter: cf.datacenter.clone(),
            health: cx.choice(
                &cf.health,
                &format!("services.{name}.consul.health"),
                &[
                    ("passing", ConsulHealth::Passing),
                    ("passing_or_warning", ConsulHealth::PassingOrWarning),
                ],
                ConsulHealth::Passing,
            ),
        }
    });
    let balance = cx.choice(
        &s.balance,
        &format!("services.{name}.balance"),
        &[
            ("round_robin", BalancePolicy::RoundRobin),
            ("weighted_round_robin", BalancePolicy::WeightedRoundRobin),
            ("p2c_least_request", BalancePolicy::P2cLeastRequest),
            ("p2c_ewma", BalancePolicy::P2cEwma),
        ],
        BalancePolicy::P2cLeastRequest,
    );
    let protocol = cx.choice(
        &s.protocol,
        &format!("services.{name}.protocol"),
        &[
            ("http1", UpstreamProtocol::Http1),
            ("h2c", UpstreamProtocol::H2c),
        ],
        UpstreamProtocol::Http1,
    );
    let max_idle = match &s.max_idle_per_endpoint {
        Some(v) => cx
            .int::<usize>(
                v,
                &format!("services.{name}.max_idle_per_endpoint"),
                0,
                100_000,
            )
            .unwrap_or(d::MAX_IDLE_PER_ENDPOINT),
        None => d::MAX_IDLE_PER_ENDPOINT,
    };
    let outlier = outlier(cx, name, s.outlier.as_ref());
    let tls = s
        .tls
        .as_ref()
        .and_then(|t| upstream_tls(cx, &format!("services.{name}.tls"), t));
    if let (Some(t), UpstreamProtocol::H2c) = (&s.tls, protocol) {
        cx.err(
            t.span(),
            format!("services.{name}.protocol"),
            "'h2c' is HTTP/2 in cleartext: it cannot be used with tls = {…}",
        );
    }
    ServiceConfig {
        name: name.to_string(),
        endpoints,
        consul,
        balance,
        protocol,
        connect_timeout: cx.duration(
            &s.connect_timeout,
            &format!("services.{name}.connect_timeout"),
            d::CONNECT_TIMEOUT,
        ),
        idle_timeout: cx.duration(
            &s.idle_timeout,
            &format!("services.{name}.idle_timeout"),
            d::IDLE_TIMEOUT,
        ),
        max_idle_per_endpoint: max_idle,
        max_in_flight_per_endpoint: s.max_in_flight_per_endpoint.as_ref().and_then(|v| {
            cx.int(
                v,
                &format!("services.{name}.max_in_flight_per_endpoint"),
                1,
                10_000_000,
            )
        }),
        outlier,
        tls,
    }
}

fn outlier(cx: &mut Ctx<'_>, name: &str, o: Option<&file::OutlierFile>) -> OutlierConfig {
    let mut out = OutlierConfig {
        consecutive_failures: d::OUTLIER_CONSECUTIVE_FAILURES,
        consecutive_5xx: d::OUTLIER_CONSECUTIVE_5XX,
        base_ejection: d::OUTLIER_BASE_EJECTION,
        max_ejection: d::OUTLIER_MAX_EJECTION,
        max_ejected_percent: d::OUTLIER_MAX_EJECTED_PERCENT,
        consecutive_gateway_errors: d::OUTLIER_CONSECUTIVE_GATEWAY_ERRORS,
        panic_threshold: d::OUTLIER_PANIC_THRESHOLD,
    };
    let Some(o) = o else { return out };
    let prefix = format!("services.{name}.outlier");
    if let Some(v) = &o.consecutive_failures {
        out.consecutive_failures = cx
            .int(v, &format!("{prefix}.consecutive_failures"), 0, 1000)
            .unwrap_or(out.consecutive_failures);
    }
    if let Some(v) = &o.consecutive_5xx {
        out.consecutive_5xx = cx
            .int(v, &format!("{prefix}.consecutive_5xx"), 0, 1000)
            .unwrap_or(out.consecutive_5xx);
    }
    if let Some(v) = &o.max_ejected_percent {
        out.max_ejected_percent = cx
            .int(v, &format!("{prefix}.max_ejected_percent"), 0, 100)
            .unwrap_or(out.max_ejected_percent);
    }
    if let Some(v) = &o.consecutive_gateway_errors {
        out.consecutive_gateway_errors = cx
            .int(v, &format!("{prefix}.consecutive_gateway_errors"), 0, 1000)
            .unwrap_or(out.consecutive_gateway_errors);
    }
    if let Some(v) = &o.panic_threshold {
        out.panic_threshold = cx
            .int(v, &format!("{prefix}.panic_threshold"), 0, 100)
            .unwrap_or(out.panic_threshold);
    }
    out.base_ejection = cx.duration(
        &o.base_ejection,
        &format!("{prefix}.base_ejection"),
        out.base_ejection,
    );
    out.max_ejection = cx.duration(
        &o.max_ejection,
        &format!("{prefix}.max_ejection"),
        out.max_ejection,
    );
    if out.max_ejection < out.base_ejection {
        let span = o
            .max_ejection
            .as_ref()
            .or(o.base_ejection.as_ref())
            .map_or(0..0, |v| v.span());
        cx.err(
            span,
            format!("{prefix}.max_ejection"),
            format!(
                "max_ejection ({:?}) is shorter than base_ejection ({:?})",
                out.max_ejection, out.base_ejection
            ),
        );
    }
    out
}

fn request_key(
    cx: &mut Ctx<'_>,
    span: Range<usize>,
    field: &str,
    cookie: &Option<String>,
    header: &Option<String>,
) -> Option<RequestKey> {
    match (cookie, header) {
        (Some(c), None) if !c.is_empty() => Some(RequestKey::Cookie(c.clone())),
        (None, Some(h)) => match http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()) {
            Ok(n) => Some(RequestKey::Header(n)),
            Err(_) => {
                cx.err(span, field, format!("'{h}' is not a header name"));
                None
            }
        },
        _ => {
            cx.err(span, field, "give exactly one of 'cookie' or 'header'");
            None
        }
    }
}

fn route(
    cx: &mut Ctx<'_>,
    r: &Spanned<file::RouteFile>,
    services: &BTreeMap<String, ServiceConfig>,
    known_policies: &BTreeMap<Spanned<String>, Spanned<file::PolicyFile>>,
) -> Option<RouteConfig> {
    let before = cx.errors.len();
    let f = r.get_ref();
    let name = f.name.get_ref().clone();
    let p = format!("routes.{name}");
    if !valid_name(&name) {
        cx.err(
            f.name.span(),
            format!("{p}.name"),
            "route names use letters, digits, '_', '-', '.'",
        );
    }
    let host = f.host.as_ref().and_then(|h| {
        let v = h.get_ref().to_ascii_lowercase();
        if let Some(suffix) = v.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') || suffix.contains(':') {
                cx.err(
                    h.span(),
                    format!("{p}.host"),
                    format!("'{v}' is not a host or '*.suffix' pattern"),
                );
                return None;
            }
            Some(HostMatch::Suffix(format!(".{suffix}")))
        } else if v.is_empty()
            || v.contains('*')
            || v.contains('/')
            || v.contains(' ')
            || (v.contains(':') && !v.starts_with('['))
        {
            cx.err(
                h.span(),
                format!("{p}.host"),
                format!("'{v}' is not a host or '*.suffix' pattern"),
            );
            None
        } else {
            Some(HostMatch::Exact(v))
        }
    });
    let path = route_path(cx, &p, f);
    let mut methods = Vec::new();
    for m in &f.methods {
        match http::Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes()) {
            Ok(x) => methods.push(x),
            Err(_) => cx.err(
                m.span(),
                format!("{p}.methods"),
                format!("'{}' is not an HTTP method", m.get_ref()),
            ),
        }
    }
    let mut headers = Vec::new();
    for h in &f.headers {
        let hf = h.get_ref();
        match http::HeaderName::from_bytes(hf.name.get_ref().to_ascii_lowercase().as_bytes()) {
            Ok(name) => headers.push(HeaderMatch {
                name,
                value: hf.value.as_ref().map(|v| v.get_ref().clone()),
            }),
            Err(_) => cx.err(
                hf.name.span(),
                format!("{p}.headers.name"),
                format!("'{}' is not a header name", hf.name.get_ref()),
            ),
        }
    }
    let rewrite = match (f.strip_prefix.unwrap_or(false), &f.rewrite_prefix) {
        (true, Some(v)) => {
            cx.err(
                v.span(),
                format!("{p}.rewrite_prefix"),
                "give 'strip_prefix' or 'rewrite_prefix', not both",
            );
            None
        }
        (true, None) => Some(Rewrite::StripPrefix),
        (false, Some(v)) => {
            if !v.get_ref().starts_with('/') {
                cx.err(
                    v.span(),
                    format!("{p}.rewrite_prefix"),
                    format!("'{}' must start with '/'", v.get_ref()),
                );
            }
            Some(Rewrite::ReplacePrefix(v.get_ref().clone()))
        }
        (false, None) => None,
    };
    if rewrite.is_some() && !matches!(path, PathMatch::Prefix(_)) {
        cx.err(
            r.span(),
            format!("{p}.strip_prefix"),
            "prefix rewriting needs 'path_prefix'",
        );
    }
    let retries = f
        .retries
        .as_ref()
        .map_or(Some(d::RETRIES), |v| {
            cx.int(v, &format!("{p}.retries"), 0, 5)
        })
        .unwrap_or(d::RETRIES);
    let on_empty_backend = cx.choice(
        &f.on_empty_backend,
        &format!("{p}.on_empty_backend"),
        &[
            ("failover", OnEmptyBackend::Failover),
            ("fail", OnEmptyBackend::Fail),
        ],
        OnEmptyBackend::Failover,
    );
    let sticky = f.sticky.as_ref().and_then(|s| {
        request_key(
            cx,
            s.span(),
            &format!("{p}.sticky"),
            &s.get_ref().cookie,
            &s.get_ref().header,
        )
    });

    let mut backends: Vec<BackendConfig> = Vec::new();
    if f.backends.is_empty() {
        cx.err(
            r.span(),
            format!("{p}.backends"),
            "a route needs at least one backend",
        );
    }
    for b in &f.backends {
        let bf = b.get_ref();
        let bname = bf.name.get_ref().clone();
        if !valid_name(&bname) {
            cx.err(
                bf.name.span(),
                format!("{p}.backends.name"),
                "backend names use letters, digits, '_', '-', '.'",
            );
        }
        if backends.iter().any(|x| x.name == bname) {
            cx.err(
                bf.name.span(),
                format!("{p}.backends.{bname}"),
                format!("duplicate backend '{bname}'"),
            );
        }
        let service = bf
            .service
            .as_ref()
            .map_or_else(|| bname.clone(), |s| s.get_ref().clone());
        if !services.contains_key(&service) {
            let span = bf
                .service
                .as_ref()
                .map_or_else(|| bf.name.span(), |s| s.span());
            let known: Vec<_> = services.keys().map(|k| format!("'{k}'")).collect();
            let known = if known.is_empty() {
                "none are defined".to_string()
            } else {
                format!("known: {}", known.join(", "))
            };
            cx.err(
                span,
                format!("{p}.backends.{bname}.service"),
                format!("unknown service '{service}' ({known})"),
            );
        }
        let weight = cx
            .int::<u32>(
                &bf.weight,
                &format!("{p}.backends.{bname}.weight"),
                0,
                10_000,
            )
            // An out-of-range weight is already reported; count it as non-zero so it does not
            // also trigger the all-zero error.
            .unwrap_or(1);
        backends.push(BackendConfig {
            name: bname,
            service,
            weight,
        });
    }
    if backends.len() > MAX_BACKENDS {
        cx.err(
            r.span(),
            format!("{p}.backends"),
            format!(
                "{} backends; a route has at most {MAX_BACKENDS}",
                backends.len()
            ),
        );
    }
    if !backends.is_empty() && backends.iter().all(|b| b.weight == 0) {
        cx.err(
            r.span(),
            format!("{p}.backends"),
            "all weights are 0: at least one backend needs a weight above 0",
        );
    }
    let mut cohorts = Vec::new();
    for c in &f.cohorts {
        let cf = c.get_ref();
        let key = request_key(
            cx,
            c.span(),
            &format!("{p}.cohorts"),
            &cf.cookie,
            &cf.header,
        );
        let action = cx.choice(
            &cf.action,
            &format!("{p}.cohorts.action"),
            &[
                ("force", CohortAction::Force),
                ("avoid", CohortAction::Avoid),
            ],
            CohortAction::Force,
        );
        let Some(backend) = backends
            .iter()
            .position(|b| &b.name == cf.backend.get_ref())
        else {
            cx.err(
                cf.backend.span(),
                format!("{p}.cohorts.backend"),
                format!("unknown backend '{}' in this route", cf.backend.get_ref()),
            );
            continue;
        };
        if let Some(key) = key {
            cohorts.push(CohortRule {
                key,
                value: cf.value.get_ref().clone(),
                backend,
                action,
            });
        }
    }
    let timeout = cx.duration(&f.timeout, &format!("{p}.timeout"), d::ROUTE_TIMEOUT);
    let latency_objective = f.latency_objective.is_some().then(|| {
        cx.duration(
            &f.latency_objective,
            &format!("{p}.latency_objective"),
            d::ROUTE_TIMEOUT,
        )
    });
    let retry = retry_policy(cx, f, &p);
    let body_idle_timeout = cx.duration(
        &f.body_idle_timeout,
        &format!("{p}.body_idle_timeout"),
        d::BODY_IDLE_TIMEOUT,
    );
    let max_in_flight = f
        .max_in_flight
        .as_ref()
        .and_then(|v| cx.int(v, &format!("{p}.max_in_flight"), 1, 10_000_000));
    let max_body = f.max_body.as_ref().and_then(|v| {
        let n = byte_size(v.get_ref());
        if n.is_none() {
            cx.err(
                v.span(),
                format!("{p}.max_body"),
                format!(
                    "'{}' is not a size like \"10MiB\", \"512KiB\" or \"1000\"",
                    v.get_ref()
                ),
            );
        }
        n
    });
    let mut policies = Vec::new();
    for name in &f.policies {
        let n = name.get_ref();
        if !known_policies.keys().any(|k| k.get_ref() == n) {
            cx.err(
                name.span(),
                format!("{p}.policies"),
                format!("no policy named '{n}' ([policies.{n}])"),
            );
        } else if policies.contains(n) {
            cx.err(
                name.span(),
                format!("{p}.policies"),
                format!("'{n}' is listed twice"),
            );
        } else {
            policies.push(n.clone());
        }
    }
    route_policies(cx, f, &p, known_policies);
    if cx.errors.len() != before {
        return None;
    }
    Some(RouteConfig {
        name,
        host,
        path,
        methods,
        headers,
        rewrite,
        timeout,
        latency_objective,
        retries,
        retry,
        policies,
        body_idle_timeout,
        max_in_flight,
        max_body,
        on_empty_backend,
        sticky,
        backends,
        cohorts,
    })
}

/// `"1000"`, `"64KiB"`, `"10MiB"`, `"1GiB"` (also `KB`/`MB`/`GB`, powers of 1000).
fn byte_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn retry_policy(cx: &mut Ctx<'_>, f: &file::RouteFile, p: &str) -> RetryPolicy {
    let mut out = RetryPolicy::default();
    if f.try_timeout.is_some() {
        out.try_timeout = Some(cx.duration(
            &f.try_timeout,
            &format!("{p}.try_timeout"),
            d::ROUTE_TIMEOUT,
        ));
    }
    out.non_idempotent = f.retry_non_idempotent.unwrap_or(false);
    if let Some(v) = &f.retry_budget_percent {
        out.budget_percent = cx
            .int(v, &format!("{p}.retry_budget_percent"), 0, 100)
            .unwrap_or(out.budget_percent);
    }
    if let Some(v) = &f.retry_budget_min_per_second {
        out.budget_min_per_second = cx
            .int(v, &format!("{p}.retry_budget_min_per_second"), 0, 100_000)
            .unwrap_or(out.budget_min_per_second);
    }
    if let Some(list) = &f.retry_on {
        let field = format!("{p}.retry_on");
        let mut statuses = Vec::new();
        for v in list {
            let min = i64::from(StatusSet::MIN);
            if let Some(s) = cx.int::<u16>(v, &field, min, i64::from(StatusSet::MAX)) {
                statuses.push(s);
            }
        }
        out.on_status = StatusSet::try_from_slice(&statuses).unwrap_or_default();
    }
    if let Some(v) = &f.retry_body_max {
        match byte_size(v.get_ref()) {
            Some(n) => out.body_max = n,
            None => cx.err(
                v.span(),
                format!("{p}.retry_body_max"),
                format!(
                    "'{}' is not a size like \"64KiB\", \"1MiB\" or \"0\"",
                    v.get_ref()
                ),
            ),
        }
    }
    out
}

fn consul(cx: &mut Ctx<'_>, c: &Spanned<file::ConsulFile>) -> ConsulSettings {
    let f = c.get_ref();
    let address = match &f.address {
        Some(a) => match a.get_ref().parse::<http::Uri>() {
            Ok(u)
                if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() =>
            {
                u
            }
            _ => {
                cx.err(
                    a.span(),
                    "consul.address",
                    format!(
                        "'{}' is not an http://host:port or https://host:port address",
                        a.get_ref()
                    ),
                );
                http::Uri::from_static("http://127.0.0.1:8500")
            }
        },
        None => http::Uri::from_static("http://127.0.0.1:8500"),
    };
    let consistency = cx.choice(
        &f.consistency,
        "consul.consistency",
        &[
            ("default", ConsulConsistency::Default),
            ("stale", ConsulConsistency::Stale),
            ("consistent", ConsulConsistency::Consistent),
        ],
        ConsulConsistency::Default,
    );
    ConsulSettings {
        address,
        ca_file: f.ca_file.as_ref().map(|p| cx.path(p.get_ref())),
        token_file: f.token_file.as_ref().map(|p| cx.path(p.get_ref())),
        datacenter: f.datacenter.as_ref().map(|d| d.get_ref().clone()),
        consistency,
        wait: cx.duration(&f.wait, "consul.wait", std::time::Duration::from_secs(60)),
        kv_weights: f.kv_weights.unwrap_or(true),
        register: f.register.unwrap_or(false),
        register_id: f.register_id.as_ref().map(|v| v.get_ref().clone()),
        register_ttl: cx.duration(
            &f.register_ttl,
            "consul.register_ttl",
            std::time::Duration::from_secs(10),
        ),
        backoff_max: cx.duration(
            &f.backoff_max,
            "consul.backoff_max",
            std::time::Duration::from_secs(60),
        ),
        watch_mode: cx.choice(
            &f.watch_mode,
            "consul.watch_mode",
            &[
                ("auto", WatchMode::Auto),
                ("per_service", WatchMode::PerService),
                ("fleet", WatchMode::Fleet),
            ],
            WatchMode::Auto,
        ),
        cache_file: Some(
            cx.path(
                f.cache_file
                    .as_ref()
                    .map_or("meshgate-discovery.json", |p| p.get_ref().as_str()),
            ),
        ),
    }
}

/// `path`, `path_prefix` or `path_template` (at most one); `Prefix("/")` when none is given.
fn route_path(cx: &mut Ctx<'_>, p: &str, f: &file::RouteFile) -> PathMatch {
    let given: Vec<(&str, &Spanned<String>)> = [
        ("path_prefix", &f.path_prefix),
        ("path", &f.path),
        ("path_template", &f.path_template),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let (field, v) = match given.as_slice() {
        [] => return PathMatch::Prefix("/".into()),
        [one] => *one,
        [_, (field, v), ..] => {
            cx.err(
                v.span(),
                format!("{p}.{field}"),
                "give one of 'path', 'path_prefix' and 'path_template'",
            );
            return PathMatch::Prefix("/".into());
        }
    };
    let s = v.get_ref();
    if field == "path_template" {
        return match PathTemplate::parse(s) {
            Ok(t) => PathMatch::Template(t),
            Err(e) => {
                cx.err(v.span(), format!("{p}.path_template"), e.to_string());
                PathMatch::Prefix("/".into())
            }
        };
    }
    if !s.starts_with('/') {
        cx.err(
            v.span(),
            format!("{p}.{field}"),
            format!("'{s}' must start with '/'"),
        );
    }
    if field == "path" {
        PathMatch::Exact(s.clone())
    } else {
        PathMatch::Prefix(s.clone())
    }
}

/// What a route's list of policies must hold together: at most one `jwt` and one
/// `forward_auth`, and a `jwt` wherever a rate limit is keyed by a claim.
fn route_policies(
    cx: &mut Ctx<'_>,
    f: &file::RouteFile,
    p: &str,
    known: &BTreeMap<Spanned<String>, Spanned<file::PolicyFile>>,
) {
    let of = |name: &str| {
        known
            .iter()
            .find(|(k, _)| k.get_ref() == name)
            .map(|(_, v)| v.get_ref())
    };
    let kind_of = |name: &str| of(name).map(|v| v.kind.get_ref().as_str());
    for kind in ["jwt", "forward_auth", "cors"] {
        let mut listed = f
            .policies
            .iter()
            .filter(|n| kind_of(n.get_ref()) == Some(kind));
        if let (Some(first), Some(second)) = (listed.next(), listed.next()) {
            cx.err(
                second.span(),
                format!("{p}.policies"),
                format!(
                    "'{}' and '{}' are both {kind} policies: a route takes one",
                    first.get_ref(),
                    second.get_ref()
                ),
            );
        }
    }
    let has_jwt = f
        .policies
        .iter()
        .any(|n| kind_of(n.get_ref()) == Some("jwt"));
    for n in &f.policies {
        let claim = of(n.get_ref())
            .filter(|v| v.kind.get_ref() == "rate_limit")
            .and_then(|v| v.key.as_ref())
            .and_then(|k| k.get_ref().strip_prefix("claim:"));
        if let (Some(claim), false) = (claim, has_jwt) {
            cx.err(
                n.span(),
                format!("{p}.policies"),
                format!(
                    "'{}' is keyed by claim:{claim}, which needs a jwt policy on the route to verify the token",
                    n.get_ref()
                ),
            );
        }
    }
}
