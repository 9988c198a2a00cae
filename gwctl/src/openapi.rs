//! OpenAPI 3.0 / 3.1 → meshgate routes (`gwctl import openapi`): one route per operation (path +
//! method), servers' base path honoured, `x-meshgate-*` extensions carried over as far as the
//! config can express them. Nothing here does I/O: the command in `cli/import.rs` reads files and
//! prints.
//!
//! What cannot be mapped is never dropped silently: it becomes a [`Unmapped`] entry naming the
//! operation, which the command prints on stderr.

use std::collections::HashMap;

use serde_json::{Map, Value};

mod diff;
mod extensions;
mod render;
mod spec;

#[cfg(test)]
mod tests;

pub use diff::{diff, RouteChange};
pub use render::render;
pub use spec::{parse_document, Document};

/// What went wrong reading a description; the import stops.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Neither JSON nor YAML.
    #[error("not JSON or YAML: {0}")]
    Syntax(String),
    /// `openapi` missing or not 3.0.x / 3.1.x (Swagger 2.0 included).
    #[error("not an OpenAPI 3.0 or 3.1 description (openapi: {0})")]
    Version(String),
    /// `paths` missing or empty.
    #[error("the description has no paths")]
    NoPaths,
}

/// One route made from one operation.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedRoute {
    /// Unique route name (from `operationId`, else method and path).
    pub name: String,
    /// Full path: prefix + server base path + the spec's path.
    pub path: String,
    /// True when `path` has `{name}` parameters (written as `path_template`).
    pub templated: bool,
    /// Upper-case method.
    pub method: String,
    /// The operation as the spec writes it, for messages: `GET /pets/{id}`.
    pub operation: String,
    /// Policies the extensions map to (names of `[policies.*]`).
    pub policies: Vec<String>,
    /// `[policies.*]` tables written for inline extensions.
    pub generated: Vec<extensions::Generated>,
}

/// Something of the description that did not become (part of) a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    /// Where: `GET /pets/{id}`, or a path, or `servers`.
    pub at: String,
    /// What and why.
    pub reason: String,
}

/// Routes and what was left out.
#[derive(Debug, Clone, Default)]
pub struct Import {
    /// Routes in a stable order (the description's path order, then method order).
    pub routes: Vec<ImportedRoute>,
    /// Everything not mapped, in the same order.
    pub unmapped: Vec<Unmapped>,
}

// === impl Import ===

impl Import {
    /// Policy names the routes use that the import does not write (from `x-meshgate-policies` or
    /// an extension given as a name), each with the first operation using it, in first-use order.
    pub fn named_policies(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for r in &self.routes {
            for p in &r.policies {
                let generated = r.generated.iter().any(|g| g.name == *p);
                if !generated && !out.iter().any(|(n, _)| n == p) {
                    out.push((p.clone(), r.operation.clone()));
                }
            }
        }
        out
    }
}

/// Import options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Prepended to every path (`/v1`); empty for none.
    pub prefix: String,
}

/// The methods OpenAPI path items may hold, in the order routes are written.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Builds routes from a parsed description.
pub fn import(doc: &Document, opts: &Options) -> Import {
    let mut b = Builder {
        out: Import::default(),
        names: Names::default(),
        seen: HashMap::new(),
    };
    let root_base = spec::base_path(doc.root.get("servers"), "servers", &mut b.out.unmapped);
    if doc.root.get("webhooks").is_some_and(|w| !is_empty(w)) {
        b.unmapped(
            "webhooks",
            "webhooks are calls the API makes, not routes: skipped".into(),
        );
    }
    for (path, item) in doc.paths() {
        let Some(written) = item.as_object() else {
            continue;
        };
        // A `$ref` (3.1's `components/pathItems`, or anywhere in this document) is followed;
        // the referring object's own extensions win over the target's.
        let item = match spec::path_item(doc, written) {
            Ok(item) => item,
            Err(reason) => {
                b.unmapped(path, reason);
                continue;
            }
        };
        let path_base = match item.get("servers") {
            Some(s) => spec::base_path(Some(s), &format!("{path} servers"), &mut b.out.unmapped),
            None => root_base.clone(),
        };
        let mut path_ext = extensions::of(written);
        for (e, v) in extensions::of(item) {
            if !path_ext.iter().any(|(w, _)| *w == e) {
                path_ext.push((e, v));
            }
        }
        for method in METHODS {
            if let Some(op) = item.get(method).and_then(Value::as_object) {
                b.operation(opts, path, &path_base, &path_ext, method, op);
            }
        }
    }
    b.out
}

