//! Gateway-made failures and the one table from error to response.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use super::body::ResponseBody;

/// Which side a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something we refuse.
    Downstream,
    /// The upstream failed or was unavailable.
    Upstream,
    /// Our own state (no route, no endpoint).
    Internal,
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
    /// The request uses a transfer coding the gateway does not forward.
    #[error("transfer coding not implemented: {0}")]
    NotImplemented(&'static str),
    /// The client closed its connection (or sent a broken body) before the request was whole.
    #[error("client went away mid-request: {0}")]
    ClientClosed(&'static str),
    /// The route's timeout passed while the gateway was still waiting for the request body.
    #[error("request body not received within {0:?}")]
    ClientTimeout(Duration),
}

impl ProxyError {
    /// Which side caused it.
    pub fn side(&self) -> Side {
        match self {
            Self::NoRoute { .. }
            | Self::BadRequest(_)
            | Self::HeadTooLarge(_)
            | Self::NotImplemented(_)
            | Self::ClientClosed(_)
            | Self::ClientTimeout(_) => Side::Downstream,
            Self::NoHealthyEndpoints { .. } => Side::Internal,
            Self::UpstreamConnect { .. }
            | Self::UpstreamTimeout(_)
            | Self::UpstreamBroken { .. } => Side::Upstream,
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
            Self::NotImplemented(_) => "not_implemented",
            Self::ClientClosed(_) => "client_closed",
            Self::ClientTimeout(_) => "request_timeout",
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
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::ClientTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// The synthetic response for `err`: JSON `{"error": code, "message": …, "request_id": …}`.
pub fn respond(err: &ProxyError, request_id: Option<&HeaderValue>) -> Response<ResponseBody> {
    let body = serde_json::json!({
        "error": err.code(),
        "message": err.to_string(),
        "request_id": request_id.and_then(|v| v.to_str().ok()),
    });
    let mut resp = Response::new(ResponseBody::full(Bytes::from(body.to_string())));
    *resp.status_mut() = err.status();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-meshgate-error", HeaderValue::from_static(err.code()));
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
        let r = respond(&e, None);
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
    fn a_slow_client_is_408_and_its_own_fault() {
        let e = ProxyError::ClientTimeout(Duration::from_secs(1));
        assert_eq!(e.side(), Side::Downstream);
        check(e, 408, "request_timeout");
    }

    #[test]
    fn bad_request_is_400() {
        check(ProxyError::BadRequest("no host"), 400, "bad_request");
    }
}
