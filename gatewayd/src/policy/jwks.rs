//! A JWT policy's key set (JWKS): read from a file or fetched from a URL in the background on
//! the control runtime, refreshed on an interval and, at most once per interval, when a token
//! names a key id the set does not hold. Requests never wait for a fetch: they read the last
//! good set (an `ArcSwap` load). A failed refresh keeps the last good keys and says so in
//! [`JwksStatus`] and the metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::config::JwksSource;

/// A JWKS larger than this is refused (a key set is a few KiB).
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// While no key set was ever read, fetches are retried this often (at most the interval).
const FIRST_LOAD_RETRY: Duration = Duration::from_secs(1);

/// What kind of key, which decides the algorithms it may verify: an RSA key never verifies an
/// HMAC token, whatever the token's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
    Secret,
}

impl KeyType {
    fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::EcP256 => alg == ES256,
            Self::EcP384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
            Self::Secret => matches!(alg, HS256 | HS384 | HS512),
        }
    }
}

/// One usable key.
struct Key {
    kid: Option<String>,
    /// The JWK's own `alg`, when it names one: then only that algorithm.
    alg: Option<Algorithm>,
    kind: KeyType,
    key: DecodingKey,
}

/// The keys of one successful read.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// A key lookup's result.
pub enum Found<'a> {
    /// Keys that may verify the token (one when it names a known `kid`).
    Keys(Vec<&'a DecodingKey>),
    /// The token names a key id the set does not hold.
    UnknownKid,
    /// No key of the set may verify this algorithm.
    NoKeyForAlg,
}

impl KeySet {
    /// Parses a JWKS document; keys that cannot verify signatures (encryption keys, unknown
    /// types or curves) are skipped. Errors when nothing usable is left.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        for v in doc.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(v) else {
                continue;
            };
            if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            let kind = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => KeyType::Rsa,
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => KeyType::EcP256,
                    EllipticCurve::P384 => KeyType::EcP384,
                    _ => continue,
                },
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                    KeyType::Ed25519
                }
                AlgorithmParameters::OctetKeyPair(_) => continue,
                AlgorithmParameters::OctetKey(_) => KeyType::Secret,
            };
            let alg = match jwk.common.key_algorithm {
                None => None,
                Some(a) => match a.to_string().parse::<Algorithm>().ok() {
                    Some(alg) if kind.allows(alg) => Some(alg),
                    // A key whose declared algorithm it cannot serve (or an encryption
                    // algorithm) verifies nothing.
                    _ => continue,
                },
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                kind,
                key,
            });
        }
        if keys.is_empty() {
            return Err("the JWKS holds no usable signing key".into());
        }
        Ok(Self { keys })
    }

    /// The keys that may verify a token with this header's `alg` and `kid`.
    pub fn find(&self, alg: Algorithm, kid: Option<&str>) -> Found<'_> {
        let fits = |k: &&Key| k.kind.allows(alg) && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
                let Some(first) = named.next() else {
                    return Found::UnknownKid;
                };
                let keys: Vec<_> = std::iter::once(first)
                    .chain(named)
                    .filter(fits)
                    .map(|k| &k.key)
                    .collect();
                if keys.is_empty() {
                    Found::NoKeyForAlg
                } else {
                    Found::Keys(keys)
                }
            }
            None => {
                let keys: Vec<_> = self.keys.iter().filter(fits).map(|k| &k.key).collect();
                if keys.is_empty() {
                    Found::NoKeyForAlg
                } else {
                    Found::Keys(keys)
                }
            }
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A JWKS's state, for `/v1/config` (`jwks`) and the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwksStatus {
    /// The policy's name.
    pub policy: String,
    /// The file or URL.
    pub source: String,
    /// True once a key set was read (requests are verified); false: they get 503.
    pub loaded: bool,
    /// Keys held now.
    pub keys: usize,
    /// True when the last read failed and the keys served are the last good ones.
    pub stale: bool,
    /// When the keys were last read successfully (RFC 3339).
    pub last_success: Option<String>,
    /// Why the last read failed, while it is the latest news.
    pub last_error: Option<String>,
    /// Reads so far, successful and failed.
    pub fetches: u64,
    /// Failed reads so far.
    pub failures: u64,
    /// Requests whose token was found already verified (the policy's `token_cache_entries`).
    #[serde(default)]
    pub token_cache_hits: u64,
    /// Verified tokens remembered now.
    #[serde(default)]
    pub token_cache_entries: usize,
}

/// One policy's key set and its refresh state.
pub struct Jwks {
    policy: String,
    source: JwksSource,
    interval: Duration,
    keys: ArcSwap<KeySet>,
    loaded: AtomicBool,
    stale: AtomicBool,
    /// Reads, successful (0) and failed (1).
    pub(crate) fetches: [AtomicU64; 2],
    /// Clock nanos before which no unknown-`kid` refetch is asked for.
    refetch_after: AtomicU64,
    wake: Arc<Notify>,
    notes: Mutex<(Option<SystemTime>, Option<String>)>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("policy", &self.policy)
            .field("source", &self.source)
            .finish()
    }
}

impl Jwks {
    /// A key set for `policy`. A file is read at once; a URL is fetched by the background task
    /// [`Jwks::start`] spawns on the current tokio runtime (none: nothing is fetched).
    pub fn new(policy: &str, source: &JwksSource, interval: Duration) -> Arc<Self> {
        let j = Arc::new(Self {
            policy: policy.to_string(),
            source: source.clone(),
            interval,
            keys: ArcSwap::from_pointee(KeySet::default()),
            loaded: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            fetches: Default::default(),
            refetch_after: AtomicU64::new(0),
            wake: Arc::new(Notify::new()),
            notes: Mutex::new((None, None)),
        });
        if let JwksSource::File(path) = source {
            let read = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
            j.store(read.and_then(|b| KeySet::parse(&b)));
        }
        j.start();
        j
    }

