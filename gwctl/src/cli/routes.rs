//! `gwctl routes`, `gwctl status`, `gwctl reload`.

use clap::Args;
use serde::Serialize;

use super::output::{print_json, Table};
use super::{first_ok, gather, split_answers};
use crate::client::AdminClient;
use crate::format;
use crate::rollout::{shares, weights_of};

/// Arguments of `gwctl routes`.
#[derive(Debug, Args)]
pub struct RoutesArgs {
    /// A route's name: show its detail instead of the list.
    pub name: Option<String>,
}

/// `gwctl routes NAME`: the route's match, backends, and policies with their decisions of the
/// last minute and since they were compiled, then their last refusals (JSON: the gateway's
/// `/v1/routes/NAME`).
pub async fn route(clients: &[AdminClient], name: &str, json: bool) -> anyhow::Result<()> {
    let d = first_ok(clients, |c| c.route(name)).await?;
    if json {
        return print_json(&d);
    }
    let r = &d.route;
    println!("route {}: {}", r.name, format::route_match(r));
    let s = shares(&weights_of(r));
    let mut t = Table::new(&["BACKEND", "SERVICE", ">WEIGHT", ">SHARE", ">HEALTHY"]);
    for b in &r.backends {
        t.row(vec![
            b.name.clone(),
            b.service.clone(),
            b.weight.to_string(),
            format!("{:.0}%", s.get(&b.name).copied().unwrap_or(0.0)),
            format!("{}/{}", b.healthy_endpoints, b.endpoints),
        ]);
    }
    t.print();
    if d.policies.is_empty() {
        println!("policies: none");
        return Ok(());
    }
    println!();
    // DECISIONS: since the policy was compiled; LAST MINUTE: the recent window's.
    let mut t = Table::new(&["POLICY", "KIND", "SETTINGS", "DECISIONS", "LAST MINUTE"]);
    for p in &d.policies {
        t.row(vec![
            p.name.clone(),
            p.kind.clone(),
            p.summary.clone(),
            format::decisions(&p.decisions),
            format::recent_decisions(&p.recent),
        ]);
    }
    t.print();
    // The last refusals of every policy, newest first.
    let mut refusals: Vec<_> = d
        .policies
        .iter()
        .flat_map(|p| p.recent.refusals.iter().map(move |r| (p.name.as_str(), r)))
        .collect();
    if refusals.is_empty() {
        return Ok(());
    }
    refusals.sort_by(|a, b| b.1.at.cmp(&a.1.at));
    println!();
    let mut t = Table::new(&["REFUSED AT", "POLICY", "REASON", "CLIENT"]);
    for (policy, r) in refusals {
        t.row(vec![
            r.at.clone(),
            policy.to_string(),
            r.outcome.clone(),
            r.client.clone(),
        ]);
    }
    t.print();
    Ok(())
}

/// `gwctl routes`: the routes of the first gateway that answers (JSON: its `/v1/routes`).
pub async fn routes(clients: &[AdminClient], json: bool) -> anyhow::Result<()> {
    let answers = gather(clients, |c| c.routes()).await;
    let (ok, later) = split_answers(clients, answers)?;
    let Some((_, routes)) = ok.first() else {
        return Ok(());
    };
    if json {
        print_json(routes)?;
    } else {
        let mut t = Table::new(&["ROUTE", "MATCH", "BACKENDS", "WEIGHTS", ">REV", "BY"]);
        for r in routes {
            let s = shares(&weights_of(r));
            let backends = r
                .backends
                .iter()
                .map(|b| format!("{}={:.0}%", b.name, s.get(&b.name).copied().unwrap_or(0.0)))
                .collect::<Vec<_>>()
                .join(" ");
            t.row(vec![
                r.name.clone(),
                format::route_match(r),
                backends,
                r.weights.source.clone(),
                r.weights.revision.to_string(),
                r.weights.changed_by.clone().unwrap_or_default(),
            ]);
        }
        t.print();
        // Gateways that disagree on weights are worth a line: KV may not have reached one.
        for (label, other) in ok.iter().skip(1) {
            for r in other {
                if let Some(first) = routes.iter().find(|x| x.name == r.name) {
                    if weights_of(first) != weights_of(r) {
                        eprintln!(
                            "warning: {label} has different weights for {} (revision {} vs {})",
                            r.name, r.weights.revision, first.weights.revision
                        );
                    }
                }
            }
        }
    }
    later.map_or(Ok(()), Err)
}

#[derive(Serialize)]
struct GatewayStatus {
    admin: String,
    healthy: bool,
    ready: Option<gatewayd::admin::model::Readiness>,
    config: Option<gatewayd::admin::model::ConfigStatus>,
    error: Option<String>,
}

/// `gwctl status`: liveness, readiness and config generation of every gateway.
pub async fn status(clients: &[AdminClient], json: bool) -> anyhow::Result<()> {
    let mut all = Vec::new();
    let mut unreachable = None;
    for c in clients {
        let health = c.healthz().await;
        let ready = c.readyz().await;
        let config = c.config().await;
        let error = [
            health.as_ref().err(),
            ready.as_ref().err(),
            config.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        .next()
        .cloned();
        if let Some(e) = &error {
            if e.is_unreachable() && unreachable.is_none() {
                unreachable = Some(e.clone());
            }
        }
        all.push(GatewayStatus {
            admin: c.label().to_string(),
            healthy: health.is_ok(),
            ready: ready.ok(),
            config: config.ok(),
            error: error.map(|e| e.short()),
        });
    }
    if json {
        print_json(&all)?;
    } else {
        let mut t = Table::new(&["ADMIN", "HEALTHY", "READY", ">GEN", "LAST RELOAD", "ERROR"]);
        for s in &all {
            t.row(vec![
                s.admin.clone(),
                yes(s.healthy),
                s.ready
                    .as_ref()
                    .map(|r| {
                        if r.draining {
                            "draining".into()
                        } else {
                            yes(r.ready)
                        }
                    })
                    .unwrap_or_else(|| "-".into()),
                s.config
                    .as_ref()
                    .map(|c| c.generation.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.config
                    .as_ref()
                    .map(|c| {
                        if c.last_reload.ok {
                            "ok".into()
                        } else {
                            format!("rejected: {}", c.last_reload.errors.join("; "))
                        }
                    })
                    .unwrap_or_else(|| "-".into()),
                s.error.clone().unwrap_or_default(),
            ]);
        }
        t.print();
    }
    match unreachable {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// `gwctl reload`: every gateway reloads its config; fails when any rejected it.
pub async fn reload(clients: &[AdminClient], json: bool) -> anyhow::Result<()> {
    let answers = gather(clients, |c| c.reload()).await;
    let (ok, later) = split_answers(clients, answers)?;
    let rejected: Vec<&String> = ok
        .iter()
        .filter(|(_, s)| !s.last_reload.ok)
        .map(|(l, _)| l)
        .collect();
    if json {
        let v: Vec<_> = ok.iter().map(|(_, s)| s).collect();
        print_json(&v)?;
    } else {
        for (label, s) in &ok {
            if s.last_reload.ok {
                println!("{label}: reloaded, generation {}", s.generation);
            } else {
                println!(
                    "{label}: rejected, still serving generation {}",
                    s.generation
                );
                for e in &s.last_reload.errors {
                    println!("  {e}");
                }
            }
            for r in &s.last_reload.restart_required {
                println!("  needs a restart: {r}");
            }
        }
    }
    if let Some(e) = later {
        return Err(e);
    }
    if !rejected.is_empty() {
        return Err(crate::error::CliError::Failed("config rejected".into()).into());
    }
    Ok(())
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}
