//! `kind = "cors"` (the Fetch standard's CORS protocol): preflights are answered at the gateway,
//! and answers to allowed origins carry `Access-Control-Allow-*`. A refused origin gets no
//! `Access-Control-Allow-*` at all; `Vary: Origin` goes on every answer.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderName, HeaderValue, Method};

use super::{Headers, ResponseHeaders};
use crate::config::CorsConfig;

/// A compiled CORS policy.
#[derive(Debug)]
pub struct Cors {
    cfg: CorsConfig,
    /// Preflights answered 204, and refused.
    pub(super) preflights: [std::sync::atomic::AtomicU64; 2],
    /// Recent decisions.
    pub(super) recent: super::Recent,
    methods: HeaderValue,
    allow_headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
}

/// What the policy makes of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A preflight from an allowed origin: answer 204 with these headers; the upstream never
    /// sees it.
    Preflight(ResponseHeaders),
    /// A preflight the policy refuses: answer 403 with these headers (no `Access-Control-*`).
    Refused(ResponseHeaders),
    /// Not a preflight: go on, and put these headers on the answer.
    Actual(ResponseHeaders),
}

impl Cors {
    /// Compiles `cfg`, policy `name`'s.
    pub fn new(name: &str, cfg: &CorsConfig) -> Self {
        let join = |v: &[HeaderName]| {
            (!v.is_empty())
                .then(|| {
                    let s: Vec<&str> = v.iter().map(HeaderName::as_str).collect();
                    HeaderValue::from_str(&s.join(", ")).ok()
                })
                .flatten()
        };
        let methods: Vec<&str> = cfg.allow_methods.iter().map(Method::as_str).collect();
        Self {
            methods: HeaderValue::from_str(&methods.join(", "))
                .unwrap_or(HeaderValue::from_static("GET, HEAD, POST")),
            allow_headers: join(&cfg.allow_headers),
            expose: join(&cfg.expose_headers),
            max_age: cfg.max_age.map(|d| HeaderValue::from(d.as_secs())),
            cfg: cfg.clone(),
            preflights: Default::default(),
            recent: super::Recent::new(name),
        }
    }

