//! The request path: accept → read head → route → policies → split → balance → upstream
//! exchange → response → metrics, as named phases over one request context
//! ([`exchange::Exchange`]). Two front ends share it: the HTTP/1.1 engine (`h1`) and the hyper
//! path (`handle`, for HTTP/2). One table turns failures into answers (`error::respond`).
//!
//! Who imports whom: `server` → {`h1`, `handle`, `redirect`} → {`exchange`, `attempts`} →
//! {`worker`, `error`, `retry`}; `client` → {`request_body`, `transport`}; `body` → `client`;
//! `error` → `body`. Nothing here imports `proxy.rs` itself, and no two modules import each
//! other. One loop is left: `worker::Worker` owns `client::Upstreams`, which owns the engine's
//! pool (`h1::Pool`), and `h1` reads the `Worker`.

mod attempts;
mod body;
mod client;
mod error;
mod exchange;
mod h1;
mod h2guard;
mod handle;
mod headers;
mod idle;
pub mod proxy_protocol;
mod redirect;
mod request_body;
mod retry;
mod server;
pub mod trace;
mod transport;
mod worker;

use rand::Rng;

pub use attempts::SendError;
pub use body::ResponseBody;
pub use client::{PoolReturn, Upstreams};
pub use error::{respond, ClientFault, EndpointFault, Fault, ProxyError};
pub use handle::handle;
pub use request_body::{BodyWatch, RequestBody};
pub use retry::{RetryBudget, RetryReason};
pub use server::{bind_listener, run_worker, ConnCap, ListenerMode, Listening, WorkerSet};
pub use worker::{stopped, with_rng, ConnInfo, Worker};

/// The HTTP/1.1 engine's head parsing and writing, for the criterion benches
/// (`benches/h1_heads.rs`). Not a stable API.
#[doc(hidden)]
pub mod bench {
    pub use super::h1::forward::{write_upstream_head, Additions};
    pub use super::h1::head::{parse_request, Field, RequestHead};
    pub use super::h1::response::ResponseHead;
}

/// A 64-hex-digit random token (admin API secrets).
pub fn new_token<R: Rng + ?Sized>(rng: &mut R) -> String {
    let a = headers::new_request_id(rng);
    let b = headers::new_request_id(rng);
    format!("{}{}", a.to_str().unwrap_or(""), b.to_str().unwrap_or(""))
}
