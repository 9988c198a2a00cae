//! Gateway-made failures, whose fault they are, what a failed send gives back, and the one
//! table from error to response. A leaf: it imports nothing else of `proxy/`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

/// Whose fault a failure is. Passive health (outlier ejection, latency estimates) counts only
/// [`Fault::Endpoint`]; [`Fault::Client`] is counted in `meshgate_client_errors_total{kind}` and
/// never touches an endpoint's health, whatever the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client broke the exchange or sent something the gateway refuses.
    Client(ClientFault),
    /// The endpoint's own failure: counted by outlier detection.
    Endpoint(EndpointFault),
    /// The gateway answered from its own state (no route, no usable endpoint): nobody's fault
    /// that health accounting could act on.
    Gateway,
}

/// What a client did wrong (the `kind` label of `meshgate_client_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// A request the gateway refused itself: malformed head, bad framing, too large.
    Malformed,
    /// The client closed or reset while sending its request body (or sent a broken one).
    AbortedUpload,
    /// The client did not send its request body in time (408).
    StalledUpload,
    /// A request body over the route's `max_body` (413).
    TooLarge,
    /// A request head trickled in too slowly (408).
    StalledHead,
    /// The client went away (reset the stream or the connection) before the answer came.
    Cancelled,
    /// The client went away, or stopped reading, while the response was being relayed.
    AbortedResponse,
    /// An HTTP/2 connection the client broke with a protocol error.
    Protocol,
}

/// What an endpoint did wrong (shown in ejection logs and events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointFault {
    /// Connection refused, connect timeout, or a failed protocol handshake.
    Connect,
    /// Reset or closed before a complete response head, or a malformed response.
    Broken,
    /// No response head within the request's timeout.
    Timeout,
    /// A 5xx response (counted only when `outlier.consecutive_5xx` is set).
    Status5xx,
}

impl ClientFault {
    /// Every kind, in the order of [`ClientFault::index`].
    pub const ALL: [ClientFault; 8] = [
        Self::Malformed,
        Self::AbortedUpload,
        Self::StalledUpload,
        Self::TooLarge,
        Self::StalledHead,
        Self::Cancelled,
        Self::AbortedResponse,
        Self::Protocol,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed_request",
            Self::AbortedUpload => "aborted_upload",
            Self::StalledUpload => "stalled_upload",
            Self::TooLarge => "body_too_large",
            Self::StalledHead => "stalled_head",
            Self::Cancelled => "cancelled",
            Self::AbortedResponse => "aborted_response",
            Self::Protocol => "protocol_error",
        }
    }

    /// Position in [`ClientFault::ALL`] (a counter array index).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl EndpointFault {
    /// A short name for logs and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Broken => "broken",
            Self::Timeout => "timeout",
            Self::Status5xx => "5xx",
        }
    }
}

