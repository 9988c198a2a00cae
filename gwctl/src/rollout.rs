//! Pure traffic-shifting logic shared by the CLI and the console: canary steps, the `+`/`-`
//! nudge, which backend is "the canary", the blue/green flip preview and the canary guards.
//! Weights are produced as percentages (summing to 100); the gateway accepts any scale.

use std::collections::BTreeMap;

use gatewayd::admin::model::{RouteDetail, RouteInfo, UpstreamInfo, WeightChange, WeightsUpdate};

use crate::aggregate::RouteAgg;

mod canary;
mod guard;
mod parse;

pub use canary::{
    canary_baseline, guard_failed, judge, observe, poll_period, rollback_conflict, rollback_failed,
    rollback_to_start, step_conflict, step_failed, step_update, CanaryAuthor, Judgement,
};
pub use guard::{evaluate, Guard, Observed, Verdict};
pub use parse::{parse_rate, parse_steps, parse_weight_pairs};

/// Backend name → weight.
pub type Weights = BTreeMap<String, u32>;

/// A traffic change that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// The route has no such backend.
    #[error("route {route} has no backend {backend:?} (it has: {known})")]
    UnknownBackend {
        /// Route name.
        route: String,
        /// Backend asked for.
        backend: String,
        /// Comma-separated backends of the route.
        known: String,
    },
    /// Flip only swaps two backends.
    #[error("flip needs exactly two backends; route {route} has {count}")]
    NotTwoBackends {
        /// Route name.
        route: String,
        /// How many it has.
        count: usize,
    },
    /// Bad argument text (steps, rates, `name=weight` pairs).
    #[error("{0}")]
    Invalid(String),
}

/// What a flip would do, for the confirmation dialog.
#[derive(Debug, Clone, PartialEq)]
pub struct FlipPreview {
    /// Route name.
    pub route: String,
    /// Weights now.
    pub from: Weights,
    /// Weights after the flip.
    pub to: Weights,
    /// Every endpoint of both backends with its share of the route's traffic.
    pub endpoints: Vec<EndpointShare>,
    /// Current error rate and p99 of each side (`None` without stats).
    pub sides: Vec<SideStats>,
}

/// One endpoint's share of a route's traffic, before and after a change, in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointShare {
    /// Backend name.
    pub backend: String,
    /// `ip:port`.
    pub addr: String,
    /// Percent of the route's traffic now.
    pub before: f64,
    /// Percent after the change (ejected endpoints get 0 until they return).
    pub after: f64,
    /// Ejected by outlier detection now.
    pub ejected: bool,
}

/// Current health of one side of a flip.
#[derive(Debug, Clone, PartialEq)]
pub struct SideStats {
    /// Backend name.
    pub backend: String,
    /// 5xx / requests over all time, if any request was seen.
    pub error_rate: Option<f64>,
    /// p99 in ms, if any request was seen.
    pub p99_ms: Option<f64>,
}

/// Effective weights of a route.
pub fn weights_of(route: &RouteInfo) -> Weights {
    route
        .backends
        .iter()
        .map(|b| (b.name.clone(), b.weight))
        .collect()
}

/// File (default) weights of a route.
pub fn file_weights_of(route: &RouteInfo) -> Weights {
    route
        .backends
        .iter()
        .map(|b| (b.name.clone(), b.file_weight))
        .collect()
}

/// Each backend's percent of traffic (all 0 when every weight is 0).
pub fn shares(weights: &Weights) -> BTreeMap<String, f64> {
    let total: u64 = weights.values().map(|w| u64::from(*w)).sum();
    weights
        .iter()
        .map(|(k, w)| {
            let pct = if total == 0 {
                0.0
            } else {
                f64::from(*w) * 100.0 / total as f64
            };
            (k.clone(), pct)
        })
        .collect()
}

/// Weights (summing to 100) giving `canary` exactly `percent`% and the other backends the rest in
/// proportion to their weights in `basis`; when they are all 0 there, in proportion to
/// `fallback` (typically the file weights), and when those are 0 too, equally.
pub fn split_weights(
    route: &str,
    basis: &Weights,
    fallback: &Weights,
    canary: &str,
    percent: u32,
) -> Result<Weights, RolloutError> {
    if !basis.contains_key(canary) {
        return Err(unknown(route, basis, canary));
    }
    let percent = percent.min(100);
    let others: Vec<&String> = basis.keys().filter(|k| *k != canary).collect();
    if others.is_empty() && percent < 100 {
        return Err(RolloutError::Invalid(format!(
            "route {route} has no backend besides {canary} to take the other {}%",
            100 - percent
        )));
    }
    let pick = |w: &Weights| -> Vec<u64> {
        others
            .iter()
            .map(|k| u64::from(w.get(*k).copied().unwrap_or(0)))
            .collect()
    };
    let mut proportions = pick(basis);
    if proportions.iter().all(|w| *w == 0) {
        proportions = pick(fallback);
    }
    if proportions.iter().all(|w| *w == 0) {
        proportions = vec![1; others.len()];
    }
    let rest = largest_remainder(u64::from(100 - percent), &proportions);
    let mut out = Weights::new();
    out.insert(canary.to_string(), percent);
    for (k, w) in others.into_iter().zip(rest) {
        out.insert(k.clone(), u32::try_from(w).unwrap_or(u32::MAX));
    }
    Ok(out)
}

