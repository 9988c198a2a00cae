//! `kind = "jwt"`: the bearer token of `Authorization` verified against the policy's JWKS by
//! `jsonwebtoken`. The algorithm must fit the key (an RSA, EC or Ed25519 key never verifies an
//! HMAC token, and `alg: none` never parses), be in the policy's allow-list, and match the
//! JWK's own `alg`; then `exp` (required), `nbf`, `iss` and `aud` are checked with the leeway.
//! Failures answer 401 with `WWW-Authenticate: Bearer` and the RFC 6750 error code.
//!
//! A token that verified is remembered ([`TokenCache`]): a client's next requests with the same
//! token skip the signature check, the costly part (about 30 µs of CPU for RS256 on the bench
//! machine), while `exp` and `nbf` are still checked on every request.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use dashmap::DashMap;

use http::{HeaderName, HeaderValue, StatusCode};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::jwks::{Found, Jwks, KeySet};
use super::{Answer, Headers, ResponseHeaders, UpstreamEdits};
use crate::config::JwtConfig;

/// Verified claims of a token.
pub type Claims = Map<String, Value>;

/// Every algorithm a key may verify.
const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a request was refused, or that it was allowed: the `outcome` label of
/// `meshgate_policy_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A valid token.
    Allowed = 0,
    /// No bearer token.
    Missing,
    /// `Authorization: Bearer` malformed (400 `invalid_request`).
    BadRequest,
    /// Not a JWT, or claims that do not parse, or a required claim missing.
    Malformed,
    /// An algorithm the policy or the key does not accept.
    BadAlgorithm,
    /// A `kid` the key set does not hold (a refetch is asked for).
    UnknownKid,
    /// The signature does not verify.
    BadSignature,
    /// `exp` passed.
    Expired,
    /// `nbf` not reached.
    NotYetValid,
    /// `iss` is not the policy's issuer.
    WrongIssuer,
    /// `aud` holds none of the policy's audiences.
    WrongAudience,
    /// No key set was ever read: 503.
    Unavailable,
}

impl Outcome {
    /// Every outcome, in counter order.
    pub const ALL: [Outcome; 12] = [
        Self::Allowed,
        Self::Missing,
        Self::BadRequest,
        Self::Malformed,
        Self::BadAlgorithm,
        Self::UnknownKid,
        Self::BadSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::Unavailable,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Missing => "missing_token",
            Self::BadRequest => "invalid_request",
            Self::Malformed => "malformed",
            Self::BadAlgorithm => "bad_algorithm",
            Self::UnknownKid => "unknown_kid",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Unavailable => "jwks_unavailable",
        }
    }

    /// The `error_description` the client reads.
    fn description(self) -> &'static str {
        match self {
            Self::Allowed | Self::Missing => "",
            Self::BadRequest => "the Authorization header is not one Bearer token",
            Self::Malformed => "the token is not a well-formed JWT with the required claims",
            Self::BadAlgorithm => "the token's algorithm is not accepted",
            Self::UnknownKid => "the token's key id is unknown",
            Self::BadSignature => "the token's signature does not verify",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::WrongIssuer => "the token's issuer is not accepted",
            Self::WrongAudience => "the token's audience is not accepted",
            Self::Unavailable => "",
        }
    }
}

/// One JWT policy.
#[derive(Debug)]
pub struct Jwt {
    name: String,
    jwks: Arc<Jwks>,
    /// One prepared validation per algorithm the policy accepts.
    validations: Vec<(Algorithm, Validation)>,
    forward_claims: Vec<(String, HeaderName)>,
    strip_authorization: bool,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    leeway: u64,
    /// Tokens that verified.
    cache: TokenCache,
    /// Decisions by [`Outcome`].
    pub(super) decisions: [AtomicU64; 12],
    /// Recent decisions.
    pub(super) recent: super::Recent,
}

