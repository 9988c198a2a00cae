//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>) on the request path: a client's
//! `traceparent` is continued when it is valid, a new trace is started when it is absent or
//! invalid (and the client's `tracestate` then dropped, as the spec's processing model says),
//! and the gateway's own span id is the parent the upstream sees. Only built when `[tracing]`
//! is configured: without it nothing here runs and a client's fields pass upstream unchanged.

use std::net::SocketAddr;

use http::header::HeaderName;
use http::Method;
use rand::Rng;

use crate::telemetry::{SpanRecord, Value};

#[cfg(test)]
mod tests;

/// `traceparent`.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Length of a version-00 `traceparent` value: `00-` 32 hex `-` 16 hex `-` 2 hex.
pub const TRACEPARENT_LEN: usize = 55;

/// A valid `traceparent` the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The trace.
    pub trace_id: [u8; 16],
    /// The caller's span: the parent of the gateway's.
    pub span_id: [u8; 8],
    /// The caller sampled the trace.
    pub sampled: bool,
}

/// What the client sent, as far as trace context goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// No `traceparent`.
    Absent,
    /// One valid `traceparent`.
    Valid(Parent),
    /// A malformed one, or several.
    Invalid,
}

/// Decides whether a new trace (no valid parent) is sampled, from its trace id, so every
/// gateway configured alike decides the same for one trace (OpenTelemetry's
/// `TraceIdRatioBased`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    /// Sampled when the trace id's last 63 bits are below this.
    threshold: u64,
}

/// The trace context of one request: the ids the gateway's span has, and the `traceparent` it
/// sends upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// `traceparent` sent upstream (version 00, the gateway's span id as parent-id).
    header: [u8; TRACEPARENT_LEN],
    /// The trace.
    pub trace_id: [u8; 16],
    /// The gateway's span.
    pub span_id: [u8; 8],
    /// The client's span (`None`: the gateway started the trace).
    pub parent: Option<[u8; 8]>,
    /// The trace is sampled (recorded and exported).
    pub sampled: bool,
    /// The client's `tracestate` is not forwarded: it belonged to no trace the gateway
    /// continues (its `traceparent` was absent or invalid).
    pub drop_tracestate: bool,
}

/// One request's trace: its context, and what its span export needs (only when sampled and
/// exported).
#[derive(Debug)]
pub struct Trace {
    /// Ids and the upstream `traceparent`.
    pub ctx: TraceContext,
    /// The span's facts, when it is exported.
    pub span: Option<SpanFacts>,
}

/// What the exported span says about the request besides what the exchange knows.
#[derive(Debug)]
pub struct SpanFacts {
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// The request's method.
    pub method: Method,
    /// The request's path (no query).
    pub path: String,
    /// The `Host` (or `:authority`) the client named, without a port.
    pub server_address: Option<String>,
    /// The client.
    pub client: SocketAddr,
    /// The client connection is TLS.
    pub https: bool,
    /// Attempts sent upstream (0: none).
    pub attempts: u32,
    /// The gateway's error code when the gateway answered itself.
    pub error: Option<&'static str>,
}

/// How far a request got, as its span reports it.
#[derive(Debug)]
pub struct Reached<'a> {
    /// The matched route.
    pub route: Option<&'a str>,
    /// The chosen backend.
    pub backend: Option<&'a str>,
    /// The endpoint the last attempt went to.
    pub endpoint: Option<SocketAddr>,
    /// The status the client got.
    pub status: u16,
    /// From the request head to the response head.
    pub latency: std::time::Duration,
}

// === impl SpanFacts ===

impl SpanFacts {
    /// The exported span of the request `ctx` identifies: OpenTelemetry HTTP server semantic
    /// conventions where a name exists, `meshgate.*` for the rest (docs/operations.md, "Traces
    /// and spans").
    pub fn into_record(self, ctx: &TraceContext, r: &Reached<'_>) -> SpanRecord {
        let status = r.status;
        let mut a: Vec<(&'static str, Value)> = Vec::with_capacity(12);
        a.push(("http.request.method", Value::Str(self.method.to_string())));
        a.push(("url.path", Value::Str(self.path)));
        let scheme = if self.https { "https" } else { "http" };
        a.push(("url.scheme", Value::Str(scheme.into())));
        if let Some(h) = self.server_address {
            a.push(("server.address", Value::Str(h)));
        }
        a.push(("client.address", Value::Str(self.client.ip().to_string())));
        a.push(("http.response.status_code", Value::Int(i64::from(status))));
        if let Some(route) = r.route {
            a.push(("meshgate.route", Value::Str(route.into())));
        }
        if let Some(b) = r.backend {
            a.push(("meshgate.backend", Value::Str(b.into())));
        }
        if let Some(e) = r.endpoint {
            a.push(("meshgate.endpoint", Value::Str(e.to_string())));
        }
        let retries = self.attempts.saturating_sub(1);
        a.push(("meshgate.retries", Value::Int(i64::from(retries))));
        // A server span is an error for 5xx only; `error.type` names what went wrong.
        let error = match (self.error, status >= 500) {
            (Some(code), _) => {
                a.push(("error.type", Value::Str(code.into())));
                (status >= 500).then(|| code.to_string())
            }
            (None, true) => {
                a.push(("error.type", Value::Str(status.to_string())));
                Some(format!("upstream answered {status}"))
            }
            (None, false) => None,
        };
        let name = match r.route {
            Some(route) => format!("{} {route}", self.method),
            None => self.method.to_string(),
        };
        let nanos = u64::try_from(r.latency.as_nanos()).unwrap_or(u64::MAX);
        SpanRecord {
            trace_id: ctx.trace_id,
            span_id: ctx.span_id,
            parent_span_id: ctx.parent,
            name,
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: self.start_unix_nanos.saturating_add(nanos),
            attributes: a,
            error,
        }
    }
}

// === impl Incoming ===

impl Incoming {
    /// From every `traceparent` value the request carries.
    pub fn from_values<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Self {
        match (values.next(), values.next()) {
            (None, _) => Self::Absent,
            (Some(v), None) => parse(v).map_or(Self::Invalid, Self::Valid),
            (Some(_), Some(_)) => Self::Invalid,
        }
    }
}

// === impl Sampler ===

impl Sampler {
    /// Samples `ratio` (0..=1, clamped) of new traces.
    pub fn new(ratio: f64) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        // 2^63 scaled: 1.0 → 2^63 (every 63-bit value is below it), 0.0 → 0 (none is).
        let threshold = (ratio * (1u64 << 63) as f64) as u64;
        Self { threshold }
    }

