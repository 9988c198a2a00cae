//! `gwctl import openapi SPEC --service NAME [--prefix /v1] [--diff CONFIG] [--strict]`: routes
//! from an OpenAPI description, as TOML on stdout; what could not be mapped on stderr, operation
//! by operation. Works offline: no gateway is contacted.
//!
//! Exit codes: 0 routes written (unmapped items reported as warnings); 1 the description cannot
//! be read or has nothing to route, or the config given to `--diff` is invalid; 2 usage;
//! 5 `--diff` found changes; 6 `--strict` and something was not mapped (routes still written).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::error::CliError;
use crate::openapi::{self, RouteChange};

/// `gwctl import …`.
#[derive(Debug, Subcommand)]
pub enum ImportCmd {
    /// Routes from an OpenAPI 3.0 / 3.1 description (YAML or JSON), one per operation.
    Openapi(OpenapiArgs),
}

/// `gwctl import openapi`.
#[derive(Debug, Args)]
pub struct OpenapiArgs {
    /// The description: a YAML or JSON file (`-` for stdin).
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// Service every route sends to (a `[services.NAME]` of the config).
    #[arg(long, value_name = "NAME")]
    pub service: String,
    /// Prepended to every path, before the servers' base path (`/v1`).
    #[arg(long, value_name = "PATH", default_value = "")]
    pub prefix: String,
    /// Print what would change in this config (added, removed, changed routes) instead of TOML.
    #[arg(long, value_name = "CONFIG")]
    pub diff: Option<PathBuf>,
    /// Exit 6 when anything of the description could not be mapped.
    #[arg(long)]
    pub strict: bool,
}

/// Runs `gwctl import`.
pub fn run(cmd: ImportCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        ImportCmd::Openapi(a) => openapi_cmd(&a, json),
    }
}

fn openapi_cmd(a: &OpenapiArgs, json: bool) -> anyhow::Result<()> {
    if !a.prefix.is_empty() && !a.prefix.starts_with('/') {
        return Err(CliError::Usage(format!("--prefix '{}' must start with '/'", a.prefix)).into());
    }
    let started = tokio::time::Instant::now();
    let text = if a.spec.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the description from stdin")?
    } else {
        std::fs::read_to_string(&a.spec)
            .map_err(|e| CliError::Failed(format!("{}: {e}", a.spec.display())))?
    };
    let doc = openapi::parse_document(&text)
        .map_err(|e| CliError::Failed(format!("{}: {e}", a.spec.display())))?;
    let opts = openapi::Options {
        prefix: a.prefix.trim_end_matches('/').to_string(),
    };
    let import = openapi::import(&doc, &opts);
    for u in &import.unmapped {
        eprintln!("not mapped: {}: {}", u.at, u.reason);
    }
    if import.routes.is_empty() {
        return Err(CliError::Failed("no operation could be mapped to a route".into()).into());
    }
    let header = format!(
        "Routes imported from {} by `gwctl import openapi` ({} operations) for service '{}'.",
        a.spec.file_name().map_or_else(
            || a.spec.display().to_string(),
            |f| f.to_string_lossy().into_owned()
        ),
        import.routes.len(),
        a.service
    );
    let toml = openapi::render(&import.routes, &a.service, &header);
    // Named policies are the config's to define: say so once per name, and stand one in for each
    // while validating.
    let named = import.named_policies();
    for (name, first) in &named {
        eprintln!(
            "note: routes use policy '{name}' (first: {first}): the config must define \
             [policies.{name}]"
        );
    }
    let stand_ins: String = named
        .iter()
        .map(|(n, _)| {
            format!(
                "[policies.{}]\nkind = \"rate_limit\"\nrate = \"1/s\"\n",
                toml::Value::String(n.clone())
            )
        })
        .collect();
    // The output must pass `gatewayd check`: validate it beside a stand-in service.
    let check = format!(
        "[services.{}]\nendpoints = [\"127.0.0.1:1\"]\n{stand_ins}{toml}",
        toml::Value::String(a.service.clone())
    );
    let parsed = gatewayd::config::from_str(&check, "import.toml").map_err(|e| {
        CliError::Usage(format!(
            "the imported routes do not validate (check --service):\n{e}"
        ))
    })?;
    match &a.diff {
        None => print!("{toml}"),
        Some(path) => {
            let config = gatewayd::config::load(path)
                .map_err(|e| CliError::Failed(format!("--diff config rejected:\n{e}")))?;
            let generated: Vec<String> = import
                .routes
                .iter()
                .flat_map(|r| r.generated.iter().map(|g| g.name.clone()))
                .collect();
            let changes = openapi::diff(&config, &parsed, &generated, &a.service);
            print_changes(&changes, json)?;
            if !changes.is_empty() {
                return Err(CliError::Changes(changes.len()).into());
            }
        }
    }
    let elapsed: Duration = started.elapsed();
    eprintln!(
        "imported {} routes ({} items not mapped) in {} ms",
        import.routes.len(),
        import.unmapped.len(),
        elapsed.as_millis()
    );
    if a.strict && !import.unmapped.is_empty() {
        return Err(CliError::NotMapped(import.unmapped.len()).into());
    }
    Ok(())
}

fn print_changes(changes: &[RouteChange], json: bool) -> anyhow::Result<()> {
    if json {
        let v: Vec<serde_json::Value> = changes
            .iter()
            .map(|c| match c {
                RouteChange::Added(n) => serde_json::json!({"change": "added", "route": n}),
                RouteChange::Removed(n) => serde_json::json!({"change": "removed", "route": n}),
                RouteChange::Changed(n, before, after) => serde_json::json!(
                    {"change": "changed", "route": n, "before": before, "after": after}
                ),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for c in changes {
        match c {
            RouteChange::Added(n) => println!("+ {n}"),
            RouteChange::Removed(n) => println!("- {n}"),
            RouteChange::Changed(n, before, after) => {
                println!("~ {n}\n    before: {before}\n    after:  {after}")
            }
        }
    }
    if changes.is_empty() {
        println!("no changes");
    }
    Ok(())
}