/// Tokens that verified against the key set they name, with their claims. An entry counts only
/// while that same key set is the current one (a refresh or rotation starts over: a removed key
/// stops verifying at once) and while the token's `exp` and `nbf` hold, checked with the leeway on
/// every hit; the checks a token passed once (algorithm, key, signature, `iss`, `aud`) cannot
/// change for the same bytes under the same policy, which a reload that changes the policy
/// replaces with a new, empty cache. Bounded: a full cache drops its expired entries (at most
/// once a second) and, still full, remembers nothing new. Only verified tokens enter it, so a
/// client sending made-up tokens cannot fill it.
#[derive(Debug)]
struct TokenCache {
    map: DashMap<Box<str>, Remembered>,
    max: usize,
    /// Unix second of the last sweep of expired entries.
    swept: AtomicU64,
    hits: AtomicU64,
}

#[derive(Debug)]
struct Remembered {
    claims: Claims,
    /// The key set the token verified against.
    keys: Arc<KeySet>,
    exp: u64,
    nbf: Option<u64>,
}

impl TokenCache {
    fn new(max: usize) -> Self {
        Self {
            map: DashMap::new(),
            max,
            swept: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// The claims of `token` when it verified against `keys` and is valid at `now`.
    fn get(&self, token: &str, keys: &Arc<KeySet>, now: u64, leeway: u64) -> Option<Claims> {
        if self.max == 0 {
            return None;
        }
        let hit = self.map.get(token)?;
        if Arc::ptr_eq(&hit.keys, keys) && valid_at(hit.exp, hit.nbf, now, leeway) {
            self.hits.fetch_add(1, Relaxed);
            return Some(hit.claims.clone());
        }
        drop(hit);
        self.map.remove(token);
        None
    }

    fn put(&self, token: &str, keys: Arc<KeySet>, claims: &Claims, now: u64, leeway: u64) {
        if self.max == 0 {
            return;
        }
        // `exp` is required, so a verified token has one; a fractional one counts down.
        let Some(exp) = claims.get("exp").and_then(Value::as_f64) else {
            return;
        };
        let nbf = claims
            .get("nbf")
            .and_then(Value::as_f64)
            .map(|v| v.ceil() as u64);
        if self.map.len() >= self.max {
            if self.swept.swap(now, Relaxed) != now {
                self.map.retain(|_, e| e.exp >= now.saturating_sub(leeway));
            }
            if self.map.len() >= self.max {
                return;
            }
        }
        self.map.insert(
            token.into(),
            Remembered {
                claims: claims.clone(),
                keys,
                exp: exp.floor() as u64,
                nbf,
            },
        );
    }
}

/// `exp` not passed and `nbf` reached at `now`, each with the leeway (as `jsonwebtoken` checks
/// them).
fn valid_at(exp: u64, nbf: Option<u64>, now: u64, leeway: u64) -> bool {
    exp >= now.saturating_sub(leeway) && nbf.is_none_or(|nbf| nbf <= now + leeway)
}

impl Jwt {
    /// A verifier for `cfg`; the key set is read (file) or fetched (URL, in the background).
    pub fn new(name: &str, cfg: &JwtConfig) -> Self {
        let validations = ALGORITHMS
            .iter()
            .filter(|a| cfg.algorithms.is_empty() || cfg.algorithms.contains(a))
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.leeway = cfg.leeway.as_secs();
                v.validate_nbf = true;
                let mut required = vec!["exp"];
                if let Some(iss) = &cfg.issuer {
                    v.set_issuer(&[iss]);
                    required.push("iss");
                }
                if cfg.audiences.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&cfg.audiences);
                    required.push("aud");
                }
                v.set_required_spec_claims(&required);
                (alg, v)
            })
            .collect();
        Self {
            name: name.to_string(),
            jwks: Jwks::new(name, &cfg.jwks, cfg.refresh_interval),
            validations,
            forward_claims: cfg.forward_claims.clone(),
            strip_authorization: cfg.strip_authorization,
            leeway: cfg.leeway.as_secs(),
            cache: TokenCache::new(cfg.token_cache_entries),
            decisions: Default::default(),
            recent: super::Recent::new(name),
        }
    }

    /// Requests whose token was found verified in the cache, and the cache's entries.
    pub fn token_cache(&self) -> (u64, usize) {
        (self.cache.hits.load(Relaxed), self.cache.map.len())
    }

    /// The key set's state and the token cache's, for `/v1/config` and the metrics.
    pub fn status(&self) -> super::JwksStatus {
        let (hits, entries) = self.token_cache();
        super::JwksStatus {
            token_cache_hits: hits,
            token_cache_entries: entries,
            ..self.jwks.status()
        }
    }

    /// The key set.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// Verifies the request's bearer token: its claims, or the answer that refuses it (with
    /// `extra`, the headers earlier policies put on every answer).
    pub fn check(&self, headers: &dyn Headers) -> Result<Claims, (Outcome, Answer)> {
        let outcome = self.verify(headers);
        let i = match &outcome {
            Ok(_) => Outcome::Allowed,
            Err(o) => *o,
        } as usize;
        self.decisions[i].fetch_add(1, Relaxed);
        outcome.map_err(|o| (o, self.refusal(o)))
    }

    /// The upstream request's edits for a valid token: client-sent copies of the claim
    /// headers removed, the claims added, `Authorization` removed when asked.
    pub fn edits(&self, claims: &Claims, edits: &mut UpstreamEdits) {
        for (claim, header) in &self.forward_claims {
            edits.remove.push(header.clone());
            let value = match claims.get(claim) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => HeaderValue::from_str(s),
                Some(other) => HeaderValue::from_str(&other.to_string()),
            };
            match value {
                Ok(v) => edits.add.push((header.clone(), v)),
                Err(_) => {
                    tracing::debug!(policy = %self.name, claim = %claim, "claim not forwarded: not a valid header value");
                }
            }
        }
        if self.strip_authorization {
            edits.remove.push(http::header::AUTHORIZATION);
        }
    }

    fn verify(&self, headers: &dyn Headers) -> Result<Claims, Outcome> {
        let Some(auth) = headers.get(&http::header::AUTHORIZATION) else {
            return Err(Outcome::Missing);
        };
        let token = match auth.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => auth[7..].trim_ascii(),
            // Another scheme: no bearer credentials were sent.
            _ if !auth.starts_with(b"Bearer") && !auth.starts_with(b"bearer") => {
                return Err(Outcome::Missing)
            }
            _ => return Err(Outcome::BadRequest),
        };
        let Ok(token) = std::str::from_utf8(token) else {
            return Err(Outcome::BadRequest);
        };
        if token.is_empty() || token.contains(' ') {
            return Err(Outcome::BadRequest);
        }
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(claims) = self.cache.get(token, &self.jwks.keys(), now, self.leeway) {
            return Ok(claims);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // `none` and unknown algorithms fail to parse here.
            ErrorKind::Json(_) if token_names_alg(token) => Outcome::BadAlgorithm,
            _ => Outcome::Malformed,
        })?;
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Err(Outcome::BadAlgorithm);
        };
        if !self.jwks.loaded() {
            return Err(Outcome::Unavailable);
        }
        let set = self.jwks.keys();
        let keys = match set.find(header.alg, header.kid.as_deref()) {
            Found::Keys(k) => k,
            Found::UnknownKid => {
                self.jwks.unknown_kid();
                return Err(Outcome::UnknownKid);
            }
            Found::NoKeyForAlg => return Err(Outcome::BadAlgorithm),
        };
        let mut last = Outcome::BadSignature;
        for key in keys {
            match jsonwebtoken::decode::<Claims>(token, key, validation) {
                Ok(data) => {
                    self.cache
                        .put(token, Arc::clone(&*set), &data.claims, now, self.leeway);
                    return Ok(data.claims);
                }
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => Outcome::BadSignature,
                        ErrorKind::ExpiredSignature => return Err(Outcome::Expired),
                        ErrorKind::ImmatureSignature => return Err(Outcome::NotYetValid),
                        ErrorKind::InvalidIssuer => return Err(Outcome::WrongIssuer),
                        ErrorKind::InvalidAudience => return Err(Outcome::WrongAudience),
                        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                            Outcome::BadAlgorithm
                        }
                        _ => Outcome::Malformed,
                    }
                }
            }
        }
        Err(last)
    }

    /// 401 (`invalid_token`, or no error code when no token was sent, RFC 6750 §3.1), 400
    /// (`invalid_request`) or 503 (no key set yet, with `Retry-After`).
    fn refusal(&self, o: Outcome) -> Answer {
        let realm = super::rate_limit::sf_string(&self.name);
        let (status, code, challenge) = match o {
            Outcome::Missing => (
                StatusCode::UNAUTHORIZED,
                "missing_token",
                format!("Bearer realm=\"{realm}\""),
            ),
            Outcome::BadRequest => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{}\"",
                    o.description()
                ),
            ),
            Outcome::Unavailable => {
                return Answer {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: Some("jwks_unavailable"),
                    headers: vec![(http::header::RETRY_AFTER, HeaderValue::from_static("5"))],
                    body: None,
                    by: None,
                }
            }
            _ => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                    o.description()
                ),
            ),
        };
        let mut headers = ResponseHeaders::new();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            headers.push((http::header::WWW_AUTHENTICATE, v));
        }
        Answer {
            status,
            code: Some(code),
            headers,
            body: None,
            by: None,
        }
    }
}

