//! `gwctl upstreams`.

use gatewayd::admin::model::UpstreamInfo;

use super::output::{print_json, Table};
use super::{gather, split_answers};
use crate::client::AdminClient;
use crate::format;

/// `gwctl upstreams`: each gateway's view of every service (JSON: the first gateway's
/// `/v1/upstreams`).
pub async fn upstreams(clients: &[AdminClient], json: bool) -> anyhow::Result<()> {
    let answers = gather(clients, |c| c.upstreams()).await;
    let (ok, later) = split_answers(clients, answers)?;
    if json {
        if let Some((_, u)) = ok.first() {
            print_json(u)?;
        }
    } else {
        let many = ok.len() > 1;
        for (label, ups) in &ok {
            if many {
                println!("# {label}");
            }
            table(ups).print();
        }
    }
    later.map_or(Ok(()), Err)
}

fn table(ups: &[UpstreamInfo]) -> Table {
    let mut t = Table::new(&[
        "SERVICE",
        "ENDPOINT",
        "HEALTH",
        "EJECTED",
        ">IN-FLIGHT",
        ">EWMA",
        ">REQS",
        ">FAILS",
        "SOURCE",
        "STALE",
    ]);
    for u in ups {
        let stale = if u.stale {
            format!(
                "stale {} ({})",
                format::age(u.stale_seconds.unwrap_or(0.0)),
                u.stale_reason.clone().unwrap_or_default()
            )
        } else {
            String::new()
        };
        if u.endpoints.is_empty() {
            t.row(vec![
                u.service.clone(),
                "(no endpoints)".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                u.source.clone(),
                stale.clone(),
            ]);
        }
        for (i, e) in u.endpoints.iter().enumerate() {
            t.row(vec![
                if i == 0 {
                    u.service.clone()
                } else {
                    String::new()
                },
                e.addr.clone(),
                e.health.clone(),
                if e.ejected {
                    format!("yes {}", format::age(e.ejected_seconds.unwrap_or(0.0)))
                } else {
                    String::new()
                },
                e.in_flight.to_string(),
                format::ms((e.ewma_ms > 0.0).then_some(e.ewma_ms)),
                e.requests.to_string(),
                e.failures.to_string(),
                if i == 0 {
                    u.source.clone()
                } else {
                    String::new()
                },
                if i == 0 { stale.clone() } else { String::new() },
            ]);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_table() {
        let out = table(&crate::test_fixtures::upstreams()).render();
        assert!(out.contains("api-green  10.0.2.21:8080"), "{out}");
        assert!(out.contains("yes 17s"), "{out}");
        assert!(
            out.contains("stale 42s (consul 127.0.0.1:8500: connection refused)"),
            "{out}"
        );
    }
}
