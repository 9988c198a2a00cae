//! `gwctl stats [ROUTE]`: merged over every gateway.

use base64::Engine as _;
use clap::Args;
use gatewayd::admin::model::{BackendStats, RouteStats, Stats};
use hdrhistogram::serialization::{Serializer as _, V2Serializer};

use super::output::{print_json, Table};
use super::{gather, split_answers};
use crate::aggregate::{merge_stats, BackendAgg, RouteAgg};
use crate::client::AdminClient;
use crate::error::CliError;
use crate::format;

/// Arguments of `gwctl stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this route.
    pub route: Option<String>,
}

/// `gwctl stats`: counters add and histograms merge exactly across gateways. JSON has the shape
/// of `/v1/stats` with merged values (its histograms can be merged again).
pub async fn stats(clients: &[AdminClient], args: &StatsArgs, json: bool) -> anyhow::Result<()> {
    let answers = gather(clients, |c| c.stats(false)).await;
    let (ok, later) = split_answers(clients, answers)?;
    let stats: Vec<&Stats> = ok.iter().map(|(_, s)| s).collect();
    let mut merged = merge_stats(stats.iter().copied());
    if let Some(r) = &args.route {
        merged.retain(|x| &x.route == r);
        if merged.is_empty() {
            return Err(CliError::Failed(format!("no stats for route {r:?}")).into());
        }
    }
    if json {
        print_json(&to_wire(&ok, &merged))?;
    } else {
        table(&merged).print();
        let unmatched: u64 = stats.iter().map(|s| s.unmatched_requests).sum();
        if args.route.is_none() && unmatched > 0 {
            println!("unmatched requests: {unmatched}");
        }
    }
    later.map_or(Ok(()), Err)
}

fn table(merged: &[RouteAgg]) -> Table {
    let mut t = Table::new(&[
        "ROUTE",
        "BACKEND",
        ">REQS",
        ">RPS",
        ">ERR%",
        ">P50",
        ">P90",
        ">P99",
        ">P99.9",
        ">INFLIGHT",
    ]);
    for r in merged {
        for (i, b) in r.backends.iter().enumerate() {
            let l = b.latency();
            let has = !b.hist.is_empty();
            t.row(vec![
                if i == 0 {
                    r.route.clone()
                } else {
                    String::new()
                },
                if b.backend.is_empty() {
                    "(none)".into()
                } else {
                    b.backend.clone()
                },
                b.requests.to_string(),
                format::rps(b.rps),
                format::pct(b.error_rate()),
                format::ms(has.then_some(l.p50)),
                format::ms(has.then_some(l.p90)),
                format::ms(has.then_some(l.p99)),
                format::ms(has.then_some(l.p999)),
                b.in_flight.to_string(),
            ]);
        }
    }
    t
}

fn to_wire(ok: &[(String, Stats)], merged: &[RouteAgg]) -> Stats {
    Stats {
        generated_at: ok
            .iter()
            .map(|(_, s)| s.generated_at.clone())
            .max()
            .unwrap_or_default(),
        window_seconds: ok.first().map(|(_, s)| s.window_seconds).unwrap_or(0),
        routes: merged
            .iter()
            .map(|r| RouteStats {
                route: r.route.clone(),
                backends: r.backends.iter().map(backend_wire).collect(),
            })
            .collect(),
        unmatched_requests: ok.iter().map(|(_, s)| s.unmatched_requests).sum(),
    }
}

fn backend_wire(b: &BackendAgg) -> BackendStats {
    let mut buf = Vec::new();
    let histogram = match V2Serializer::new().serialize(&b.hist, &mut buf) {
        Ok(_) => base64::engine::general_purpose::STANDARD.encode(&buf),
        Err(_) => String::new(),
    };
    BackendStats {
        backend: b.backend.clone(),
        requests: b.requests,
        by_class: b.by_class.clone(),
        error_rate: b.error_rate(),
        in_flight: b.in_flight,
        rps: b.rps,
        latency_ms: b.latency(),
        histogram,
        history: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::aggregate::decode_histogram;

    #[test]
    fn merged_wire_stats_round_trip_their_histograms() {
        let s = crate::test_fixtures::stats();
        let ok = vec![("a".to_string(), s.clone()), ("b".to_string(), s.clone())];
        let merged = merge_stats([&s, &s]);
        let wire = to_wire(&ok, &merged);
        let blue = &wire.routes[0].backends[0];
        assert_eq!(blue.requests, 2 * s.routes[0].backends[0].requests);
        assert_eq!(blue.latency_ms.p99, s.routes[0].backends[0].latency_ms.p99);
        let h = decode_histogram(&blue.histogram).unwrap();
        assert_eq!(h.len(), 2 * s.routes[0].backends[0].requests);
        assert_eq!(wire.unmatched_requests, 2 * s.unmatched_requests);
        let text = table(&merged).render();
        assert!(text.contains("api       blue"), "{text}");
    }
}
