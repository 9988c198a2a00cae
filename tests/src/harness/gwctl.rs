//! Running the real `gwctl` binary: against a [`Gateway`] (its admin address and token file), or
//! with arguments of the test's choosing. Every run is bounded: past its timeout the process is
//! killed by PID and the run reported as such.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use super::{binary, patience, Gateway};

/// What one `gwctl` run produced.
#[derive(Debug, Clone)]
pub struct GwctlRun {
    /// The command line, for messages.
    pub args: Vec<String>,
    /// Exit code (`None`: killed by a signal, e.g. after the timeout).
    pub code: Option<i32>,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

/// How to reach a gateway with `gwctl`: `--admin URL --token-file PATH`.
#[derive(Debug, Clone)]
pub struct Gwctl {
    admin: String,
    token_file: PathBuf,
}

impl Gwctl {
    /// Targets `gw`'s admin API with its token file.
    pub fn new(gw: &Gateway) -> Self {
        Self {
            admin: gw.admin_url(""),
            token_file: gw.dir.join("admin.token"),
        }
    }

    /// The target flags, to prepend to a command line.
    pub fn target_args(&self) -> Vec<String> {
        vec![
            "--admin".into(),
            self.admin.clone(),
            "--token-file".into(),
            self.token_file.display().to_string(),
        ]
    }

    /// Runs `gwctl --admin … --token-file … ARGS`, waiting at most [`patience`].
    pub async fn run(&self, args: &[&str]) -> GwctlRun {
        self.run_for(args, patience()).await
    }

    /// Like [`Gwctl::run`], waiting at most `timeout`.
    pub async fn run_for(&self, args: &[&str], timeout: Duration) -> GwctlRun {
        let mut all = self.target_args();
        all.extend(args.iter().map(|a| a.to_string()));
        run_raw(&all, timeout).await
    }
}

/// Runs `gwctl ARGS` exactly as given (no target flags), waiting at most `timeout`; kills the
/// process by PID past it. The environment's `MESHGATE_*` variables are not passed on, so only
/// the arguments decide the target.
pub async fn run_raw(args: &[String], timeout: Duration) -> GwctlRun {
    let mut child = tokio::process::Command::new(binary("gwctl"))
        .args(args)
        .env_remove("MESHGATE_ADMIN")
        .env_remove("MESHGATE_TOKEN_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn gwctl: {e}"));
    let pid = child.id();
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let outputs = async {
        let (o, e) = tokio::join!(read_all(out), read_all(err));
        let status = child.wait().await;
        (o, e, status)
    };
    match tokio::time::timeout(timeout, outputs).await {
        Ok((stdout, stderr, status)) => GwctlRun {
            args: args.to_vec(),
            code: status.ok().and_then(|s| s.code()),
            stdout,
            stderr,
        },
        Err(_) => {
            // `outputs` (and its borrow of `child`) is gone: SIGKILL our child, by its PID.
            let _ = child.start_kill();
            let _ = child.wait().await;
            panic!("gwctl {args:?} (pid {pid:?}) did not finish within {timeout:?}; killed");
        }
    }
}

async fn read_all(stream: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    let mut buf = Vec::new();
    if let Some(mut s) = stream {
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf).await;
    }
    String::from_utf8_lossy(&buf).into_owned()
}

// === impl GwctlRun ===

impl GwctlRun {
    /// stdout parsed as JSON (panics with the whole run on failure).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("gwctl {:?}: stdout is not JSON ({e}):\n{self}", self.args))
    }

    /// Panics with the whole run unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "gwctl {:?}: unexpected exit code\n{self}",
            self.args
        );
        self
    }
}

impl std::fmt::Display for GwctlRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}