    /// Judges a request: `method` and its headers.
    pub fn judge(&self, method: &Method, headers: &dyn Headers) -> Verdict {
        let origin = headers.get(&ORIGIN);
        let asked = headers.get(&ACCESS_CONTROL_REQUEST_METHOD);
        let mut out = ResponseHeaders::new();
        let allowed = origin.filter(|o| self.allows_origin(o));
        match (method == Method::OPTIONS, asked) {
            (true, Some(asked)) if origin.is_some() => {
                out.push((
                    VARY,
                    HeaderValue::from_static(
                        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
                    ),
                ));
                let asked_headers = headers.get(&ACCESS_CONTROL_REQUEST_HEADERS);
                let ok = allowed.is_some()
                    && self.allows_method(asked)
                    && asked_headers.is_none_or(|h| self.allows_headers(h));
                let Some(origin) = allowed.filter(|_| ok) else {
                    self.preflights[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Verdict::Refused(out);
                };
                self.preflights[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.allow_origin(origin, &mut out);
                out.push((ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone()));
                let echo = asked_headers
                    .filter(|_| self.cfg.any_header)
                    .and_then(|h| HeaderValue::from_bytes(h).ok());
                if let Some(h) = echo.or_else(|| self.allow_headers.clone()) {
                    out.push((ACCESS_CONTROL_ALLOW_HEADERS, h));
                }
                if let Some(a) = &self.max_age {
                    out.push((ACCESS_CONTROL_MAX_AGE, a.clone()));
                }
                Verdict::Preflight(out)
            }
            _ => {
                out.push((VARY, HeaderValue::from_static("Origin")));
                if let Some(origin) = allowed {
                    self.allow_origin(origin, &mut out);
                    if let Some(e) = &self.expose {
                        out.push((ACCESS_CONTROL_EXPOSE_HEADERS, e.clone()));
                    }
                }
                Verdict::Actual(out)
            }
        }
    }

    fn allow_origin(&self, origin: &[u8], out: &mut ResponseHeaders) {
        let value = if self.cfg.any_origin && !self.cfg.allow_credentials {
            HeaderValue::from_static("*")
        } else {
            match HeaderValue::from_bytes(origin) {
                Ok(v) => v,
                Err(_) => return,
            }
        };
        out.push((ACCESS_CONTROL_ALLOW_ORIGIN, value));
        if self.cfg.allow_credentials {
            out.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
    }

    fn allows_origin(&self, origin: &[u8]) -> bool {
        let Ok(o) = std::str::from_utf8(origin) else {
            return false;
        };
        self.cfg.any_origin || self.cfg.allow_origins.iter().any(|p| p.matches(o))
    }

    fn allows_method(&self, asked: &[u8]) -> bool {
        self.cfg
            .allow_methods
            .iter()
            .any(|m| m.as_str().as_bytes() == asked)
    }

    fn allows_headers(&self, asked: &[u8]) -> bool {
        if self.cfg.any_header {
            return true;
        }
        asked
            .split(|&b| b == b',')
            .map(|h| h.trim_ascii())
            .filter(|h| !h.is_empty())
            .all(|h| {
                self.cfg
                    .allow_headers
                    .iter()
                    .any(|a| a.as_str().as_bytes().eq_ignore_ascii_case(h))
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::config::OriginPattern;

    struct H(HashMap<HeaderName, Vec<u8>>);
    impl Headers for H {
        fn get(&self, name: &HeaderName) -> Option<&[u8]> {
            self.0.get(name).map(Vec::as_slice)
        }
    }

    fn h(pairs: &[(HeaderName, &str)]) -> H {
        H(pairs
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect())
    }

    fn cors(credentials: bool) -> Cors {
        Cors::new(
            "web",
            &CorsConfig {
                allow_origins: vec![
                    OriginPattern::Exact("https://app.example.com".into()),
                    OriginPattern::Wildcard {
                        prefix: "https://".into(),
                        suffix: ".example.com".into(),
                    },
                ],
                any_origin: false,
                allow_methods: vec![Method::GET, Method::PUT],
                allow_headers: vec![HeaderName::from_static("content-type")],
                any_header: false,
                allow_credentials: credentials,
                max_age: Some(Duration::from_secs(600)),
                expose_headers: vec![HeaderName::from_static("x-request-id")],
            },
        )
    }

    fn get<'a>(out: &'a ResponseHeaders, name: &HeaderName) -> Option<&'a str> {
        out.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn an_allowed_preflight_is_answered_with_every_header() {
        let req = h(&[
            (ORIGIN, "https://shop.example.com"),
            (ACCESS_CONTROL_REQUEST_METHOD, "PUT"),
            (ACCESS_CONTROL_REQUEST_HEADERS, "Content-Type"),
        ]);
        let Verdict::Preflight(out) = cors(true).judge(&Method::OPTIONS, &req) else {
            panic!("preflight")
        };
        assert_eq!(
            get(&out, &ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://shop.example.com")
        );
        assert_eq!(get(&out, &ACCESS_CONTROL_ALLOW_CREDENTIALS), Some("true"));
        assert_eq!(get(&out, &ACCESS_CONTROL_ALLOW_METHODS), Some("GET, PUT"));
        assert_eq!(
            get(&out, &ACCESS_CONTROL_ALLOW_HEADERS),
            Some("content-type")
        );
        assert_eq!(get(&out, &ACCESS_CONTROL_MAX_AGE), Some("600"));
        assert!(get(&out, &VARY).unwrap().starts_with("Origin"));
    }

    #[test]
    fn refused_preflights_carry_no_allow_headers() {
        for req in [
            h(&[
                (ORIGIN, "https://evil.net"),
                (ACCESS_CONTROL_REQUEST_METHOD, "PUT"),
            ]),
            h(&[
                (ORIGIN, "https://app.example.com"),
                (ACCESS_CONTROL_REQUEST_METHOD, "DELETE"),
            ]),
            h(&[
                (ORIGIN, "https://app.example.com"),
                (ACCESS_CONTROL_REQUEST_METHOD, "PUT"),
                (ACCESS_CONTROL_REQUEST_HEADERS, "content-type, x-secret"),
            ]),
        ] {
            let Verdict::Refused(out) = cors(true).judge(&Method::OPTIONS, &req) else {
                panic!("refused")
            };
            assert!(out
                .iter()
                .all(|(k, _)| !k.as_str().starts_with("access-control")));
            assert!(get(&out, &VARY).is_some());
        }
    }

    #[test]
    fn actual_answers_get_the_origin_only_when_allowed() {
        let ok = h(&[(ORIGIN, "https://app.example.com")]);
        let Verdict::Actual(out) = cors(false).judge(&Method::GET, &ok) else {
            panic!()
        };
        assert_eq!(
            get(&out, &ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://app.example.com")
        );
        assert_eq!(
            get(&out, &ACCESS_CONTROL_EXPOSE_HEADERS),
            Some("x-request-id")
        );
        assert_eq!(get(&out, &ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
        let evil = h(&[(ORIGIN, "https://app.example.com.evil.net")]);
        let Verdict::Actual(out) = cors(false).judge(&Method::GET, &evil) else {
            panic!()
        };
        assert_eq!(out, vec![(VARY, HeaderValue::from_static("Origin"))]);
        // An OPTIONS without Access-Control-Request-Method is an ordinary request.
        assert!(matches!(
            cors(false).judge(&Method::OPTIONS, &ok),
            Verdict::Actual(_)
        ));
    }
}
