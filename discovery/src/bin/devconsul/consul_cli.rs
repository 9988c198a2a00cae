//! The few `consul` command lines that the Ansible `consul` role runs, so that devconsul can stand
//! in for the `consul` binary in tests: `consul agent -config-dir=DIR [-config-file=FILE]`,
//! `consul validate PATH...` and `consul version`.
//!
//! Only Consul's JSON config format is read (the role renders JSON); HCL files are reported as
//! unsupported. Validation checks what `consul validate` would reject in the keys the role
//! writes: unparsable files, unknown top-level keys, wrong value types, a missing `data_dir`,
//! a datacenter name with other characters than lower-case alphanumerics, `_` and `-`, and
//! `bootstrap_expect` on a client.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// A `consul` command line devconsul understands.
#[derive(Debug)]
pub enum Command {
    /// `consul agent`: serve with the listen address, datacenter, node and token of the config.
    Agent(Agent),
    /// `consul validate PATH...`: exit 0 when every file parses and checks.
    Validate(Vec<PathBuf>),
    /// `consul version`.
    Version,
}

/// What `consul agent` takes from its flags and config files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// `client_addr` (or `addresses.http`) and `ports.http`.
    pub addr: SocketAddr,
    /// `datacenter`.
    pub datacenter: String,
    /// `node_name`.
    pub node: String,
    /// `acl.tokens.initial_management` when `acl.enabled`.
    pub token: Option<String>,
}

/// Top-level keys of a Consul agent config that devconsul accepts (and mostly ignores).
const KNOWN_KEYS: &[&str] = &[
    "acl",
    "addresses",
    "advertise_addr",
    "auto_encrypt",
    "bind_addr",
    "bootstrap_expect",
    "client_addr",
    "connect",
    "data_dir",
    "datacenter",
    "disable_update_check",
    "domain",
    "enable_local_script_checks",
    "enable_script_checks",
    "encrypt",
    "leave_on_terminate",
    "log_json",
    "log_level",
    "node_name",
    "performance",
    "ports",
    "primary_datacenter",
    "retry_join",
    "server",
    "telemetry",
    "tls",
    "ui_config",
];

/// Recognises a consul-style command line; `None` leaves the arguments to devconsul's own flags.
pub fn parse(args: &[String]) -> Option<Result<Command, String>> {
    let (first, rest) = args.split_first()?;
    Some(match first.as_str() {
        "agent" => agent(rest).map(Command::Agent),
        "validate" => {
            let paths: Vec<PathBuf> = rest
                .iter()
                .filter(|a| !a.starts_with('-'))
                .map(PathBuf::from)
                .collect();
            if paths.is_empty() {
                Err("validate needs at least one file or directory".to_owned())
            } else {
                Ok(Command::Validate(paths))
            }
        }
        "version" => Ok(Command::Version),
        _ => return None,
    })
}

/// Runs `consul validate`: the problems of every file, or the merged config.
pub fn validate(paths: &[PathBuf]) -> Result<Map<String, Value>, Vec<String>> {
    let mut merged = Map::new();
    let mut problems = Vec::new();
    for file in config_files(paths).map_err(|e| vec![e])? {
        match read_object(&file) {
            Ok(obj) => {
                problems.extend(check_types(&file, &obj));
                merged.extend(obj);
            }
            Err(e) => problems.push(e),
        }
    }
    if !merged.contains_key("data_dir") {
        problems.push("data_dir cannot be empty".to_owned());
    }
    if let Some(dc) = merged.get("datacenter").and_then(Value::as_str) {
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        if dc.is_empty() || !dc.chars().all(valid) {
            problems.push(format!(
                "datacenter {dc:?}: only lower-case alphanumerics, underscores and hyphens are allowed"
            ));
        }
    }
    let server = merged
        .get("server")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let expect = merged
        .get("bootstrap_expect")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if !server && expect > 0 {
        problems.push("bootstrap_expect can only be set on a server".to_owned());
    }
    if problems.is_empty() {
        Ok(merged)
    } else {
        Err(problems)
    }
}

fn agent(flags: &[String]) -> Result<Agent, String> {
    let mut paths = Vec::new();
    let mut overrides = Map::new();
    let mut it = flags.iter();
    while let Some(flag) = it.next() {
        let flag = flag.trim_start_matches('-');
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (flag, None),
        };
        if name == "dev" {
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or(format!("flag -{name} needs a value"))?,
        };
        match name {
            "config-dir" | "config-file" => paths.push(PathBuf::from(value)),
            "client" => {
                overrides.insert("client_addr".into(), value.into());
            }
            "datacenter" => {
                overrides.insert("datacenter".into(), value.into());
            }
            "node" => {
                overrides.insert("node_name".into(), value.into());
            }
            "data-dir" => {
                overrides.insert("data_dir".into(), value.into());
            }
            "http-port" => {
                let port: u16 = value
                    .parse()
                    .map_err(|_| format!("bad -http-port {value:?}"))?;
                overrides.insert("ports".into(), serde_json::json!({ "http": port }));
            }
            other => return Err(format!("flag -{other} is not supported by devconsul")),
        }
    }
    let mut config = if paths.is_empty() {
        Map::new()
    } else {
        validate(&paths).map_err(|p| p.join("; "))?
    };
    config.extend(overrides);
    agent_from(&config)
}

