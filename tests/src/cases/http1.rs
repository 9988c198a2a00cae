//! The hand-written HTTP/1.x engine, end to end with raw sockets on both sides so the bytes on
//! the wire are what is checked: chunked bodies both ways, HTTP/1.0 and close-delimited
//! exchanges, pipelining, `100-continue`, HEAD, dead pooled upstream connections, hop-by-hop
//! response fields, interim responses, the `[gateway]` policy switches, request-smuggling shapes
//! and the handover of h2c routes to hyper.
//!
//! `wire` is the raw client side, `request` what it sends, `upstream` the raw origin side; this
//! file holds the config and start-up the cases share.

use std::net::SocketAddr;

use meshgate_e2e::harness::gateway::preamble;
use meshgate_e2e::harness::{Gateway, Origin};

use self::upstream::{After, RawOrigin, Seen};
use super::support::service;

mod connection;
mod exchange;
mod framing;
mod handover;
mod headers;
mod policies;
mod pooling;
mod quirks;
mod request;
mod smuggling;
mod upstream;
mod wire;

/// `[services.NAME]` with one raw endpoint (the default balancer).
fn raw_service(name: &str, addr: SocketAddr) -> String {
    format!("[services.{name}]\nendpoints = [\"{addr}\"]\n\n")
}

/// A route on `prefix` to `service`, without retries (a dead pooled connection must be
/// replaced by the pool itself, not by a retry).
fn route(name: &str, prefix: &str, service: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nretries = 0\nbackends = [{{ name = \"{service}\", weight = 1 }}]\n\n")
}

/// Service `o` (HTTP/1.1) and `o2` (h2c), both on origin `o`, with `route` building route `h1`
/// on `/h1` to the first and `h2` on `/h2` to the second.
fn h1_and_h2c(o: &Origin, route: impl Fn(&str, &str, &str) -> String) -> String {
    format!(
        "{}[services.o2]\nendpoints = [\"{}\"]\nprotocol = \"h2c\"\n\n{}{}",
        service("o", &[o], "round_robin"),
        o.addr,
        route("h1", "/h1", "o"),
        route("h2", "/h2", "o2"),
    )
}

/// Starts a gateway whose `[gateway]` table also has `keys`. Keep the directory alive.
fn start_with_gateway_keys(keys: &str, body: &str) -> (tempfile::TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let head = preamble(2).replacen("[gateway]\n", &format!("[gateway]\n{keys}"), 1);
    std::fs::write(dir.path().join("gatewayd.toml"), format!("{head}{body}")).unwrap();
    let gw = Gateway::start_in(dir.path()).unwrap();
    (dir, gw)
}

/// A gateway sending every path to the upstream at `addr` (service and route `raw`).
fn raw_gateway(addr: SocketAddr) -> Gateway {
    let cfg = format!("{}{}", raw_service("raw", addr), route("raw", "/", "raw"));
    Gateway::start(&cfg).unwrap()
}

/// A [`RawOrigin`] behind a [`raw_gateway`].
async fn raw_behind_gateway(
    after: After,
    answer: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static,
) -> (RawOrigin, Gateway) {
    let up = RawOrigin::start(after, answer).await;
    let gw = raw_gateway(up.addr);
    (up, gw)
}

/// A gateway with route `raw` on `/raw` to `up` and route `o` on `o_prefix` to `o`.
fn raw_and_origin(up: &RawOrigin, o: &Origin, o_prefix: &str) -> Gateway {
    let cfg = format!(
        "{}{}{}{}",
        raw_service("raw", up.addr),
        service("o", &[o], "round_robin"),
        route("raw", "/raw", "raw"),
        route("o", o_prefix, "o"),
    );
    Gateway::start(&cfg).unwrap()
}

/// A harness origin `o` behind a gateway whose one route `r` matches every path.
async fn origin_behind_gateway() -> (Origin, Gateway) {
    let o = Origin::start("o").await;
    let cfg = format!(
        "{}[[routes]]\nname = \"r\"\nbackends = [{{ name = \"o\", weight = 1 }}]\n",
        service("o", &[&o], "round_robin")
    );
    (o, Gateway::start(&cfg).unwrap())
}
