//! The request head the gateway writes upstream, from the client's: kept fields copied as the
//! lines they arrived as, then the gateway's own fields.

use std::borrow::Cow;

use http::HeaderValue;

use super::head::{listed_in_connection, Field, Framing, Kind, RequestHead};
use super::io::{put_field, LineCopier};
use crate::config::PathMatch;
use crate::policy::UpstreamEdits;
use crate::proxy::error::ProxyError;
use crate::proxy::trace::TraceContext;
use crate::proxy::worker::ConnInfo;
use crate::route::rewrite_path;
use crate::snapshot::RouteRuntime;

/// What the gateway adds to the request it forwards.
#[derive(Debug, Clone, Copy)]
pub struct Additions<'a> {
    /// Path and query to send.
    pub target: &'a str,
    /// `X-Forwarded-*` from this client address (`None`: the policy is off).
    pub forwarded_for: Option<std::net::IpAddr>,
    /// The client connection is TLS.
    pub https: bool,
    /// The peer is a trusted proxy: its `X-Forwarded-For` is appended to and its
    /// `X-Forwarded-Proto` / `-Host` kept; anyone else's are removed.
    pub trusted: bool,
    /// A request id the gateway generated (the client's own is forwarded as received).
    pub new_request_id: Option<&'a HeaderValue>,
    /// The address the client connected to (`Host` of an HTTP/1.0 request without one).
    pub local: std::net::SocketAddr,
    /// Fields the route's policies remove and add (claims, auth answers).
    pub edits: Option<&'a UpstreamEdits>,
    /// The request's trace context (`[tracing]`): its `traceparent` replaces the client's, and
    /// the client's `tracestate` is dropped when its trace was not continued. `None`: both pass
    /// as received.
    pub trace: Option<&'a TraceContext>,
}

