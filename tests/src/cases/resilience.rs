//! The fault-injection suite, continued: upstreams answering 5xx half the time, bodies kept for
//! a retry (or not), bodies that stall mid-relay, a slow endpoint among fast ones, and more
//! clients than the gateway admits. Each load prints what it sent, what succeeded, failed and
//! was retried, and asserts the losses it allows.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use meshgate_e2e::harness::gateway::preamble;
use meshgate_e2e::harness::{patience, trace_init, Gateway, Origin, OriginKind};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::client_faults::{endpoints, route, sample};
use super::support::client;

/// A raw HTTP/1.1 keep-alive upstream: reads each request (its `Content-Length` body too) and
/// answers 503 when `fails(n)` for the n-th request it serves (from 0), 200 otherwise; both
/// with a short body naming it.
struct Flaky {
    addr: std::net::SocketAddr,
    served: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Flaky {
    async fn start(fails: fn(u64) -> bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let count = served.clone();
        let task = tokio::spawn(async move {
            while let Ok((io, _)) = listener.accept().await {
                tokio::spawn(serve_flaky(io, count.clone(), fails));
            }
        });
        Self { addr, served, task }
    }

    fn served(&self) -> u64 {
        self.served.load(Relaxed)
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_flaky(mut io: TcpStream, served: Arc<AtomicU64>, fails: fn(u64) -> bool) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + length {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + length);
        let n = served.fetch_add(1, Relaxed);
        let answer: &[u8] = if fails(n) {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\n\r\nflaky"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-origin: flaky\r\n\r\nfine!"
        };
        if io.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// What a bounded load saw.
#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn report(&self, scenario: &str, retried: f64) -> (u64, u64, u64) {
        let (sent, ok, failed) = (
            self.sent.load(Relaxed),
            self.ok.load(Relaxed),
            self.failed.load(Relaxed),
        );
        println!("{scenario}: sent {sent}, succeeded {ok}, failed {failed}, retried {retried}");
        (sent, ok, failed)
    }
}

async fn metric(gw: &Gateway, series: &str) -> f64 {
    sample(&gw.admin_get_text(&client(), "/metrics").await, series)
}

async fn retried(gw: &Gateway) -> f64 {
    let m = gw.admin_get_text(&client(), "/metrics").await;
    ["connect", "try_timeout", "reset", "status"]
        .iter()
        .map(|r| sample(&m, &format!("meshgate_retries_total{{reason=\"{r}\"}}")))
        .sum()
}

/// The p-th percentile (0–100) of `v`, sorted in place.
fn percentile(v: &mut [Duration], p: usize) -> Duration {
    v.sort();
    v.get((v.len() * p / 100).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// One endpoint of three answers 503 half the time (runs of three): every GET still succeeds
/// (retried on another endpoint), the retries are counted by reason and stay within the
/// route's budget, and the endpoint is ejected by `consecutive_gateway_errors`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answering_503_half_the_time_is_ejected_within_the_retry_budget() {
    trace_init();
    let flaky = Flaky::start(|n| n % 6 >= 3).await;
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let cfg = format!(
        "[services.svc]\nendpoints = [\"{}\", \"{}\", \"{}\"]\nbalance = \"round_robin\"\n\n[services.svc.outlier]\nconsecutive_gateway_errors = 3\n\n{}",
        flaky.addr,
        a.addr,
        b.addr,
        route("r", "/", "svc", "retries = 2\n"),
    );
    let gw = Gateway::start(&cfg).unwrap();
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (t, url) = (tally.clone(), gw.url("/"));
            tokio::spawn(async move {
                let http = client();
                for _ in 0..100 {
                    t.sent.fetch_add(1, Relaxed);
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 => t.ok.fetch_add(1, Relaxed),
                        _ => t.failed.fetch_add(1, Relaxed),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64().ceil();
    let by_status = metric(&gw, "meshgate_retries_total{reason=\"status\"}").await;
    let (sent, ok, failed) = tally.report("503 half the time", retried(&gw).await);
    assert_eq!((ok, failed), (400, 0), "no client-visible error");
    assert!(by_status >= 3.0, "the 503s were retried: {by_status}");
    // The budget: 20 % of the requests plus 10 per second over a two-second window.
    let budget = sent as f64 * 0.2 + 10.0 * (seconds + 2.0);
    assert!(by_status <= budget, "{by_status} retries > budget {budget}");
    assert_eq!(
        metric(&gw, "meshgate_retries_refused_total").await,
        0.0,
        "this load stays within its budget"
    );
    let eps = endpoints(&gw, &client(), "svc").await;
    let ep = eps
        .iter()
        .find(|e| e["addr"] == flaky.addr.to_string())
        .unwrap();
    assert_eq!(ep["ejected"], true, "{eps:?}");
    assert!(flaky.served() >= 6, "the flaky endpoint served its runs");
    assert!(
        gw.logged("consecutive_gateway_errors"),
        "the ejection names its rule"
    );
}

/// The same endpoint, never ejected, on a route with a small budget (10 % of the requests, no
/// floor): retries stop at the budget, every refused one is counted and its 503 relayed, so the
/// retries cannot multiply the endpoint's errors into an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_of_503s_stop_at_the_budget_and_the_rest_is_counted() {
    trace_init();
    let flaky = Flaky::start(|n| n % 2 == 1).await;
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let cfg = format!(
        "[services.svc]\nendpoints = [\"{}\", \"{}\", \"{}\"]\nbalance = \"round_robin\"\n\n{}",
        flaky.addr,
        a.addr,
        b.addr,
        route(
            "r",
            "/",
            "svc",
            "retries = 1\nretry_budget_percent = 10\nretry_budget_min_per_second = 0\n"
        ),
    );
    let gw = Gateway::start(&cfg).unwrap();
    let tally = Arc::new(Tally::default());
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (t, url) = (tally.clone(), gw.url("/"));
            tokio::spawn(async move {
                let http = client();
                for _ in 0..150 {
                    t.sent.fetch_add(1, Relaxed);
                    match http.get(&url).send().await.map(|r| r.status().as_u16()) {
                        Ok(200) => t.ok.fetch_add(1, Relaxed),
                        Ok(503) => t.failed.fetch_add(1, Relaxed),
                        other => panic!("neither 200 nor the upstream's 503: {other:?}"),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let by_status = metric(&gw, "meshgate_retries_total{reason=\"status\"}").await;
    let refused = metric(&gw, "meshgate_retries_refused_total").await;
    let (sent, ok, failed) = tally.report("503 half the time, small budget", by_status);
    let errors = flaky.served() / 2;
    println!(
        "small budget: the endpoint answered {errors} 503s; {by_status} retried, {refused} refused"
    );
    assert_eq!(ok + failed, sent);
    assert_eq!(
        by_status + refused,
        errors as f64,
        "each 503 retried or refused"
    );
    assert_eq!(
        failed as f64, refused,
        "a refused retry relays the 503; nothing else fails"
    );
    assert!(refused >= 1.0, "the budget ran out");
    // Two seconds of window: at most 10 % of twice the requests, whatever the timing.
    assert!(
        by_status <= sent as f64 * 0.2,
        "{by_status} retries for {sent} requests"
    );
}

/// The upstream's own 503 reaches the client unchanged when no retry can be made: no other
/// endpoint, or no retry budget left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_relayed_as_it_is_when_no_retry_is_left() {
    trace_init();
    let flaky = Flaky::start(|_| true).await;
    let cfg = format!(
        "[services.svc]\nendpoints = [\"{}\"]\n\n{}",
        flaky.addr,
        route("r", "/", "svc", "retries = 2\n"),
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    for _ in 0..3 {
        let r = http.get(gw.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert!(
            r.headers().get("x-meshgate-error").is_none(),
            "not the gateway's"
        );
        assert_eq!(r.text().await.unwrap(), "flaky");
    }
    assert_eq!(flaky.served(), 3, "one attempt each: nowhere else to go");
    assert_eq!(
        metric(&gw, "meshgate_retries_total{reason=\"status\"}").await,
        0.0
    );
}

/// PUT is idempotent: a body within `retry_body_max` is kept and sent again, whole, to the
/// other endpoint after a 503; a larger one is never sent twice (the 503 is relayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_body_is_replayed_after_a_503_and_a_large_one_never_sent_twice() {
    trace_init();
    let flaky = Flaky::start(|_| true).await;
    let live = Origin::start("live").await;
    let cfg = format!(
        "[services.svc]\nendpoints = [\"{}\", \"{}\"]\nbalance = \"round_robin\"\n\n{}",
        flaky.addr,
        live.addr,
        route("r", "/", "svc", "retries = 1\nretry_body_max = \"16KiB\"\n"),
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    let small = vec![b's'; 10_000];
    for i in 0..4 {
        let r = http
            .put(gw.url("/upload"))
            .body(small.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "small PUT {i}");
        assert_eq!(r.text().await.unwrap(), "10000", "the whole body, once");
    }
    let replayed = metric(&gw, "meshgate_retries_total{reason=\"status\"}").await;
    assert!(
        replayed >= 1.0,
        "round robin sent some to the flaky endpoint"
    );
    assert_eq!(replayed, flaky.served() as f64, "every 503 was retried");
    let before = (flaky.served(), live.hits());
    let large = vec![b'l'; 100_000];
    let mut relayed = 0;
    for _ in 0..4 {
        let r = http
            .put(gw.url("/upload"))
            .body(large.clone())
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => assert_eq!(r.text().await.unwrap(), "100000"),
            503 => {
                assert_eq!(r.text().await.unwrap(), "flaky");
                relayed += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert!(relayed >= 1, "some large PUTs met the flaky endpoint");
    let sent = (flaky.served() - before.0) + (live.hits() - before.1);
    assert_eq!(sent, 4, "each large PUT was sent once");
    assert_eq!(
        metric(&gw, "meshgate_retries_total{reason=\"status\"}").await,
        replayed
    );
}

/// An upstream that stops sending mid-body: after `body_idle_timeout` the client sees the body
/// cut short and the connection closed, or its HTTP/2 stream reset (never a clean short
/// answer), and the cut is counted;
/// a body that trickles slower than the route timeout but never pauses that long gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_cut_after_the_body_idle_timeout() {
    trace_init();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = tokio::spawn(async move {
        while let Ok((mut io, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                if got.starts_with(b"GET /stall") {
                    let _ = io
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                        .await;
                    // Holds the connection open, silent.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                } else {
                    let _ = io
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n")
                        .await;
                    for b in b"steady" {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let _ = io.write_all(&[*b]).await;
                    }
                }
            });
        }
    });
    let cfg = format!(
        "[services.svc]\nendpoints = [\"{addr}\"]\n\n{}",
        route(
            "r",
            "/",
            "svc",
            "timeout = \"1s\"\nbody_idle_timeout = \"1s\"\n"
        ),
    );
    let gw = Gateway::start(&cfg).unwrap();
    let started = Instant::now();
    let mut io = TcpStream::connect(gw.addr).await.unwrap();
    io.write_all(b"GET /stall HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(patience(), io.read_to_end(&mut got))
        .await
        .expect("the gateway closed the connection")
        .unwrap();
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("\r\n\r\n0123456789"), "cut short: {text}");
    assert!(
        waited >= Duration::from_secs(1),
        "not before the timeout: {waited:?}"
    );
    assert_eq!(metric(&gw, "meshgate_body_idle_timeouts_total").await, 1.0);
    // HTTP/2: the stream is reset, not ended cleanly.
    let (status, ended) = super::faults::h2_body_end(&gw, "/stall").await;
    assert_eq!(status, 200);
    assert!(ended.is_err(), "HTTP/2 stream reset: {ended:?}");
    assert_eq!(metric(&gw, "meshgate_body_idle_timeouts_total").await, 2.0);
    // 1.8 s of body (longer than the route's 1 s timeout), never 1 s without a byte.
    let r = client().get(gw.url("/steady")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "steady");
    assert_eq!(metric(&gw, "meshgate_body_idle_timeouts_total").await, 2.0);
    upstream.abort();
}

/// One endpoint of three answers ten times slower: P2C (peak EWMA) sends it little, and with
/// `max_in_flight_per_endpoint` no request to a fast endpoint waits behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_gets_little_traffic_and_leaves_the_others_p99_alone() {
    trace_init();
    let slow = Origin::start_kind("slow", OriginKind::Slow(Duration::from_millis(300))).await;
    let fast = [
        Origin::start_kind("fast1", OriginKind::Slow(Duration::from_millis(30))).await,
        Origin::start_kind("fast2", OriginKind::Slow(Duration::from_millis(30))).await,
    ];
    let cfg = format!(
        "[services.svc]\nendpoints = [\"{}\", \"{}\", \"{}\"]\nbalance = \"p2c_ewma\"\nmax_in_flight_per_endpoint = 4\n\n{}",
        slow.addr,
        fast[0].addr,
        fast[1].addr,
        route("r", "/", "svc", "retries = 0\n"),
    );
    let gw = Gateway::start(&cfg).unwrap();
    let tally = Arc::new(Tally::default());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (t, url) = (tally.clone(), gw.url("/"));
            tokio::spawn(async move {
                let http = client();
                let mut fast_latencies = Vec::new();
                for _ in 0..40 {
                    t.sent.fetch_add(1, Relaxed);
                    let started = Instant::now();
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            let origin = r.headers()["x-origin"].to_str().unwrap().to_string();
                            let _ = r.bytes().await;
                            if origin != "slow" {
                                fast_latencies.push(started.elapsed());
                            }
                            t.ok.fetch_add(1, Relaxed);
                        }
                        _ => {
                            t.failed.fetch_add(1, Relaxed);
                        }
                    }
                }
                fast_latencies
            })
        })
        .collect();
    let mut fast_latencies = Vec::new();
    for t in tasks {
        fast_latencies.extend(t.await.unwrap());
    }
    let (sent, ok, failed) = tally.report("slow endpoint", retried(&gw).await);
    assert_eq!((ok, failed), (sent, 0));
    let slow_share = slow.hits() as f64 / sent as f64;
    let p99 = percentile(&mut fast_latencies, 99);
    println!(
        "slow endpoint: {} of {sent} requests ({:.1} %), fast endpoints' p99 {p99:?}",
        slow.hits(),
        slow_share * 100.0
    );
    assert!(slow_share < 0.10, "P2C sends the slow endpoint little");
    assert!(
        p99 < Duration::from_millis(300),
        "no fast request waited as long as a slow one: {p99:?}"
    );
}

/// More concurrent clients than `gateway.max_in_flight` admits: the excess gets fast 503s with
/// `Retry-After` (never a timeout), admitted requests keep a bounded p99, and gatewayd's memory
/// stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_sheds_fast_503s_and_keeps_admitted_latency_and_memory_bounded() {
    trace_init();
    let origin = Origin::start_kind("o", OriginKind::Slow(Duration::from_millis(50))).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{}[services.svc]\nendpoints = [\"{}\"]\n\n{}",
        preamble(2).replace("[gateway]\n", "[gateway]\nmax_in_flight = 8\n"),
        origin.addr,
        route("r", "/", "svc", ""),
    );
    std::fs::write(dir.path().join("gatewayd.toml"), cfg).unwrap();
    let gw = Gateway::start_in(dir.path()).unwrap();
    let rss = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let rss_before = rss(gw.pid());
    #[derive(Default)]
    struct Seen {
        admitted: Vec<Duration>,
        shed: Vec<Duration>,
        other: Vec<String>,
    }
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let url = gw.url("/");
            tokio::spawn(async move {
                let http = client();
                let mut seen = Seen::default();
                for _ in 0..20 {
                    let started = Instant::now();
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            seen.admitted.push(started.elapsed());
                        }
                        Ok(r) if r.status() == 503 => {
                            assert_eq!(r.headers()["retry-after"], "1");
                            assert_eq!(r.headers()["x-meshgate-error"], "overloaded");
                            let _ = r.bytes().await;
                            seen.shed.push(started.elapsed());
                        }
                        Ok(r) => seen.other.push(r.status().to_string()),
                        Err(e) => seen.other.push(e.to_string()),
                    }
                }
                seen
            })
        })
        .collect();
    let mut all = Seen::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.admitted.extend(s.admitted);
        all.shed.extend(s.shed);
        all.other.extend(s.other);
    }
    let rss_after = rss(gw.pid());
    let (admitted, shed) = (all.admitted.len(), all.shed.len());
    println!(
        "overload: sent {}, succeeded {admitted}, shed {shed}, failed {}, retried {}; gatewayd RSS {rss_before} KiB -> {rss_after} KiB",
        64 * 20,
        all.other.len(),
        retried(&gw).await
    );
    assert!(all.other.is_empty(), "only 200s and 503s: {:?}", all.other);
    assert_eq!(admitted + shed, 64 * 20);
    assert!(admitted >= 8 && shed >= 64, "both admitted and shed");
    assert_eq!(
        metric(&gw, "meshgate_load_shed_total").await,
        shed as f64,
        "every shed request counted"
    );
    let shed_p99 = percentile(&mut all.shed, 99);
    let admitted_p99 = percentile(&mut all.admitted, 99);
    println!("overload: shed p99 {shed_p99:?}, admitted p99 {admitted_p99:?}");
    assert!(shed_p99 < Duration::from_secs(1), "fast 503s: {shed_p99:?}");
    assert!(
        admitted_p99 < Duration::from_secs(2),
        "admitted requests never queue long: {admitted_p99:?}"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory bounded: {rss_before} KiB -> {rss_after} KiB"
    );
}

