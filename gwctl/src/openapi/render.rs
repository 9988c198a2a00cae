//! Imported routes as TOML `[[routes]]` tables.

use std::fmt::Write as _;

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
    out
}

/// A TOML basic string, escaped.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
