//! `gatewayd demo`: the whole system on loopback in one process, for a first look. Off the
//! request path; it drives the real gateway ([`crate::app::App`]) from outside, as an operator's
//! services would.
//!
//! What runs, and in what order it starts:
//! 1. an in-memory Consul ([`discovery::devconsul`]) on `--consul`;
//! 2. six upstream instances on `127.0.0.1:0`, `blue-1..3` and `green-1..3`, registered as
//!    service `demo` (tags `blue` / `green`) with TTL checks kept passing ([`fleet`]);
//! 3. the gateway, from a config written to `STATE_DIR/gatewayd.toml` (so edits reload live):
//!    route `web` on `/` splits 100/0 between backends `blue` and `green`, weights in Consul KV;
//! 4. churn: every ~5 s one instance fails its check or leaves Consul for a few seconds;
//! 5. a light synthetic load ([`load`]) with a summary every 10 s.
//!
//! Stdout carries one machine-readable line per bound address (`demo: proxy http://…`,
//! `demo: admin …`, `demo: consul …`), then `demo: ready`, then the commands to try. Gateway
//! logs go to `STATE_DIR/logs/`. SIGINT or SIGTERM stops load and churn, drains the gateway and
//! stops Consul; a second signal during that exits at once.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use discovery::devconsul::{DevConsul, DevConsulError, RunningDevConsul};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{App, StartError};
use crate::config::ConfigErrors;

mod fleet;
mod gateway_config;
mod load;
mod next_steps;
mod upstream;

/// Name of the admin token file inside the state directory.
pub const TOKEN_FILE: &str = "admin.token";

/// Most requests per second the synthetic load sends (higher values are lowered to this).
pub const MAX_RPS: u32 = 200;

/// How the demo is set up. [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// Proxy listener (default `127.0.0.1:8080`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Admin API (default `127.0.0.1:9901`; port 0 picks a free port).
    pub admin: SocketAddr,
    /// Dev Consul's HTTP API (default `127.0.0.1:8500`; port 0 picks a free port).
    pub consul: SocketAddr,
    /// Synthetic requests per second through the proxy (default 20; 0 disables the load;
    /// at most [`MAX_RPS`]).
    pub rps: u32,
    /// Where the config, admin token, weights, discovery cache and logs go (default
    /// [`default_state_dir`]). The admin token is always `STATE_DIR/admin.token`.
    pub state_dir: PathBuf,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The state directory could not be created or made private.
    #[error("state directory {path}: {reason}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong, with a way out.
        reason: String,
    },
    /// Dev Consul could not start (usually: the port is taken).
    #[error(
        "{0} (is a Consul agent running? pick another address with --consul, e.g. 127.0.0.1:0)"
    )]
    Consul(#[from] DevConsulError),
    /// An upstream instance could not bind a loopback port.
    #[error("demo upstream cannot listen on 127.0.0.1: {0}")]
    Upstream(std::io::Error),
    /// An instance could not be registered in dev Consul.
    #[error("cannot register {id} in dev Consul: {source}")]
    Register {
        /// Instance id.
        id: String,
        /// The Consul client's error.
        source: discovery::DiscoveryError,
    },
    /// The generated gateway config was rejected (a bug in the demo).
    #[error("the generated gateway config is invalid:\n{0}")]
    Config(ConfigErrors),
    /// The gateway could not start.
    #[error("{source}{hint}")]
    Gateway {
        /// The gateway's error.
        source: StartError,
        /// Which flag helps, if any.
        hint: String,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// A second SIGINT/SIGTERM arrived while stopping.
    #[error("interrupted again while stopping; exited without waiting")]
    Interrupted,
}

/// SIGINT and SIGTERM, installed before anything starts so an early signal stops cleanly.
struct Signals {
    int: Signal,
    term: Signal,
}

// === impl DemoOptions ===

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9901)),
            consul: SocketAddr::from(([127, 0, 0, 1], 8500)),
            rps: 20,
            state_dir: default_state_dir(),
        }
    }
}

// === impl Signals ===

impl Signals {
    fn install() -> Result<Self, DemoError> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).map_err(DemoError::Signals)?,
            term: signal(SignalKind::terminate()).map_err(DemoError::Signals)?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// The demo's fixed state directory, `/tmp/meshgate-demo`. Fixed (not `$TMPDIR`) so that
/// `gwctl` finds the token without being told: see [`default_token_path`].
pub fn default_state_dir() -> PathBuf {
    PathBuf::from("/tmp/meshgate-demo")
}

/// Where `gatewayd demo` leaves its admin token by default, and the last place plain `gwctl`
/// looks for one: `/tmp/meshgate-demo/admin.token`. The single source of truth for both.
pub fn default_token_path() -> PathBuf {
    default_state_dir().join(TOKEN_FILE)
}

