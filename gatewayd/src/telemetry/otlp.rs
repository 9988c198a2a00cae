//! OTLP/HTTP protobuf encoding of an `ExportTraceServiceRequest`
//! (opentelemetry-proto `collector/trace/v1`, `trace/v1`, `common/v1`, `resource/v1`),
//! written by hand: the gateway sends one message shape and never decodes, so the few fields it
//! uses are encoded here directly instead of pulling a protobuf code generator and its build
//! dependencies. Field numbers are the ones in opentelemetry-proto's `.proto` files; the e2e test
//! decodes what this writes with the `opentelemetry-proto` package itself.

/// One attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `AnyValue.string_value` (1).
    Str(String),
    /// `AnyValue.int_value` (3).
    Int(i64),
}

/// One span as exported.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    /// `Span.trace_id` (1).
    pub trace_id: [u8; 16],
    /// `Span.span_id` (2).
    pub span_id: [u8; 8],
    /// `Span.parent_span_id` (4), `None`: a root span.
    pub parent_span_id: Option<[u8; 8]>,
    /// `Span.name` (5).
    pub name: String,
    /// `Span.start_time_unix_nano` (7).
    pub start_unix_nanos: u64,
    /// `Span.end_time_unix_nano` (8).
    pub end_unix_nanos: u64,
    /// `Span.attributes` (9).
    pub attributes: Vec<(&'static str, Value)>,
    /// `Span.status` (15): `Some(message)` is `STATUS_CODE_ERROR`, `None` unset.
    pub error: Option<String>,
}

/// `SpanKind.SPAN_KIND_SERVER`.
const SPAN_KIND_SERVER: u64 = 2;
/// `Status.StatusCode.STATUS_CODE_ERROR`.
const STATUS_CODE_ERROR: u64 = 2;

/// Encodes `spans` as one `ExportTraceServiceRequest` from resource `service_name`, scope
/// `meshgate` at this crate's version.
pub fn encode_request(service_name: &str, spans: &[SpanRecord]) -> Vec<u8> {
    // Resource { attributes = 1 }
    let mut resource = Vec::new();
    let attrs = [
        ("service.name", Value::Str(service_name.to_string())),
        (
            "service.version",
            Value::Str(env!("CARGO_PKG_VERSION").to_string()),
        ),
    ];
    for (k, v) in &attrs {
        message(&mut resource, 1, |b| key_value(b, k, v));
    }
    // ScopeSpans { scope = 1, spans = 2 }
    let mut scope_spans = Vec::new();
    message(&mut scope_spans, 1, |b| {
        string(b, 1, "meshgate");
        string(b, 2, env!("CARGO_PKG_VERSION"));
    });
    for s in spans {
        message(&mut scope_spans, 2, |b| span(b, s));
    }
    // ResourceSpans { resource = 1, scope_spans = 2 }
    let mut resource_spans = Vec::with_capacity(resource.len() + scope_spans.len() + 16);
    bytes(&mut resource_spans, 1, &resource);
    bytes(&mut resource_spans, 2, &scope_spans);
    // ExportTraceServiceRequest { resource_spans = 1 }
    let mut out = Vec::with_capacity(resource_spans.len() + 8);
    bytes(&mut out, 1, &resource_spans);
    out
}

fn span(b: &mut Vec<u8>, s: &SpanRecord) {
    bytes(b, 1, &s.trace_id);
    bytes(b, 2, &s.span_id);
    if let Some(p) = &s.parent_span_id {
        bytes(b, 4, p);
    }
    string(b, 5, &s.name);
    varint_field(b, 6, SPAN_KIND_SERVER);
    fixed64(b, 7, s.start_unix_nanos);
    fixed64(b, 8, s.end_unix_nanos);
    for (k, v) in &s.attributes {
        message(b, 9, |b| key_value(b, k, v));
    }
    if let Some(msg) = &s.error {
        // Status { message = 2, code = 3 }
        message(b, 15, |b| {
            string(b, 2, msg);
            varint_field(b, 3, STATUS_CODE_ERROR);
        });
    }
}

/// KeyValue { key = 1, value = 2 (AnyValue) }.
fn key_value(b: &mut Vec<u8>, k: &str, v: &Value) {
    string(b, 1, k);
    message(b, 2, |b| match v {
        Value::Str(s) => string(b, 1, s),
        // int64 is a plain varint of the two's complement.
        Value::Int(n) => varint_field(b, 3, *n as u64),
    });
}

/// A length-delimited sub-message built by `f`.
fn message(b: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    bytes(b, field, &inner);
}

fn tag(b: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(b, u64::from(field) << 3 | u64::from(wire_type));
}

fn varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn varint_field(b: &mut Vec<u8>, field: u32, v: u64) {
    tag(b, field, 0);
    varint(b, v);
}

fn fixed64(b: &mut Vec<u8>, field: u32, v: u64) {
    tag(b, field, 1);
    b.extend_from_slice(&v.to_le_bytes());
}

fn bytes(b: &mut Vec<u8>, field: u32, v: &[u8]) {
    tag(b, field, 2);
    varint(b, v.len() as u64);
    b.extend_from_slice(v);
}

fn string(b: &mut Vec<u8>, field: u32, v: &str) {
    bytes(b, field, v.as_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_base_128() {
        let enc = |v| {
            let mut b = Vec::new();
            varint(&mut b, v);
            b
        };
        assert_eq!(enc(1), [1]);
        assert_eq!(enc(150), [0x96, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
        // A negative int64 takes ten bytes, as protobuf writes it.
        let mut b = Vec::new();
        varint(&mut b, -1i64 as u64);
        assert_eq!(
            b,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn a_span_is_laid_out_with_the_proto_field_numbers() {
        let s = SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: Some([3; 8]),
            name: "GET".into(),
            start_unix_nanos: 5,
            end_unix_nanos: 6,
            attributes: vec![("k", Value::Int(7))],
            error: None,
        };
        let mut b = Vec::new();
        span(&mut b, &s);
        let mut want = vec![0x0a, 16];
        want.extend([1; 16]);
        want.extend([0x12, 8]);
        want.extend([2; 8]);
        want.extend([0x22, 8]);
        want.extend([3; 8]);
        want.extend([0x2a, 3]);
        want.extend(b"GET");
        want.extend([0x30, 2]);
        want.push(0x39);
        want.extend(5u64.to_le_bytes());
        want.push(0x41);
        want.extend(6u64.to_le_bytes());
        // attributes: KeyValue { key "k", value AnyValue { int_value 7 } }
        want.extend([0x4a, 7, 0x0a, 1, b'k', 0x12, 2, 0x18, 7]);
        assert_eq!(b, want);
    }

    #[test]
    fn a_request_nests_resource_scope_and_spans() {
        let out = encode_request("svc", &[]);
        // ExportTraceServiceRequest.resource_spans (1), length-delimited.
        assert_eq!(out[0], 0x0a);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("service.name"));
        assert!(text.contains("svc"));
        assert!(text.contains("meshgate"));
    }
}
