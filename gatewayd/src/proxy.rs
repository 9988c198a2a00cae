//! The request path: accept → read head → route → policies → split → balance → upstream
//! exchange → response → metrics, as named phases over one request context
//! ([`exchange::Exchange`]). Two front ends share it: the HTTP/1.1 engine (`h1`) and the hyper
//! path (`handle`, for HTTP/2). One table turns failures into answers (`error::respond`).
//!
//! Who may import whom, bottom up (no import circle: `layers.rs` checks it; a module imports
//! only from the layers below its own, or within it without a loop):
//! 1. leaves, which import nothing of `proxy/`: `error` (failures, [`SendError`], the one
//!    table from error to answer), `headers`, `trace`, `retry`, `request_body`, `idle`,
//!    `h2guard`, `proxy_protocol`;
//! 2. transports: `transport` (TCP connect), the engine's upstream side (`h1::upstream`,
//!    `h1::upload`) with the codecs and the client writer it uses (`h1::respond`), and `client`
//!    (hyper's client, which owns the engine's pool too);
//! 3. `worker` (a worker's state: it owns the pools) and `body` (hyper's response body, which
//!    gives connections back to `client`'s pool);
//! 4. the phases: `attempts`, then `exchange` (the request context);
//! 5. the front ends: `h1` (the engine), `handle` (hyper), `redirect`;
//! 6. `server` (accept, and the hand-over from the engine to hyper).
//!
//! `proxy.rs` re-exports (a re-export is an alias, not a dependency) and makes admin tokens.

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
#[cfg(test)]
mod layers;
pub mod proxy_protocol;
mod redirect;
mod request_body;
mod retry;
mod server;
pub mod trace;
mod transport;
mod worker;

use rand::Rng;

pub use body::ResponseBody;
pub use client::{PoolReturn, Upstreams};
pub use error::{respond, ClientFault, EndpointFault, Fault, ProxyError, SendError};
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
