//! Header hygiene (RFC 9110 §7.6.1), forwarding headers and request ids.

use http::header::{HeaderName, CONNECTION, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderValue};
use rand::Rng;

/// Hop-by-hop headers removed in both directions besides those named in `Connection`.
static HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// `x-request-id`.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-forwarded-for`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-forwarded-host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// True for an HTTP/1.1 protocol-switch request (`Connection: upgrade` plus `Upgrade`).
pub fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(UPGRADE) && connection_has(h, "upgrade")
}

fn connection_has(h: &HeaderMap, token: &str) -> bool {
    h.get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Removes hop-by-hop headers and every header named in `Connection`. With `keep_upgrade`,
/// `Connection: upgrade` and `Upgrade` stay (a protocol switch is passed through).
pub fn remove_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none: one pass over the names is cheaper than seven lookups.
    if !keep_upgrade && !h.keys().any(|n| HOP_BY_HOP.contains(n)) {
        return;
    }
    if h.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = h
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(keep_upgrade && n == UPGRADE))
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    let te_trailers = h
        .get(TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for n in &HOP_BY_HOP {
        if keep_upgrade && (n == CONNECTION || n == UPGRADE) {
            continue;
        }
        h.remove(n);
    }
    if keep_upgrade {
        h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if te_trailers {
        // The one TE value allowed end to end (gRPC needs it).
        h.insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// Adds `X-Forwarded-For` (appending the peer), `X-Forwarded-Proto` and `X-Forwarded-Host`.
pub fn add_forwarded(
    h: &mut HeaderMap,
    peer: std::net::IpAddr,
    https: bool,
    host: Option<&HeaderValue>,
    trusted: bool,
) {
    if !trusted {
        remove_forwarded(h);
    }
    let mut ip_buf = [0u8; 64];
    let ip = format_ip(peer, &mut ip_buf);
    let xff = match h.get(&X_FORWARDED_FOR) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(ip);
            HeaderValue::from_bytes(&v).ok()
        }
        None => HeaderValue::from_bytes(ip).ok(),
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !h.contains_key(&X_FORWARDED_PROTO) {
        h.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(if https { "https" } else { "http" }),
        );
    }
    if let Some(host) = host {
        if !h.contains_key(&X_FORWARDED_HOST) {
            h.insert(X_FORWARDED_HOST.clone(), host.clone());
        }
    }
}

/// Removes a client's `X-Forwarded-*`: what an untrusted peer says about the client's address,
/// scheme or host is not believed.
pub fn remove_forwarded(h: &mut HeaderMap) {
    h.remove(&X_FORWARDED_FOR);
    h.remove(&X_FORWARDED_PROTO);
    h.remove(&X_FORWARDED_HOST);
}

pub(crate) fn format_ip(ip: std::net::IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    use std::io::Write as _;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cur, "{ip}");
    let n = cur.position() as usize;
    &buf[..n]
}

/// The request's id: the client's `x-request-id` when it is a sane token, else a new one.
pub fn request_id<R: Rng + ?Sized>(h: &mut HeaderMap, rng: &mut R) -> HeaderValue {
    if let Some(v) = h.get(&REQUEST_ID) {
        if !v.is_empty() && v.len() <= 200 {
            return v.clone();
        }
    }
    let id = new_request_id(rng);
    h.insert(REQUEST_ID.clone(), id.clone());
    id
}

/// 32 lower-case hex digits from 128 random bits.
pub fn new_request_id<R: Rng + ?Sized>(rng: &mut R) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rng.gen();
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Host to forward: the `Host` header, or the URI authority for HTTP/2 clients.
pub fn host_value(h: &HeaderMap, uri: &http::Uri) -> Option<HeaderValue> {
    h.get(HOST).cloned().or_else(|| {
        uri.authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn removes_hop_by_hop_and_connection_listed() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert(TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(TE, "gzip".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn keeps_te_trailers_and_upgrade_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(TE, "trailers".parse().unwrap());
        h.insert(CONNECTION, "Upgrade".parse().unwrap());
        h.insert(UPGRADE, "websocket".parse().unwrap());
        assert!(is_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h[TE], "trailers");
        assert_eq!(h[UPGRADE], "websocket");
        assert_eq!(h[CONNECTION], "upgrade");
    }

    #[test]
    fn appends_forwarded_for_only_from_trusted_proxies() {
        let client = || {
            let mut h = HeaderMap::new();
            h.insert(&X_FORWARDED_FOR, "10.0.0.1".parse().unwrap());
            h.insert(&X_FORWARDED_PROTO, "https".parse().unwrap());
            h
        };
        let host = HeaderValue::from_static("a.example");
        let mut h = client();
        add_forwarded(
            &mut h,
            "127.0.0.1".parse().unwrap(),
            false,
            Some(&host),
            true,
        );
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
        assert_eq!(
            h[&X_FORWARDED_PROTO], "https",
            "a trusted proxy's scheme is kept"
        );
        assert_eq!(h[&X_FORWARDED_HOST], "a.example");
        let mut h = client();
        add_forwarded(
            &mut h,
            "127.0.0.1".parse().unwrap(),
            false,
            Some(&host),
            false,
        );
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
    }

    #[test]
    fn request_ids_are_kept_or_generated() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let mut h = HeaderMap::new();
        let id = request_id(&mut h, &mut rng);
        assert_eq!(id.len(), 32);
        assert_eq!(h[&REQUEST_ID], id);
        let mut h2 = HeaderMap::new();
        h2.insert(&REQUEST_ID, "abc".parse().unwrap());
        assert_eq!(request_id(&mut h2, &mut rng), "abc");
    }
}
