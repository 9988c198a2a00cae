//! `AdminClient`: one async fn per admin API endpoint of one gateway, returning
//! `gatewayd::admin::model` types. Every call has a connect timeout and an overall timeout so an
//! unreachable gateway costs seconds, never a hang.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gatewayd::admin::model::{
    ApiError, ConfigStatus, Event, FlipRequest, Readiness, RouteDetail, RouteInfo, Stats,
    UpstreamInfo, WeightsChanged, WeightsUpdate,
};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ClientError;

mod sse;

pub use sse::SseParser;

/// Default admin URL when neither `--admin` nor `MESHGATE_ADMIN` is given.
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:9901";

/// Connect timeout of every call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Overall timeout of every non-streaming call.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Client of one gateway's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: Url,
    label: String,
    token: Option<String>,
    http: reqwest::Client,
    stream_http: reqwest::Client,
}

/// A live `GET /v1/events` stream.
#[derive(Debug)]
pub struct EventSource {
    url: String,
    response: reqwest::Response,
    parser: SseParser,
    ready: std::collections::VecDeque<Event>,
}

// === impl AdminClient ===

impl AdminClient {
    /// A client for the admin API at `base` (e.g. `http://127.0.0.1:9901`), sending
    /// `Authorization: Bearer <token>` when a token is given. Fails only on an invalid URL.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let bad = |reason: String| ClientError::BadUrl {
            url: base.to_string(),
            reason,
        };
        let base_url = Url::parse(base).map_err(|e| bad(e.to_string()))?;
        if base_url.cannot_be_a_base() || !matches!(base_url.scheme(), "http" | "https") {
            return Err(bad("expected http:// or https://".into()));
        }
        let build = |timeout: Option<Duration>| {
            let b = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
            let b = match timeout {
                Some(t) => b.timeout(t),
                None => b,
            };
            b.build().map_err(|e| bad(e.to_string()))
        };
        Ok(Self {
            label: base.trim_end_matches('/').to_string(),
            base: base_url,
            token: token
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
            http: build(Some(REQUEST_TIMEOUT))?,
            stream_http: build(None)?,
        })
    }

    /// The admin URL as given (without a trailing slash); used as the gateway's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `GET /healthz`: `Ok` when the gateway answers 2xx.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        self.text(Method::GET, &["healthz"]).await.map(|_| ())
    }

    /// `GET /readyz`. A 503 still carries a [`Readiness`] body, which is returned as is.
    pub async fn readyz(&self) -> Result<Readiness, ClientError> {
        let resp = self
            .send(Method::GET, &["readyz"], None::<&()>, &[])
            .await?;
        let resp = if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            resp
        } else {
            self.check(resp).await?
        };
        self.decode(resp).await
    }

    /// `GET /metrics`: Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        self.text(Method::GET, &["metrics"]).await
    }

    /// `GET /v1/routes`.
    pub async fn routes(&self) -> Result<Vec<RouteInfo>, ClientError> {
        self.json(Method::GET, &["v1", "routes"], None::<&()>).await
    }

    /// `GET /v1/routes/{name}`; 404 for an unknown route.
    pub async fn route(&self, name: &str) -> Result<RouteDetail, ClientError> {
        self.json(Method::GET, &["v1", "routes", name], None::<&()>)
            .await
    }

    /// `PUT /v1/routes/{name}/weights`; 409 when `expected_revision` is stale.
    pub async fn put_weights(
        &self,
        name: &str,
        update: &WeightsUpdate,
    ) -> Result<WeightsChanged, ClientError> {
        self.json(
            Method::PUT,
            &["v1", "routes", name, "weights"],
            Some(update),
        )
        .await
    }

    /// `DELETE /v1/routes/{name}/weights`: back to the config file's weights.
    pub async fn delete_weights(&self, name: &str) -> Result<WeightsChanged, ClientError> {
        self.json(
            Method::DELETE,
            &["v1", "routes", name, "weights"],
            None::<&()>,
        )
        .await
    }

    /// `POST /v1/routes/{name}/flip`: swaps the weights of a two-backend route.
    pub async fn flip(&self, name: &str, req: &FlipRequest) -> Result<WeightsChanged, ClientError> {
        self.json(Method::POST, &["v1", "routes", name, "flip"], Some(req))
            .await
    }

    /// `GET /v1/upstreams`.
    pub async fn upstreams(&self) -> Result<Vec<UpstreamInfo>, ClientError> {
        self.json(Method::GET, &["v1", "upstreams"], None::<&()>)
            .await
    }

    /// `GET /v1/stats`, with per-second samples when `history` is true.
    pub async fn stats(&self, history: bool) -> Result<Stats, ClientError> {
        let query: &[(&str, &str)] = if history { &[("history", "true")] } else { &[] };
        let resp = self
            .send(Method::GET, &["v1", "stats"], None::<&()>, query)
            .await?;
        let resp = self.check(resp).await?;
        self.decode(resp).await
    }

    /// `POST /v1/reload`.
    pub async fn reload(&self) -> Result<ConfigStatus, ClientError> {
        self.json(Method::POST, &["v1", "reload"], None::<&()>)
            .await
    }

    /// `GET /v1/config`.
    pub async fn config(&self) -> Result<ConfigStatus, ClientError> {
        self.json(Method::GET, &["v1", "config"], None::<&()>).await
    }

    /// Opens `GET /v1/events` (server-sent events), resuming after `last_event_id` when given.
    /// The returned stream has no overall timeout: the caller decides how long silence may last
    /// (the gateway sends `: ping` comments to keep it alive).
    pub async fn events(&self, last_event_id: Option<u64>) -> Result<EventSource, ClientError> {
        let url = self.url(&["v1", "events"]);
        let mut req = self
            .stream_http
            .get(url)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.map_err(|e| self.transport(&e))?;
        let response = self.check(resp).await?;
        Ok(EventSource {
            url: self.label.clone(),
            response,
            parser: SseParser::default(),
            ready: Default::default(),
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
        query: &[(&str, &str)],
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self.http.request(method, self.url(segments));
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.map_err(|e| self.transport(&e))
    }

    async fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let resp = self.send(method, segments, body, &[]).await?;
        let resp = self.check(resp).await?;
        self.decode(resp).await
    }

    async fn text(&self, method: Method, segments: &[&str]) -> Result<String, ClientError> {
        let resp = self.send(method, segments, None::<&()>, &[]).await?;
        let resp = self.check(resp).await?;
        resp.text().await.map_err(|e| self.transport(&e))
    }

    /// Passes 2xx answers through; turns the others into [`ClientError::Api`].
    async fn check(&self, resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        Err(ClientError::Api {
            url: self.label.clone(),
            status: status.as_u16(),
            body: api_error_from(status, &text),
        })
    }

    async fn decode<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T, ClientError> {
        let bytes = resp.bytes().await.map_err(|e| self.transport(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: self.label.clone(),
            reason: e.to_string(),
        })
    }

    fn transport(&self, e: &reqwest::Error) -> ClientError {
        // The innermost source names the real cause ("Connection refused"), reqwest's own
        // message only says "error sending request".
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason = s.to_string();
            source = s.source();
        }
        if e.is_timeout() {
            reason = format!("timed out ({reason})");
        }
        ClientError::Unreachable {
            url: self.label.clone(),
            reason,
        }
    }
}