/// Everything that makes the gateway answer instead of the upstream.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matches.
    #[error("no route for {host}{path}")]
    NoRoute {
        /// Request host ("" when none).
        host: String,
        /// Request path.
        path: String,
    },
    /// The route's backends have no usable endpoint.
    #[error("no healthy endpoint for route {route}")]
    NoHealthyEndpoints {
        /// Route name.
        route: String,
    },
    /// TCP connect or protocol handshake to the endpoint failed; nothing was sent.
    #[error("connect to {addr} failed: {reason}")]
    UpstreamConnect {
        /// Endpoint.
        addr: std::net::SocketAddr,
        /// Cause.
        reason: String,
    },
    /// The upstream did not answer in time.
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
    /// The upstream broke the exchange after the request was sent.
    #[error("upstream {addr} failed: {reason}")]
    UpstreamBroken {
        /// Endpoint.
        addr: std::net::SocketAddr,
        /// Cause.
        reason: String,
    },
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request head is larger than the gateway accepts.
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// The client did not finish its request head in time (slowloris).
    #[error("request head not received within {0:?}")]
    HeadTimeout(Duration),
    /// The request target is longer than the gateway accepts.
    #[error("request target longer than {0} bytes")]
    UriTooLong(usize),
    /// The request body is larger than the route's `max_body`.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The request uses a transfer coding the gateway does not forward.
    #[error("transfer coding not implemented: {0}")]
    NotImplemented(&'static str),
    /// The client closed its connection (or sent a broken body) before the request was whole.
    #[error("client went away mid-request: {0}")]
    ClientClosed(&'static str),
    /// The route's timeout passed while the gateway was still waiting for the request body.
    #[error("request body not received within {0:?}")]
    ClientTimeout(Duration),
    /// A concurrency limit is reached (the route's `max_in_flight`, or every usable endpoint at
    /// its service's `max_in_flight_per_endpoint`): a fast 503 with `Retry-After`.
    #[error("{0} at its concurrency limit")]
    Overloaded(String),
    /// A route policy answered instead of the upstream (429 rate limited, 403 CORS refused).
    #[error("refused by the route's policy: {code}")]
    Refused {
        /// The answer's status.
        status: StatusCode,
        /// `rate_limited` or `cors_refused`.
        code: &'static str,
    },
}

impl ProxyError {
    /// Whose fault it is: the one classification passive health, retries and metrics use.
    pub fn fault(&self) -> Fault {
        match self {
            Self::BadRequest(_)
            | Self::HeadTooLarge(_)
            | Self::UriTooLong(_)
            | Self::NotImplemented(_) => Fault::Client(ClientFault::Malformed),
            Self::BodyTooLarge(_) => Fault::Client(ClientFault::TooLarge),
            Self::HeadTimeout(_) => Fault::Client(ClientFault::StalledHead),
            Self::ClientClosed(_) => Fault::Client(ClientFault::AbortedUpload),
            Self::ClientTimeout(_) => Fault::Client(ClientFault::StalledUpload),
            Self::NoRoute { .. }
            | Self::NoHealthyEndpoints { .. }
            | Self::Refused { .. }
            | Self::Overloaded(_) => Fault::Gateway,
            Self::UpstreamConnect { .. } => Fault::Endpoint(EndpointFault::Connect),
            Self::UpstreamTimeout(_) => Fault::Endpoint(EndpointFault::Timeout),
            Self::UpstreamBroken { .. } => Fault::Endpoint(EndpointFault::Broken),
        }
    }

    /// True when the request was not sent at all, so another endpoint may be tried safely
    /// whatever the method.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::UpstreamConnect { .. })
    }

    /// Stable machine-readable code, sent in the JSON body and `x-meshgate-error`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoRoute { .. } => "no_route",
            Self::NoHealthyEndpoints { .. } => "no_healthy_endpoints",
            Self::UpstreamConnect { .. } => "upstream_connect_failed",
            Self::UpstreamTimeout(_) => "upstream_timeout",
            Self::UpstreamBroken { .. } => "upstream_failed",
            Self::BadRequest(_) => "bad_request",
            Self::HeadTooLarge(_) => "head_too_large",
            Self::UriTooLong(_) => "uri_too_long",
            Self::HeadTimeout(_) => "request_timeout",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::NotImplemented(_) => "not_implemented",
            Self::ClientClosed(_) => "client_closed",
            Self::ClientTimeout(_) => "request_timeout",
            Self::Refused { code, .. } => code,
            Self::Overloaded(_) => "overloaded",
        }
    }

    /// HTTP status of the synthetic response.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::NoHealthyEndpoints { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamConnect { .. } | Self::UpstreamBroken { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::BadRequest(_) | Self::ClientClosed(_) => StatusCode::BAD_REQUEST,
            Self::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Self::HeadTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::ClientTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Refused { status, .. } => *status,
            Self::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Why a send failed, and whether the request is still ours. `A` is the transport's answer
/// (for [`SendError::Status`]; transports that never return one leave it uninhabited).
#[derive(Debug)]
pub enum SendError<Q, A = std::convert::Infallible> {
    /// Nothing was sent; the request comes back for another attempt.
    NotSent(Box<Q>, ProxyError),
    /// The request was sent, got no response head, and may be sent again (idempotent or opted
    /// in, body kept): it comes back for another attempt if the route allows one.
    Replayable(Box<Q>, ProxyError),
    /// The request was (at least partly) sent.
    Failed(ProxyError),
    /// The endpoint answered a status the route retries on, and the request may be sent again:
    /// both come back. The answer is relayed after all when no retry can be made.
    Status(Box<Q>, A),
}

impl<Q> SendError<Q> {
    /// The same failure for a transport whose answers are `A`.
    pub(crate) fn widen<A>(self) -> SendError<Q, A> {
        match self {
            Self::NotSent(q, e) => SendError::NotSent(q, e),
            Self::Replayable(q, e) => SendError::Replayable(q, e),
            Self::Failed(e) => SendError::Failed(e),
            Self::Status(_, never) => match never {},
        }
    }
}

