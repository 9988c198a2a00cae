//! The SNI resolver: exact name → wildcard (`*.example.com`, one label) → default certificate
//! (unless strict). The table lives behind an `ArcSwap`, so a reload swaps it for new handshakes
//! while connections already established keep the certificate they were given.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::LoadedCert;

/// An immutable name → certificate table.
#[derive(Debug, Default)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.` (`example.com` for `*.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    strict: bool,
}

impl CertStore {
    /// Builds the table from loaded certificates. When two certificates claim a name, the one
    /// listed first wins. `default` indexes `certs` (out of range: no default). `strict`: no
    /// default for unknown names or clients without SNI.
    pub fn new(certs: &[LoadedCert], default: usize, strict: bool) -> Self {
        let mut s = Self {
            strict,
            default: certs.get(default).map(|c| c.key.clone()),
            ..Self::default()
        };
        for c in certs {
            for name in &c.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut s.wildcard, suffix.to_string()),
                    None => (&mut s.exact, name.clone()),
                };
                map.entry(key).or_insert_with(|| c.key.clone());
            }
        }
        s
    }

    /// The certificate for `sni` (lower-cased by rustls already; compared case-insensitively
    /// anyway). `None` refuses the handshake.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = sni else {
            return if self.strict {
                None
            } else {
                self.default.clone()
            };
        };
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(k) = self.exact.get(name) {
            return Some(k.clone());
        }
        // A wildcard covers exactly one label: the first one is replaced, the rest must match.
        if let Some((first, rest)) = name.split_once('.') {
            if !first.is_empty() {
                if let Some(k) = self.wildcard.get(rest) {
                    return Some(k.clone());
                }
            }
        }
        if self.strict {
            None
        } else {
            self.default.clone()
        }
    }
}

/// The resolver a listener's `ServerConfig` holds; [`SniResolver::swap`] replaces its table.
pub struct SniResolver {
    store: ArcSwap<CertStore>,
}

impl SniResolver {
    /// A resolver serving `store`.
    pub fn new(store: CertStore) -> Self {
        Self {
            store: ArcSwap::from_pointee(store),
        }
    }

    /// New handshakes use `store` from now on; established connections are not affected.
    pub fn swap(&self, store: CertStore) {
        self.store.store(Arc::new(store));
    }

    /// The certificate a handshake with this SNI would get now.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.store.load().lookup(sni)
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.store.load();
        f.debug_struct("SniResolver")
            .field("exact", &s.exact.len())
            .field("wildcard", &s.wildcard.len())
            .field("strict", &s.strict)
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.lookup(hello.server_name())
    }
}
