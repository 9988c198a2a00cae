//! gatewayd: args → config::load → App::build → App::run. Exit 64 on a bad config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// meshgate's gateway daemon.
#[derive(Debug, Parser)]
#[command(
    name = "gatewayd",
    version,
    about = "meshgate gateway daemon: Consul-aware reverse proxy with weighted splits"
)]
struct Args {
    /// Config file (TOML).
    #[arg(long, short, env = "MESHGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Worker threads (overrides `gateway.workers`; 0 = one per core).
    #[arg(long, global = true)]
    workers: Option<usize>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config file and exit (0 valid, 64 invalid).
    Check,
    /// Run the daemon (the default).
    Run,
}

const EX_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(path) = args.config.clone() else {
        eprintln!("gatewayd: no config file: pass --config FILE (or set MESHGATE_CONFIG)");
        return ExitCode::from(EX_CONFIG);
    };
    let mut config = match gatewayd::config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "gatewayd: {} has {} problem(s); nothing started",
                path.display(),
                e.0.len()
            );
            return ExitCode::from(EX_CONFIG);
        }
    };
    if matches!(args.command, Some(Command::Check)) {
        println!(
            "{}: ok ({} routes, {} services)",
            path.display(),
            config.routes.len(),
            config.services.len()
        );
        return ExitCode::SUCCESS;
    }
    if let Some(w) = args.workers {
        config.gateway.workers = if w == 0 {
            gatewayd::config::default_workers()
        } else {
            w
        };
    }
    let _guard = gatewayd::telemetry::init(&config.log);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("control")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gatewayd: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        match gatewayd::app::App::build(config, Some(path)).await {
            Ok(app) => {
                app.run().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("gatewayd: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
