//! A flood of 200,000 distinct rate-limit keys through a real gatewayd, sent by a hyper client
//! over a few keep-alive connections: the key table stays within `max_keys` (the keys past it
//! share one overflow bucket), the gateway's memory grows by what the table holds and no more,
//! a key that was there before keeps its own bucket, and the gateway keeps answering. A second
//! flood into a table large enough for every key measures what a key costs in resident memory.
//!
//! The flooded route runs the rate limit and then a jwt policy that the flood's requests (no
//! token) fail: every key is counted by the limit, and no request goes upstream. Limits are per
//! hour, so no bucket refills while the test runs: every count is exact.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};

use super::support::{client, service};

/// Distinct keys in a flood.
const FLOOD: usize = 200_000;
/// Keep-alive connections the flood is spread over.
const CONNECTIONS: usize = 4;
/// The bounded table's size.
const SMALL_TABLE: usize = 1_000;
/// Requests a key may send an hour, all at once.
const BURST: usize = 5;
/// What docs/configuration.md (`max_keys`) promises a key costs at most, in bytes.
const DOCUMENTED_BYTES_PER_KEY: u64 = 64;
/// What docs/configuration.md allows a flood besides its keys: buffers of its connections and
/// what the allocator keeps (measured: 1.2–1.5 MB for this flood). A table that did not hold
/// its bound would take about 8 MB for the flood's 200,000 keys.
const DOCUMENTED_FLOOD_OVERHEAD: u64 = 4 << 20;

/// `/flood`: the limit, then a jwt policy the flood fails (401); `/open`: the same limit, then
/// the upstream; `/plain`: no policy.
fn config(o: &Origin, jwks: &Path, max_keys: usize) -> String {
    format!(
        "{}[[routes]]\nname = \"flood\"\npath_prefix = \"/flood\"\npolicies = [\"per-key\", \"token\"]\nbackends = [{{ name = \"o\", weight = 1 }}]\n\n[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\npolicies = [\"per-key\"]\nbackends = [{{ name = \"o\", weight = 1 }}]\n\n[[routes]]\nname = \"plain\"\npath_prefix = \"/plain\"\nbackends = [{{ name = \"o\", weight = 1 }}]\n\n[policies.per-key]\nkind = \"rate_limit\"\nrate = \"{BURST}/h\"\nkey = \"header:x-key\"\nmax_keys = {max_keys}\n\n[policies.token]\nkind = \"jwt\"\njwks_file = \"{}\"\n",
        service("o", &[o], "round_robin"),
        jwks.display()
    )
}

/// A key set for the jwt policy (an HMAC secret; the flood sends no token at all).
fn jwks(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("jwks.json");
    std::fs::write(
        &p,
        r#"{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}"#,
    )
    .unwrap();
    p
}

/// Resident memory of a process now (VmRSS), in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kib * 1024
}

/// One value of `/metrics`.
async fn metric(gw: &Gateway, http: &reqwest::Client, series: &str) -> u64 {
    let m = gw.admin_get_text(http, "/metrics").await;
    m.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in:\n{m}"))
}

