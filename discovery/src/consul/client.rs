//! Transport: request building (token header, `dc`, consistency, `index`/`wait`), timeouts,
//! status and header handling, on hyper-util's pooled legacy client behind a rustls connector
//! (`https://` addresses; `http://` ones pass through in the clear).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{Consistency, ConsulConfig, QueryMeta, QueryOptions};
use crate::error::DiscoveryError;
use crate::go_duration;

/// A Consul HTTP client; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct ConsulClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    config: ConsulConfig,
    /// `http://host:port` or `https://host:port`, no trailing slash.
    base: String,
}

/// A raw answer: status, metadata and body.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub(crate) status: StatusCode,
    pub(crate) meta: QueryMeta,
    pub(crate) body: Bytes,
    pub(crate) path: String,
}

/// Query parameters: `(name, Some(value))` or a presence flag `(name, None)`.
pub(crate) type Query<'a> = Vec<(&'a str, Option<String>)>;

// === impl ConsulClient ===

impl ConsulClient {
    /// Builds a client. For an `https` address it reads [`ConsulConfig::ca_file`] now and fails
    /// with [`DiscoveryError::Tls`] if that file is unreadable or holds no certificate. Fails
    /// with [`DiscoveryError::InvalidAddress`] on another scheme or an address without a host.
    pub fn new(config: ConsulConfig) -> Result<Self, DiscoveryError> {
        let address = config.address.to_string();
        let scheme = match config.address.scheme_str() {
            Some("http") | None => "http",
            Some("https") => "https",
            Some(other) => {
                return Err(DiscoveryError::InvalidAddress {
                    address,
                    reason: format!("unsupported scheme {other:?}"),
                })
            }
        };
        let Some(authority) = config.address.authority() else {
            return Err(DiscoveryError::InvalidAddress {
                address,
                reason: "no host".to_owned(),
            });
        };
        let base = format!("{scheme}://{authority}");
        // A plain-http client never looks at the CA file, so a stale `ca_file` cannot break it.
        let ca_file = if scheme == "https" {
            config.ca_file.as_deref()
        } else {
            None
        };
        let tls = super::tls::client_config(&address, ca_file)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Self {
            inner: Arc::new(Inner { http, config, base }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ConsulConfig {
        &self.inner.config
    }

    /// A read: adds `dc`, the consistency flag and, when `opts.index > 0`, `index` and `wait`.
    pub(crate) async fn read(
        &self,
        path: &str,
        mut query: Query<'_>,
        opts: QueryOptions,
    ) -> Result<RawResponse, DiscoveryError> {
        let config = &self.inner.config;
        match config.consistency {
            Consistency::Default => {}
            Consistency::Stale => query.push(("stale", None)),
            Consistency::Consistent => query.push(("consistent", None)),
        }
        let timeout = if opts.index > 0 {
            let wait = opts.wait.unwrap_or(config.wait);
            query.push(("index", Some(opts.index.to_string())));
            query.push(("wait", Some(go_duration::format(wait))));
            ConsulConfig::blocking_timeout(wait)
        } else {
            config.request_timeout
        };
        self.send(Method::GET, path, query, Bytes::new(), timeout)
            .await
    }

    /// A write (PUT/DELETE) with `dc`.
    pub(crate) async fn write(
        &self,
        method: Method,
        path: &str,
        query: Query<'_>,
        body: Bytes,
    ) -> Result<RawResponse, DiscoveryError> {
        let timeout = self.inner.config.request_timeout;
        self.send(method, path, query, body, timeout).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        mut query: Query<'_>,
        body: Bytes,
        timeout: Duration,
    ) -> Result<RawResponse, DiscoveryError> {
        let inner = &self.inner;
        if let Some(dc) = &inner.config.datacenter {
            if !query.iter().any(|(k, _)| *k == "dc") {
                query.push(("dc", Some(dc.clone())));
            }
        }
        let uri = format!("{}{}{}", inner.base, path, encode_query(&query));
        let request_error = |reason: String| DiscoveryError::Request {
            path: path.to_owned(),
            reason,
        };
        let mut builder = Request::builder().method(method).uri(&uri);
        if let Some(token) = &inner.config.token {
            builder = builder.header("X-Consul-Token", token);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| request_error(e.to_string()))?;
        let exchange = async {
            let response =
                inner
                    .http
                    .request(request)
                    .await
                    .map_err(|e| DiscoveryError::Transport {
                        path: path.to_owned(),
                        reason: error_chain(&e),
                    })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| DiscoveryError::Transport {
                    path: path.to_owned(),
                    reason: error_chain(&e),
                })?
                .to_bytes();
            Ok::<_, DiscoveryError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| DiscoveryError::Timeout {
                path: path.to_owned(),
                timeout,
            })??;
        Ok(RawResponse {
            status: parts.status,
            meta: parse_meta(&parts.headers),
            body,
            path: path.to_owned(),
        })
    }
}

// === impl RawResponse ===

impl RawResponse {
    /// `Ok(self)` for 2xx, else the status error with Consul's plain-text message.
    pub(crate) fn success(self) -> Result<Self, DiscoveryError> {
        if self.status.is_success() {
            return Ok(self);
        }
        Err(self.into_error())
    }

    /// The status error of this answer.
    pub(crate) fn into_error(self) -> DiscoveryError {
        let text = String::from_utf8_lossy(&self.body);
        DiscoveryError::Status {
            path: self.path,
            status: self.status,
            body: text.trim().chars().take(512).collect(),
        }
    }

    /// Decodes a JSON body.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, DiscoveryError> {
        serde_json::from_slice(&self.body).map_err(|source| DiscoveryError::Decode {
            path: self.path.clone(),
            source,
        })
    }
}

fn parse_meta(headers: &HeaderMap) -> QueryMeta {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    QueryMeta {
        index: get("x-consul-index")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        known_leader: get("x-consul-knownleader") == Some("true"),
        last_contact: Duration::from_millis(
            get("x-consul-lastcontact")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ),
        effective_consistency: get("x-consul-effective-consistency").map(str::to_owned),
    }
}

/// `?a=1&flag&b=x%20y`, or `""` without parameters.
fn encode_query(query: &Query<'_>) -> String {
    if query.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = query
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{}={}", escape(k, false), escape(v, false)),
            None => escape(k, false),
        })
        .collect();
    format!("?{}", parts.join("&"))
}

