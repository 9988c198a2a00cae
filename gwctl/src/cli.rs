//! The scripted forms of gwctl: one module per command, human tables or `--json`, exit codes
//! from [`crate::error`]. Reads ask every `--admin` gateway (and every gateway `--consul` finds)
//! and merge; writes go to the first gateway that answers (gateways sharing Consul KV all follow
//! it).

use std::future::Future;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::client::{token_candidates, AdminClient, DEFAULT_ADMIN};
use crate::error::{CliError, ClientError};

mod canary;
mod consul;
mod flip;
mod history;
pub mod import;
mod output;
mod routes;
mod stats;
mod upstreams;
mod weights;

/// Text after `--help`: exit codes and where the token is looked for.
pub const AFTER_HELP: &str = "\
Targets:
  --admin URL may be repeated (or MESHGATE_ADMIN=URL1,URL2); default http://127.0.0.1:9901.
  --consul ADDR (or MESHGATE_CONSUL) finds every gatewayd registered in Consul (passing
  instances of service `meshgate`) and targets them all, plus any --admin given;
  the Consul ACL token, if needed, comes from CONSUL_HTTP_TOKEN.
  Reads ask every gateway and merge their counters and latency histograms exactly;
  writes go to the first gateway that answers.

Admin token lookup order (first that exists wins):
  1. --token-file PATH, or MESHGATE_TOKEN_FILE
  2. $XDG_RUNTIME_DIR/meshgate/admin.token
  3. ~/.config/meshgate/admin.token
  4. /tmp/meshgate-demo/admin.token   (written by `gatewayd demo`)

Exit codes:
  0  ok
  1  failed (unknown route, unauthorized, a canary guard tripped or was interrupted)
  2  usage (bad arguments, or the gateway rejected the request body)
  3  conflict (the weights changed meanwhile: expected revision mismatch)
  4  unreachable (a gateway could not be reached; the others' answers are still printed)
  5  import openapi --diff: the config would change
  6  import openapi --strict: something of the description was not mapped";

/// Which gateways to talk to, and how to authenticate.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Admin API URL of a gateway; repeat (or comma-separate) to aggregate several.
    #[arg(
        long = "admin",
        value_name = "URL",
        env = "MESHGATE_ADMIN",
        value_delimiter = ',',
        global = true
    )]
    pub admin: Vec<String>,
    /// Consul agent (`host:port` or `http://host:port`): target every gatewayd registered there.
    #[arg(long, value_name = "ADDR", env = "MESHGATE_CONSUL", global = true)]
    pub consul: Option<String>,
    /// File holding the admin bearer token (default: see the lookup order below).
    #[arg(long, value_name = "PATH", env = "MESHGATE_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A scripted command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List routes: match, backends and weights, where the weights come from. With a NAME: that
    /// route's detail, its policies and their decisions.
    Routes(routes::RoutesArgs),
    /// List upstream services: endpoints, health, ejections, source and staleness.
    Upstreams,
    /// Traffic per route and backend: requests, rps, errors, latency percentiles.
    Stats(stats::StatsArgs),
    /// Read or change a route's weights.
    #[command(subcommand)]
    Weights(weights::WeightsCmd),
    /// Swap the weights of a two-backend route (blue/green).
    Flip(flip::FlipArgs),
    /// Put back the weights before the route's last change.
    Rollback(flip::RollbackArgs),
    /// A route's weight changes, newest first: who, when, why.
    History(history::HistoryArgs),
    /// Move traffic to a backend step by step, rolling back when a guard fails.
    Canary(canary::CanaryArgs),
    /// Health, readiness and config generation of every gateway.
    Status,
    /// Ask every gateway to reload its config file.
    Reload,
    /// Print the Prometheus metrics of the first gateway.
    Metrics,
    /// Write routes from an API description (offline: no gateway is contacted).
    #[command(subcommand)]
    Import(import::ImportCmd),
}

