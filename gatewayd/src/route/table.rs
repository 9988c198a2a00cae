//! The compiled route table.
//!
//! Routes are bucketed by host, then, inside a host bucket, by the first path segment they can
//! match: a prefix that spans a whole first segment (`/api/…`) or an exact path can only match
//! requests whose path starts with that segment. Other routes (`/`, `/ap`) stay in a generic
//! list. A request looks at one segment list and the generic list and keeps the better match by
//! (rank, declaration order), so match cost does not grow with the number of routes on other
//! segments.
//!
//! Path templates go into a segment trie per host bucket: a node's literal children are a hash
//! map, its pattern children (`{}.json`, then `{}`) a short list in specificity order. The walk
//! tries the literal child first and backtracks to the patterns, so the first route found is the
//! most specific template; each node is visited at most once per request, and the cost follows
//! the path's depth, not the number of templates.

use http::Request;

use super::matcher::{host_of, Matcher};
use super::template::{Pattern, Segment};
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
    templates: Node,
}

/// A template trie node: the routes whose template ends here, and the next segment's children.
#[derive(Debug, Clone, Default)]
struct Node {
    routes: Vec<usize>,
    literal: FxHashMap<Box<str>, Node>,
    /// Sorted by specificity (more literal bytes first, whole `{name}` last).
    patterns: Vec<(Pattern, Node)>,
}

impl Bucket {
    fn push(&mut self, i: usize, route: &RouteConfig) {
        if let PathMatch::Template(t) = &route.path {
            return self.templates.insert(i, t.segments());
        }
        match route_segment(&route.path) {
            Some(seg) => self.by_segment.entry(seg.into()).or_default().push(i),
            None => self.generic.push(i),
        }
    }

    fn sort(&mut self, matchers: &[Matcher]) {
        // Stable sorts: equal ranks keep declaration order.
        let by_rank =
            |v: &mut Vec<usize>| v.sort_by(|&a, &b| matchers[a].rank().cmp(matchers[b].rank()));
        self.by_segment.values_mut().for_each(by_rank);
        by_rank(&mut self.generic);
        self.templates.sort(matchers);
    }
}

// === impl Node ===

impl Node {
    fn insert(&mut self, i: usize, segments: &[Segment]) {
        let Some((first, rest)) = segments.split_first() else {
            return self.routes.push(i);
        };
        let child = match first {
            Segment::Literal(l) => self.literal.entry(l.clone()).or_default(),
            Segment::Pattern(p) => {
                let at = match self
                    .patterns
                    .iter()
                    .position(|(q, _)| q.shape() == p.shape())
                {
                    Some(at) => at,
                    None => {
                        self.patterns.push((p.clone(), Node::default()));
                        self.patterns.len() - 1
                    }
                };
                &mut self.patterns[at].1
            }
        };
        child.insert(i, rest);
    }

    fn sort(&mut self, matchers: &[Matcher]) {
        self.routes
            .sort_by(|&a, &b| matchers[a].rank().cmp(matchers[b].rank()));
        self.patterns.sort_by_key(|(p, _)| p.rank());
        self.literal.values_mut().for_each(|n| n.sort(matchers));
        self.patterns.iter_mut().for_each(|(_, n)| n.sort(matchers));
    }

    /// The first route (in specificity order) whose template matches `rest`, the part of the
    /// path after this node's segments (`/seg…`, or empty at the end), and for which `ok` holds.
    fn find(&self, rest: &str, ok: &impl Fn(usize) -> bool) -> Option<usize> {
        let Some(after) = rest.strip_prefix('/') else {
            return self.routes.iter().copied().find(|&i| ok(i));
        };
        let (seg, tail) = after.find('/').map_or((after, ""), |e| after.split_at(e));
        if let Some(i) = self.literal.get(seg).and_then(|n| n.find(tail, ok)) {
            return Some(i);
        }
        self.patterns
            .iter()
            .filter(|(p, _)| p.matches(seg))
            .find_map(|(_, n)| n.find(tail, ok))
    }

    fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.literal.is_empty() && self.patterns.is_empty()
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
        // Templates live in the bucket's trie.
        PathMatch::Template(_) => None,
    }
}

/// The first segment of a request path: `/api/x` → `api`, `/` → ``.
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    // A plain scan: paths are short, and `str::find` sets up a searcher costing more than that.
    match rest.bytes().position(|b| b == b'/') {
        Some(end) => &rest[..end],
        None => rest,
    }
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
        let conditions = |i: usize| self.matchers[i].matches_conditions(method, headers);
        let better = |x: Option<usize>, y: Option<usize>| match (x, y) {
            (Some(x), Some(y)) => Some(
                if (self.matchers[x].rank(), x) <= (self.matchers[y].rank(), y) {
                    x
                } else {
                    y
                },
            ),
            (x, y) => x.or(y),
        };
        let best = |b: &Bucket| {
            let a = b.by_segment.get(seg).and_then(|ids| hit(ids));
            let g = hit(&b.generic);
            let t = if b.templates.is_empty() {
                None
            } else {
                b.templates.find(path, &conditions)
            };
            better(better(a, g), t)
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
