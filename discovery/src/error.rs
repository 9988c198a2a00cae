//! Errors of the discovery crate, classified so retry loops ask the error, not its message.

use std::time::Duration;

use http::StatusCode;

use crate::backoff::InvalidBackoff;

/// A failed Consul interaction.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The configured address is not usable (no host, unknown scheme).
    #[error("invalid Consul address {address}: {reason}")]
    InvalidAddress {
        /// The address as configured.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS client for an `https://` address could not be set up (unreadable or empty
    /// `ca_file`, unusable certificate). Certificate verification failures at connect time are
    /// [`DiscoveryError::Transport`] errors instead.
    #[error("TLS setup for Consul {address} failed: {reason}")]
    Tls {
        /// The address as configured.
        address: String,
        /// What went wrong, naming the CA file.
        reason: String,
    },
    /// Connecting or talking to Consul failed before a response arrived.
    #[error("request to Consul {path} failed: {reason}")]
    Transport {
        /// Request path.
        path: String,
        /// Underlying error, flattened to text (hyper's error chain).
        reason: String,
    },
    /// No response within the read timeout.
    #[error("request to Consul {path} timed out after {timeout:?}")]
    Timeout {
        /// Request path.
        path: String,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// Consul answered with an error status; `body` is its plain-text message.
    #[error("Consul {path} answered {status}: {body}")]
    Status {
        /// Request path.
        path: String,
        /// HTTP status.
        status: StatusCode,
        /// Response body (Consul error bodies are plain text), trimmed.
        body: String,
    },
    /// The response body was not the JSON we expected.
    #[error("Consul {path}: cannot decode response: {source}")]
    Decode {
        /// Request path.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A KV value was not valid base64.
    #[error("KV key {key}: value is not base64: {reason}")]
    Base64 {
        /// The key.
        key: String,
        /// Decoder message.
        reason: String,
    },
    /// A request could not be built (bad header value, bad path).
    #[error("cannot build request to {path}: {reason}")]
    Request {
        /// Request path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Invalid backoff settings.
    #[error(transparent)]
    Backoff(#[from] InvalidBackoff),
}

/// How a retry loop should treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Network errors, timeouts, 5xx: exponential backoff.
    Transient,
    /// 429 (too many connections or RPC rate limit): back off with a longer floor.
    RateLimited,
    /// 403: the token lacks permission; retrying fast cannot help, wait the maximum.
    Forbidden,
    /// Our own mistake (bad address, undecodable body): retry slowly, it will not fix itself.
    Permanent,
}

// === impl DiscoveryError ===

impl DiscoveryError {
    /// The HTTP status Consul answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How retry loops should treat this error.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            Self::Status { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS => {
                RetryClass::RateLimited
            }
            // 503 is Consul 1.15+'s server rate limit ("retry later").
            Self::Status { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE => {
                RetryClass::RateLimited
            }
            Self::Status { status, .. } if *status == StatusCode::FORBIDDEN => {
                RetryClass::Forbidden
            }
            Self::Status { status, .. } if status.is_server_error() => RetryClass::Transient,
            Self::Status { .. } => RetryClass::Permanent,
            Self::Transport { .. } | Self::Timeout { .. } => RetryClass::Transient,
            Self::InvalidAddress { .. }
            | Self::Tls { .. }
            | Self::Decode { .. }
            | Self::Base64 { .. }
            | Self::Request { .. }
            | Self::Backoff(_) => RetryClass::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> DiscoveryError {
        DiscoveryError::Status {
            path: "/v1/x".into(),
            status: StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT),
            body: String::new(),
        }
    }

    #[test]
    fn classifies_statuses() {
        assert_eq!(status(429).retry_class(), RetryClass::RateLimited);
        assert_eq!(status(503).retry_class(), RetryClass::RateLimited);
        assert_eq!(status(403).retry_class(), RetryClass::Forbidden);
        assert_eq!(status(500).retry_class(), RetryClass::Transient);
        assert_eq!(status(400).retry_class(), RetryClass::Permanent);
        let t = DiscoveryError::Transport {
            path: "/".into(),
            reason: "refused".into(),
        };
        assert_eq!(t.retry_class(), RetryClass::Transient);
    }
}
