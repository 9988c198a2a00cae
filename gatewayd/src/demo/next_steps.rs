//! The block the demo prints once ready: what runs where, and the commands to try next.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use super::{default_token_path, DemoOptions, TOKEN_FILE};

/// The "what to run next" block.
pub(super) struct NextSteps<'a> {
    pub(super) proxy: SocketAddr,
    pub(super) admin: SocketAddr,
    pub(super) consul_url: &'a str,
    pub(super) state_dir: &'a Path,
    pub(super) rps: u32,
}

impl fmt::Display for NextSteps<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self.state_dir.join(TOKEN_FILE);
        let (proxy, admin, consul) = (self.proxy, self.admin, self.consul_url);
        let load = if self.rps > 0 {
            format!("{} requests/s, a summary every 10 s", self.rps)
        } else {
            "off (--rps 0)".to_string()
        };
        writeln!(f)?;
        writeln!(f, "meshgate demo is running:")?;
        let rows = [
            (
                "proxy",
                format!("http://{proxy}"),
                "route web: / -> blue 100, green 0 (sticky cookie demo-session)".to_string(),
            ),
            (
                "admin",
                format!("http://{admin}"),
                format!("token in {}", token.display()),
            ),
            (
                "consul",
                consul.to_string(),
                "service demo: blue-1..3 (tag blue), green-1..3 (tag green)".into(),
            ),
            (
                "churn",
                String::new(),
                "every ~5 s one instance fails its TTL check or leaves Consul for 3 s".into(),
            ),
            ("load", String::new(), load),
            (
                "files",
                self.state_dir.display().to_string(),
                "gatewayd.toml (edits reload live), logs/".into(),
            ),
        ];
        let width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        for (what, addr, note) in rows {
            writeln!(f, "  {what:<7} {addr:<width$}  {note}")?;
        }
        writeln!(f)?;
        // Plain `gwctl` reaches the default admin address with the default token; otherwise
        // its environment variables say where, and the commands stay the same.
        let mut env = Vec::new();
        if self.admin != DemoOptions::default().admin {
            env.push(format!("MESHGATE_ADMIN=http://{admin}"));
        }
        if token != default_token_path() || earlier_token_exists() {
            env.push(format!("MESHGATE_TOKEN_FILE={}", token.display()));
        }
        if env.is_empty() {
            writeln!(f, "Next, in another terminal:")?;
        } else {
            writeln!(
                f,
                "Next, in another terminal, after `export {}`:",
                env.join(" ")
            )?;
        }
        let commands = [
            ("gwctl".to_string(), "live console (q quits)"),
            ("gwctl routes".into(), "routes, weights, who changed them"),
            ("gwctl upstreams".into(), "instances as Consul reports them"),
            (
                "gwctl flip web".into(),
                "all traffic to green (again: back to blue)",
            ),
            (
                "gwctl canary web --to green --steps 10,50,100 --interval 10s".into(),
                "step by step, with guards",
            ),
            (
                format!("curl -i http://{proxy}/"),
                "header x-demo-instance: who answered",
            ),
            (
                format!("curl '{consul}/v1/health/service/demo?passing'"),
                "what Consul says",
            ),
        ];
        let width = commands.iter().map(|c| c.0.len()).max().unwrap_or(0);
        for (cmd, note) in commands {
            writeln!(f, "  {cmd:<width$}  # {note}")?;
        }
        writeln!(
            f,
            "  (gwctl not on PATH? `cargo run --release -p gwctl -- ARGS`, or `cargo install --path gwctl`)"
        )?;
        write!(f, "Ctrl-C stops everything.")
    }
}

/// True when plain `gwctl` would pick another token file before the demo's: it looks in
/// `$XDG_RUNTIME_DIR/meshgate/admin.token` and `~/.config/meshgate/admin.token` first (the
/// lookup order `gwctl --help` documents).
fn earlier_token_exists() -> bool {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let xdg = var("XDG_RUNTIME_DIR").map(|x| Path::new(&x).join("meshgate/admin.token"));
    let home = var("HOME").map(|h| Path::new(&h).join(".config/meshgate/admin.token"));
    [xdg, home].into_iter().flatten().any(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_flags_gwctl_needs_only_off_the_defaults() {
        let dir = Path::new("/srv/demo");
        let text = NextSteps {
            proxy: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: SocketAddr::from(([127, 0, 0, 1], 1234)),
            consul_url: "http://127.0.0.1:8500",
            state_dir: dir,
            rps: 0,
        }
        .to_string();
        assert!(text.contains(
            "after `export MESHGATE_ADMIN=http://127.0.0.1:1234 MESHGATE_TOKEN_FILE=/srv/demo/admin.token`"
        ));
        assert!(text.contains("\n  gwctl flip web "));
        assert!(text.contains("off (--rps 0)"));
    }
}
