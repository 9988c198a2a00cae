//! Validated `[policies.NAME]`: named, reusable request policies that routes list by name.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;
use http::Method;

/// A JWT signature algorithm (`RS256`, `ES256`, `EdDSA`, `HS256`, ...).
pub use jsonwebtoken::Algorithm as JwtAlgorithm;

/// One `[policies.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// The table key; also the quoted name in the `RateLimit` headers.
    pub name: String,
    /// What it does.
    pub kind: PolicyKind,
}

/// The kinds of policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyKind {
    /// Cross-origin resource sharing: preflights answered at the gateway, headers on answers.
    Cors(CorsConfig),
    /// Requests per key and period (GCRA), 429 beyond.
    RateLimit(RateLimitConfig),
    /// Bearer tokens (JWT) verified against a JWKS, 401 otherwise.
    Jwt(JwtConfig),
    /// A subrequest to an auth service decides.
    ForwardAuth(ForwardAuthConfig),
}

/// `kind = "jwt"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// Where the keys come from.
    pub jwks: JwksSource,
    /// How often the key set is read again; also the least gap between two refetches that
    /// tokens with an unknown `kid` ask for.
    pub refresh_interval: Duration,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Accepted `aud` values (any one of them); empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Algorithms accepted; empty: whatever the key's type allows (never `none`).
    pub algorithms: Vec<JwtAlgorithm>,
    /// Claims copied onto the upstream request: (claim, header), client-sent copies removed.
    pub forward_claims: Vec<(String, HeaderName)>,
    /// Remove `Authorization` before the request goes upstream.
    pub strip_authorization: bool,
    /// Tokens that verified, remembered so the same token's next requests skip the signature
    /// check; 0: none.
    pub token_cache_entries: usize,
}

/// Where a JWT policy reads its JSON Web Key Set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file (re-read on the refresh interval).
    File(PathBuf),
    /// An `http://` or `https://` URL, fetched in the background.
    Url(String),
}

/// `kind = "forward_auth"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthConfig {
    /// The auth service: a `[services.NAME]`, balanced and pooled like any other.
    pub service: String,
    /// Path (and query) of the subrequest.
    pub path: String,
    /// How long the auth service may take to answer.
    pub timeout: Duration,
    /// The only client headers sent to the auth service.
    pub request_headers: Vec<HeaderName>,
    /// Headers of an allowing answer copied onto the upstream request.
    pub response_headers: Vec<HeaderName>,
    /// When the auth service fails (5xx, timeout, unreachable): let the request go on.
    pub failure_mode_allow: bool,
    /// How long an allowing answer is reused; None: never cached.
    pub cache_ttl: Option<Duration>,
    /// Request headers whose values key the cache.
    pub cache_key: Vec<HeaderName>,
    /// Cache entries kept at most.
    pub cache_max_entries: usize,
}

/// `kind = "cors"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Origins allowed; empty with `any_origin` for `"*"`.
    pub allow_origins: Vec<OriginPattern>,
    /// `allow_origins = ["*"]`: any origin (never together with credentials).
    pub any_origin: bool,
    /// Methods a preflight may ask for.
    pub allow_methods: Vec<Method>,
    /// Request headers a preflight may ask for; `any_header` for `"*"`.
    pub allow_headers: Vec<HeaderName>,
    /// `allow_headers = ["*"]`.
    pub any_header: bool,
    /// `Access-Control-Allow-Credentials: true`.
    pub allow_credentials: bool,
    /// `Access-Control-Max-Age` of preflight answers.
    pub max_age: Option<Duration>,
    /// `Access-Control-Expose-Headers` on actual answers.
    pub expose_headers: Vec<HeaderName>,
}

/// An allowed origin: exact (`https://app.example.com`, compared ASCII case-insensitively) or
/// a pattern with a wildcard first label (`https://*.example.com`: exactly one label before
/// `.example.com`, as a certificate's wildcard, same scheme and port, matched on the whole
/// origin, never as a prefix or substring).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// The whole origin, lower-cased.
    Exact(String),
    /// `scheme://*.suffix[:port]`: `prefix` is `scheme://`, `suffix` is `.suffix[:port]`.
    Wildcard {
        /// `https://`.
        prefix: String,
        /// `.example.com` or `.example.com:8443`.
        suffix: String,
    },
}

/// `kind = "rate_limit"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Requests allowed per `per`.
    pub count: NonZeroU32,
    /// The period of `count`: 1 s, 1 min, 1 h or 1 day.
    pub per: Duration,
    /// Requests allowed at once (the bucket's size); defaults to `count`.
    pub burst: NonZeroU32,
    /// What one bucket is for.
    pub key: RateKey,
    /// Buckets kept at most; keys beyond share one overflow bucket.
    pub max_keys: usize,
    /// `scope = "fleet"`: the limit is the whole fleet's; each gateway enforces its share
    /// (rate and burst divided by the gateways alive in Consul, rounded up).
    pub fleet: bool,
}

/// What a rate limit counts separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// The client's address (the peer, or the trusted `X-Forwarded-For` hop once trusted
    /// proxies exist).
    ClientIp,
    /// A request header's value (requests without it share one bucket).
    Header(HeaderName),
    /// A claim of the token the route's `jwt` policy verified (requests without it share one
    /// bucket).
    Claim(String),
    /// The route as a whole: one bucket.
    Route,
}

impl OriginPattern {
    /// True when `origin` (as the browser sent it) is allowed by this pattern.
    pub fn matches(&self, origin: &str) -> bool {
        let o = origin.as_bytes();
        match self {
            Self::Exact(e) => o.eq_ignore_ascii_case(e.as_bytes()),
            Self::Wildcard { prefix, suffix } => {
                let (p, s) = (prefix.as_bytes(), suffix.as_bytes());
                if o.len() <= p.len() + s.len() {
                    return false;
                }
                let host_labels = &o[p.len()..o.len() - s.len()];
                o[..p.len()].eq_ignore_ascii_case(p)
                    && o[o.len() - s.len()..].eq_ignore_ascii_case(s)
                    && host_labels
                        .iter()
                        .all(|&c| c.is_ascii_alphanumeric() || c == b'-')
            }
        }
    }
}