    /// The keys now (empty until the first successful read).
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// True once a key set was read.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Relaxed)
    }

    /// A token named a key id the set lacks: asks the background task for a refetch, at most
    /// once per refresh interval however many requests ask (one of them wins the slot).
    pub fn unknown_kid(&self) {
        let now = crate::balance::now_nanos();
        let after = self.refetch_after.load(Relaxed);
        if now < after {
            return;
        }
        let next = now.saturating_add(self.interval.as_nanos() as u64);
        if self
            .refetch_after
            .compare_exchange(after, next, Relaxed, Relaxed)
            .is_ok()
        {
            self.wake.notify_one();
        }
    }

    /// The state, for the admin API.
    pub fn status(&self) -> JwksStatus {
        let notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        JwksStatus {
            policy: self.policy.clone(),
            source: match &self.source {
                JwksSource::File(p) => p.display().to_string(),
                JwksSource::Url(u) => u.clone(),
            },
            loaded: self.loaded(),
            keys: self.keys.load().len(),
            stale: self.stale.load(Relaxed),
            last_success: notes.0.map(crate::weights::rfc3339),
            last_error: notes.1.clone(),
            fetches: self.fetches[0].load(Relaxed) + self.fetches[1].load(Relaxed),
            failures: self.fetches[1].load(Relaxed),
            token_cache_hits: 0,
            token_cache_entries: 0,
        }
    }

    /// Keeps a read's result: new keys replace the old; a failure keeps them.
    fn store(&self, read: Result<KeySet, String>) {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        match read {
            Ok(set) => {
                self.fetches[0].fetch_add(1, Relaxed);
                let n = set.len();
                self.keys.store(Arc::new(set));
                self.loaded.store(true, Relaxed);
                self.stale.store(false, Relaxed);
                *notes = (Some(SystemTime::now()), None);
                tracing::debug!(policy = %self.policy, keys = n, "JWKS read");
            }
            Err(e) => {
                self.fetches[1].fetch_add(1, Relaxed);
                let loaded = self.loaded();
                self.stale.store(loaded, Relaxed);
                tracing::warn!(policy = %self.policy, error = %e, keeping_last_good = loaded, "JWKS read failed");
                notes.1 = Some(e);
            }
        }
    }

    async fn read(&self) -> Result<KeySet, String> {
        let body = match &self.source {
            JwksSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?,
            JwksSource::Url(url) => fetch(url).await?,
        };
        KeySet::parse(&body)
    }

    /// Spawns the refresh task on the current runtime. It holds only a weak reference: when
    /// the policy is dropped (a reload removed or changed it) the task ends.
    fn start(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        let wake = self.wake.clone();
        let interval = self.interval;
        let fetch_now = matches!(self.source, JwksSource::Url(_));
        rt.spawn(async move {
            let mut fetch = fetch_now;
            loop {
                if fetch {
                    let Some(j) = weak.upgrade() else { return };
                    let read = j.read().await;
                    j.store(read);
                }
                fetch = true;
                let wait = match weak.upgrade() {
                    None => return,
                    Some(j) if !j.loaded() => FIRST_LOAD_RETRY.min(interval),
                    Some(_) => interval,
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = wake.notified() => {}
                }
            }
        });
    }
}

impl Drop for Jwks {
    fn drop(&mut self) {
        // Wakes the refresh task so it sees the policy is gone.
        self.wake.notify_one();
    }
}

/// GETs a JWKS URL, bounded in time and size.
async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(|e| e.to_string())?;
    let mut resp = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: answered {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!("{url}: larger than {MAX_JWKS_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // An Ed25519 public key (RFC 8037 A.2) and an HMAC secret.
    const SET: &str = r#"{"keys":[
        {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"},
        {"kty":"oct","k":"c2VjcmV0","kid":"hs","alg":"HS256"},
        {"kty":"EC","crv":"P-256","use":"enc","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"enc"},
        {"kty":"XYZ","kid":"odd"}
    ]}"#;

    #[test]
    fn keys_verify_only_the_algorithms_of_their_type() {
        let set = KeySet::parse(SET.as_bytes()).unwrap();
        assert_eq!(set.len(), 2, "encryption and unknown keys are skipped");
        assert!(matches!(set.find(Algorithm::EdDSA, Some("ed")), Found::Keys(k) if k.len() == 1));
        // HMAC over a public key: the key's type refuses it.
        assert!(matches!(
            set.find(Algorithm::HS256, Some("ed")),
            Found::NoKeyForAlg
        ));
        // A key that names its algorithm verifies only that one.
        assert!(matches!(
            set.find(Algorithm::HS512, Some("hs")),
            Found::NoKeyForAlg
        ));
        assert!(matches!(
            set.find(Algorithm::RS256, Some("new")),
            Found::UnknownKid
        ));
        assert!(matches!(set.find(Algorithm::HS256, None), Found::Keys(k) if k.len() == 1));
    }

    #[test]
    fn a_set_without_usable_keys_is_an_error() {
        assert!(KeySet::parse(b"{\"keys\":[]}").is_err());
        assert!(KeySet::parse(b"not json").is_err());
    }

    #[test]
    fn unknown_kid_refetches_are_spaced_by_the_interval() {
        let j = Jwks::new(
            "p",
            &JwksSource::Url("http://127.0.0.1:9/jwks".into()),
            Duration::from_secs(3600),
        );
        j.unknown_kid();
        let first = j.refetch_after.load(Relaxed);
        assert!(first > 0);
        j.unknown_kid();
        assert_eq!(
            j.refetch_after.load(Relaxed),
            first,
            "one refetch per interval"
        );
    }
}
