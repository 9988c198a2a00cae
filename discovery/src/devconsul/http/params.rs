//! Query strings, percent-decoding, tokens and the read options every query endpoint parses.

use ::http::HeaderMap;

/// Decoded query parameters in request order (Go's `url.Values` semantics).
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `a=1&b&c=x%20y` (`+` is a space).
    pub(crate) fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .unwrap_or("")
            .split(['&', ';'])
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k, true), percent_decode(v, true))
            })
            .collect();
        Self { pairs }
    }

    /// Presence, whatever the value (`?recurse`, `?recurse=false`).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// First value (`""` for `?key`).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated key.
    pub(crate) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Go's `url.Values.Encode()`: sorted by key, query-escaped.
    pub(crate) fn encode_sorted(&self) -> String {
        let mut pairs = self.pairs.clone();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Decodes `%XX` escapes (and `+` as a space when `plus` is set); invalid escapes stay as is.
pub(crate) fn percent_decode(s: &str, plus: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A presence-or-boolean flag (`?passing`, `?passing=1`, `?passing=false`): `Err` on a bad value.
pub(crate) fn bool_flag(params: &Params, key: &str) -> Result<bool, ()> {
    match params.get(key) {
        None => Ok(false),
        Some("") => Ok(true),
        Some(v) => parse_bool(v).ok_or(()),
    }
}

/// The request's ACL token: `?token=`, then `X-Consul-Token`, then `Authorization: Bearer`.
pub(crate) fn token(params: &Params, headers: &HeaderMap) -> Option<String> {
    if let Some(t) = params.get("token").filter(|t| !t.is_empty()) {
        return Some(t.to_owned());
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    if let Some(t) = header("x-consul-token") {
        return Some(t);
    }
    let auth = header("authorization")?;
    let (scheme, rest) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_owned())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ::http::HeaderValue;

    use super::*;

    #[test]
    fn parses_presence_flags_and_repeats() {
        let p = Params::parse(Some("recurse&tag=a&tag=b%20c&x=1+2&passing="));
        assert!(p.has("recurse"));
        assert_eq!(p.get("recurse"), Some(""));
        assert_eq!(p.all("tag").collect::<Vec<_>>(), vec!["a", "b c"]);
        assert_eq!(p.get("x"), Some("1 2"));
        assert_eq!(bool_flag(&p, "passing"), Ok(true));
        assert_eq!(
            bool_flag(&Params::parse(Some("passing=nope")), "passing"),
            Err(())
        );
        assert_eq!(
            bool_flag(&Params::parse(Some("passing=0")), "passing"),
            Ok(false)
        );
    }

    #[test]
    fn decodes_and_encodes() {
        assert_eq!(percent_decode("a%2Fb%zz%", false), "a/b%zz%");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(
            Params::parse(Some("cas=1&acquire=x y")).encode_sorted(),
            "acquire=x+y&cas=1"
        );
    }

    #[test]
    fn token_lookup_order() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer c"));
        assert_eq!(token(&Params::default(), &headers).as_deref(), Some("c"));
        headers.insert("x-consul-token", HeaderValue::from_static("b"));
        assert_eq!(token(&Params::default(), &headers).as_deref(), Some("b"));
        assert_eq!(
            token(&Params::parse(Some("token=a")), &headers).as_deref(),
            Some("a")
        );
        assert_eq!(
            token(&Params::parse(Some("token=")), &headers).as_deref(),
            Some("b")
        );
    }
}