/// Builds one client per admin URL, reading the token as documented in [`AFTER_HELP`]. With
/// `--consul`, the gateways registered there come first, then any `--admin` (duplicates once).
pub async fn connect(target: &Target) -> anyhow::Result<Vec<AdminClient>> {
    let token = read_token(target)?;
    let consul = match target.consul.as_deref().filter(|c| !c.trim().is_empty()) {
        Some(address) => {
            let consul_token = std::env::var("CONSUL_HTTP_TOKEN").ok();
            Some(consul::gateways(address, consul_token).await?)
        }
        None => None,
    };
    let urls = admin_urls(consul, &target.admin);
    urls.iter()
        .map(|u| AdminClient::new(u, token.clone()).map_err(anyhow::Error::from))
        .collect()
}

/// The admin URLs to target: those found in Consul (when `--consul` was given) followed by the
/// `--admin` ones not already among them; without `--consul`, the `--admin` ones as given, or
/// [`DEFAULT_ADMIN`] when there are none.
fn admin_urls(consul: Option<Vec<String>>, admin: &[String]) -> Vec<String> {
    let admin = admin.iter().map(|u| u.trim().to_string());
    match consul {
        None if admin.len() == 0 => vec![DEFAULT_ADMIN.to_string()],
        None => admin.collect(),
        Some(mut urls) => {
            for u in admin {
                let key = u.trim_end_matches('/').to_string();
                if !urls.iter().any(|x| x.trim_end_matches('/') == key) {
                    urls.push(u);
                }
            }
            urls
        }
    }
}

/// Runs a scripted command.
pub async fn run(cmd: Command, target: &Target, clients: Vec<AdminClient>) -> anyhow::Result<()> {
    let json = target.json;
    match cmd {
        Command::Routes(a) => match &a.name {
            Some(name) => routes::route(&clients, name, json).await,
            None => routes::routes(&clients, json).await,
        },
        Command::Upstreams => upstreams::upstreams(&clients, json).await,
        Command::Stats(a) => stats::stats(&clients, &a, json).await,
        Command::Weights(w) => weights::run(&clients, w, json).await,
        Command::Flip(a) => flip::flip(&clients, &a, json).await,
        Command::Rollback(a) => flip::rollback(&clients, &a, json).await,
        Command::History(a) => history::history(&clients, &a, json).await,
        Command::Canary(a) => canary::canary(&clients, &a, json).await,
        Command::Status => routes::status(&clients, json).await,
        Command::Reload => routes::reload(&clients, json).await,
        Command::Import(cmd) => import::run(cmd, json),
        Command::Metrics => {
            let text = first_ok(&clients, |c| async move { c.metrics().await }).await?;
            print!("{text}");
            Ok(())
        }
    }
}

/// A hint for errors users commonly meet (401: where the token was looked for).
pub fn hint_for(err: &anyhow::Error) -> Option<String> {
    let api = err.chain().find_map(|c| c.downcast_ref::<ClientError>())?;
    match api {
        ClientError::Api { status: 401, .. } => Some(format!(
            "the gateway wants an admin token; gwctl looked in --token-file/MESHGATE_TOKEN_FILE, \
             then {}",
            default_token_paths()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        ClientError::Unreachable { .. } => {
            Some("is gatewayd running? (`gatewayd demo` starts one on 127.0.0.1:9901)".into())
        }
        _ => None,
    }
}

fn default_token_paths() -> Vec<PathBuf> {
    let xdg = std::env::var("XDG_RUNTIME_DIR").ok();
    let home = std::env::var("HOME").ok();
    token_candidates(xdg.as_deref(), home.as_deref())
}

fn read_token(target: &Target) -> anyhow::Result<Option<String>> {
    if let Some(path) = &target.token_file {
        let t = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("--token-file {}: {e}", path.display())))?;
        return Ok(Some(t.trim().to_string()));
    }
    for path in default_token_paths() {
        if let Ok(t) = std::fs::read_to_string(&path) {
            return Ok(Some(t.trim().to_string()));
        }
    }
    Ok(None)
}