/// The import under way: routes so far, names taken, and which (shape, method) each route took.
struct Builder {
    out: Import,
    names: Names,
    seen: HashMap<(String, String), String>,
}

impl Builder {
    fn unmapped(&mut self, at: &str, reason: String) {
        self.out.unmapped.push(Unmapped {
            at: at.to_string(),
            reason,
        });
    }

    /// One operation → one route, or the reason it is not one.
    fn operation(
        &mut self,
        opts: &Options,
        path: &str,
        path_base: &str,
        path_ext: &extensions::Found,
        method: &str,
        op: &Map<String, Value>,
    ) {
        let method_uc = method.to_ascii_uppercase();
        let operation = format!("{method_uc} {path}");
        let base = match op.get("servers") {
            Some(s) => spec::base_path(Some(s), &operation, &mut self.out.unmapped),
            None => path_base.to_string(),
        };
        let full = join(&[&opts.prefix, &base, path]);
        let templated = full.contains(['{', '}']);
        let shape = if templated {
            match gatewayd::route::PathTemplate::parse(&full) {
                Ok(t) => t.shape(),
                Err(e) => {
                    return self
                        .unmapped(&operation, format!("path is not a meshgate template: {e}"))
                }
            }
        } else {
            full.clone()
        };
        let key = (shape, method_uc.clone());
        if let Some(other) = self.seen.get(&key) {
            let reason = format!(
                "matches the same requests as route '{other}' (declared first): not reachable, \
                 skipped"
            );
            return self.unmapped(&operation, reason);
        }
        let op_id = op.get("operationId").and_then(Value::as_str);
        let name = self.names.unique(op_id, method, path);
        self.seen.insert(key, name.clone());
        let mapped = extensions::map(path_ext, &extensions::of(op), &name);
        for (ext, reason) in mapped.unmapped {
            self.unmapped(&operation, format!("{}: {reason}", ext.key()));
        }
        self.out.routes.push(ImportedRoute {
            name,
            path: full,
            templated,
            method: method_uc,
            operation,
            policies: mapped.policies,
            generated: mapped.generated,
        });
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// Joins path pieces with exactly one `/` between them; the result starts with `/`.
fn join(parts: &[&str]) -> String {
    let mut out = String::new();
    for p in parts {
        let p = p.trim_end_matches('/');
        if p.is_empty() {
            continue;
        }
        if !p.starts_with('/') {
            out.push('/');
        }
        out.push_str(p);
    }
    // The spec's own path keeps a trailing slash if it has one (`/pets/` is not `/pets`).
    if parts.last().is_some_and(|l| l.ends_with('/')) || out.is_empty() {
        out.push('/');
    }
    out
}

/// Unique, valid route names, stable for a given description.
#[derive(Debug, Default)]
struct Names {
    used: std::collections::HashSet<String>,
}

impl Names {
    fn unique(&mut self, op_id: Option<&str>, method: &str, path: &str) -> String {
        let base = match op_id.map(sanitize).filter(|s| !s.is_empty()) {
            Some(s) => s,
            None => sanitize(&format!("{method}-{path}")),
        };
        // Room for `-rate-limit` and a counter within the 128 bytes of a name.
        let mut base: String = base.chars().take(100).collect();
        if base.is_empty() {
            base = method.to_string();
        }
        let mut name = base.clone();
        let mut n = 2;
        while !self.used.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        name
    }
}

/// Keeps `[A-Za-z0-9_.-]`, turns runs of anything else into one `-`, trims `-` at the ends.
fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || "_.-".contains(c) {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}