/// Runs the demo until SIGINT or SIGTERM, then stops everything in order (load, churn, gateway
/// drain, upstreams, Consul) and returns `Ok(())`. Must run inside a Tokio runtime with I/O and
/// time enabled; the gateway's workers get their own threads.
pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let mut signals = Signals::install()?;
    let rps = opts.rps.min(MAX_RPS);
    prepare_state_dir(&opts.state_dir)?;
    let demo = Running::start(&opts).await?;
    let (proxy, admin) = (demo.proxy(&opts), demo.app.admin_addr);

    say(&format!("demo: proxy http://{proxy}"));
    say(&format!("demo: admin http://{admin}"));
    say(&format!("demo: consul {}", demo.consul.url()));
    wait_for_endpoints(&demo.app).await;
    say("demo: ready");
    let next = next_steps::NextSteps {
        proxy,
        admin,
        consul_url: &demo.consul.url(),
        state_dir: &opts.state_dir,
        rps,
    };
    say(&next.to_string());
    let activity = demo.start_activity(proxy, rps);

    signals.recv().await;
    say("demo: stopping (load, churn, gateway drain, upstreams, Consul)");
    tokio::select! {
        _ = demo.stop(activity) => {}
        _ = signals.recv() => return Err(DemoError::Interrupted),
    }
    say("demo: stopped");
    Ok(())
}

/// Everything the demo started, in start order.
struct Running {
    consul: RunningDevConsul,
    upstreams: Vec<upstream::Upstream>,
    /// Stops the upstreams (after the gateway drained).
    upstreams_stop: CancellationToken,
    fleet: Arc<fleet::Fleet>,
    /// Stops heartbeats, churn and load (before the gateway drains).
    activity_stop: CancellationToken,
    heartbeat: JoinHandle<()>,
    app: App,
    /// Keeps the log writer running.
    _log_guard: Option<tracing_appender::non_blocking::WorkerGuard>,
}

// === impl Running ===

impl Running {
    /// Starts Consul, the instances (registered, heartbeats running) and the gateway.
    async fn start(opts: &DemoOptions) -> Result<Self, DemoError> {
        let consul = DevConsul::builder().start(opts.consul).await?;
        let consul_url = consul.url();
        let upstreams_stop = CancellationToken::new();
        let upstreams = upstream::start_all(upstreams_stop.clone())
            .await
            .map_err(DemoError::Upstream)?;
        let fleet = fleet::Fleet::register(&consul_url, &upstreams).await?;
        let activity_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(fleet.clone().heartbeat(activity_stop.clone()));
        let config_path = opts.state_dir.join("gatewayd.toml");
        let config = gateway_config::write_and_load(&config_path, opts, &consul_url)?;
        let log_guard = crate::telemetry::init(&config.log);
        let app = App::build(config, Some(config_path))
            .await
            .map_err(|source| DemoError::Gateway {
                hint: gateway_config::hint_for(&source, opts),
                source,
            })?;
        Ok(Self {
            consul,
            upstreams,
            upstreams_stop,
            fleet,
            activity_stop,
            heartbeat,
            app,
            _log_guard: log_guard,
        })
    }

    /// The proxy address as bound.
    fn proxy(&self, opts: &DemoOptions) -> SocketAddr {
        self.app
            .listen_addrs
            .first()
            .copied()
            .unwrap_or(opts.listen)
    }

    /// Starts churn and, unless `rps` is 0, the load.
    fn start_activity(&self, proxy: SocketAddr, rps: u32) -> Vec<JoinHandle<()>> {
        let stop = &self.activity_stop;
        let mut tasks = vec![tokio::spawn(self.fleet.clone().churn(stop.clone()))];
        if rps > 0 {
            tasks.push(tokio::spawn(load::run(
                proxy,
                rps,
                self.fleet.clone(),
                stop.clone(),
            )));
        }
        tasks
    }

    /// Load, churn and heartbeats first (so the drain sees no new requests and Consul stays as
    /// it is), then the gateway's drain, then the upstreams it drained to, then Consul.
    async fn stop(self, activity: Vec<JoinHandle<()>>) {
        self.activity_stop.cancel();
        for t in activity {
            let _ = t.await;
        }
        let _ = self.heartbeat.await;
        self.app.shutdown().await;
        self.upstreams_stop.cancel();
        upstream::stop_all(self.upstreams).await;
        self.consul.shutdown().await;
    }
}

/// Creates the state directory. The default one lives in a shared `/tmp`, so it is made private
/// (0700), which fails when another user owns it: then the token is not ours to write.
fn prepare_state_dir(dir: &Path) -> Result<(), DemoError> {
    let err = |reason: String| DemoError::StateDir {
        path: dir.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| err(e.to_string()))?;
    #[cfg(unix)]
    if dir == default_state_dir() {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            err(format!(
                "{e}: is it another user's? pass --state-dir DIR (then give gwctl --token-file DIR/{TOKEN_FILE})"
            ))
        })?;
    }
    // A leftover empty token file would stop the gateway; a leftover token is reused.
    let token = dir.join(TOKEN_FILE);
    if std::fs::read_to_string(&token).is_ok_and(|t| t.trim().is_empty()) {
        std::fs::remove_file(&token).map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

/// Waits (bounded) until discovery has delivered both services, so `ready` means "traffic flows".
async fn wait_for_endpoints(app: &App) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let has = |name: &str| {
        app.control
            .service_state(name)
            .is_some_and(|s| !s.set.is_empty())
    };
    while !(has("blue") && has("green")) {
        if tokio::time::Instant::now() > deadline {
            say("demo: warning: discovery has not delivered endpoints yet; see the logs");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prints a line (or block) to stdout and flushes, so a pipe reader sees it at once.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
