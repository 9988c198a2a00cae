//! CORS in a real browser: headless Chromium loads a page from one loopback origin whose script
//! calls the gateway on another. From the allowed origin the script reads both answers (a
//! credentialed GET that carries the page's cookie, and a PUT that needs a preflight); from a
//! refused origin both calls end in a `TypeError`, and the refused preflight never reached the
//! upstream (its request log has no OPTIONS and no PUT from that page).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{trace_init, Gateway};
use serde_json::{json, Value};

use super::support::client;

/// One request a [`Loopback`] server received: method, path and query, `Cookie`, body.
type Seen = (String, String, String, String);

/// A loopback HTTP/1.1 server that logs every request and answers as `answer` says.
struct Loopback {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Loopback {
    async fn start(answer: fn(&Seen) -> (&'static str, String)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let cookie = parts
                            .headers
                            .get("cookie")
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                            .unwrap_or_default();
                        let path = parts
                            .uri
                            .path_and_query()
                            .map_or("/".into(), |p| p.to_string());
                        let seen = (
                            parts.method.to_string(),
                            path,
                            cookie,
                            String::from_utf8_lossy(&body).into_owned(),
                        );
                        log.lock().unwrap().push(seen.clone());
                        let (content_type, text) = answer(&seen);
                        let mut r = Response::new(Full::new(Bytes::from(text)));
                        r.headers_mut()
                            .insert("content-type", content_type.parse().unwrap());
                        r.headers_mut()
                            .insert("x-served-by", "loopback".parse().unwrap());
                        *r.status_mut() = StatusCode::OK;
                        Ok::<_, Infallible>(r)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The page: sets a cookie, calls the gateway (`?gw=URL`) with a credentialed GET and a
/// JSON PUT (which needs a preflight), and posts what it could read, or the error's name, to
/// `/report` on its own origin.
const PAGE: &str = r#"<!doctype html><html><body><pre id="out">running</pre><script>
document.cookie = "session=s3cret; path=/; SameSite=Lax";
const gw = new URLSearchParams(location.search).get("gw");
async function call(url, init) {
  try {
    const r = await fetch(url, init);
    return { status: r.status, body: await r.json(), exposed: r.headers.get("x-served-by") };
  } catch (e) {
    return { error: e.name };
  }
}
(async () => {
  const out = {
    get: await call(gw + "/api/read", { credentials: "include" }),
    put: await call(gw + "/api/write", {
      method: "PUT", headers: { "content-type": "application/json" }, body: "{\"n\":1}",
    }),
  };
  document.getElementById("out").textContent = JSON.stringify(out);
  await fetch("/report", { method: "POST", body: JSON.stringify(out) });
})();
</script></body></html>"#;

fn page(s: &Seen) -> (&'static str, String) {
    match s.1.as_str() {
        "/report" => ("text/plain", String::new()),
        _ => ("text/html", PAGE.to_string()),
    }
}

fn upstream(s: &Seen) -> (&'static str, String) {
    let body = json!({"method": s.0, "path": s.1, "cookie": s.2, "body": s.3});
    ("application/json", body.to_string())
}

/// Runs headless Chromium on `url` until `page` received a report (bounded by patience), then
/// kills its whole process group (Chromium forks) by the group's id. The report, as JSON.
async fn browse(page: &Loopback, url: &str) -> Value {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-extensions",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()));
    // Chromium refuses to run its sandbox as root (CI runs as root); a user keeps it.
    if std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    {
        cmd.arg("--no-sandbox");
    }
    let child = std::os::unix::process::CommandExt::process_group(&mut cmd, 0)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let _browser = Browser(child);
    let report = eventually("the page to report", || async {
        page.seen()
            .into_iter()
            .find(|s| s.1 == "/report")
            .map(|s| s.3)
    })
    .await;
    serde_json::from_str(&report).unwrap_or_else(|e| panic!("report {report}: {e}"))
}

/// A running Chromium: its process group (it forks renderers and helpers) is killed by the
/// group's id when dropped, whether the test passed or panicked.
struct Browser(std::process::Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--"])
            .arg(format!("-{}", self.0.id()))
            .status();
        // The group leader by its PID too, so the wait below cannot hang.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The browser: Debian's `chromium` (tests/run.sh installs it).
fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("chromium is not installed: tests/run.sh installs it")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_reads_answers_only_from_an_allowed_origin() {
    trace_init();
    let up = Loopback::start(upstream).await;
    let allowed = Loopback::start(page).await;
    let refused = Loopback::start(page).await;
    let gw = Gateway::start(&format!(
        "[services.up]\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"api\"\npath_prefix = \"/api/\"\npolicies = [\"web\"]\nbackends = [{{ name = \"up\", weight = 1 }}]\n\n[policies.web]\nkind = \"cors\"\nallow_origins = [\"{}\"]\nallow_methods = [\"GET\", \"PUT\"]\nallow_headers = [\"content-type\"]\nallow_credentials = true\nexpose_headers = [\"x-served-by\"]\nmax_age = \"1m\"\n",
        up.addr,
        allowed.origin(),
    ))
    .unwrap();
    let gw_url = gw.url("");

    let ok = browse(
        &allowed,
        &format!("{}/page.html?gw={gw_url}", allowed.origin()),
    )
    .await;
    assert_eq!(ok["get"]["status"], 200, "{ok}");
    assert_eq!(ok["get"]["body"]["method"], "GET", "{ok}");
    assert_eq!(
        ok["get"]["body"]["cookie"], "session=s3cret",
        "the credentialed GET carried the page's cookie: {ok}"
    );
    assert!(
        ok["get"]["exposed"] == "loopback",
        "an exposed header is readable: {ok}"
    );
    assert_eq!(ok["put"]["status"], 200, "{ok}");
    assert_eq!(ok["put"]["body"]["method"], "PUT", "{ok}");
    assert_eq!(ok["put"]["body"]["body"], "{\"n\":1}", "{ok}");

    let no = browse(
        &refused,
        &format!("{}/page.html?gw={gw_url}", refused.origin()),
    )
    .await;
    assert_eq!(no["get"], json!({"error": "TypeError"}), "{no}");
    assert_eq!(no["put"], json!({"error": "TypeError"}), "{no}");

    // The upstream saw the allowed page's GET and PUT and the refused page's GET (a simple
    // request is sent; the browser only hides its answer), never a preflight, never the refused
    // page's PUT.
    let methods: Vec<String> = up.seen().into_iter().map(|s| s.0).collect();
    assert_eq!(methods, ["GET", "PUT", "GET"], "{:?}", up.seen());
    // Both preflights reached the gateway: one answered, one refused there.
    let m = gw.admin_get_text(&client(), "/metrics").await;
    for line in [
        "meshgate_policy_decisions_total{policy=\"web\",outcome=\"preflight_allowed\"} 1",
        "meshgate_policy_decisions_total{policy=\"web\",outcome=\"preflight_refused\"} 1",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} in:\n{m}");
    }
}