    /// Whether a new trace with this id is sampled.
    pub fn samples(&self, trace_id: &[u8; 16]) -> bool {
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        (u64::from_be_bytes(low) >> 1) < self.threshold
    }
}

// === impl TraceContext ===

impl TraceContext {
    /// The gateway's span in the trace the client sent (`Valid`: its sampled flag is followed),
    /// or the first span of a new one (sampled by `sampler`). Ids come from `rng` (the worker's:
    /// no system call).
    pub fn start<R: Rng + ?Sized>(incoming: Incoming, sampler: &Sampler, rng: &mut R) -> Self {
        let span_id = nonzero_u64(rng).to_be_bytes();
        let (trace_id, parent, sampled) = match incoming {
            Incoming::Valid(p) => (p.trace_id, Some(p.span_id), p.sampled),
            Incoming::Absent | Incoming::Invalid => {
                let id = nonzero_u128(rng).to_be_bytes();
                (id, None, sampler.samples(&id))
            }
        };
        let mut header = [0u8; TRACEPARENT_LEN];
        header[..3].copy_from_slice(b"00-");
        hex_into(&trace_id, &mut header[3..35]);
        header[35] = b'-';
        hex_into(&span_id, &mut header[36..52]);
        header[52] = b'-';
        header[53] = b'0';
        header[54] = if sampled { b'1' } else { b'0' };
        Self {
            header,
            trace_id,
            span_id,
            parent,
            sampled,
            drop_tracestate: parent.is_none(),
        }
    }

    /// The `traceparent` value sent upstream.
    pub fn traceparent(&self) -> &[u8] {
        &self.header
    }

    /// The trace id, 32 lower-case hex digits (access log `trace.id`, error bodies).
    pub fn trace_id_hex(&self) -> &str {
        std::str::from_utf8(&self.header[3..35]).unwrap_or_default()
    }

    /// The gateway's span id, 16 lower-case hex digits (access log `span.id`).
    pub fn span_id_hex(&self) -> &str {
        std::str::from_utf8(&self.header[36..52]).unwrap_or_default()
    }
}

/// Parses one `traceparent` value (§3.2): `version-traceid-parentid-flags`, lower-case hex, the
/// version not `ff`, neither id all zeros. A version above 00 is read as 00 where it agrees
/// (§4.3: its first four fields, then `-` or the end).
pub fn parse(v: &[u8]) -> Option<Parent> {
    if v.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = unhex::<1>(&v[0..2])?;
    match version[0] {
        0xff => return None,
        0 if v.len() != TRACEPARENT_LEN => return None,
        0 => {}
        _ if v.len() > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != b'-' => return None,
        _ => {}
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace_id = unhex::<16>(&v[3..35])?;
    let span_id = unhex::<8>(&v[36..52])?;
    let flags = unhex::<1>(&v[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags[0] & 1 == 1,
    })
}

/// Lower-case hex digits only (the spec's HEXDIGLC).
fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(s[2 * i])? << 4 | digit(s[2 * i + 1])?;
    }
    Some(out)
}

/// Writes `bytes` as lower-case hex into `out` (twice as long).
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

/// Nanoseconds since the Unix epoch (0 before it).
pub fn unix_nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A `Host` value without its port (`[v6]:port` gives the address inside the brackets).
pub fn strip_port(h: &[u8]) -> &[u8] {
    if let Some(rest) = h.strip_prefix(b"[") {
        return rest.split(|&b| b == b']').next().unwrap_or(rest);
    }
    match h.iter().rposition(|&b| b == b':') {
        Some(i) => &h[..i],
        None => h,
    }
}

fn nonzero_u64<R: Rng + ?Sized>(rng: &mut R) -> u64 {
    rng.gen::<u64>().max(1)
}

fn nonzero_u128<R: Rng + ?Sized>(rng: &mut R) -> u128 {
    rng.gen::<u128>().max(1)
}
