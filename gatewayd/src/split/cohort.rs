//! Reading a cookie or header value from a request without allocating.

use http::header::COOKIE;
use http::Request;

use crate::config::RequestKey;

/// The value of `key` in `req`: the header's first value, or the named cookie from any `Cookie`
/// header. `None` when absent.
pub fn key_value<'a, B>(req: &'a Request<B>, key: &RequestKey) -> Option<&'a [u8]> {
    match key {
        RequestKey::Header(name) => req.headers().get(name).map(|v| v.as_bytes()),
        RequestKey::Cookie(name) => req
            .headers()
            .get_all(COOKIE)
            .iter()
            .find_map(|h| cookie_in(h.as_bytes(), name.as_bytes())),
    }
}

fn cookie_in<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| {
            let v = pair[eq + 1..].trim_ascii();
            v.strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::cookie_in;

    #[test]
    fn finds_cookies_among_others() {
        assert_eq!(
            cookie_in(b"a=1; session=abc; b=2", b"session"),
            Some(&b"abc"[..])
        );
        assert_eq!(cookie_in(b"session=\"q\"", b"session"), Some(&b"q"[..]));
        assert_eq!(cookie_in(b"xsession=1", b"session"), None);
        assert_eq!(cookie_in(b"", b"session"), None);
    }
}
