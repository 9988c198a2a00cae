//! gatewayd: args → config::load → App::build → App::run. Exit 64 on a bad config.
//! `gatewayd demo` needs no config: it runs [`gatewayd::demo::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatewayd::demo::DemoOptions;

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
    /// Take the listening sockets over from the gatewayd serving on `[gateway] handover_socket`
    /// (a restart or upgrade without a refused or reset connection): it drains and exits 0
    /// once this one serves. Exit 1 when none answers there; it keeps serving if this one fails.
    #[arg(long, global = true)]
    takeover: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config file and exit (0 valid, 64 invalid).
    Check,
    /// Run the daemon (the default).
    Run,
    /// Run everything on loopback for a first look (no config needed; try `gwctl` next).
    ///
    /// One process: a dev Consul, a demo service in two versions (blue, green; 3 instances
    /// each, registered with TTL checks, coming and going), the gateway routing `/` 100/0 to
    /// blue, and light synthetic load. Prints the bound addresses and what to run next; the
    /// admin token goes where plain `gwctl` finds it. Ctrl-C stops it all and exits 0.
    /// `--config` and `--workers` do not apply.
    Demo(DemoArgs),
}

/// Flags of `gatewayd demo` (defaults: `gatewayd::demo::DemoOptions::default()`).
#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Proxy listener address (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value_t = DemoOptions::default().listen)]
    listen: SocketAddr,
    /// Admin API address; plain `gwctl` looks at 127.0.0.1:9901.
    #[arg(long, value_name = "ADDR", default_value_t = DemoOptions::default().admin)]
    admin: SocketAddr,
    /// Address of the built-in dev Consul's HTTP API.
    #[arg(long, value_name = "ADDR", default_value_t = DemoOptions::default().consul)]
    consul: SocketAddr,
    /// Synthetic requests per second through the proxy (0: no load; at most 200).
    #[arg(
        long,
        value_name = "N",
        default_value_t = DemoOptions::default().rps,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(gatewayd::demo::MAX_RPS))
    )]
    rps: u32,
    /// Directory for the generated config, the admin token (DIR/admin.token), the discovery
    /// cache and the logs. Plain `gwctl` finds the default one's token by itself.
    #[arg(long, value_name = "DIR", default_value_os_t = DemoOptions::default().state_dir)]
    state_dir: PathBuf,
}

const EX_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Demo(d)) = args.command {
        return demo(d);
    }
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
        // Certificates, keys and CA files are read too: a config that names a broken one would
        // not start.
        let problems = gatewayd::tls::check_config(&config);
        if !problems.is_empty() {
            for p in &problems {
                eprintln!("{}: {p}", path.display());
            }
            eprintln!(
                "gatewayd: {} has {} problem(s) in its TLS files; nothing started",
                path.display(),
                problems.len()
            );
            return ExitCode::from(EX_CONFIG);
        }
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
    // SIGUSR2 starts the successor from the same path (a replaced file is the new version),
    // with the same arguments plus --takeover.
    let exe = std::env::current_exe().ok();
    let mut successor_args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if !successor_args.iter().any(|a| a == "--takeover") {
        successor_args.push("--takeover".into());
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
        let (inherited, predecessor) = if args.takeover {
            match take_over(&config).await {
                Ok((i, p)) => (i, Some(p)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot take over");
                    eprintln!("gatewayd: cannot take over: {e}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            Default::default()
        };
        match gatewayd::app::App::build_with(config, Some(path), inherited).await {
            Ok(mut app) => {
                if let Some(exe) = exe {
                    app.set_successor_command(exe, successor_args);
                }
                if let Some(p) = predecessor {
                    match tokio::task::spawn_blocking(move || p.ready()).await {
                        Ok(Ok(())) => tracing::info!(
                            pid = std::process::id(),
                            "took over: the predecessor drains"
                        ),
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "the predecessor did not confirm its drain")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the predecessor did not confirm its drain")
                        }
                    }
                }
                app.run().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("gatewayd: {e}");
                if matches!(e, gatewayd::app::StartError::Tls { .. }) {
                    ExitCode::from(EX_CONFIG)
                } else {
                    ExitCode::FAILURE
                }
            }
        }
    })
}

/// Receives the listening sockets of the gatewayd on `[gateway] handover_socket`.
async fn take_over(
    config: &gatewayd::config::Config,
) -> anyhow::Result<(
    gatewayd::handover::Inheritance,
    gatewayd::handover::Successor,
)> {
    let Some(path) = config.gateway.handover_socket.clone() else {
        anyhow::bail!("--takeover needs [gateway] handover_socket in the config");
    };
    let (inherited, successor) =
        tokio::task::spawn_blocking(move || gatewayd::handover::take_over(&path)).await??;
    tracing::info!(
        sockets = inherited.len(),
        "received the predecessor's sockets"
    );
    Ok((inherited, successor))
}

/// `gatewayd demo`: exit 0 after Ctrl-C / SIGTERM, 1 when something could not start.
fn demo(d: DemoArgs) -> ExitCode {
    let opts = DemoOptions {
        listen: d.listen,
        admin: d.admin,
        consul: d.consul,
        rps: d.rps,
        state_dir: d.state_dir,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("demo")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gatewayd demo: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(gatewayd::demo::run(opts));
    // Whatever is still running (a drain cut short by a second signal) is not waited for.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatewayd demo: {e}");
            ExitCode::FAILURE
        }
    }
}
