//! Runs the `http` and `tcp` checks the agent owns, as Consul's agent does: HTTP 2xx is
//! passing, 429 warning, anything else (or no answer within the timeout) critical; TCP is
//! passing once a connection is established. Only plain `http://` URLs are supported.

use std::time::Duration;

use ::http::{Method, Request, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;

use super::state::{Probe, Status};

/// Consul truncates check output to 4 KiB.
const MAX_OUTPUT: usize = 4 * 1024;

/// Runs one probe; returns the status and the output to record.
pub(crate) async fn run(probe: &Probe, timeout: Duration) -> (Status, String) {
    match probe {
        Probe::Tcp { addr } => tcp(addr, timeout).await,
        Probe::Http { url, method } => http(url, method, timeout).await,
    }
}

async fn tcp(addr: &str, timeout: Duration) -> (Status, String) {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => (Status::Passing, format!("TCP connect {addr}: Success")),
        Ok(Err(e)) => (Status::Critical, format!("dial tcp {addr}: {e}")),
        Err(_) => (Status::Critical, format!("dial tcp {addr}: i/o timeout")),
    }
}

async fn http(url: &str, method: &str, timeout: Duration) -> (Status, String) {
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return (Status::Critical, format!("invalid URL {url:?}: {e}")),
    };
    if uri.scheme_str() != Some("http") {
        return (
            Status::Critical,
            format!("devconsul runs only http:// checks, not {url}"),
        );
    }
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
    let request = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header("User-Agent", "Consul Health Check")
        .header("Accept", "text/plain, text/*, */*")
        .body(Full::new(Bytes::new()));
    let request = match request {
        Ok(r) => r,
        Err(e) => return (Status::Critical, e.to_string()),
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let exchange = async {
        let resp = client.request(request).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_OUTPUT)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok::<_, String>((status, body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => (
            Status::Critical,
            format!("Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"),
        ),
        Ok(Err(e)) => (Status::Critical, format!("Get {url:?}: {e}")),
        Ok(Ok((status, body))) => {
            let verdict = if status.is_success() {
                Status::Passing
            } else if status == StatusCode::TOO_MANY_REQUESTS {
                Status::Warning
            } else {
                Status::Critical
            };
            let text = String::from_utf8_lossy(&body);
            (
                verdict,
                format!("HTTP {method} {url}: {status} Output: {text}"),
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_probe_passes_on_connect_and_fails_on_refusal() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (status, output) =
            run(&Probe::Tcp { addr: addr.clone() }, Duration::from_secs(5)).await;
        assert_eq!(status, Status::Passing, "{output}");
        drop(listener);
        let (status, _) = run(&Probe::Tcp { addr }, Duration::from_secs(5)).await;
        assert_eq!(status, Status::Critical);
    }

    #[tokio::test]
    async fn http_probe_refuses_https() {
        let probe = Probe::Http {
            url: "https://127.0.0.1:1/".into(),
            method: "GET".into(),
        };
        assert_eq!(
            run(&probe, Duration::from_secs(1)).await.0,
            Status::Critical
        );
    }
}