/// The [`ApiError`] of a non-2xx answer: the body when it is one, else a synthesized one.
fn api_error_from(status: StatusCode, body: &str) -> ApiError {
    serde_json::from_str(body).unwrap_or_else(|_| {
        let mut message: String = body.trim().chars().take(200).collect();
        if message.is_empty() {
            message = status.canonical_reason().unwrap_or("error").to_string();
        }
        ApiError {
            error: format!("http_{}", status.as_u16()),
            message,
            field: None,
            current_revision: None,
        }
    })
}

// === impl EventSource ===

impl EventSource {
    /// The next event; `None` when the gateway closed the stream. Frames whose data is not an
    /// [`Event`] are skipped (a newer gateway may send kinds this gwctl does not know).
    pub async fn next(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Some(Ok(ev));
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => {
                    for frame in self.parser.push(&bytes) {
                        if let Ok(ev) = serde_json::from_str::<Event>(&frame.data) {
                            self.ready.push_back(ev);
                        }
                    }
                }
                Ok(None) => return None,
                Err(e) => {
                    return Some(Err(ClientError::Unreachable {
                        url: self.url.clone(),
                        reason: e.to_string(),
                    }))
                }
            }
        }
    }
}

/// Where the admin token is looked for, in order, when `--token-file` and
/// `MESHGATE_TOKEN_FILE` are not given: `$XDG_RUNTIME_DIR/meshgate/admin.token`,
/// `~/.config/meshgate/admin.token`, then where `gatewayd demo` leaves it
/// ([`gatewayd::demo::default_token_path`], `/tmp/meshgate-demo/admin.token`).
pub fn token_candidates(xdg_runtime_dir: Option<&str>, home: Option<&str>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(x) = xdg_runtime_dir.filter(|x| !x.is_empty()) {
        out.push(Path::new(x).join("meshgate/admin.token"));
    }
    if let Some(h) = home.filter(|h| !h.is_empty()) {
        out.push(Path::new(h).join(".config/meshgate/admin.token"));
    }
    out.push(gatewayd::demo::default_token_path());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_escape_route_names_and_keep_base_paths() {
        let c = AdminClient::new("http://127.0.0.1:9901/", None).unwrap();
        assert_eq!(
            c.url(&["v1", "routes", "a b/c", "weights"]).as_str(),
            "http://127.0.0.1:9901/v1/routes/a%20b%2Fc/weights"
        );
        let c = AdminClient::new("https://gw.example/admin", None).unwrap();
        assert_eq!(
            c.url(&["v1", "stats"]).as_str(),
            "https://gw.example/admin/v1/stats"
        );
        assert_eq!(c.label(), "https://gw.example/admin");
    }

    #[test]
    fn bad_urls_are_rejected() {
        assert!(AdminClient::new("127.0.0.1:9901", None).is_err());
        assert!(AdminClient::new("ftp://x", None).is_err());
    }

    #[test]
    fn error_bodies_decode_or_are_synthesized() {
        let e = api_error_from(
            StatusCode::CONFLICT,
            r#"{"error":"conflict","message":"revision is 8","current_revision":8}"#,
        );
        assert_eq!(e.current_revision, Some(8));
        let e = api_error_from(StatusCode::BAD_GATEWAY, "");
        assert_eq!(e.error, "http_502");
        assert_eq!(e.message, "Bad Gateway");
    }

    #[test]
    fn token_lookup_order() {
        assert_eq!(
            token_candidates(Some("/run/user/1000"), Some("/home/a")),
            vec![
                PathBuf::from("/run/user/1000/meshgate/admin.token"),
                PathBuf::from("/home/a/.config/meshgate/admin.token"),
                PathBuf::from("/tmp/meshgate-demo/admin.token"),
            ]
        );
        assert_eq!(
            token_candidates(None, None),
            vec![PathBuf::from("/tmp/meshgate-demo/admin.token")]
        );
    }
}
