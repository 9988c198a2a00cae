//! `gwctl flip ROUTE` and `gwctl rollback ROUTE`.

use clap::Args;
use gatewayd::admin::model::FlipRequest;

use super::weights::print_change;
use super::{first_ok, whoami};
use crate::client::AdminClient;
use crate::error::CliError;
use crate::rollout::rollback_update;

/// Arguments of `gwctl flip`.
#[derive(Debug, Args)]
pub struct FlipArgs {
    /// Route name (must have exactly two backends).
    pub route: String,
    /// Why (kept in the history).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only flip if the weights are still at this revision (exit 3 otherwise).
    #[arg(long, value_name = "N")]
    pub expected_revision: Option<u64>,
}

/// Arguments of `gwctl rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Route name.
    pub route: String,
    /// Why (kept in the history).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `gwctl flip`: swaps the two backends' weights.
pub async fn flip(clients: &[AdminClient], args: &FlipArgs, json: bool) -> anyhow::Result<()> {
    let req = FlipRequest {
        reason: Some(args.reason.clone().unwrap_or_else(|| "flip".into())),
        changed_by: Some(whoami()),
        expected_revision: args.expected_revision,
    };
    let changed = first_ok(clients, |c| c.flip(&args.route, &req)).await?;
    print_change(&changed, json)
}

/// `gwctl rollback`: puts back the `previous` weights of the last history entry, at the current
/// revision (exit 3 if someone changed them meanwhile).
pub async fn rollback(
    clients: &[AdminClient],
    args: &RollbackArgs,
    json: bool,
) -> anyhow::Result<()> {
    let detail = first_ok(clients, |c| c.route(&args.route)).await?;
    let update = rollback_update(&detail, args.reason.clone(), whoami())
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let changed = first_ok(clients, |c| c.put_weights(&args.route, &update)).await?;
    print_change(&changed, json)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::rollout::rollback_update;

    #[test]
    fn rollback_puts_back_the_previous_weights_at_the_current_revision() {
        let detail = crate::test_fixtures::route_detail();
        let u = rollback_update(&detail, None, "me".into()).unwrap();
        assert_eq!(u.weights.get("blue"), Some(&100));
        assert_eq!(u.weights.get("green"), Some(&0));
        assert_eq!(u.expected_revision, Some(7));
        assert_eq!(u.reason.as_deref(), Some("rollback of revision 7"));
        let mut empty = detail.clone();
        empty.history.clear();
        assert!(rollback_update(&empty, None, "me".into()).is_err());
    }
}
