//! The route policies' fields on an answer, whoever made it (the upstream, the gateway): on a
//! route with a CORS policy the gateway is the CORS authority.

use http::header::VARY;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Puts a chain's headers on an answer's header map. On a route with a CORS policy
/// ([`cors_authority`]) the gateway is the CORS authority: the answer's own `Access-Control-*`
/// are removed whatever the origin (a refused origin gets none at all), and its `Vary` is merged
/// with the policy's into one field. Other fields are appended.
pub fn add_to(map: &mut HeaderMap, extra: &[(HeaderName, HeaderValue)]) {
    if extra.is_empty() {
        return;
    }
    let mut vary = None;
    if cors_authority(extra) {
        let theirs: Vec<HeaderName> = map.keys().filter(|k| is_cors(k)).cloned().collect();
        for k in theirs {
            map.remove(k);
        }
        let mut merged = Vec::new();
        for v in map.get_all(VARY) {
            merge_vary(&mut merged, v.as_bytes());
        }
        vary = Some(merged);
    }
    for (k, v) in extra {
        match &mut vary {
            Some(merged) if k == VARY => merge_vary(merged, v.as_bytes()),
            _ => {
                map.append(k.clone(), v.clone());
            }
        }
    }
    if let Some(v) = vary.and_then(|m| HeaderValue::from_bytes(&m).ok()) {
        map.insert(VARY, v);
    }
}

/// An `Access-Control-*` response field.
pub fn is_cors(name: &HeaderName) -> bool {
    name.as_str().starts_with("access-control-")
}

/// True when a chain's answer headers come from a route with a CORS policy: that policy puts
/// `Vary` on every answer, and no other policy puts one on a request it lets through (an auth
/// service's `Vary` only reaches answers the gateway makes itself, which have no upstream
/// fields to replace).
pub fn cors_authority(extra: &[(HeaderName, HeaderValue)]) -> bool {
    extra.iter().any(|(k, _)| k == VARY)
}

/// Adds the field names of a `Vary` value to `merged` (a `Vary` value being built): each name
/// once, compared without case; `*` stands alone.
pub fn merge_vary(merged: &mut Vec<u8>, value: &[u8]) {
    if merged.as_slice() == b"*" {
        return;
    }
    for name in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
        if name.is_empty() {
            continue;
        }
        if name == b"*" {
            merged.clear();
            merged.push(b'*');
            return;
        }
        let known = merged
            .split(|&b| b == b',')
            .any(|m| m.trim_ascii().eq_ignore_ascii_case(name));
        if !known {
            if !merged.is_empty() {
                merged.extend_from_slice(b", ");
            }
            merged.extend_from_slice(name);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::header::ACCESS_CONTROL_ALLOW_ORIGIN;

    use super::*;

    fn merged(values: &[&str]) -> String {
        let mut m = Vec::new();
        for v in values {
            merge_vary(&mut m, v.as_bytes());
        }
        String::from_utf8(m).unwrap()
    }

    #[test]
    fn vary_names_merge_once_each() {
        assert_eq!(
            merged(&["Accept-Encoding", "Origin"]),
            "Accept-Encoding, Origin"
        );
        assert_eq!(
            merged(&["origin, Cookie", " Origin ,accept"]),
            "origin, Cookie, accept"
        );
        assert_eq!(merged(&["Cookie", "*", "Origin"]), "*");
        assert_eq!(merged(&["", " , "]), "");
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn a_cors_chain_replaces_the_answers_access_control_fields_whatever_the_origin() {
        let upstream = [
            ("access-control-allow-origin", "*"),
            ("access-control-allow-credentials", "true"),
            ("vary", "Accept-Encoding"),
            ("vary", "Cookie"),
        ];
        // A refused origin: the policy adds only `Vary`.
        let mut m = map(&upstream);
        add_to(&mut m, &[(VARY, HeaderValue::from_static("Origin"))]);
        assert!(m.keys().all(|k| !is_cors(k)), "{m:?}");
        let vary: Vec<_> = m.get_all(VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding, Cookie, Origin"]);
        // An allowed one: the policy's own, once.
        let mut m = map(&upstream);
        let ours = HeaderValue::from_static("https://app.example.com");
        add_to(
            &mut m,
            &[
                (VARY, HeaderValue::from_static("Origin")),
                (ACCESS_CONTROL_ALLOW_ORIGIN, ours.clone()),
            ],
        );
        let acao: Vec<_> = m.get_all(ACCESS_CONTROL_ALLOW_ORIGIN).iter().collect();
        assert_eq!(acao, [ours]);
        assert!(!m.contains_key("access-control-allow-credentials"));
        // No CORS policy: the answer's fields are left alone.
        let mut m = map(&upstream);
        add_to(
            &mut m,
            &[(super::super::RATELIMIT, HeaderValue::from_static("x"))],
        );
        assert_eq!(m["access-control-allow-origin"], "*");
        assert_eq!(m.get_all(VARY).iter().count(), 2);
    }
}