/// Asks every gateway concurrently; answers in `clients` order.
pub async fn gather<'a, T, F, Fut>(clients: &'a [AdminClient], f: F) -> Vec<Result<T, ClientError>>
where
    F: Fn(&'a AdminClient) -> Fut,
    Fut: Future<Output = Result<T, ClientError>> + 'a,
{
    futures_util::future::join_all(clients.iter().map(f)).await
}

/// Answers of the gateways that answered (labelled), and the error to exit with afterwards.
pub type Answers<T> = (Vec<(String, T)>, Option<anyhow::Error>);

/// The successful answers, warning on stderr about the others. Fails when none answered (with
/// the first error); otherwise returns the answers and, when some gateway was unreachable or
/// failed, the error to exit with after printing them.
pub fn split_answers<T>(
    clients: &[AdminClient],
    answers: Vec<Result<T, ClientError>>,
) -> anyhow::Result<Answers<T>> {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (c, a) in clients.iter().zip(answers) {
        match a {
            Ok(v) => ok.push((c.label().to_string(), v)),
            Err(e) => errors.push(e),
        }
    }
    if ok.is_empty() {
        let first = errors
            .into_iter()
            .next()
            .ok_or_else(|| CliError::Usage("no --admin".into()))?;
        return Err(first.into());
    }
    let mut later = None;
    for e in &errors {
        eprintln!("warning: {e}");
    }
    if let Some(e) = errors.into_iter().next() {
        later = Some(if e.is_unreachable() {
            CliError::Unreachable(format!("{e} (results of the other gateways shown)")).into()
        } else {
            anyhow::Error::from(e)
        });
    }
    Ok((ok, later))
}

/// The first gateway's answer, moving on to the next only while gateways are unreachable.
pub async fn first_ok<'a, T, F, Fut>(clients: &'a [AdminClient], f: F) -> anyhow::Result<T>
where
    F: Fn(&'a AdminClient) -> Fut,
    Fut: Future<Output = Result<T, ClientError>> + 'a,
{
    let mut last = None;
    for c in clients {
        match f(c).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_unreachable() => {
                eprintln!("warning: {e}");
                last = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    match last {
        Some(e) => Err(e.into()),
        None => Err(CliError::Usage("no --admin given".into()).into()),
    }
}

/// `user@host` for `changed_by`.
pub fn whoami() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "gwctl".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `--help` names the demo's token path, which `gatewayd` owns.
    #[test]
    fn help_names_the_demo_token_path() {
        let demo = gatewayd::demo::default_token_path();
        assert!(
            AFTER_HELP.contains(&format!(
                "{}   (written by `gatewayd demo`)",
                demo.display()
            )),
            "AFTER_HELP is out of date: the demo writes {}",
            demo.display()
        );
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn admin_urls_default_only_without_any_target() {
        assert_eq!(admin_urls(None, &[]), [DEFAULT_ADMIN]);
        assert_eq!(
            admin_urls(None, &strings(&[" http://a:1 ", "http://b:2"])),
            ["http://a:1", "http://b:2"]
        );
    }

    #[test]
    fn consul_gateways_come_first_and_admin_adds_the_others() {
        let found = strings(&["http://10.0.0.5:9901", "http://10.0.0.6:9901"]);
        assert_eq!(admin_urls(Some(found.clone()), &[]), found);
        assert_eq!(
            admin_urls(
                Some(found),
                &strings(&["http://10.0.0.6:9901/", "http://10.0.0.7:9901"])
            ),
            [
                "http://10.0.0.5:9901",
                "http://10.0.0.6:9901",
                "http://10.0.0.7:9901"
            ]
        );
    }

    #[test]
    fn consul_flag_and_env() {
        use clap::Parser as _;
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            target: Target,
        }
        let cli = Cli::try_parse_from(["gwctl", "--consul", "127.0.0.1:8500"]).unwrap();
        assert_eq!(cli.target.consul.as_deref(), Some("127.0.0.1:8500"));
        let arg = <Cli as clap::CommandFactory>::command()
            .get_arguments()
            .find(|a| a.get_id() == "consul")
            .and_then(|a| a.get_env().map(|e| e.to_os_string()));
        assert_eq!(
            arg.as_deref(),
            Some(std::ffi::OsStr::new("MESHGATE_CONSUL"))
        );
    }
}
