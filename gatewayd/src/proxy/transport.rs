//! Upstream transport shared by both front ends: TCP connections with `TCP_NODELAY` within the
//! service's connect timeout.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::error::ProxyError;

/// A TCP connection to `addr` with `TCP_NODELAY`, within `timeout`.
pub(crate) async fn connect_tcp(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ProxyError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(ProxyError::UpstreamConnect {
                addr,
                reason: e.to_string(),
            })
        }
        Err(_) => {
            return Err(ProxyError::UpstreamConnect {
                addr,
                reason: format!("connect timed out after {timeout:?}"),
            })
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
