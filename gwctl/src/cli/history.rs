//! `gwctl history ROUTE`.

use clap::Args;
use gatewayd::admin::model::WeightChange;

use super::first_ok;
use super::output::{print_json, Table};
use crate::client::AdminClient;
use crate::rollout::format_weights;

/// Arguments of `gwctl history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Route name.
    pub route: String,
    /// Show at most this many changes.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

/// `gwctl history`: weight changes, newest first (JSON: the same, as `WeightChange`s).
pub async fn history(
    clients: &[AdminClient],
    args: &HistoryArgs,
    json: bool,
) -> anyhow::Result<()> {
    let detail = first_ok(clients, |c| c.route(&args.route)).await?;
    let newest: Vec<&WeightChange> = detail.history.iter().rev().take(args.limit).collect();
    if json {
        return print_json(&newest);
    }
    if newest.is_empty() {
        println!("route {}: no weight change yet (file weights)", args.route);
        return Ok(());
    }
    print!("{}", table(&newest).render());
    Ok(())
}

fn table(changes: &[&WeightChange]) -> Table {
    let mut t = Table::new(&[">REV", "WHEN", "WHO", "FROM", "TO", "WHY"]);
    for c in changes {
        t.row(vec![
            c.revision.to_string(),
            c.changed_at.clone(),
            c.changed_by.clone(),
            format_weights(&c.previous),
            format_weights(&c.weights),
            c.reason.clone(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_table() {
        let d = crate::test_fixtures::route_detail();
        let rows: Vec<&WeightChange> = d.history.iter().rev().collect();
        let out = table(&rows).render();
        let first = out.lines().nth(1).unwrap_or_default();
        assert!(
            first.starts_with("  7  2025-03-14T09:16:02Z  alice@ops-1"),
            "{out}"
        );
    }
}
