//! The demo gateway's config: written to `STATE_DIR/gatewayd.toml` on every start (so the file
//! matches the addresses in use, and edits reload live), then loaded like any other.

use std::path::Path;

use crate::app::StartError;
use crate::config::{self, Config, ConfigError, ConfigErrors};

use super::fleet::SERVICE;
use super::upstream::Color;
use super::{DemoError, DemoOptions, TOKEN_FILE};

/// Files of an earlier run that would make this one start from its state instead of fresh.
const STALE_FILES: [&str; 1] = ["discovery-cache.json"];

/// The config text for `opts` with Consul at `consul_url`. Relative paths are relative to the
/// file's directory, the state directory.
pub(super) fn render(opts: &DemoOptions, consul_url: &str) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let token = opts.state_dir.join(TOKEN_FILE);
    let mut out = format!(
        r#"# Written by `gatewayd demo` at every start: edits reload live, until the next start.

[gateway]
workers = 2
drain_timeout = "5s"

[[listeners]]
name = "main"
address = {listen}

[admin]
address = {admin}
token_file = {token}

[log]
level = "info"
format = "json"
directory = "logs"
file_prefix = "gatewayd.log"
rotation = "never"

[consul]
address = {consul}
kv_weights = true
register = true
cache_file = {cache}

"#,
        listen = q(&opts.listen.to_string()),
        admin = q(&opts.admin.to_string()),
        token = q(&token.display().to_string()),
        consul = q(consul_url),
        cache = q(STALE_FILES[0]),
    );
    for c in Color::ALL {
        let name = c.name();
        out.push_str(&format!(
            "[services.{name}]\nconsul = {{ service = {}, tags = [{}] }}\n\n",
            q(SERVICE),
            q(name)
        ));
    }
    out.push_str(
        r#"[[routes]]
name = "web"
path_prefix = "/"
sticky = { cookie = "demo-session" }
backends = [{ name = "blue", weight = 100 }, { name = "green", weight = 0 }]
"#,
    );
    out
}

/// Removes an earlier run's discovery cache, writes the config to `path` and loads it.
pub(super) fn write_and_load(
    path: &Path,
    opts: &DemoOptions,
    consul_url: &str,
) -> Result<Config, DemoError> {
    let io_err = |e: std::io::Error| {
        DemoError::Config(ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            field: "-".into(),
            reason: format!("cannot write: {e}"),
        }]))
    };
    for stale in STALE_FILES {
        match std::fs::remove_file(opts.state_dir.join(stale)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(e)),
            _ => {}
        }
    }
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, render(opts, consul_url)).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)?;
    config::load(path).map_err(DemoError::Config)
}

/// Which flag gets past a start failure: another address for a taken port.
pub(super) fn hint_for(e: &StartError, opts: &DemoOptions) -> String {
    let StartError::Bind { addr, .. } = e else {
        return String::new();
    };
    let flag = if *addr == opts.admin {
        "--admin"
    } else {
        "--listen"
    };
    format!(" (is another gateway running? pick another address with {flag}, e.g. 127.0.0.1:0)")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rendered_config_is_valid() {
        let opts = DemoOptions {
            state_dir: "/tmp/x \"y\"".into(),
            ..DemoOptions::default()
        };
        let cfg = config::from_str(&render(&opts, "http://127.0.0.1:8500"), "demo.toml").unwrap();
        assert_eq!(cfg.routes.len(), 1);
        assert_eq!(cfg.services.len(), 2);
        assert!(cfg.services.values().all(|s| s.consul.is_some()));
        let consul = cfg.consul.unwrap();
        assert!(consul.kv_weights && consul.register);
        assert_eq!(
            cfg.admin.token_file.unwrap(),
            Path::new("/tmp/x \"y\"/admin.token")
        );
    }
}
