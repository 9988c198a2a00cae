#![allow(clippy::unwrap_used)]

use super::super::forward::{write_upstream_head, Additions};
use super::super::response::ResponseHead;
use super::*;

/// The default request-target limit (`listeners[].max_request_target`).
const TARGET: usize = crate::config::MAX_REQUEST_TARGET;

fn req(raw: &[u8]) -> Result<Option<RequestHead>, ProxyError> {
    parse_request(&mut BytesMut::from(raw), &mut Vec::new(), TARGET)
}

#[test]
fn parses_a_request_and_keeps_what_follows() {
    let mut buf = BytesMut::from(
        &b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-A: 1\r\nx-a: 2\r\n\r\nabcGET"
            [..],
    );
    let mut fields = Vec::new();
    let h = parse_request(&mut buf, &mut fields, TARGET)
        .unwrap()
        .unwrap();
    assert_eq!(h.req.method(), Method::POST);
    assert_eq!(h.req.uri(), "/a?b=1");
    assert_eq!(fields.len(), 4);
    assert_eq!(h.framing, Framing::Length(3));
    assert!(h.keep_alive);
    assert_eq!(&buf[..], b"abcGET");
}

#[test]
fn incomplete_heads_wait_and_huge_ones_fail() {
    assert!(req(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
    big.resize(MAX_HEAD + 10, b'a');
    assert!(matches!(req(&big), Err(ProxyError::HeadTooLarge(_))));
}

#[test]
fn a_target_over_the_limit_is_414_and_one_at_it_passes() {
    let at = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(99));
    let over = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100));
    let parse =
        |raw: &str| parse_request(&mut BytesMut::from(raw.as_bytes()), &mut Vec::new(), 100);
    assert_eq!(parse(&at).unwrap().unwrap().req.uri().path().len(), 100);
    let e = parse(&over).unwrap_err();
    assert!(matches!(e, ProxyError::UriTooLong(100)), "{e}");
    assert_eq!(e.status(), http::StatusCode::URI_TOO_LONG);
}

