//! `devconsul`: an in-memory, Consul-API-compatible dev server.
//!
//! ```text
//! devconsul --addr 127.0.0.1:8500 [--token SECRET] [--max-wait 10m] [--default-wait 5m]
//!           [--tls-cert FILE --tls-key FILE]
//! ```
//! Prints `devconsul listening on http://ADDR` (`https://ADDR` with `--tls-cert`/`--tls-key`)
//! once bound (port 0 picks a free port), then serves until Ctrl-C or SIGTERM.
//!
//! It also answers the few `consul` command lines the Ansible `consul` role runs, so it can be
//! installed as `consul` in tests (see `consul_cli`):
//!
//! ```text
//! devconsul agent -config-dir=DIR [-config-file=FILE]   # serve what the JSON config says
//! devconsul validate DIR|FILE...                        # exit 0 valid, 1 invalid
//! devconsul version
//! ```

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use discovery::devconsul::DevConsul;
use discovery::go_duration;

#[path = "devconsul/consul_cli.rs"]
mod consul_cli;

/// In-memory Consul-compatible HTTP API for development and tests.
#[derive(Debug, Parser)]
#[command(name = "devconsul", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8500", env = "DEVCONSUL_ADDR")]
    addr: SocketAddr,
    /// Require this ACL token (?token=, X-Consul-Token or Authorization: Bearer).
    #[arg(long, env = "DEVCONSUL_TOKEN")]
    token: Option<String>,
    /// Cap on a blocking query's wait (Go duration).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    max_wait: Duration,
    /// Wait used when a blocking query gives none (Go duration).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    default_wait: Duration,
    /// Datacenter name.
    #[arg(long, default_value = "dc1")]
    datacenter: String,
    /// Node name of the agent.
    #[arg(long, default_value = "devconsul")]
    node: String,
    /// Serve https with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    go_duration::parse(s)
        .map_err(|e| e.to_string())?
        .positive()
        .ok_or_else(|| format!("{s:?} must be greater than zero"))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match consul_cli::parse(&argv) {
        None => Args::parse(),
        Some(Err(e)) => {
            eprintln!("devconsul: {e}");
            return ExitCode::from(1);
        }
        Some(Ok(consul_cli::Command::Version)) => {
            println!("Consul v1.20.0 (devconsul {})", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(Ok(consul_cli::Command::Validate(paths))) => {
            return match consul_cli::validate(&paths) {
                Ok(_) => {
                    println!("Configuration is valid!");
                    ExitCode::SUCCESS
                }
                Err(problems) => {
                    eprintln!("Config validation failed: {}", problems.join("; "));
                    ExitCode::from(1)
                }
            };
        }
        Some(Ok(consul_cli::Command::Agent(agent))) => Args {
            addr: agent.addr,
            token: agent.token,
            max_wait: Duration::from_secs(600),
            default_wait: Duration::from_secs(300),
            datacenter: agent.datacenter,
            node: agent.node,
            tls_cert: None,
            tls_key: None,
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("devconsul: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let mut builder = DevConsul::builder()
        .max_wait(args.max_wait)
        .default_wait(args.default_wait)
        .datacenter(args.datacenter)
        .node_name(args.node);
    if let Some(token) = args.token {
        builder = builder.token(token);
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        builder = builder.tls(cert, key);
    }
    let consul = match builder.start(args.addr).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("devconsul: {e}");
            return ExitCode::from(69);
        }
    };
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "devconsul listening on {}", consul.url())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    shutdown_signal().await;
    consul.shutdown().await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
