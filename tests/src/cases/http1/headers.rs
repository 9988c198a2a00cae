//! Response header hygiene: hop-by-hop fields, and every field `Connection` names, stay on the
//! upstream hop; end-to-end fields pass; the client's request id is the only one returned.

use meshgate_e2e::harness::trace_init;

use super::raw_behind_gateway;
use super::request::get;
use super::upstream::After;
use super::wire::Wire;
use crate::cases::support::client;

/// An upstream answer carrying every kind of hop-by-hop field next to end-to-end ones.
const HOP_BY_HOP_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Length: 2\r\n\
Connection: x-internal, X-Other\r\n\
Connection: x-third\r\n\
x-internal: secret\r\n\
x-other: 1\r\n\
x-third: 3\r\n\
Keep-Alive: timeout=5\r\n\
Proxy-Connection: keep-alive\r\n\
TE: trailers\r\n\
Trailer: x-sum\r\n\
Upgrade: h2c\r\n\
x-request-id: from-upstream\r\n\
x-end-to-end: yes\r\n\
Cache-Control: no-store\r\n\
\r\n\
ok";

/// What must not reach a raw client from [`HOP_BY_HOP_ANSWER`].
const NOT_FORWARDED: [&str; 9] = [
    "connection",
    "x-internal",
    "x-other",
    "x-third",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// What must not reach reqwest (whose own connection handling shows none of the others).
const NOT_FORWARDED_TO_REQWEST: [&str; 6] = [
    "x-internal",
    "x-other",
    "x-third",
    "keep-alive",
    "proxy-connection",
    "upgrade",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_fields_are_not_forwarded() {
    trace_init();
    let (_up, gw) = raw_behind_gateway(After::KeepAlive, |_| HOP_BY_HOP_ANSWER.to_vec()).await;
    let mut c = Wire::connect(gw.addr).await;
    for i in 0..2 {
        let r = c
            .ask(format!(
                "GET /h/{i} HTTP/1.1\r\nHost: app.test\r\nx-request-id: client-{i}\r\n\r\n"
            ))
            .await;
        assert_eq!((r.status, r.text()), (200, "ok".into()));
        for gone in NOT_FORWARDED {
            assert!(!r.head.has(gone), "{gone} forwarded:\n{}", r.head.text);
        }
        assert_eq!(r.header("x-end-to-end"), Some("yes"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("content-length"), Some("2"));
        // One request id: the one the gateway logs.
        let want = format!("client-{i}");
        let ids = r.head.values("x-request-id");
        assert_eq!(ids, [want.as_str()], "{}", r.head.text);
    }
    let r = client().get(gw.url("/h/r")).send().await.unwrap();
    let h = r.headers();
    for gone in NOT_FORWARDED_TO_REQWEST {
        assert!(!h.contains_key(gone), "{gone} forwarded to reqwest: {h:?}");
    }
    assert_eq!(h["x-end-to-end"], "yes");
}

/// RFC 9110 §7.6.1: every field named in `Connection` is removed, however many there are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_named_in_connection_is_removed() {
    trace_init();
    let (_up, gw) = raw_behind_gateway(After::KeepAlive, |_| {
        let names: Vec<String> = (1..=10).map(|i| format!("x-hop-{i}")).collect();
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, {}\r\n",
            names.join(", ")
        );
        for n in &names {
            out += &format!("{n}: secret\r\n");
        }
        out += "x-end-to-end: yes\r\n\r\nok";
        out.into_bytes()
    })
    .await;
    let r = Wire::connect(gw.addr).await.ask(get("/many")).await;
    assert_eq!((r.status, r.text()), (200, "ok".into()));
    assert_eq!(r.header("x-end-to-end"), Some("yes"));
    let leaked: Vec<&str> = r.head.names().filter(|n| n.starts_with("x-hop-")).collect();
    assert!(leaked.is_empty(), "forwarded: {leaked:?}\n{}", r.head.text);
}
