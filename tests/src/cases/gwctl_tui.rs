//! The live console in a real terminal: tmux runs `gwctl`, the test reads the screen with
//! `capture-pane` and types with `send-keys`, and checks what the flip did at the gateway and at
//! the origins.
//!
//! tmux is required, not optional: `tests/run.sh` installs it when missing.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use meshgate_e2e::harness::gwctl::Gwctl;
use meshgate_e2e::harness::{binary, patience, trace_init, Gateway, Origin};

use super::gwctl_cli::{admin_weights, bg, blue_green, traffic};
use super::support::client;

/// A detached tmux session on a private server (its socket in a temporary directory), killed
/// (session and server) on drop.
struct Tmux {
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
    session: String,
    /// Only a process whose command line contains this is ever killed by PID.
    marker: String,
    pane_pid: Option<u32>,
}

impl Tmux {
    /// Starts `command` in a new 120×40 session.
    fn start(command: &str, marker: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "meshgate-e2e-{}-{}",
            std::process::id(),
            N.fetch_add(1, Relaxed)
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut t = Self {
            socket: dir.path().join("tmux.sock"),
            _dir: dir,
            session: name,
            marker: marker.to_string(),
            pane_pid: None,
        };
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-s",
            &t.session.clone(),
            "-x",
            "120",
            "-y",
            "40",
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = t.tmux(&[
            "display-message",
            "-p",
            "-t",
            &t.session.clone(),
            "#{pane_pid}",
        ]);
        t.pane_pid = String::from_utf8_lossy(&pid.stdout).trim().parse().ok();
        t
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap_or_else(|e| panic!("run tmux {args:?}: {e}"))
    }

    /// The visible screen, as text.
    fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", &self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types one key.
    fn send(&self, key: &str) {
        let out = self.tmux(&["send-keys", "-t", &self.session, key]);
        assert!(
            out.status.success(),
            "tmux send-keys {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// True while the session exists.
    fn alive(&self) -> bool {
        self.tmux(&["has-session", "-t", &self.session])
            .status
            .success()
    }

    /// Polls the screen until `ok` holds (bounded by patience); panics with the last screen.
    async fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out after {:?} waiting for {what}; screen:\n{s}",
                    patience()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-session", "-t", &self.session]);
        let _ = self.tmux(&["kill-server"]);
        // The pane's process gets SIGHUP from tmux; make sure, by PID, if it is still ours.
        if let Some(pid) = self.pane_pid {
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&self.marker))
                .unwrap_or(false);
            if ours {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

fn require_tmux() {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "tmux is not installed: the console test drives gwctl in a real terminal through tmux. \
         tests/run.sh installs it (apt-get install tmux); on another system install tmux first"
    );
}

/// The key the dialog says confirms: the word before "confirm" on its key line.
fn confirm_key(screen: &str) -> Option<String> {
    screen.lines().find_map(|l| {
        let before = &l[..l.find(" confirm")?];
        before
            .split(|c: char| c.is_whitespace() || c == '│')
            .rfind(|w| !w.is_empty())
            .map(str::to_string)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_flip_in_a_real_terminal_moves_traffic() {
    trace_init();
    require_tmux();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let gw = Gateway::start(&blue_green(&blue, &green)).unwrap();
    let http = client();
    assert_eq!(traffic(&http, &gw, &blue, &green, 20).await, (20, 0));

    let exit_file = gw.dir.join("gwctl.exit");
    let quoted: Vec<String> = std::iter::once(binary("gwctl").display().to_string())
        .chain(Gwctl::new(&gw).target_args())
        .map(|a| format!("'{a}'"))
        .collect();
    let command = format!("{}; echo $? > '{}'", quoted.join(" "), exit_file.display());
    let token_file = gw.dir.join("admin.token").display().to_string();
    let term = Tmux::start(&command, &token_file);

    term.wait_for("the routes screen showing web at blue 100", |s| {
        s.lines()
            .any(|l| l.contains("web") && l.contains("blue 100 green 0"))
    })
    .await;
    term.send("b");
    let dialog = term
        .wait_for("the flip confirmation dialog", |s| {
            s.contains("flip web (at revision 0)") && confirm_key(s).is_some()
        })
        .await;
    assert!(dialog.contains("from  blue=100 green=0"), "{dialog}");
    assert!(dialog.contains("to    blue=0 green=100"), "{dialog}");
    // Nothing changes before the confirmation.
    assert_eq!(admin_weights(&gw, &http, "web").await, bg(100, 0));
    let key = confirm_key(&dialog).unwrap_or_default();
    assert_eq!(key, "y", "the dialog's confirm key\n{dialog}");
    term.send(&key);

    let after = term
        .wait_for("the routes screen showing web at green 100", |s| {
            s.lines()
                .any(|l| l.contains("web") && l.contains("blue 0 green 100"))
        })
        .await;
    assert!(
        after.contains("web: blue=100 green=0 → blue=0 green=100 (revision 1)"),
        "the status line reports the change\n{after}"
    );
    assert!(
        !after.contains("flip web (at revision"),
        "dialog closed\n{after}"
    );
    assert_eq!(admin_weights(&gw, &http, "web").await, bg(0, 100));
    assert_eq!(traffic(&http, &gw, &blue, &green, 20).await, (0, 20));

    term.send("q");
    let deadline = tokio::time::Instant::now() + patience();
    while term.alive() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gwctl still running after q; screen:\n{}",
            term.screen()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let code = std::fs::read_to_string(&exit_file).unwrap_or_default();
    assert_eq!(code.trim(), "0", "gwctl's exit code after q");
}
