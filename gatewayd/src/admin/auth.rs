//! Bearer-token check.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use subtle::ConstantTimeEq as _;

/// True when `headers` carry `Authorization: Bearer <token>` and `token` is configured. The
/// comparison takes the same time wherever the first differing byte is.
pub fn authorized(headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(token) = token else { return false };
    let Some(given) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(given) = given
        .strip_prefix("Bearer ")
        .or_else(|| given.strip_prefix("bearer "))
    else {
        return false;
    };
    bool::from(given.trim().as_bytes().ct_eq(token.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checks_bearer_token() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, Some("s3cret")));
        h.insert(AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(&h, Some("s3cret")));
        assert!(!authorized(&h, Some("s3cre")));
        assert!(
            !authorized(&h, None),
            "no configured token never authorizes"
        );
        h.insert(AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!authorized(&h, Some("s3cret")));
    }
}