/// The `+`/`-` keys: moves `canary`'s share by `delta` percentage points (clamped to 0–100).
/// `Ok(None)` when it is already at that end.
pub fn nudge(route: &RouteInfo, canary: &str, delta: i32) -> Result<Option<Weights>, RolloutError> {
    let current = weights_of(route);
    let now = shares(&current)
        .get(canary)
        .copied()
        .ok_or_else(|| unknown(&route.name, &current, canary))?;
    let target = (now.round() as i64 + i64::from(delta)).clamp(0, 100);
    let target = u32::try_from(target).unwrap_or(0);
    let next = split_weights(
        &route.name,
        &current,
        &file_weights_of(route),
        canary,
        target,
    )?;
    Ok((shares(&next) != shares(&current)).then_some(next))
}

/// The backend `+`/`-` move: the one whose weight rose in the last change when exactly one did,
/// else the one with the smallest weight (the last of equals). `None` for single-backend routes.
pub fn canary_backend(route: &RouteInfo, last: Option<&WeightChange>) -> Option<String> {
    if route.backends.len() < 2 {
        return None;
    }
    if let Some(change) = last {
        let rose: Vec<&String> = change
            .weights
            .iter()
            .filter(|(k, w)| **w > change.previous.get(*k).copied().unwrap_or(0))
            .map(|(k, _)| k)
            .collect();
        if let [one] = rose.as_slice() {
            if route.backends.iter().any(|b| &b.name == *one) {
                return Some((*one).clone());
            }
        }
    }
    let mut best: Option<&gatewayd::admin::model::BackendInfo> = None;
    for b in &route.backends {
        best = match best {
            Some(x) if b.weight > x.weight => Some(x),
            _ => Some(b),
        };
    }
    best.map(|b| b.name.clone())
}

/// What flipping a two-backend route would do. `upstreams` gives the endpoints of each backend's
/// service (unknown services contribute no endpoint rows); `stats` the current error rate and
/// p99 of each side.
pub fn flip_preview(
    route: &RouteInfo,
    upstreams: &[UpstreamInfo],
    stats: Option<&RouteAgg>,
) -> Result<FlipPreview, RolloutError> {
    let [a, b] = route.backends.as_slice() else {
        return Err(RolloutError::NotTwoBackends {
            route: route.name.clone(),
            count: route.backends.len(),
        });
    };
    let from = weights_of(route);
    let mut to = Weights::new();
    to.insert(a.name.clone(), b.weight);
    to.insert(b.name.clone(), a.weight);
    let (before, after) = (shares(&from), shares(&to));
    let mut endpoints = Vec::new();
    for backend in [a, b] {
        let Some(up) = upstreams.iter().find(|u| u.service == backend.service) else {
            continue;
        };
        let live: u64 = up
            .endpoints
            .iter()
            .filter(|e| !e.ejected)
            .map(|e| u64::from(e.weight))
            .sum();
        for e in &up.endpoints {
            let part = if e.ejected || live == 0 {
                0.0
            } else {
                f64::from(e.weight) / live as f64
            };
            let of =
                |m: &BTreeMap<String, f64>| m.get(&backend.name).copied().unwrap_or(0.0) * part;
            endpoints.push(EndpointShare {
                backend: backend.name.clone(),
                addr: e.addr.clone(),
                before: of(&before),
                after: of(&after),
                ejected: e.ejected,
            });
        }
    }
    let sides = [a, b]
        .iter()
        .map(|backend| {
            let agg = stats
                .and_then(|s| s.backend(&backend.name))
                .filter(|x| x.requests > 0);
            SideStats {
                backend: backend.name.clone(),
                error_rate: agg.map(|x| x.error_rate()),
                p99_ms: agg.filter(|x| !x.hist.is_empty()).map(|x| x.latency().p99),
            }
        })
        .collect();
    Ok(FlipPreview {
        route: route.name.clone(),
        from,
        to,
        endpoints,
        sides,
    })
}

/// The update that undoes a route's last weight change: its `previous` weights, conditional on
/// the current revision (so it fails with 409 if someone changed them meanwhile).
pub fn rollback_update(
    detail: &RouteDetail,
    reason: Option<String>,
    changed_by: String,
) -> Result<WeightsUpdate, RolloutError> {
    let last = detail.history.last().ok_or_else(|| {
        RolloutError::Invalid(format!(
            "route {} has no weight change to roll back",
            detail.route.name
        ))
    })?;
    Ok(WeightsUpdate {
        weights: last.previous.clone(),
        reason: Some(reason.unwrap_or_else(|| format!("rollback of revision {}", last.revision))),
        changed_by: Some(changed_by),
        expected_revision: Some(detail.route.weights.revision),
    })
}

/// `a=90 b=10`-style rendering of weights.
pub fn format_weights(w: &Weights) -> String {
    w.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unknown(route: &str, known: &Weights, backend: &str) -> RolloutError {
    RolloutError::UnknownBackend {
        route: route.to_string(),
        backend: backend.to_string(),
        known: known.keys().cloned().collect::<Vec<_>>().join(", "),
    }
}

/// Splits `total` into integers proportional to `parts` (not all 0), summing to `total`;
/// leftover units go to the largest fractional remainders (earlier index on ties).
fn largest_remainder(total: u64, parts: &[u64]) -> Vec<u64> {
    let sum: u64 = parts.iter().sum();
    if sum == 0 {
        return vec![0; parts.len()];
    }
    let mut out: Vec<u64> = parts.iter().map(|p| total * p / sum).collect();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(total * parts[i] % sum));
    let mut left = total - out.iter().sum::<u64>();
    for i in order {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

#[cfg(test)]
mod tests;
