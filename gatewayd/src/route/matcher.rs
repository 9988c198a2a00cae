//! One route's request conditions, and the path rewrite.

use std::borrow::Cow;
use std::cmp::Reverse;

use http::header::HOST;
use http::{HeaderMap, Method, Request};

use super::template::SegmentRank;
use crate::config::{HeaderMatch, PathMatch, Rewrite, RouteConfig};

/// The conditions of one route other than its host.
#[derive(Debug, Clone)]
pub struct Matcher {
    path: PathMatch,
    methods: Vec<Method>,
    headers: Vec<HeaderMatch>,
    rank: Rank,
}

/// A route's specificity; smaller is more specific. Exact paths, then templates (compared segment
/// by segment: literal, then partial, then whole `{name}`), then prefixes; longer paths first;
/// routes with methods before those without; more header conditions first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rank {
    kind: u8,
    len: Reverse<usize>,
    segments: Vec<SegmentRank>,
    any_method: bool,
    headers: Reverse<usize>,
}

impl Matcher {
    /// Compiles a route's path, method and header conditions.
    pub fn new(route: &RouteConfig) -> Self {
        let (kind, len, segments) = match &route.path {
            PathMatch::Exact(p) => (0, p.len(), Vec::new()),
            PathMatch::Template(t) => (1, 0, t.rank()),
            PathMatch::Prefix(p) => (2, p.len(), Vec::new()),
        };
        Self {
            path: route.path.clone(),
            methods: route.methods.clone(),
            headers: route.headers.clone(),
            rank: Rank {
                kind,
                len: Reverse(len),
                segments,
                any_method: route.methods.is_empty(),
                headers: Reverse(route.headers.len()),
            },
        }
    }

    /// True when the route has header conditions.
    pub fn reads_headers(&self) -> bool {
        !self.headers.is_empty()
    }

    /// True when method, path and headers all match.
    pub fn matches(&self, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        let path_ok = match &self.path {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
            PathMatch::Template(t) => t.matches(path),
        };
        path_ok && self.matches_conditions(method, headers)
    }

    /// True when method and headers match (the path is checked elsewhere).
    pub(super) fn matches_conditions(&self, method: &Method, headers: &HeaderMap) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self
                .headers
                .iter()
                .all(|h| match (&h.value, headers.get(&h.name)) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(want), Some(got)) => got.as_bytes() == want.as_bytes(),
                })
    }

    /// Sort key: smaller is more specific.
    pub(super) fn rank(&self) -> &Rank {
        &self.rank
    }
}

/// The request's host, lower-cased and without port: the URI authority (HTTP/2, absolute-form)
/// or else the `Host` header. `None` when neither is present or the header is not text.
pub fn host_of<B>(req: &Request<B>) -> Option<Cow<'_, str>> {
    let raw = match req.uri().authority() {
        Some(a) => a.host(),
        None => {
            let h = req.headers().get(HOST)?.to_str().ok()?;
            strip_port(h)
        }
    };
    if raw.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(raw.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(raw))
    }
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        // IPv6 literal: keep the brackets, as `Authority::host` does. Without a closing bracket
        // the header is malformed and is matched as written (only host-less routes match it).
        return h.find(']').map_or(h, |end| &h[..=end]);
    }
    match h.rfind(':') {
        Some(i) if h[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &h[..i],
        _ => h,
    }
}

/// Applies a route's rewrite to `path` (without query). `matched` is the route's prefix.
pub fn rewrite_path<'a>(rewrite: &Rewrite, matched: &str, path: &'a str) -> Cow<'a, str> {
    let rest = path.get(matched.len()..).unwrap_or("");
    match rewrite {
        Rewrite::StripPrefix if rest.starts_with('/') => Cow::Borrowed(rest),
        Rewrite::StripPrefix => Cow::Owned(format!("/{rest}")),
        Rewrite::ReplacePrefix(p) => {
            if p.ends_with('/') && rest.starts_with('/') {
                Cow::Owned(format!("{}{}", p, &rest[1..]))
            } else {
                Cow::Owned(format!("{p}{rest}"))
            }
        }
    }
}
