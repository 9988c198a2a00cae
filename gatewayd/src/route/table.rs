//! The compiled route table.

use std::collections::HashMap;

use http::Request;

use super::matcher::{host_of, Matcher};
use crate::config::{HostMatch, RouteConfig};

/// Routes bucketed by host and sorted by specificity. Built once per config.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    matchers: Vec<Matcher>,
    exact: HashMap<Box<str>, Vec<usize>>,
    /// (".example.com", routes), longest suffix first.
    suffix: Vec<(Box<str>, Vec<usize>)>,
    any: Vec<usize>,
}

impl RouteTable {
    /// Compiles `routes`; indexes returned by `match_request` are indexes into this slice.
    pub fn new(routes: &[RouteConfig]) -> Self {
        let matchers: Vec<Matcher> = routes.iter().map(Matcher::new).collect();
        let mut exact: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut suffix: Vec<(Box<str>, Vec<usize>)> = Vec::new();
        let mut any = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            match &r.host {
                Some(HostMatch::Exact(h)) => exact.entry(h.as_str().into()).or_default().push(i),
                Some(HostMatch::Suffix(s)) => match suffix.iter_mut().find(|(x, _)| **x == **s) {
                    Some((_, v)) => v.push(i),
                    None => suffix.push((s.as_str().into(), vec![i])),
                },
                None => any.push(i),
            }
        }
        // Stable sorts: equal ranks keep declaration order.
        let by_rank = |v: &mut Vec<usize>| v.sort_by_key(|&i| matchers[i].rank());
        exact.values_mut().for_each(by_rank);
        suffix.iter_mut().for_each(|(_, v)| by_rank(v));
        suffix.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        by_rank(&mut any);
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
        let (method, headers) = (req.method(), req.headers());
        let hit = |ids: &[usize]| {
            ids.iter()
                .copied()
                .find(|&i| self.matchers[i].matches(method, path, headers))
        };
        if let Some(host) = host_of(req) {
            if let Some(i) = self.exact.get(host.as_ref()).and_then(|ids| hit(ids)) {
                return Some(i);
            }
            for (s, ids) in &self.suffix {
                if host.len() > s.len() && host.ends_with(s.as_ref()) {
                    if let Some(i) = hit(ids) {
                        return Some(i);
                    }
                }
            }
        }
        hit(&self.any)
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