/// True when the token's header parses as JSON with an `alg` (so a parse failure is about the
/// algorithm's name, as with `none`).
fn token_names_alg(token: &str) -> bool {
    use base64::Engine as _;
    let Some(head) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(head) else {
        return false;
    };
    serde_json::from_slice::<Map<String, Value>>(&bytes).is_ok_and(|m| m.contains_key("alg"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use base64::Engine as _;
    use http::HeaderMap;
    use jsonwebtoken::{encode, EncodingKey, Header};

    use super::*;
    use crate::config::JwksSource;

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    /// A policy over an HMAC key set in a temporary file.
    fn policy(dir: &tempfile::TempDir, algorithms: Vec<Algorithm>) -> Jwt {
        let path = dir.path().join("jwks.json");
        let set = format!(
            r#"{{"keys":[{{"kty":"oct","kid":"k1","k":"{}"}}]}}"#,
            b64(b"0123456789abcdef0123456789abcdef")
        );
        std::fs::write(&path, set).unwrap();
        Jwt::new(
            "api",
            &JwtConfig {
                jwks: JwksSource::File(path),
                refresh_interval: Duration::from_secs(60),
                issuer: Some("https://issuer.test".into()),
                audiences: vec!["orders".into()],
                leeway: Duration::ZERO,
                algorithms,
                forward_claims: vec![("sub".into(), HeaderName::from_static("x-user"))],
                strip_authorization: true,
                token_cache_entries: 1000,
            },
        )
    }

    fn token(claims: serde_json::Value, kid: &str) -> String {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.into());
        encode(
            &h,
            &claims,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap()
    }

    fn bearer(t: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("authorization", format!("Bearer {t}").parse().unwrap());
        m
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn good() -> serde_json::Value {
        serde_json::json!({"sub": "alice", "iss": "https://issuer.test", "aud": "orders", "exp": now() + 60})
    }

    #[test]
    fn a_valid_token_passes_and_its_claims_are_forwarded() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(&dir, vec![]);
        let claims = p.check(&bearer(&token(good(), "k1"))).unwrap();
        let mut e = UpstreamEdits::default();
        p.edits(&claims, &mut e);
        assert_eq!(
            e.add,
            [(
                HeaderName::from_static("x-user"),
                HeaderValue::from_static("alice")
            )]
        );
        assert_eq!(
            e.remove,
            [
                HeaderName::from_static("x-user"),
                http::header::AUTHORIZATION
            ]
        );
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(&dir, vec![]);
        let with = |k: &str, v: serde_json::Value| {
            let mut c = good();
            c[k] = v;
            token(c, "k1")
        };
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(good().to_string().as_bytes())
        );
        let cases = [
            (with("exp", (now() - 10).into()), Outcome::Expired),
            (with("nbf", (now() + 600).into()), Outcome::NotYetValid),
            (
                with("iss", "https://evil.test".into()),
                Outcome::WrongIssuer,
            ),
            (with("aud", "billing".into()), Outcome::WrongAudience),
            (token(good(), "k2"), Outcome::UnknownKid),
            (none, Outcome::BadAlgorithm),
            ("a.b.c".to_string(), Outcome::Malformed),
        ];
        for (t, want) in cases {
            let (got, answer) = p.check(&bearer(&t)).unwrap_err();
            assert_eq!(got, want, "{t}");
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
            let challenge = answer.headers[0].1.to_str().unwrap();
            assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        }
        let mut tampered = token(good(), "k1");
        tampered.push('A');
        assert_eq!(
            p.check(&bearer(&tampered)).unwrap_err().0,
            Outcome::BadSignature
        );
        let (o, a) = p.check(&HeaderMap::new()).unwrap_err();
        assert_eq!(o, Outcome::Missing);
        assert_eq!(
            a.headers[0].1, "Bearer realm=\"api\"",
            "no error code without a token"
        );
        let mut two = HeaderMap::new();
        two.insert("authorization", "Bearer".parse().unwrap());
        assert_eq!(p.check(&two).unwrap_err().1.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn the_allow_list_refuses_other_algorithms() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(&dir, vec![Algorithm::RS256]);
        assert_eq!(
            p.check(&bearer(&token(good(), "k1"))).unwrap_err().0,
            Outcome::BadAlgorithm
        );
    }

    #[test]
    fn a_verified_token_is_remembered_and_its_claims_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy(&dir, vec![]);
        let t = token(good(), "k1");
        let first = p.check(&bearer(&t)).unwrap();
        assert_eq!(p.token_cache(), (0, 1));
        let second = p.check(&bearer(&t)).unwrap();
        assert_eq!(first, second);
        assert_eq!(p.token_cache(), (1, 1), "the second check is a hit");
        // A changed byte is another token: verified from scratch, and refused.
        let mut tampered = t.clone();
        tampered.push('A');
        assert_eq!(
            p.check(&bearer(&tampered)).unwrap_err().0,
            Outcome::BadSignature
        );
        assert_eq!(p.token_cache(), (1, 1));
        // Refused tokens are never remembered.
        let expired = token(
            serde_json::json!({"sub": "a", "iss": "https://issuer.test", "aud": "orders", "exp": now() - 10}),
            "k1",
        );
        assert_eq!(p.check(&bearer(&expired)).unwrap_err().0, Outcome::Expired);
        assert_eq!(p.token_cache().1, 1);
    }

    #[test]
    fn a_remembered_token_still_expires_and_counts_only_for_its_key_set() {
        let keys = Arc::new(KeySet::default());
        let other = Arc::new(KeySet::default());
        let c = TokenCache::new(10);
        let mut claims = Claims::new();
        claims.insert("exp".into(), 1_000.into());
        claims.insert("nbf".into(), 900.into());
        c.put("t", Arc::clone(&keys), &claims, 950, 5);
        assert!(c.get("t", &keys, 950, 5).is_some());
        assert!(c.get("t", &keys, 1_005, 5).is_some(), "within the leeway");
        assert!(c.get("t", &other, 950, 5).is_none(), "another key set");
        assert!(c.get("t", &keys, 950, 5).is_none(), "dropped with the miss");
        c.put("t", Arc::clone(&keys), &claims, 950, 5);
        assert!(
            c.get("t", &keys, 1_006, 5).is_none(),
            "expired beyond the leeway"
        );
        c.put("t", Arc::clone(&keys), &claims, 950, 5);
        assert!(c.get("t", &keys, 894, 5).is_none(), "not valid yet");
    }

    #[test]
    fn a_full_cache_drops_expired_tokens_first_and_a_zero_size_remembers_nothing() {
        let keys = Arc::new(KeySet::default());
        let c = TokenCache::new(2);
        let until = |exp: i64| {
            let mut claims = Claims::new();
            claims.insert("exp".into(), exp.into());
            claims
        };
        c.put("a", Arc::clone(&keys), &until(100), 50, 0);
        c.put("b", Arc::clone(&keys), &until(200), 50, 0);
        c.put("c", Arc::clone(&keys), &until(300), 50, 0);
        assert_eq!(c.map.len(), 2, "full: nothing new");
        assert!(c.get("c", &keys, 50, 0).is_none());
        // At 150 "a" has expired: the sweep makes room.
        c.put("c", Arc::clone(&keys), &until(300), 150, 0);
        assert!(c.get("c", &keys, 150, 0).is_some());
        assert!(c.map.get("a").is_none());

        let off = TokenCache::new(0);
        off.put("a", keys.clone(), &until(100), 50, 0);
        assert!(off.get("a", &keys, 50, 0).is_none());
        assert_eq!(off.map.len(), 0);
    }
}