/// GET `path` with `x-key: k<i>` for each `i` of `keys`, one after another on one keep-alive
/// HTTP/1.1 connection; the count of each status.
async fn send_keys(
    gw: std::net::SocketAddr,
    path: &'static str,
    keys: std::ops::Range<usize>,
) -> BTreeMap<u16, usize> {
    let io = TokioIo::new(tokio::net::TcpStream::connect(gw).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut seen = BTreeMap::new();
    let host = gw.to_string();
    for i in keys {
        let req = http::Request::get(path)
            .header("host", &host)
            .header("x-key", format!("k{i}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        resp.into_body().collect().await.unwrap();
        *seen.entry(status).or_insert(0) += 1;
    }
    drop(sender);
    let _ = conn.await;
    seen
}

/// Keys `0..FLOOD` spread over [`CONNECTIONS`] connections at once; the count of each status.
async fn flood(gw: &Gateway) -> BTreeMap<u16, usize> {
    let per = FLOOD / CONNECTIONS;
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| tokio::spawn(send_keys(gw.addr, "/flood", c * per..(c + 1) * per)))
        .collect();
    let mut total = BTreeMap::new();
    for t in tasks {
        for (status, n) in t.await.unwrap() {
            *total.entry(status).or_insert(0) += n;
        }
    }
    total
}

/// One request of `key` to `/open`: status and the `RateLimit` field.
async fn open(http: &reqwest::Client, gw: &Gateway, key: &str) -> (u16, String) {
    let r = http
        .get(gw.url("/open"))
        .header("x-key", key)
        .send()
        .await
        .unwrap();
    let now = r.headers()["ratelimit"].to_str().unwrap().to_string();
    (r.status().as_u16(), now)
}

/// Every connection and worker structure the flood uses, made before memory is measured: the
/// same connections' worth of requests (one key, limited after its burst).
async fn warm_up(gw: &Gateway) {
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(send_keys(gw.addr, "/plain", 0..200)))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().get(&200), Some(&200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_200000_keys_stays_within_max_keys_and_the_gateway_keeps_serving() {
    trace_init();
    let tmp = tempfile::tempdir().unwrap();
    let o = Origin::start("o").await;
    let gw = Gateway::start(&config(&o, &jwks(tmp.path()), SMALL_TABLE)).unwrap();
    let http = client();
    // A key that is there before the flood: one of its five requests spent.
    assert_eq!(
        open(&http, &gw, "regular").await,
        (200, format!("\"per-key\";r={};t=720", BURST - 1))
    );
    warm_up(&gw).await;
    let before = rss_bytes(gw.pid());

    let statuses = flood(&gw).await;
    // The first 999 new keys fill the table (with "regular", 1,000): each passes the limit and
    // meets the jwt policy's 401. Every later key finds the table full and shares the overflow
    // bucket: five pass, the rest get 429.
    let admitted = SMALL_TABLE - 1 + BURST;
    let want = BTreeMap::from([(401, admitted), (429, FLOOD - admitted)]);
    assert_eq!(statuses, want);
    assert_eq!(
        metric(&gw, &http, "meshgate_ratelimit_keys{policy=\"per-key\"}").await,
        SMALL_TABLE as u64,
        "the table holds max_keys keys and no more"
    );
    let growth = rss_bytes(gw.pid()).saturating_sub(before);
    let bound = SMALL_TABLE as u64 * DOCUMENTED_BYTES_PER_KEY + DOCUMENTED_FLOOD_OVERHEAD;
    eprintln!(
        "{FLOOD} keys into a table of {SMALL_TABLE}: resident memory grew {growth} bytes (bound {bound})"
    );
    assert!(
        growth <= bound,
        "memory grew {growth} bytes: more than {SMALL_TABLE} keys' worth and the overhead ({bound})"
    );

    // The key that was there keeps its own bucket: its four requests left, then 429.
    for left in (0..BURST - 1).rev() {
        let (status, now) = open(&http, &gw, "regular").await;
        assert_eq!(status, 200);
        assert!(now.starts_with(&format!("\"per-key\";r={left};")), "{now}");
    }
    assert_eq!(open(&http, &gw, "regular").await.0, 429);
    // The gateway answers: ready, and a route without the policy serves.
    let ready = http.get(gw.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let plain = http.get(gw.url("/plain")).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(
        o.hits(),
        (BURST + 1 + CONNECTIONS * 200) as u64,
        "only the regular key's, the warm-up's and /plain's requests went upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_key_costs_at_most_the_documented_bytes() {
    trace_init();
    let tmp = tempfile::tempdir().unwrap();
    let o = Origin::start("o").await;
    let gw = Gateway::start(&config(&o, &jwks(tmp.path()), 10 * FLOOD)).unwrap();
    let http = client();
    warm_up(&gw).await;
    let before = rss_bytes(gw.pid());
    let statuses = flood(&gw).await;
    assert_eq!(statuses, BTreeMap::from([(401, FLOOD)]), "every key passes");
    let keys = metric(&gw, &http, "meshgate_ratelimit_keys{policy=\"per-key\"}").await;
    assert_eq!(keys, FLOOD as u64);
    let growth = rss_bytes(gw.pid()).saturating_sub(before);
    let per_key = growth / keys;
    eprintln!("{keys} rate-limit keys: resident memory grew {growth} bytes, {per_key} bytes a key");
    assert!(
        per_key <= DOCUMENTED_BYTES_PER_KEY,
        "a key costs {per_key} bytes; docs/configuration.md says at most {DOCUMENTED_BYTES_PER_KEY}"
    );
    assert_eq!(
        o.hits(),
        (CONNECTIONS * 200) as u64,
        "no flood request went upstream"
    );
}