fn agent_from(config: &Map<String, Value>) -> Result<Agent, String> {
    let text = |key: &str| config.get(key).and_then(Value::as_str);
    let ip = config
        .get("addresses")
        .and_then(|a| a.get("http"))
        .and_then(Value::as_str)
        .or_else(|| text("client_addr"))
        .unwrap_or("127.0.0.1");
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("client address {ip:?} is not one IP address"))?;
    let port = match config.get("ports").and_then(|p| p.get("http")) {
        None => 8500,
        Some(p) => p
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or(format!("ports.http {p} is not a port devconsul can serve"))?,
    };
    let acl = config.get("acl");
    let token = acl
        .filter(|a| a.get("enabled").and_then(Value::as_bool).unwrap_or(false))
        .and_then(|a| a.get("tokens"))
        .and_then(|t| t.get("initial_management").or_else(|| t.get("master")))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Agent {
        addr: SocketAddr::new(ip, port),
        datacenter: text("datacenter").unwrap_or("dc1").to_owned(),
        node: text("node_name").unwrap_or("devconsul").to_owned(),
        token,
    })
}

fn config_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries =
                std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| matches!(ext(p), Some("json" | "hcl")))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        return Err("no config files found".to_owned());
    }
    Ok(files)
}

fn ext(path: &Path) -> Option<&str> {
    path.extension().and_then(|e| e.to_str())
}

fn read_object(file: &Path) -> Result<Map<String, Value>, String> {
    let name = file.display();
    if ext(file) == Some("hcl") {
        return Err(format!("{name}: HCL is not read by devconsul; write JSON"));
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: {e}"))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(format!("{name}: the config must be a JSON object")),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

fn check_types(file: &Path, obj: &Map<String, Value>) -> Vec<String> {
    let name = file.display();
    let mut problems = Vec::new();
    for (key, value) in obj {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            problems.push(format!("{name}: invalid config key {key}"));
            continue;
        }
        let ok = match key.as_str() {
            "server"
            | "disable_update_check"
            | "leave_on_terminate"
            | "log_json"
            | "enable_script_checks"
            | "enable_local_script_checks" => value.is_boolean(),
            "bootstrap_expect" => value.is_u64(),
            "retry_join" => value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string)),
            "acl" | "addresses" | "auto_encrypt" | "connect" | "performance" | "ports"
            | "telemetry" | "tls" | "ui_config" => value.is_object(),
            _ => value.is_string(),
        };
        if !ok {
            problems.push(format!("{name}: {key}: wrong type {value}"));
        }
    }
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn agent_reads_address_port_and_token_from_the_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "consul.json",
            r#"{"data_dir":"/d","datacenter":"dc7","node_name":"n1","client_addr":"127.0.0.1",
               "ports":{"http":18500},"acl":{"enabled":true,"tokens":{"initial_management":"s"}}}"#,
        );
        let args: Vec<String> = ["agent", &format!("-config-dir={}", dir.path().display())]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let Some(Ok(Command::Agent(agent))) = parse(&args) else {
            panic!("not an agent command line");
        };
        assert_eq!(agent.addr, "127.0.0.1:18500".parse().unwrap());
        assert_eq!(
            (agent.datacenter.as_str(), agent.node.as_str()),
            ("dc7", "n1")
        );
        assert_eq!(agent.token.as_deref(), Some("s"));
    }

    #[test]
    fn validate_rejects_what_consul_rejects() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.json",
            r#"{"server":"yes","nope":1,"bootstrap_expect":3,"datacenter":"DC 1"}"#,
        );
        let problems = validate(&[dir.path().to_path_buf()])
            .unwrap_err()
            .join("\n");
        assert!(problems.contains("server: wrong type"), "{problems}");
        assert!(problems.contains("invalid config key nope"), "{problems}");
        assert!(problems.contains("data_dir cannot be empty"), "{problems}");
        assert!(problems.contains("datacenter \"DC 1\""), "{problems}");
        assert!(
            problems.contains("bootstrap_expect can only be set on a server"),
            "{problems}"
        );
        write(
            dir.path(),
            "a.json",
            r#"{"data_dir":"/d","server":true,"bootstrap_expect":1}"#,
        );
        assert!(validate(&[dir.path().to_path_buf()]).is_ok());
    }

    #[test]
    fn other_command_lines_are_left_to_devconsul() {
        assert!(parse(&["--addr".to_owned(), "127.0.0.1:0".to_owned()]).is_none());
    }
}
