//! gwctl: meshgate's operator console and CLI, a client of the admin API (never on the request
//! path). `gwctl` alone opens the live console; subcommands are the scripted forms.

use std::process::ExitCode;

use clap::Parser;

mod aggregate;
mod cli;
mod client;
mod error;
mod format;
mod openapi;
mod rollout;
#[cfg(test)]
mod test_fixtures;
mod tui;

/// Command line of gwctl.
#[derive(Debug, Parser)]
#[command(
    name = "gwctl",
    version,
    about = "meshgate's live traffic console (no subcommand) and scriptable CLI",
    after_help = cli::AFTER_HELP
)]
struct Args {
    #[command(flatten)]
    target: cli::Target,
    #[command(subcommand)]
    command: Option<cli::Command>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gwctl: cannot start the async runtime: {e}");
            return ExitCode::from(error::EXIT_FAILED);
        }
    };
    let result = runtime.block_on(async {
        // Offline commands need no gateway (nor a token).
        if let Some(cli::Command::Import(cmd)) = args.command {
            return cli::import::run(cmd, args.target.json);
        }
        let clients = cli::connect(&args.target).await?;
        match args.command {
            None => tui::run(clients).await,
            Some(cmd) => cli::run(cmd, &args.target, clients).await,
        }
    });
    // Streams (SSE) may still be open; don't wait for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::from(error::EXIT_OK),
        Err(e) => {
            eprintln!("gwctl: {e:#}");
            if let Some(hint) = cli::hint_for(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(error::exit_code_of(&e))
        }
    }
}
