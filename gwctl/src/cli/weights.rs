//! `gwctl weights get|set|reset ROUTE`.

use clap::Subcommand;
use gatewayd::admin::model::{RouteInfo, WeightsChanged, WeightsUpdate};

use super::output::{print_json, Table};
use super::{first_ok, whoami};
use crate::client::AdminClient;
use crate::error::CliError;
use crate::rollout::{format_weights, parse_weight_pairs, shares, weights_of};

/// `gwctl weights …`.
#[derive(Debug, Subcommand)]
pub enum WeightsCmd {
    /// Show a route's effective weights and where they come from.
    Get {
        /// Route name.
        route: String,
    },
    /// Set a route's weights, e.g. `weights set api blue=90 green=10` (backends not named get 0).
    Set {
        /// Route name.
        route: String,
        /// `BACKEND=WEIGHT` pairs (0–10000; at least one above 0).
        #[arg(required = true, value_name = "BACKEND=WEIGHT")]
        weights: Vec<String>,
        /// Why (kept in the history).
        #[arg(long)]
        reason: Option<String>,
        /// Only apply if the weights are still at this revision (exit 3 otherwise).
        #[arg(long, value_name = "N")]
        expected_revision: Option<u64>,
    },
    /// Drop the override and go back to the config file's weights.
    Reset {
        /// Route name.
        route: String,
    },
}

/// Runs a `weights` subcommand.
pub async fn run(clients: &[AdminClient], cmd: WeightsCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        WeightsCmd::Get { route } => {
            let detail = first_ok(clients, |c| c.route(&route)).await?;
            if json {
                print_json(&detail.route)
            } else {
                print!("{}", describe(&detail.route));
                Ok(())
            }
        }
        WeightsCmd::Set {
            route,
            weights,
            reason,
            expected_revision,
        } => {
            let weights =
                parse_weight_pairs(&weights).map_err(|e| CliError::Usage(e.to_string()))?;
            let update = WeightsUpdate {
                weights,
                reason: Some(reason.unwrap_or_else(|| "gwctl weights set".into())),
                changed_by: Some(whoami()),
                expected_revision,
            };
            let changed = first_ok(clients, |c| c.put_weights(&route, &update)).await?;
            print_change(&changed, json)
        }
        WeightsCmd::Reset { route } => {
            let changed = first_ok(clients, |c| c.delete_weights(&route)).await?;
            print_change(&changed, json)
        }
    }
}

/// Prints a weight change (`api: blue=100 green=0 → blue=90 green=10 (revision 8)`).
pub fn print_change(changed: &WeightsChanged, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(changed);
    }
    let c = &changed.change;
    println!(
        "{}: {} → {} (revision {}, by {}: {})",
        changed.route.name,
        format_weights(&c.previous),
        format_weights(&c.weights),
        c.revision,
        c.changed_by,
        c.reason
    );
    Ok(())
}

/// Human description of a route's weights.
pub fn describe(r: &RouteInfo) -> String {
    let s = shares(&weights_of(r));
    let mut t = Table::new(&[
        "BACKEND",
        "SERVICE",
        ">WEIGHT",
        ">SHARE",
        ">FILE",
        ">ENDPOINTS",
    ]);
    for b in &r.backends {
        t.row(vec![
            b.name.clone(),
            b.service.clone(),
            b.weight.to_string(),
            format!("{:.1}%", s.get(&b.name).copied().unwrap_or(0.0)),
            b.file_weight.to_string(),
            format!("{}/{}", b.healthy_endpoints, b.endpoints),
        ]);
    }
    let w = &r.weights;
    let mut out = format!(
        "route {}: weights from {} (revision {})",
        r.name, w.source, w.revision
    );
    if let (Some(by), Some(at)) = (&w.changed_by, &w.changed_at) {
        out.push_str(&format!(", changed by {by} at {at}"));
    }
    if let Some(why) = &w.reason {
        out.push_str(&format!(": {why}"));
    }
    out.push('\n');
    out.push_str(&t.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_a_route() {
        let out = describe(&crate::test_fixtures::routes()[0]);
        assert!(
            out.starts_with("route api: weights from consul (revision 7), changed by alice@ops-1"),
            "{out}"
        );
        assert!(
            out.contains("green    api-green      10  10.0%     0        2/3"),
            "{out}"
        );
    }
}
