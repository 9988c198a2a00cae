//! Request-smuggling shapes and oversized heads: refused with one response and a close, before
//! anything reaches the origin; a head just under the limit is still served.

use meshgate_e2e::harness::trace_init;

use super::origin_behind_gateway;
use super::request::get;
use super::wire::{lossy, send_and_read_to_close, Wire};

/// (what, request bytes, status, error code) for every refused shape, each followed by a
/// request that must never be answered.
fn refused_shapes() -> Vec<(&'static str, String, u16, &'static str)> {
    let smuggled = get("/smuggled");
    let post = "POST / HTTP/1.1\r\nHost: app.test\r\n";
    let mut big = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    big += &smuggled;
    let many: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    vec![
        (
            "CL + TE",
            format!("{post}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
            400,
            "bad_request",
        ),
        (
            "TE + CL",
            format!("{post}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{smuggled}"),
            400,
            "bad_request",
        ),
        (
            "two lengths",
            format!("{post}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!{smuggled}"),
            400,
            "bad_request",
        ),
        (
            "a list of two lengths",
            format!("{post}Content-Length: 5, 6\r\n\r\nhello!{smuggled}"),
            400,
            "bad_request",
        ),
        (
            "gzip, chunked",
            format!("{post}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{smuggled}"),
            501,
            "not_implemented",
        ),
        (
            "gzip and chunked on two lines",
            format!("{post}Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
            501,
            "not_implemented",
        ),
        (
            "chunked in HTTP/1.0",
            format!("POST / HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
            400,
            "bad_request",
        ),
        ("a head over 64 KiB", big, 431, "head_too_large"),
        (
            "150 header fields",
            format!("GET / HTTP/1.1\r\nHost: app.test\r\n{many}\r\n{smuggled}"),
            431,
            "head_too_large",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_are_refused_before_the_origin() {
    trace_init();
    let (o, gw) = origin_behind_gateway().await;
    for (what, raw, status, code) in refused_shapes() {
        let out = lossy(&send_and_read_to_close(gw.addr, raw.into_bytes()).await);
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: got {out:?}"
        );
        assert!(out.contains(code), "{what}: got {out:?}");
        assert!(out.contains("connection: close"), "{what}: got {out:?}");
        assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{what}: got {out:?}");
    }
    assert_eq!(o.connections(), 0, "nothing reached the origin");
    assert_eq!(o.hits(), 0);
    // A head just under the limit is served.
    let mut c = Wire::connect(gw.addr).await;
    let value = "b".repeat(60 * 1024);
    let r = c
        .ask(format!(
            "GET /near HTTP/1.1\r\nHost: app.test\r\nX-Big: {value}\r\n\r\n"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.head.text);
    assert_eq!(
        r.json()["headers"]["x-big"].as_str().map(str::len),
        Some(value.len())
    );
    assert_eq!(o.hits(), 1);
}
