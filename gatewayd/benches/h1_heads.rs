//! The HTTP/1.1 engine's per-request head work: parsing the client's head, writing the upstream
//! head (policies off and on), parsing the upstream's response head. A regression here shows
//! before the system benchmark (`tests/bench/run.sh`) does.
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gatewayd::config::MAX_REQUEST_TARGET;
use gatewayd::proxy::bench::{parse_request, write_upstream_head, Additions, ResponseHead};
use http::HeaderValue;

/// What `wrk` sends.
const WRK: &[u8] = b"GET /api/ HTTP/1.1\r\nHost: 127.0.0.1:18090\r\n\r\n";

/// A browser-like request: 9 fields, one of them hop-by-hop.
const BROWSER: &[u8] = b"GET /api/users/42?expand=orders HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: application/json, text/plain, */*\r\n\
Accept-Language: en-GB,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://shop.example.com/account\r\n\
Cookie: session=7f3c2a9e1b; canary=1\r\n\
Connection: keep-alive\r\n\
X-Forwarded-For: 203.0.113.7\r\n\r\n";

/// nginx's answer in the bench scenario.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Tue, 24 Nov 2026 12:00:00 GMT\r\nContent-Type: text/plain\r\n\
Content-Length: 1024\r\nConnection: keep-alive\r\n\r\n";

fn bench(c: &mut Criterion) {
    let mut fields = Vec::new();
    for (name, raw) in [("wrk", WRK), ("browser", BROWSER)] {
        c.bench_function(&format!("h1/parse_request/{name}"), |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(black_box(raw));
                black_box(
                    parse_request(&mut buf, &mut fields, MAX_REQUEST_TARGET)
                        .unwrap()
                        .unwrap(),
                )
            })
        });
        let head = parse_request(&mut BytesMut::from(raw), &mut fields, MAX_REQUEST_TARGET)
            .unwrap()
            .unwrap();
        let target = head
            .req
            .uri()
            .path_and_query()
            .unwrap()
            .as_str()
            .to_string();
        let id = HeaderValue::from_static("5f0c6a1e9b7d4c2a8e3f1b0d7c6a5e4f");
        let lean = Additions {
            target: &target,
            forwarded_for: None,
            https: false,
            trusted: false,
            new_request_id: None,
            local: "127.0.0.1:80".parse().unwrap(),
            edits: None,
            trace: None,
        };
        let defaults = Additions {
            forwarded_for: Some("192.0.2.7".parse().unwrap()),
            new_request_id: Some(&id),
            ..lean
        };
        let mut out = Vec::with_capacity(1024);
        for (policies, add) in [("lean", &lean), ("defaults", &defaults)] {
            c.bench_function(&format!("h1/write_upstream_head/{name}/{policies}"), |b| {
                b.iter(|| {
                    write_upstream_head(&mut out, black_box(&head), &fields, add).unwrap();
                    black_box(out.len())
                })
            });
        }
    }
    let mut resp = ResponseHead::default();
    c.bench_function("h1/parse_response/nginx", |b| {
        b.iter(|| black_box(resp.parse(black_box(RESPONSE)).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