/// Percent-encodes everything but unreserved characters (and `/` when `keep_slash`).
pub(crate) fn escape(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::Uri;

    use super::*;

    #[test]
    fn accepts_https_and_refuses_other_schemes() {
        let https = ConsulClient::new(ConsulConfig::new(Uri::from_static("https://consul:8501")));
        assert_eq!(https.unwrap().inner.base, "https://consul:8501");
        let ftp = ConsulClient::new(ConsulConfig::new(Uri::from_static("ftp://consul:8501")));
        assert!(matches!(ftp, Err(DiscoveryError::InvalidAddress { .. })));
    }

    #[test]
    fn https_reads_the_ca_file_at_construction() {
        let mut config = ConsulConfig::new(Uri::from_static("https://consul:8501"));
        config.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(matches!(
            ConsulClient::new(config.clone()),
            Err(DiscoveryError::Tls { .. })
        ));
        config.address = Uri::from_static("http://consul:8500");
        assert!(ConsulClient::new(config).is_ok(), "http ignores ca_file");
    }

    #[test]
    fn encodes_queries_and_paths() {
        let q: Query<'_> = vec![
            ("recurse", None),
            ("tag", Some("a b".into())),
            ("filter", Some("x == \"1\"".into())),
        ];
        assert_eq!(
            encode_query(&q),
            "?recurse&tag=a%20b&filter=x%20%3D%3D%20%221%22"
        );
        assert_eq!(escape("meshgate/c 1/x", true), "meshgate/c%201/x");
    }

    #[test]
    fn parses_meta_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-consul-index", "42".parse().unwrap());
        h.insert("x-consul-knownleader", "true".parse().unwrap());
        h.insert("x-consul-lastcontact", "15".parse().unwrap());
        let meta = parse_meta(&h);
        assert_eq!(meta.index, 42);
        assert!(meta.known_leader);
        assert_eq!(meta.last_contact, Duration::from_millis(15));
    }
}
