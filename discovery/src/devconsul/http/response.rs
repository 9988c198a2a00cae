//! Response builders: plain-text errors, JSON bodies, canned faults, 405s.

use ::http::header::{ALLOW, CONNECTION, CONTENT_TYPE};
use ::http::{HeaderValue, Method, Response, StatusCode};
use bytes::Bytes;
use http_body_util::Full;
use serde::Serialize;

use super::Resp;
use crate::devconsul::{Fault, TOO_MANY_CONNECTIONS};

/// A plain-text answer (Consul's error bodies).
pub(crate) fn text(status: StatusCode, body: &str) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A JSON answer.
pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            *resp.status_mut() = status;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// 200 with an empty body (agent writes).
pub(crate) fn empty_ok() -> Resp {
    Response::new(Full::new(Bytes::new()))
}

/// 500 `No cluster leader`.
pub(crate) fn no_leader() -> Resp {
    text(StatusCode::INTERNAL_SERVER_ERROR, "No cluster leader")
}

/// 400 for an undecodable body.
pub(crate) fn decode_failed(reason: &str) -> Resp {
    text(
        StatusCode::BAD_REQUEST,
        &format!("Request decode failed: {reason}"),
    )
}

/// The connection-limit answer (closes the connection).
pub(crate) fn too_many_connections() -> Resp {
    let mut resp = text(StatusCode::TOO_MANY_REQUESTS, TOO_MANY_CONNECTIONS);
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The answer of an injected fault.
pub(crate) fn fault_response(fault: &Fault) -> Resp {
    let (status, body, close) = fault.parts();
    let mut resp = text(status, body);
    if close {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// 405 with an `Allow` header listing `allowed`.
pub(crate) fn method_not_allowed(method: &Method, allowed: &[Method]) -> Resp {
    let mut resp = text(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method {method} not allowed"),
    );
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(",");
    if let Ok(v) = HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(ALLOW, v);
    }
    resp
}