/// Writes the upstream request head from the client's, field by field: the received bytes of
/// every end-to-end field, hop-by-hop fields dropped (RFC 9110 §7.6.1), then our framing,
/// forwarding and request-id fields. No header map is built or walked.
pub fn write_upstream_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    fields: &[Field],
    add: &Additions<'_>,
) -> Result<(), ProxyError> {
    let raw = &head.raw[..];
    let forwarded = add.forwarded_for.is_some();
    out.clear();
    out.extend_from_slice(head.req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(add.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // RFC 9112 §3.2.2: an absolute-form target's authority replaces any `Host` field.
    let authority = head.req.uri().authority().map(|a| a.as_str().as_bytes());
    let mut host = None;
    let mut forwarded_host = false;
    let mut forwarded_proto = false;
    let mut copy = LineCopier::new(raw);
    for f in fields {
        let value = f.value(raw);
        let keep = match f.kind {
            // Only plain fields can be made hop-by-hop by `Connection`: framing and `Host` are
            // not the client's to remove (a listed `Content-Length` would desynchronise us).
            Kind::Other => {
                let connection = head.listed && listed_in_connection(raw, fields, f.name(raw));
                let removed = add.edits.is_some_and(|e| e.removes(f.name(raw)));
                let replaced = add.trace.is_some_and(|t| replaced_by_trace(t, f.name(raw)));
                !connection && !removed && !replaced
            }
            Kind::Host if authority.is_some() => false,
            Kind::Host => {
                host = Some(value);
                true
            }
            Kind::ContentLength => true,
            Kind::Connection
            | Kind::KeepAlive
            | Kind::ProxyConnection
            | Kind::Trailer
            | Kind::TransferEncoding => false,
            Kind::Upgrade => head.upgrade,
            // The one TE value allowed end to end (gRPC needs it).
            Kind::Te => value.eq_ignore_ascii_case(b"trailers"),
            Kind::Expect => !head.expect_continue,
            Kind::RequestId => add.new_request_id.is_none(),
            // A client's X-Forwarded-* are believed only from a trusted proxy; ours replace them.
            Kind::ForwardedFor => add.trusted && !forwarded,
            Kind::ForwardedProto => {
                forwarded_proto |= add.trusted;
                add.trusted
            }
            Kind::ForwardedHost => {
                forwarded_host |= add.trusted;
                add.trusted
            }
        };
        if keep {
            copy.keep(out, f);
        }
    }
    copy.flush(out);
    let local_host;
    let host = match (host, authority) {
        (Some(h), _) => h,
        (None, Some(a)) => {
            put_field(out, b"host", a);
            a
        }
        // RFC 9112 §3.2: HTTP/1.1 requires `Host`; an HTTP/1.0 request without one is
        // forwarded naming the address it was sent to, as the client meant.
        (None, None) if head.req.version() == http::Version::HTTP_10 => {
            use std::io::Write as _;
            let at = out.len();
            out.extend_from_slice(b"host: ");
            let _ = write!(out, "{}", add.local);
            out.extend_from_slice(b"\r\n");
            // The value, for `X-Forwarded-Host` below (copied: `out` grows meanwhile).
            local_host = out[at + 6..out.len() - 2].to_vec();
            &local_host[..]
        }
        (None, None) => return Err(ProxyError::BadRequest("missing Host header")),
    };
    if head.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    if head.framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if let Some(ip) = add.forwarded_for {
        out.extend_from_slice(b"x-forwarded-for: ");
        let theirs = fields.iter().filter(|f| f.kind == Kind::ForwardedFor);
        for f in theirs.filter(|_| add.trusted) {
            out.extend_from_slice(f.value(raw));
            out.extend_from_slice(b", ");
        }
        let mut ip_buf = [0u8; 64];
        out.extend_from_slice(crate::proxy::headers::format_ip(ip, &mut ip_buf));
        out.extend_from_slice(b"\r\n");
        if !forwarded_proto {
            out.extend_from_slice(if add.https {
                b"x-forwarded-proto: https\r\n"
            } else {
                b"x-forwarded-proto: http\r\n"
            });
        }
        if !forwarded_host {
            put_field(out, b"x-forwarded-host", host);
        }
    }
    if let Some(id) = add.new_request_id {
        put_field(out, b"x-request-id", id.as_bytes());
    }
    if let Some(t) = add.trace {
        put_field(out, b"traceparent", t.traceparent());
    }
    for (k, v) in add.edits.map_or(&[][..], |e| &e.add) {
        put_field(out, k.as_str().as_bytes(), v.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Writes the upstream request head for a request that matched `route`: the target as the
/// route rewrites it, and what the policies add (a new request id, the route policies' edits,
/// the trace context).
pub(super) fn upstream_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    fields: &[Field],
    route: &RouteRuntime,
    info: &ConnInfo,
    (forwarded_headers, trusted): (bool, bool),
    (new_request_id, edits, trace): (Option<&HeaderValue>, &UpstreamEdits, Option<&TraceContext>),
) -> Result<(), ProxyError> {
    let uri = head.req.uri();
    let target = match (&route.config.rewrite, &route.config.path) {
        (Some(rw), PathMatch::Prefix(prefix)) => {
            let path = rewrite_path(rw, prefix, uri.path());
            match uri.query() {
                Some(q) => Cow::Owned(format!("{path}?{q}")),
                None => path,
            }
        }
        _ => Cow::Borrowed(uri.path_and_query().map_or("/", |pq| pq.as_str())),
    };
    let add = Additions {
        target: &target,
        forwarded_for: forwarded_headers.then(|| info.peer.ip()),
        https: info.tls,
        trusted,
        new_request_id,
        local: info.local,
        edits: (!edits.is_empty()).then_some(edits),
        trace,
    };
    write_upstream_head(out, head, fields, &add)
}

/// True for a client field the trace context replaces: `traceparent` always, `tracestate`
/// when the client's trace was not continued.
fn replaced_by_trace(t: &TraceContext, name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"traceparent")
        || (t.drop_tracestate && name.eq_ignore_ascii_case(b"tracestate"))
}
