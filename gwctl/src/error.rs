//! Errors of gwctl and the exit code each one maps to — the one table scripts rely on.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | ok |
//! | 1 | failed (unknown route, unauthorized, a canary guard tripped, bad answer) |
//! | 2 | usage (bad arguments, or the gateway rejected the request body with 400) |
//! | 3 | conflict (the weights changed under us: expected revision mismatch) |
//! | 4 | unreachable (a gateway could not be reached) |
//! | 5 | `import openapi --diff`: the config would change |
//! | 6 | `import openapi --strict`: something of the description was not mapped |

use gatewayd::admin::model::ApiError;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the operation failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage (arguments or request body).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: conflicting concurrent change (HTTP 409).
pub const EXIT_CONFLICT: u8 = 3;
/// Exit code: a gateway was unreachable.
pub const EXIT_UNREACHABLE: u8 = 4;
/// Exit code: `import openapi --diff` found changes.
pub const EXIT_CHANGES: u8 = 5;
/// Exit code: `import openapi --strict` left something unmapped.
pub const EXIT_NOT_MAPPED: u8 = 6;

/// What can go wrong talking to one gateway's admin API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// Connection refused, DNS failure, timeout: nothing usable came back.
    #[error("{url}: unreachable: {reason}")]
    Unreachable {
        /// Admin base URL.
        url: String,
        /// Transport error text.
        reason: String,
    },
    /// The gateway answered with a non-2xx status and an [`ApiError`] body (synthesized when the
    /// body was not one).
    #[error("{url}: HTTP {status} {}: {}", .body.error, .body.message)]
    Api {
        /// Admin base URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Decoded error body.
        body: ApiError,
    },
    /// A 2xx answer that does not decode as the expected type.
    #[error("{url}: unexpected answer: {reason}")]
    Decode {
        /// Admin base URL.
        url: String,
        /// Decoder error text.
        reason: String,
    },
    /// The admin URL itself is not a valid URL.
    #[error("invalid admin URL {url:?}: {reason}")]
    BadUrl {
        /// What was given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
}

/// A failure of a gwctl command, carrying its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The operation ran and failed, e.g. a canary guard tripped (exit 1).
    #[error("{0}")]
    Failed(String),
    /// The weights changed under us (exit 3).
    #[error("{0}")]
    Conflict(String),
    /// Some gateways could not be reached (exit 4); the others' answers were printed.
    #[error("{0}")]
    Unreachable(String),
    /// `import openapi --diff`: this many routes would change (exit 5).
    #[error("{0} route(s) would change")]
    Changes(usize),
    /// `import openapi --strict`: this many items were not mapped (exit 6).
    #[error("{0} item(s) of the description not mapped (see above)")]
    NotMapped(usize),
    /// An admin API call failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

// === impl ClientError ===

impl ClientError {
    /// Exit code for this error (see the module table).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Unreachable { .. } => EXIT_UNREACHABLE,
            ClientError::Api { status: 409, .. } => EXIT_CONFLICT,
            ClientError::Api { status: 400, .. } => EXIT_USAGE,
            ClientError::Api { .. } | ClientError::Decode { .. } => EXIT_FAILED,
            ClientError::BadUrl { .. } => EXIT_USAGE,
        }
    }

    /// True for a 409 answer.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ClientError::Api { status: 409, .. })
    }

    /// True when the gateway could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }

    /// Short text for a status bar: the API message or the transport reason, without the URL.
    pub fn short(&self) -> String {
        match self {
            ClientError::Unreachable { reason, .. } => format!("unreachable: {reason}"),
            ClientError::Api { status, body, .. } => format!("{status} {}", body.message),
            ClientError::Decode { reason, .. } => format!("bad answer: {reason}"),
            ClientError::BadUrl { reason, .. } => format!("bad URL: {reason}"),
        }
    }
}

// === impl CliError ===

impl CliError {
    /// Exit code for this error (see the module table).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Failed(_) => EXIT_FAILED,
            CliError::Conflict(_) => EXIT_CONFLICT,
            CliError::Unreachable(_) => EXIT_UNREACHABLE,
            CliError::Changes(_) => EXIT_CHANGES,
            CliError::NotMapped(_) => EXIT_NOT_MAPPED,
            CliError::Client(e) => e.exit_code(),
        }
    }
}

/// Exit code for any error of a command: the first [`CliError`] or [`ClientError`] in the chain
/// decides; anything else is a plain failure (1).
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return e.exit_code();
        }
    }
    EXIT_FAILED
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    fn api(status: u16) -> ClientError {
        ClientError::Api {
            url: "http://gw".into(),
            status,
            body: ApiError {
                error: "x".into(),
                message: "m".into(),
                field: None,
                current_revision: None,
            },
        }
    }

    #[test]
    fn exit_codes_follow_the_table() {
        assert_eq!(api(409).exit_code(), EXIT_CONFLICT);
        assert_eq!(api(400).exit_code(), EXIT_USAGE);
        assert_eq!(api(404).exit_code(), EXIT_FAILED);
        assert_eq!(api(401).exit_code(), EXIT_FAILED);
        let unreachable = ClientError::Unreachable {
            url: "u".into(),
            reason: "refused".into(),
        };
        assert_eq!(unreachable.exit_code(), EXIT_UNREACHABLE);
        assert_eq!(CliError::Usage("u".into()).exit_code(), EXIT_USAGE);
        assert_eq!(CliError::Failed("f".into()).exit_code(), EXIT_FAILED);
    }

    #[test]
    fn exit_code_looks_through_context() {
        let err = anyhow::Error::new(api(409)).context("flip api");
        assert_eq!(exit_code_of(&err), EXIT_CONFLICT);
        let res: Result<(), CliError> = Err(CliError::Unreachable("x".into()));
        let err = res.context("stats").err();
        assert_eq!(err.as_ref().map(exit_code_of), Some(EXIT_UNREACHABLE));
        assert_eq!(exit_code_of(&anyhow::anyhow!("plain")), EXIT_FAILED);
    }
}
