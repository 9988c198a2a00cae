//! Imported routes as TOML `[[routes]]` tables.

use std::fmt::Write as _;

use super::extensions::Generated;
use super::ImportedRoute;

/// TOML for `routes`, each sending to `service` (a backend of that name, weight 1). The service
/// itself is not written: it is the config's to define (static endpoints or Consul).
pub fn render(routes: &[ImportedRoute], service: &str, header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "# {line}");
    }
    let svc = quote(service);
    for r in routes {
        let _ = writeln!(out, "\n# {}", r.operation);
        let _ = writeln!(out, "[[routes]]");
        let _ = writeln!(out, "name = {}", quote(&r.name));
        let key = if r.templated { "path_template" } else { "path" };
        let _ = writeln!(out, "{key} = {}", quote(&r.path));
        let _ = writeln!(out, "methods = [{}]", quote(&r.method));
        if !r.policies.is_empty() {
            let list: Vec<String> = r.policies.iter().map(|p| quote(p)).collect();
            let _ = writeln!(out, "policies = [{}]", list.join(", "));
        }
        let _ = writeln!(
            out,
            "backends = [{{ name = {svc}, service = {svc}, weight = 1 }}]"
        );
    }
    for g in routes.iter().flat_map(|r| &r.generated) {
        let _ = write!(out, "\n{}", policy_table(g));
    }
    out
}

/// `[policies.NAME]` with its keys, `kind` first.
pub(super) fn policy_table(g: &Generated) -> String {
    let mut out = format!("[policies.{}]\n", toml_key(&g.name));
    let mut keys: Vec<(&String, &toml::Value)> = g.table.iter().collect();
    keys.sort_by_key(|(k, _)| *k != "kind");
    for (k, v) in keys {
        let _ = writeln!(out, "{} = {v}", toml_key(k));
    }
    out
}

/// A bare key when it can be one, else quoted.
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
    {
        k.to_string()
    } else {
        quote(k)
    }
}

/// A TOML basic string, escaped.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
