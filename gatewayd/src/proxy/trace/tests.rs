#![allow(clippy::unwrap_used)]
//! Parsing and starting trace contexts, sampling, and the span a request exports.

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::*;

const SPEC: &[u8] = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[test]
fn the_spec_example_parses() {
    let p = parse(SPEC).unwrap();
    assert_eq!(p.trace_id[0], 0x0a);
    assert_eq!(p.trace_id[15], 0x9c);
    assert_eq!(p.span_id, [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]);
    assert!(p.sampled);
    let unsampled = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    assert!(!parse(unsampled).unwrap().sampled);
}

#[test]
fn malformed_values_are_refused() {
    let bad: &[&[u8]] = &[
        b"",
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
        // upper-case hex
        b"00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
        // all-zero ids
        b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
        b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        // version ff, and version 00 with more after it
        b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what",
        // separators
        b"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        b"00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
        b"0x-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        // a later version must still separate what follows with '-'
        b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
    ];
    for v in bad {
        assert_eq!(parse(v), None, "{}", String::from_utf8_lossy(v));
    }
}

#[test]
fn a_later_version_is_read_as_00_where_it_agrees() {
    let v = b"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future-stuff";
    assert!(parse(v).unwrap().sampled);
    let exact = b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    assert!(!parse(exact).unwrap().sampled);
}

#[test]
fn several_traceparents_are_invalid() {
    let two = [SPEC, SPEC];
    assert_eq!(Incoming::from_values(two.into_iter()), Incoming::Invalid);
    assert_eq!(Incoming::from_values(std::iter::empty()), Incoming::Absent);
    assert!(matches!(
        Incoming::from_values(std::iter::once(SPEC)),
        Incoming::Valid(_)
    ));
}

#[test]
fn a_valid_parent_is_continued_with_a_new_span_and_its_sampled_flag() {
    let mut rng = SmallRng::seed_from_u64(7);
    let never = Sampler::new(0.0);
    let p = parse(SPEC).unwrap();
    let t = TraceContext::start(Incoming::Valid(p), &never, &mut rng);
    assert_eq!(t.trace_id, p.trace_id);
    assert_eq!(t.parent, Some(p.span_id));
    assert_ne!(t.span_id, p.span_id);
    assert!(t.sampled, "the parent's flag wins over the ratio");
    assert!(!t.drop_tracestate);
    let header = std::str::from_utf8(t.traceparent()).unwrap();
    assert_eq!(
        header,
        format!("00-0af7651916cd43dd8448eb211c80319c-{}-01", t.span_id_hex())
    );
    // What the gateway sends parses as what it means.
    let sent = parse(t.traceparent()).unwrap();
    assert_eq!((sent.trace_id, sent.span_id), (t.trace_id, t.span_id));
}

#[test]
fn absent_or_invalid_starts_a_new_trace_and_drops_tracestate() {
    let mut rng = SmallRng::seed_from_u64(7);
    let always = Sampler::new(1.0);
    for incoming in [Incoming::Absent, Incoming::Invalid] {
        let t = TraceContext::start(incoming, &always, &mut rng);
        assert_eq!(t.parent, None);
        assert!(t.sampled);
        assert!(t.drop_tracestate);
        assert_ne!(t.trace_id, [0; 16]);
        assert_eq!(t.trace_id_hex().len(), 32);
        assert_eq!(&t.traceparent()[53..], b"01");
        assert!(parse(t.traceparent()).is_some());
    }
    let never = Sampler::new(0.0);
    let t = TraceContext::start(Incoming::Absent, &never, &mut rng);
    assert!(!t.sampled);
    assert_eq!(&t.traceparent()[53..], b"00");
}

#[test]
fn hosts_lose_their_port() {
    assert_eq!(strip_port(b"a.example:8080"), b"a.example");
    assert_eq!(strip_port(b"a.example"), b"a.example");
    assert_eq!(strip_port(b"[::1]:80"), b"::1");
    assert_eq!(strip_port(b"[::1]"), b"::1");
}

#[test]
fn a_gateway_error_span_is_an_error_only_for_5xx() {
    let mut rng = SmallRng::seed_from_u64(1);
    let ctx = TraceContext::start(Incoming::Absent, &Sampler::new(1.0), &mut rng);
    let facts = |error| SpanFacts {
        start_unix_nanos: 1_000,
        method: Method::GET,
        path: "/x".into(),
        server_address: None,
        client: "127.0.0.1:5".parse().unwrap(),
        https: false,
        attempts: 3,
        error,
    };
    let reached = |status| Reached {
        route: Some("web"),
        backend: None,
        endpoint: None,
        status,
        latency: std::time::Duration::from_nanos(500),
    };
    let s = facts(Some("upstream_timeout")).into_record(&ctx, &reached(504));
    assert_eq!(s.error.as_deref(), Some("upstream_timeout"));
    assert_eq!((s.name.as_str(), s.end_unix_nanos), ("GET web", 1_500));
    assert!(s.attributes.contains(&("meshgate.retries", Value::Int(2))));
    let s = facts(Some("rate_limited")).into_record(&ctx, &reached(429));
    assert_eq!(
        s.error, None,
        "a 4xx is the client's: the span's status stays unset"
    );
    assert!(s
        .attributes
        .contains(&("error.type", Value::Str("rate_limited".into()))));
    let s = facts(None).into_record(&ctx, &reached(200));
    assert!(s.error.is_none() && !s.attributes.iter().any(|(k, _)| *k == "error.type"));
}

#[test]
fn the_ratio_samples_about_that_share_of_new_traces() {
    let mut rng = SmallRng::seed_from_u64(3);
    let s = Sampler::new(0.25);
    let n = 10_000;
    let sampled = (0..n)
        .filter(|_| TraceContext::start(Incoming::Absent, &s, &mut rng).sampled)
        .count();
    assert!((2_200..=2_800).contains(&sampled), "{sampled} of {n}");
}
