//! W3C trace context and OTLP/HTTP span export, end to end: a client's `traceparent` through the
//! gateway to the upstream (HTTP/1.1 and HTTP/2, both sides), the spans a real OTLP decoder
//! receives (`tests/python/otlp_receiver.py`, OpenTelemetry's own protobuf bindings), the trace
//! id in the access log and in gateway-made error bodies, and a collector that is down.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use serde_json::Value;

use super::support::{client, service};

/// The spec's example: a sampled trace from a client span.
const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

fn client_traceparent() -> String {
    format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
}

/// The OTLP receiver: a Python process whose stdout lines (one JSON object per span) are kept.
struct Receiver {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = root.parent().unwrap().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} not found: run tests/run.sh (it installs opentelemetry-proto)",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(root.join("python/otlp_receiver.py"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(p) = v["listening"].as_u64() {
                    let _ = tx.send(p);
                    continue;
                }
                kept.lock().unwrap().push(v);
            }
        });
        let port = match rx.recv_timeout(meshgate_e2e::harness::patience()) {
            Ok(p) => u16::try_from(p).unwrap(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the OTLP receiver did not start");
            }
        };
        Self { child, port, lines }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    /// The span of trace `trace_id` whose `url.path` is `path`, once received.
    async fn span(&self, trace_id: &str, path: &str) -> Value {
        eventually(
            &format!("the span of {path} in trace {trace_id}"),
            || async {
                let lines = self.lines.lock().unwrap();
                assert!(
                    lines.iter().all(|l| l.get("error").is_none()),
                    "the receiver could not decode an export: {lines:?}"
                );
                lines
                    .iter()
                    .find(|s| s["trace_id"] == trace_id && s["attributes"]["url.path"] == path)
                    .cloned()
            },
        )
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[tracing]` exporting to `endpoint` every 50 ms, plus `extra` keys.
fn tracing_table(endpoint: &str, extra: &str) -> String {
    format!(
        "[tracing]\nsample_ratio = 1.0\notlp_endpoint = \"{endpoint}\"\nbatch_interval = \"50ms\"\n{extra}\n"
    )
}

/// Routes: `web` (`/`) to origin `o` over HTTP/1.1, `h2` (`/h2`) to it over h2c, and `dead`
/// (`/dead`) to two closed ports.
fn routes(o: &Origin, dead: [SocketAddr; 2]) -> String {
    format!(
        "{}[services.o2]\nendpoints = [\"{}\"]\nprotocol = \"h2c\"\n\n[services.dead]\nendpoints = [\"{}\", \"{}\"]\nbalance = \"round_robin\"\n\n\
         [[routes]]\nname = \"h2\"\npath_prefix = \"/h2\"\nbackends = [{{ name = \"o2\", weight = 1 }}]\n\n\
         [[routes]]\nname = \"dead\"\npath_prefix = \"/dead\"\nbackends = [{{ name = \"dead\", weight = 1 }}]\n\n\
         [[routes]]\nname = \"web\"\npath_prefix = \"/\"\nbackends = [{{ name = \"o\", weight = 1 }}]\n\n",
        service("o", &[o], "round_robin"),
        o.addr,
        dead[0],
        dead[1],
    )
}

/// Two loopback addresses nothing listens on.
fn closed_ports() -> [SocketAddr; 2] {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    [a.local_addr().unwrap(), b.local_addr().unwrap()]
}

/// Starts a gateway with `[log] access_log = true` and `body`.
fn start(body: &str) -> (tempfile::TempDir, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let head = meshgate_e2e::harness::gateway::preamble(2).replacen(
        "format = \"json\"\n",
        "format = \"json\"\naccess_log = true\n",
        1,
    );
    std::fs::write(dir.path().join("gatewayd.toml"), format!("{head}{body}")).unwrap();
    let gw = Gateway::start_in(dir.path()).unwrap();
    (dir, gw)
}

/// `traceparent` split into (trace id, parent id, flags).
fn parts(tp: &str) -> (String, String, String) {
    let p: Vec<&str> = tp.split('-').collect();
    assert_eq!(p.len(), 4, "{tp}");
    assert_eq!(p[0], "00", "{tp}");
    (p[1].into(), p[2].into(), p[3].into())
}

/// The headers the origin received, from its JSON answer.
async fn origin_headers(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["headers"].clone()
}

/// The access-log document of the request with `x-request-id: id`.
async fn access_line(gw: &Gateway, id: &str) -> Value {
    eventually(&format!("the access log line of {id}"), || async {
        gw.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["log.logger"] == "access" && v["http.request.id"] == id)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trace_continues_through_the_gateway_to_the_upstream_and_the_collector() {
    trace_init();
    let rx = Receiver::start();
    let o = Origin::start("o").await;
    let (_dir, gw) = start(&format!(
        "{}{}",
        tracing_table(&rx.endpoint(), "service_name = \"edge\""),
        routes(&o, closed_ports())
    ));
    let http = client();

    // HTTP/1.1 both ways: same trace, the gateway's span as the upstream's parent.
    let resp = http
        .get(gw.url("/a/b?c=d"))
        .header("traceparent", client_traceparent())
        .header("tracestate", "vendor=opaque")
        .header("x-request-id", "t-1")
        .send()
        .await
        .unwrap();
    let h = origin_headers(resp).await;
    let (trace, gw_span, flags) = parts(h["traceparent"].as_str().unwrap());
    assert_eq!(trace, CLIENT_TRACE);
    assert_ne!(gw_span, CLIENT_SPAN);
    assert_eq!(flags, "01");
    assert_eq!(
        h["tracestate"], "vendor=opaque",
        "a continued trace keeps its state"
    );
    let span = rx.span(CLIENT_TRACE, "/a/b").await;
    assert_eq!(span["span_id"], gw_span.as_str());
    assert_eq!(span["parent_span_id"], CLIENT_SPAN);
    assert_eq!(span["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(span["name"], "GET web");
    assert_eq!(span["resource"]["service.name"], "edge");
    assert_eq!(span["scope"], "meshgate");
    let a = &span["attributes"];
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["http.response.status_code"], 200);
    assert_eq!(a["url.scheme"], "http");
    assert_eq!(a["server.address"], "127.0.0.1");
    assert_eq!(a["client.address"], "127.0.0.1");
    assert_eq!(a["meshgate.route"], "web");
    assert_eq!(a["meshgate.backend"], "o");
    assert_eq!(a["meshgate.endpoint"], o.addr.to_string());
    assert_eq!(a["meshgate.retries"], 0);
    assert_eq!(span["status_code"], 0, "unset for a 200");
    let (start, end) = (
        span["start"].as_u64().unwrap(),
        span["end"].as_u64().unwrap(),
    );
    assert!(start > 0 && end >= start, "{span}");
    // The access log names the trace and the gateway's span.
    let log = access_line(&gw, "t-1").await;
    assert_eq!(log["trace.id"], CLIENT_TRACE);
    assert_eq!(log["span.id"], gw_span.as_str());

    // No traceparent: the gateway starts the trace, and its span is the root.
    let resp = http.get(gw.url("/fresh")).send().await.unwrap();
    let h = origin_headers(resp).await;
    let (trace, gw_span, flags) = parts(h["traceparent"].as_str().unwrap());
    assert_ne!(trace, CLIENT_TRACE);
    assert_eq!(flags, "01", "sample_ratio = 1");
    let span = rx.span(&trace, "/fresh").await;
    assert_eq!(span["span_id"], gw_span.as_str());
    assert_eq!(span["parent_span_id"], "", "a root span");

    // A malformed traceparent is replaced by a new trace, and its tracestate dropped.
    let resp = http
        .get(gw.url("/malformed"))
        .header(
            "traceparent",
            format!("00-{}-{CLIENT_SPAN}-01", CLIENT_TRACE.to_uppercase()),
        )
        .header("tracestate", "vendor=stale")
        .send()
        .await
        .unwrap();
    let h = origin_headers(resp).await;
    let (trace, _, _) = parts(h["traceparent"].as_str().unwrap());
    assert_ne!(trace.to_uppercase(), CLIENT_TRACE.to_uppercase());
    assert!(h.get("tracestate").is_none(), "{h}");
    assert_eq!(rx.span(&trace, "/malformed").await["parent_span_id"], "");

    // HTTP/2 both ways (h2c client, h2c upstream: the hyper path).
    let url = gw.url("/h2/x");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--http2-prior-knowledge", "-H"])
            .arg(format!("traceparent: {}", client_traceparent()))
            .arg(url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (trace, gw_span, _) = parts(v["headers"]["traceparent"].as_str().unwrap());
    assert_eq!(trace, CLIENT_TRACE);
    assert_ne!(gw_span, CLIENT_SPAN);
    let span = rx.span(CLIENT_TRACE, "/h2/x").await;
    assert_eq!(span["span_id"], gw_span.as_str());
    assert_eq!(span["parent_span_id"], CLIENT_SPAN);
    assert_eq!(span["attributes"]["meshgate.route"], "h2");

    // Gateway-made errors carry the trace id in their body, and their span says why.
    let resp = http
        .get(gw.url("/dead/x"))
        .header("traceparent", client_traceparent())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["trace_id"], CLIENT_TRACE);
    let span = rx.span(CLIENT_TRACE, "/dead/x").await;
    let a = &span["attributes"];
    assert_eq!(a["http.response.status_code"], 502);
    assert_eq!(a["error.type"], "upstream_connect_failed");
    assert_eq!(
        a["meshgate.retries"], 1,
        "the connect failure was retried once"
    );
    assert_eq!(span["status_code"], 2, "STATUS_CODE_ERROR");
    // Even an answer to a request the gateway could not read names a (new) trace.
    let bad = raw_request(gw.addr, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let body: Value = serde_json::from_str(bad.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["trace_id"].as_str().unwrap().len(), 32, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tracing_the_gateway_passes_trace_context_unchanged_and_makes_none() {
    trace_init();
    let o = Origin::start("o").await;
    let (_dir, gw) = start(&routes(&o, closed_ports()));
    let http = client();
    let resp = http
        .get(gw.url("/a"))
        .header("traceparent", client_traceparent())
        .header("tracestate", "vendor=opaque")
        .header("x-request-id", "off-1")
        .send()
        .await
        .unwrap();
    let h = origin_headers(resp).await;
    assert_eq!(h["traceparent"], client_traceparent().as_str());
    assert_eq!(h["tracestate"], "vendor=opaque");
    let resp = http.get(gw.url("/b")).send().await.unwrap();
    let h = origin_headers(resp).await;
    assert!(h.get("traceparent").is_none(), "{h}");
    let log = access_line(&gw, "off-1").await;
    assert!(log.get("trace.id").is_none(), "{log}");
    let resp = http.get(gw.url("/dead")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert!(body["trace_id"].is_null(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_neither_fails_nor_holds_requests() {
    trace_init();
    // Accepts connections and never answers: every export waits for its timeout (60 s), far
    // longer than any request below may take if the request path waited on the exporter.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    let accept = tokio::spawn(async move {
        while let Ok((s, _)) = hole.accept().await {
            keep.lock().unwrap().push(s);
        }
    });
    let o = Origin::start("o").await;
    let endpoint = format!("http://{hole_addr}/v1/traces");
    let extra = "batch_size = 4\nqueue_size = 8\nexport_timeout = \"60s\"";
    let (_dir, gw) = start(&format!(
        "{}{}",
        tracing_table(&endpoint, extra),
        routes(&o, closed_ports())
    ));
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for i in 0..200 {
        let r = http
            .get(gw.url(&format!("/r/{i}")))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} failed or was held: {e}"));
        assert_eq!(r.status(), 200);
    }
    // The queue is bounded: what did not fit was dropped and counted.
    let text = gw.admin_get_text(&http, "/metrics").await;
    let dropped = text
        .lines()
        .find(|l| l.starts_with("meshgate_trace_spans_dropped_total{reason=\"queue_full\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap();
    assert!(dropped >= 200 - 8 - 4 * 2, "dropped {dropped}:\n{text}");
    assert!(
        text.contains("meshgate_trace_spans_exported_total 0\n"),
        "{text}"
    );
    accept.abort();
}

/// Sends `raw` on a new connection and reads the answer until the gateway closes.
async fn raw_request(addr: SocketAddr, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(meshgate_e2e::harness::patience(), s.read_to_end(&mut out));
    read.await.unwrap().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}