/// Degrade in place: three of four endpoints answer nothing but 503 and are ejected. With
/// `panic_threshold = 50` the one survivor (25 % usable) is below the threshold, so the balancer
/// ignores the ejections and spreads the load over all four again; the same service without a
/// panic threshold sends everything to the survivor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_panic_threshold_every_endpoint_gets_traffic_again() {
    trace_init();
    let http = client();
    for (threshold, panics) in [(50, true), (0, false)] {
        let bad = [
            Flaky::start(|_| true).await,
            Flaky::start(|_| true).await,
            Flaky::start(|_| true).await,
        ];
        let good = Origin::start("good").await;
        let cfg = format!(
            "[services.svc]\nendpoints = [\"{}\", \"{}\", \"{}\", \"{}\"]\nbalance = \"round_robin\"\n\n[services.svc.outlier]\nconsecutive_gateway_errors = 2\nbase_ejection = \"60s\"\nmax_ejected_percent = 100\npanic_threshold = {threshold}\n\n{}",
            bad[0].addr,
            bad[1].addr,
            bad[2].addr,
            good.addr,
            route("r", "/", "svc", "retries = 0\n"),
        );
        let gw = Gateway::start(&cfg).unwrap();
        let bad_served = || bad.iter().map(Flaky::served).sum::<u64>();
        // Until each bad endpoint has answered its two 503s in a row and is ejected.
        let mut sent = 0;
        while bad.iter().any(|b| b.served() < 2) {
            assert!(sent < 200, "the bad endpoints never got their requests");
            let _ = http.get(gw.url("/")).send().await.unwrap();
            sent += 1;
        }
        let eps = endpoints(&gw, &http, "svc").await;
        let ejected = eps.iter().filter(|e| e["ejected"] == true).count();
        assert_eq!(ejected, 3, "{eps:?}");
        let (before, good_before) = (bad_served(), good.hits());
        let mut failed = 0;
        for _ in 0..40 {
            let r = http.get(gw.url("/")).send().await.unwrap();
            if r.status() != 200 {
                failed += 1;
            }
        }
        let (to_bad, to_good) = (bad_served() - before, good.hits() - good_before);
        println!(
            "panic_threshold {threshold}: 40 sent after the ejections, {to_bad} to the ejected endpoints, {to_good} to the survivor, {failed} failed"
        );
        assert_eq!(to_bad + to_good, 40);
        if panics {
            // Round robin over all four again: about three in four to the ejected ones.
            assert!(
                to_bad >= 20,
                "in panic the ejected endpoints get traffic: {to_bad}"
            );
            assert_eq!(failed, to_bad, "their 503s are relayed (retries = 0)");
        } else {
            assert_eq!(
                (to_bad, failed),
                (0, 0),
                "no panic: the survivor takes it all"
            );
        }
        drop(gw);
    }
}