/// The synthetic response for `err`: JSON `{"error": code, "message": …, "request_id": …,
/// "trace_id": …}` (`null` for an id the gateway does not keep: `gateway.request_id = false`, no
/// `[tracing]`).
pub fn respond(
    err: &ProxyError,
    request_id: Option<&HeaderValue>,
    trace_id: Option<&str>,
) -> Response<Bytes> {
    let body = serde_json::json!({
        "error": err.code(),
        "message": err.to_string(),
        "request_id": request_id.and_then(|v| v.to_str().ok()),
        "trace_id": trace_id,
    });
    let mut resp = Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = err.status();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-meshgate-error", HeaderValue::from_static(err.code()));
    if let ProxyError::Overloaded(_) = err {
        // Limits free up as requests finish: come back in a second rather than hammering.
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let Some(id) = request_id {
        h.insert("x-request-id", id.clone());
    }
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(e: ProxyError, status: u16, code: &str) {
        let r = respond(&e, None, None);
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(r.headers()["x-meshgate-error"], code);
        assert_eq!(r.headers()["content-type"], "application/json");
    }

    #[test]
    fn no_route_is_404() {
        check(
            ProxyError::NoRoute {
                host: "a".into(),
                path: "/".into(),
            },
            404,
            "no_route",
        );
    }

    #[test]
    fn no_healthy_endpoints_is_503() {
        check(
            ProxyError::NoHealthyEndpoints { route: "r".into() },
            503,
            "no_healthy_endpoints",
        );
    }

    #[test]
    fn connect_failure_is_502_and_retryable() {
        let e = ProxyError::UpstreamConnect {
            addr: "127.0.0.1:1".parse().unwrap(),
            reason: "refused".into(),
        };
        assert!(e.is_retryable());
        check(e, 502, "upstream_connect_failed");
    }

    #[test]
    fn timeout_is_504_and_not_retryable() {
        let e = ProxyError::UpstreamTimeout(Duration::from_secs(1));
        assert!(!e.is_retryable());
        check(e, 504, "upstream_timeout");
    }

    #[test]
    fn broken_upstream_is_502() {
        check(
            ProxyError::UpstreamBroken {
                addr: "127.0.0.1:1".parse().unwrap(),
                reason: "reset".into(),
            },
            502,
            "upstream_failed",
        );
    }

    #[test]
    fn a_slow_client_is_408() {
        check(
            ProxyError::ClientTimeout(Duration::from_secs(1)),
            408,
            "request_timeout",
        );
    }

    /// Whose fault each error kind is: the table passive health relies on. A client's doing
    /// must never land on an endpoint, and an endpoint's own failure always must.
    #[test]
    fn every_error_kind_has_its_fault_pinned() {
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let s = || String::from("x");
        let table = [
            (
                ProxyError::NoRoute {
                    host: s(),
                    path: s(),
                },
                Fault::Gateway,
            ),
            (
                ProxyError::NoHealthyEndpoints { route: s() },
                Fault::Gateway,
            ),
            (
                ProxyError::UpstreamConnect { addr, reason: s() },
                Fault::Endpoint(EndpointFault::Connect),
            ),
            (
                ProxyError::UpstreamTimeout(Duration::from_secs(1)),
                Fault::Endpoint(EndpointFault::Timeout),
            ),
            (
                ProxyError::UpstreamBroken { addr, reason: s() },
                Fault::Endpoint(EndpointFault::Broken),
            ),
            (
                ProxyError::BadRequest("x"),
                Fault::Client(ClientFault::Malformed),
            ),
            (
                ProxyError::HeadTooLarge(1),
                Fault::Client(ClientFault::Malformed),
            ),
            (
                ProxyError::NotImplemented("x"),
                Fault::Client(ClientFault::Malformed),
            ),
            (
                ProxyError::UriTooLong(1),
                Fault::Client(ClientFault::Malformed),
            ),
            (
                ProxyError::HeadTimeout(Duration::from_secs(1)),
                Fault::Client(ClientFault::StalledHead),
            ),
            (
                ProxyError::BodyTooLarge(1),
                Fault::Client(ClientFault::TooLarge),
            ),
            (
                ProxyError::ClientClosed("x"),
                Fault::Client(ClientFault::AbortedUpload),
            ),
            (
                ProxyError::ClientTimeout(Duration::from_secs(1)),
                Fault::Client(ClientFault::StalledUpload),
            ),
            (
                ProxyError::Refused {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    code: "rate_limited",
                },
                Fault::Gateway,
            ),
            (ProxyError::Overloaded(s()), Fault::Gateway),
        ];
        for (e, fault) in table {
            assert_eq!(e.fault(), fault, "{e}");
        }
    }

    #[test]
    fn client_fault_labels_are_distinct_and_indexed_in_order() {
        let labels: std::collections::BTreeSet<_> =
            ClientFault::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels.len(), ClientFault::ALL.len());
        for (i, k) in ClientFault::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn overload_is_a_fast_503_with_retry_after() {
        let r = respond(&ProxyError::Overloaded("route r".into()), None, None);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["x-meshgate-error"], "overloaded");
    }

    #[test]
    fn the_body_names_the_request_and_trace_ids() {
        let id = HeaderValue::from_static("req-1");
        let trace = "0af7651916cd43dd8448eb211c80319c";
        let r = respond(
            &ProxyError::UpstreamTimeout(Duration::from_secs(1)),
            Some(&id),
            Some(trace),
        );
        let body = r.body().clone();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v["trace_id"], trace);
        let r = respond(&ProxyError::BadRequest("x"), None, None);
        let body = r.body().clone();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["trace_id"].is_null());
    }

    #[test]
    fn bad_request_is_400() {
        check(ProxyError::BadRequest("no host"), 400, "bad_request");
    }
}
