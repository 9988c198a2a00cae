//! Targets (in-process devconsul, plus a real agent when `CONSUL_HTTP_ADDR` is set) and helpers.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use discovery::consul::ConsulConfig;
use discovery::devconsul::{DevConsul, DevConsulBuilder, DevConsulHandle, RunningDevConsul};
use discovery::ConsulClient;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

/// Generous bound on anything that should happen "soon" (loaded 2-core CI machines).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// One server the suite runs against.
pub struct Target {
    pub name: String,
    pub address: Uri,
    pub token: Option<String>,
    pub dev: Option<RunningDevConsul>,
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Raw {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn index(&self) -> u64 {
        self.header("x-consul-index")
            .unwrap_or_else(|| panic!("no X-Consul-Index on {} {}", self.status, self.text()))
            .parse()
            .unwrap_or_else(|e| panic!("bad X-Consul-Index: {e}"))
    }
}

impl Target {
    /// A client with test-friendly pacing (short backoff, fast token bucket).
    pub fn client(&self) -> ConsulClient {
        self.client_with(|_| {})
    }

    pub fn client_with(&self, tweak: impl FnOnce(&mut ConsulConfig)) -> ConsulClient {
        let mut config = ConsulConfig::new(self.address.clone());
        config.token = self.token.clone();
        config.min_interval = Duration::from_millis(10);
        config.backoff =
            discovery::Backoff::try_new(Duration::from_millis(50), Duration::from_millis(500), 0.2)
                .unwrap_or_else(|e| panic!("{e}"));
        config.rate_limited_floor = Duration::from_millis(300);
        config.wait = Duration::from_secs(5);
        tweak(&mut config);
        ConsulClient::new(config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The devconsul hooks, `None` against a real agent.
    pub fn hooks(&self) -> Option<DevConsulHandle> {
        self.dev.as_ref().map(RunningDevConsul::handle)
    }

    pub fn is_dev(&self) -> bool {
        self.dev.is_some()
    }

    /// Sends one request on a fresh connection (with the target's token, if any).
    pub async fn raw(&self, method: Method, path_and_query: &str, body: &[u8]) -> Raw {
        self.raw_with(method, path_and_query, body, &[]).await
    }

    pub async fn raw_with(
        &self,
        method: Method,
        path_and_query: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Raw {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let base = self.address.to_string();
        let uri = format!("{}{}", base.trim_end_matches('/'), path_and_query);
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(token) = &self.token {
            req = req.header("X-Consul-Token", token);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap_or_else(|e| panic!("{e}"));
        let resp = within(client.request(req))
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"));
        let (parts, body) = resp.into_parts();
        let body = within(body.collect())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .to_bytes();
        Raw {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// devconsul always; the real agent too when `CONSUL_HTTP_ADDR` is set.
pub async fn targets() -> Vec<Target> {
    let mut out = vec![dev_target(DevConsul::builder()).await];
    match std::env::var("CONSUL_HTTP_ADDR") {
        Ok(addr) if !addr.is_empty() => {
            let address = ConsulConfig::parse_address(&addr).unwrap_or_else(|e| panic!("{e}"));
            out.push(Target {
                name: format!("consul at {addr}"),
                address,
                token: std::env::var("CONSUL_HTTP_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty()),
                dev: None,
            });
        }
        _ => eprintln!("CONSUL_HTTP_ADDR not set: conformance suite runs against devconsul only"),
    }
    out
}

/// An in-process devconsul on 127.0.0.1:0.
pub async fn dev_target(builder: DevConsulBuilder) -> Target {
    let dev = builder
        .start("127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Target {
        name: format!("devconsul at {}", dev.addr()),
        address: dev.url().parse().unwrap_or_else(|e| panic!("{e}")),
        token: None,
        dev: Some(dev),
    }
}

/// A name unique to this test run (real agents keep state between runs).
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!(
        "{prefix}-{}-{n}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Awaits `fut`, failing the test after [`PATIENCE`].
pub async fn within<F: Future>(fut: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {PATIENCE:?}"),
    }
}

/// Waits until the watched value satisfies `pred`, failing after [`PATIENCE`].
pub async fn wait_for<T: Clone>(
    rx: &mut watch::Receiver<T>,
    what: &str,
    pred: impl FnMut(&T) -> bool,
) -> T {
    match tokio::time::timeout(PATIENCE, rx.wait_for(pred)).await {
        Ok(Ok(v)) => v.clone(),
        Ok(Err(_)) => panic!("{what}: watcher ended"),
        Err(_) => panic!("{what}: timed out after {PATIENCE:?}"),
    }
}
