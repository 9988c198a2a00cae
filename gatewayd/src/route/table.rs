//! The compiled route table.
//!
//! Routes are bucketed by host, then, inside a host bucket, by the first path segment they can
//! match: a prefix that spans a whole first segment (`/api/…`) or an exact path can only match
//! requests whose path starts with that segment. Other routes (`/`, `/ap`) stay in a generic
//! list. A request looks at one segment list and the generic list and keeps the better match by
//! (rank, declaration order), so match cost does not grow with the number of routes on other
//! segments.

use http::Request;

use super::matcher::{host_of, Matcher};
use crate::config::{HostMatch, PathMatch, RouteConfig};
use crate::fxhash::FxHashMap;

/// Routes bucketed by host and first path segment, sorted by specificity. Built once per config.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    matchers: Vec<Matcher>,
    exact: FxHashMap<Box<str>, Bucket>,
    /// (".example.com", routes), longest suffix first.
    suffix: Vec<(Box<str>, Bucket)>,
    any: Bucket,
}

/// The routes of one host condition.
#[derive(Debug, Clone, Default)]
struct Bucket {
    by_segment: FxHashMap<Box<str>, Vec<usize>>,
    generic: Vec<usize>,
}

impl Bucket {
    fn push(&mut self, i: usize, route: &RouteConfig) {
        match route_segment(&route.path) {
            Some(seg) => self.by_segment.entry(seg.into()).or_default().push(i),
            None => self.generic.push(i),
        }
    }

    fn sort(&mut self, matchers: &[Matcher]) {
        // Stable sorts: equal ranks keep declaration order.
        let by_rank = |v: &mut Vec<usize>| v.sort_by_key(|&i| matchers[i].rank());
        self.by_segment.values_mut().for_each(by_rank);
        by_rank(&mut self.generic);
    }
}

/// The first path segment every request matching `path` has, when the route fixes one.
fn route_segment(path: &PathMatch) -> Option<&str> {
    match path {
        PathMatch::Exact(p) => Some(first_segment(p)),
        PathMatch::Prefix(p) => {
            let rest = p.strip_prefix('/')?;
            rest.find('/').map(|end| &rest[..end])
        }
    }
}

/// The first segment of a request path: `/api/x` → `api`, `/` → ``.
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.find('/').map_or(rest, |end| &rest[..end])
}

impl RouteTable {
    /// Compiles `routes`; indexes returned by `match_request` are indexes into this slice.
    pub fn new(routes: &[RouteConfig]) -> Self {
        let matchers: Vec<Matcher> = routes.iter().map(Matcher::new).collect();
        let mut exact: FxHashMap<Box<str>, Bucket> = FxHashMap::default();
        let mut suffix: Vec<(Box<str>, Bucket)> = Vec::new();
        let mut any = Bucket::default();
        for (i, r) in routes.iter().enumerate() {
            match &r.host {
                Some(HostMatch::Exact(h)) => exact.entry(h.as_str().into()).or_default().push(i, r),
                Some(HostMatch::Suffix(s)) => match suffix.iter_mut().find(|(x, _)| **x == **s) {
                    Some((_, b)) => b.push(i, r),
                    None => {
                        let mut b = Bucket::default();
                        b.push(i, r);
                        suffix.push((s.as_str().into(), b));
                    }
                },
                None => any.push(i, r),
            }
        }
        exact.values_mut().for_each(|b| b.sort(&matchers));
        suffix.iter_mut().for_each(|(_, b)| b.sort(&matchers));
        suffix.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        any.sort(&matchers);
        Self {
            matchers,
            exact,
            suffix,
            any,
        }
    }

    /// Index of the most specific route matching `req`, if any.
    pub fn match_request<B>(&self, req: &Request<B>) -> Option<usize> {
        let path = req.uri().path();
        let seg = first_segment(path);
        let (method, headers) = (req.method(), req.headers());
        let hit = |ids: &[usize]| {
            ids.iter()
                .copied()
                .find(|&i| self.matchers[i].matches(method, path, headers))
        };
        let best = |b: &Bucket| {
            let a = b.by_segment.get(seg).and_then(|ids| hit(ids));
            let g = hit(&b.generic);
            match (a, g) {
                (Some(x), Some(y)) => Some(
                    if (self.matchers[x].rank(), x) <= (self.matchers[y].rank(), y) {
                        x
                    } else {
                        y
                    },
                ),
                (x, y) => x.or(y),
            }
        };
        // Without host conditions the host is not even looked at.
        if let Some(host) = self.reads_host().then(|| host_of(req)).flatten() {
            if let Some(i) = self.exact.get(host.as_ref()).and_then(best) {
                return Some(i);
            }
            for (s, b) in &self.suffix {
                if host.len() > s.len() && host.ends_with(s.as_ref()) {
                    if let Some(i) = best(b) {
                        return Some(i);
                    }
                }
            }
        }
        best(&self.any)
    }

    /// True when some route has a host condition.
    pub fn reads_host(&self) -> bool {
        !(self.exact.is_empty() && self.suffix.is_empty())
    }

    /// True when some route matches on a header.
    pub fn reads_headers(&self) -> bool {
        self.matchers.iter().any(Matcher::reads_headers)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.matchers.len()
    }

    /// True when there is no route (every request gets 404).
    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }
}