#[test]
fn keep_alive_rules() {
    let h = req(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert!(!h.keep_alive);
    let h = req(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(h.keep_alive);
    let h = req(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(!h.keep_alive);
}

#[test]
fn smuggling_shapes_are_refused() {
    for bad in [
        &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
    ] {
        assert!(req(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    let h = req(b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.framing, Framing::Length(3));
}

#[test]
fn expect_continue_and_upgrade_are_seen() {
    let h = req(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(h.expect_continue);
    let h = req(b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(h.upgrade);
    assert!(req(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").is_err());
}

#[test]
fn response_framing() {
    let mut r = ResponseHead::default();
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello";
    assert!(r.parse(raw).unwrap());
    assert_eq!(r.len, raw.len() - 5);
    assert_eq!(r.framing(false), Framing::Length(5));
    assert_eq!(r.framing(true), Framing::None);
    assert!(!r.close);
    assert!(r
        .parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n")
        .unwrap());
    assert_eq!(r.framing(false), Framing::Chunked);
    assert!(r.parse(b"HTTP/1.0 200 OK\r\n\r\n").unwrap());
    assert_eq!(r.framing(false), Framing::Close);
    assert!(r.close);
    assert!(r.parse(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap());
    assert_eq!(r.framing(false), Framing::None);
    assert!(!r.parse(b"HTTP/1.1 200 OK\r\n").unwrap());
    assert!(r
        .parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        .is_err());
}

/// Review: RFC 9110 §5.6.1 empty list elements are ignored, as `parse_request` does with
/// `tokens`; the response side takes the text after the last comma, so a trailing comma or
/// an empty second field turns a chunked body into a close-delimited one.
#[test]
fn response_te_with_empty_list_elements_is_chunked() {
    let mut r = ResponseHead::default();
    assert!(r
        .parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n")
        .unwrap());
    assert_eq!(r.framing(false), Framing::Chunked, "trailing comma");
    assert!(r
        .parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n")
        .unwrap());
    assert_eq!(r.framing(false), Framing::Chunked, "empty second field");
}

/// Review: httparse returns a `'static` `""` (not a slice of the buffer) as the reason of
/// a status line without one (`HTTP/1.1 200`) or with obs-text in it, so the offset
/// arithmetic in `parse` (`s.as_ptr() - base`) underflows: a panic with overflow checks,
/// a garbage offset (and a slice panic in `response_head`) without.
#[test]
fn status_line_without_a_reason_phrase() {
    for raw in [
        &b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"[..],
        b"HTTP/1.1 204 \x80\r\n\r\n",
    ] {
        // On the heap, as the upstream connection's buffer is.
        let buf = BytesMut::from(raw);
        let mut r = ResponseHead::default();
        assert!(r.parse(&buf).unwrap());
        let (o, l) = (r.reason.0 as usize, r.reason.1 as usize);
        assert!(
            o + l <= r.len,
            "reason at {o}+{l} outside a {}-byte head",
            r.len
        );
    }
}

fn upstream(raw: &[u8], add: &Additions<'_>) -> String {
    let mut fields = Vec::new();
    let h = parse_request(&mut BytesMut::from(raw), &mut fields, TARGET)
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    write_upstream_head(&mut out, &h, &fields, add).unwrap();
    String::from_utf8(out).unwrap()
}

fn plain(target: &str) -> Additions<'_> {
    Additions {
        target,
        forwarded_for: None,
        https: false,
        trusted: false,
        new_request_id: None,
        local: "127.0.0.1:80".parse().unwrap(),
        edits: None,
        trace: None,
    }
}

#[test]
fn upstream_heads_keep_end_to_end_lines_and_drop_hop_by_hop() {
    let cases: [(&[u8], &str); 5] = [
        // `Connection` cannot make framing fields or `TE: trailers` hop-by-hop.
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length, te, x-a\r\nContent-Length: 2\r\nTE: trailers\r\nX-A: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nTE: trailers\r\n\r\n",
        ),
        // An absolute-form target's authority replaces `Host`.
        (
            b"GET http://b.example/p?q HTTP/1.1\r\nHost: a\r\nX-B: 1\r\n\r\n",
            "GET /p?q HTTP/1.1\r\nX-B: 1\r\nhost: b.example\r\n\r\n",
        ),
        (
            b"POST /x?y HTTP/1.1\r\nHost: a\r\nX-Keep: 1\r\nConnection: keep-alive, X-Secret\r\nx-secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
            "POST /x?y HTTP/1.1\r\nHost: a\r\nX-Keep: 1\r\nTE: trailers\r\ntransfer-encoding: chunked\r\n\r\n",
        ),
        (
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        ),
        // Runs of lines are copied as received; a bare-LF line is rewritten with CRLF.
        (
            b"GET / HTTP/1.1\r\nHost: a  \r\nX-A: 1\nConnection: x\r\nX-B:2\r\nX-C: 3\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a  \r\nX-A: 1\r\nX-B:2\r\nX-C: 3\r\n\r\n",
        ),
    ];
    for (raw, want) in cases {
        let line = std::str::from_utf8(raw).unwrap();
        let target: Uri = line.split(' ').nth(1).unwrap().parse().unwrap();
        let target = target.path_and_query().unwrap().as_str();
        assert_eq!(upstream(raw, &plain(target)), want);
    }
}

#[test]
fn an_http10_request_without_host_names_the_address_it_was_sent_to() {
    let add = plain("/");
    assert_eq!(
        upstream(b"GET / HTTP/1.0\r\n\r\n", &add),
        "GET / HTTP/1.1\r\nhost: 127.0.0.1:80\r\n\r\n"
    );
    let fwd = Additions {
        forwarded_for: Some("10.1.2.3".parse().unwrap()),
        ..add
    };
    assert!(upstream(b"GET / HTTP/1.0\r\n\r\n", &fwd)
        .ends_with("x-forwarded-host: 127.0.0.1:80\r\n\r\n"));
    // HTTP/1.1 requires it (RFC 9112 §3.2).
    let mut fields = Vec::new();
    let h = parse_request(
        &mut BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]),
        &mut fields,
        TARGET,
    )
    .unwrap()
    .unwrap();
    let e = write_upstream_head(&mut Vec::new(), &h, &fields, &add).unwrap_err();
    assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
}

#[test]
fn adds_forwarding_fields_and_a_new_request_id() {
    let id = HeaderValue::from_static("abc");
    let mut add = Additions {
        target: "/new",
        forwarded_for: Some("10.1.2.3".parse().unwrap()),
        https: true,
        trusted: true,
        new_request_id: Some(&id),
        local: "127.0.0.1:80".parse().unwrap(),
        edits: None,
        trace: None,
    };
    let raw = b"GET http://h.example/old HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: ftp\r\nX-Forwarded-Host: front.example\r\nX-Request-Id: \r\n\r\n";
    // From a trusted proxy: its X-Forwarded-For is appended to, its -Proto and -Host kept.
    assert_eq!(
        upstream(raw, &add),
        "GET /new HTTP/1.1\r\nX-Forwarded-Proto: ftp\r\nX-Forwarded-Host: front.example\r\nhost: h.example\r\nx-forwarded-for: 1.1.1.1, 10.1.2.3\r\nx-request-id: abc\r\n\r\n"
    );
    // From anyone else they are the gateway's own.
    add.trusted = false;
    assert_eq!(
        upstream(raw, &add),
        "GET /new HTTP/1.1\r\nhost: h.example\r\nx-forwarded-for: 10.1.2.3\r\nx-forwarded-proto: https\r\nx-forwarded-host: h.example\r\nx-request-id: abc\r\n\r\n"
    );
    // With forwarding headers off, an untrusted client's are still removed.
    add.forwarded_for = None;
    assert_eq!(
        upstream(raw, &add),
        "GET /new HTTP/1.1\r\nhost: h.example\r\nx-request-id: abc\r\n\r\n"
    );
}

#[test]
fn a_request_without_host_is_refused() {
    let mut fields = Vec::new();
    let h = parse_request(
        &mut BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]),
        &mut fields,
        TARGET,
    )
    .unwrap()
    .unwrap();
    assert!(write_upstream_head(&mut Vec::new(), &h, &fields, &plain("/")).is_err());
}

#[test]
fn header_map_is_empty_until_filled() {
    let mut fields = Vec::new();
    let mut h = parse_request(
        &mut BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n"[..]),
        &mut fields,
        TARGET,
    )
    .unwrap()
    .unwrap();
    assert!(h.req.headers().is_empty());
    h.insert_host().unwrap();
    assert_eq!(h.req.headers().len(), 1);
    h.fill_headers(&fields).unwrap();
    assert_eq!(h.req.headers().get_all("x-a").iter().count(), 2);
    assert_eq!(h.req.headers()["host"], "a");
}

mod props {
    use proptest::prelude::*;

    use super::*;

    const NAMES: [&str; 16] = [
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
        "TE",
        "Trailer",
        "Keep-Alive",
        "Proxy-Connection",
        "Expect",
        "X-Request-Id",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "X-Other",
        "content-length",
    ];

    fn field() -> impl Strategy<Value = (String, String)> {
        (
            prop::sample::select(&NAMES[..]).prop_map(str::to_string),
            "[ -~]{0,24}",
        )
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_request(&mut BytesMut::from(&raw[..]), &mut Vec::new(), TARGET);
            let _ = ResponseHead::default().parse(&raw);
        }

        #[test]
        fn parsed_requests_forward_without_hop_by_hop(
            method in prop::sample::select(&["GET", "POST", "HEAD", "PUT"][..]),
            fields in proptest::collection::vec(field(), 0..12),
            forwarded in any::<bool>(),
        ) {
            let mut raw = format!("{method} /p?q=1 HTTP/1.1\r\n");
            for (n, v) in &fields {
                raw.push_str(&format!("{n}: {v}\r\n"));
            }
            raw.push_str("\r\n");
            let mut parsed = Vec::new();
            let Ok(Some(head)) = parse_request(&mut BytesMut::from(raw.as_bytes()), &mut parsed, TARGET)
            else {
                return Ok(());
            };
            let id = HeaderValue::from_static("id");
            let add = Additions {
                target: "/p?q=1",
                forwarded_for: forwarded.then(|| "10.0.0.1".parse().unwrap()),
                https: false,
                trusted: false,
                new_request_id: Some(&id),
                local: "127.0.0.1:80".parse().unwrap(),
                edits: None,
                trace: None,
            };
            let mut out = Vec::new();
            if write_upstream_head(&mut out, &head, &parsed, &add).is_err() {
                return Ok(());
            }
            let text = String::from_utf8(out).unwrap();
            prop_assert!(text.ends_with("\r\n\r\n"));
            let lines: Vec<&str> = text.trim_end().split("\r\n").skip(1).collect();
            let count = |name: &str| {
                lines
                    .iter()
                    .filter(|l| l.split(':').next().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                    .count()
            };
            for hop in ["keep-alive", "proxy-connection", "trailer"] {
                prop_assert_eq!(count(hop), 0, "{}", text);
            }
            prop_assert_eq!(count("host"), 1, "{}", text);
            prop_assert_eq!(count("x-request-id"), 1, "{}", text);
            prop_assert!(count("content-length") <= 1 || head.framing != Framing::Chunked);
            prop_assert!(count("connection") <= usize::from(head.upgrade), "{}", text);
        }
    }
}

#[test]
fn policy_edits_remove_client_fields_in_any_spelling_and_add_their_own() {
    let edits = crate::policy::UpstreamEdits {
        remove: vec![
            http::HeaderName::from_static("x-user"),
            http::header::AUTHORIZATION,
        ],
        add: vec![(
            http::HeaderName::from_static("x-user"),
            HeaderValue::from_static("alice"),
        )],
    };
    let add = Additions {
        edits: Some(&edits),
        ..plain("/")
    };
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-User: eve\r\nx_USER: mallory\r\nAuthorization: Bearer t\r\nX-Users: kept\r\n\r\n";
    assert_eq!(
        upstream(raw, &add),
        "GET / HTTP/1.1\r\nHost: a\r\nX-Users: kept\r\nx-user: alice\r\n\r\n"
    );
}

/// The word-at-a-time comparison agrees with `eq_ignore_ascii_case` for every known name with
/// any one byte replaced by any value, in any case mix, and at every other length.
#[test]
fn folded_comparison_agrees_with_the_plain_one_byte_by_byte() {
    const NAMES: [&[u8]; 13] = [
        b"host",
        b"expect",
        b"trailer",
        b"upgrade",
        b"connection",
        b"keep-alive",
        b"x-request-id",
        b"content-length",
        b"x-forwarded-for",
        b"proxy-connection",
        b"x-forwarded-host",
        b"transfer-encoding",
        b"x-forwarded-proto",
    ];
    for lower in NAMES {
        let f = Folded::new(lower);
        let upper = lower.to_ascii_uppercase();
        assert!(folded_eq(lower, &f) && folded_eq(&upper, &f));
        for at in 0..lower.len() {
            for b in 0..=255u8 {
                for base in [lower, upper.as_slice()] {
                    let mut name = base.to_vec();
                    name[at] = b;
                    assert_eq!(
                        folded_eq(&name, &f),
                        name.eq_ignore_ascii_case(lower),
                        "{:?} against {:?}",
                        String::from_utf8_lossy(&name),
                        String::from_utf8_lossy(lower)
                    );
                }
            }
        }
        assert!(!folded_eq(&lower[1..], &f));
        let mut longer = lower.to_vec();
        longer.push(b'x');
        assert!(!folded_eq(&longer, &f));
    }
}

#[test]
fn a_trace_context_replaces_the_client_traceparent_and_drops_a_stale_tracestate() {
    use crate::proxy::trace::{parse, Incoming, Sampler, TraceContext};
    use rand::SeedableRng as _;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nTraceParent: {theirs}\r\ntracestate: v=1\r\nX-A: 1\r\n\r\n"
    );
    // Without a trace context both pass as received.
    assert_eq!(upstream(raw.as_bytes(), &plain("/")), raw);
    // Continued: ours replaces theirs, their state stays.
    let incoming = Incoming::Valid(parse(theirs.as_bytes()).unwrap());
    let t = TraceContext::start(incoming, &Sampler::new(1.0), &mut rng);
    let add = Additions {
        trace: Some(&t),
        ..plain("/")
    };
    let ours = std::str::from_utf8(t.traceparent()).unwrap();
    assert_eq!(
        upstream(raw.as_bytes(), &add),
        format!(
            "GET / HTTP/1.1\r\nHost: a\r\ntracestate: v=1\r\nX-A: 1\r\ntraceparent: {ours}\r\n\r\n"
        )
    );
    // Restarted: their state goes too.
    let t = TraceContext::start(Incoming::Invalid, &Sampler::new(1.0), &mut rng);
    let add = Additions {
        trace: Some(&t),
        ..plain("/")
    };
    let ours = std::str::from_utf8(t.traceparent()).unwrap();
    assert_eq!(
        upstream(raw.as_bytes(), &add),
        format!("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\ntraceparent: {ours}\r\n\r\n")
    );
}
