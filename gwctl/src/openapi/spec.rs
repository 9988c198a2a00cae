//! Reading the description: JSON or YAML into one JSON value, the version check, servers' base
//! paths.

use serde_json::{Map, Value};

use super::{ImportError, Unmapped};

/// A parsed OpenAPI 3.0 / 3.1 description.
#[derive(Debug, Clone)]
pub struct Document {
    /// The whole document.
    pub root: Map<String, Value>,
}

impl Document {
    /// `paths` entries (path, path item).
    pub fn paths(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.root
            .get("paths")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
    }
}

/// How many `$ref`s in a row a path item may go through (a longer chain is taken as a loop).
const MAX_REF_HOPS: usize = 8;

/// The path item `item` stands for: itself, or the object its `$ref` points to in this
/// document (`#/components/pathItems/Report`), followed through further `$ref`s. A reference
/// to another document, one that does not resolve to an object, or a loop is the reason no
/// routes are made for the path.
pub fn path_item<'a>(
    doc: &'a Document,
    item: &'a Map<String, Value>,
) -> Result<&'a Map<String, Value>, String> {
    let mut at = item;
    for _ in 0..MAX_REF_HOPS {
        let Some(r) = at.get("$ref") else {
            return Ok(at);
        };
        let Some(pointer_text) = r.as_str().and_then(|r| r.strip_prefix('#')) else {
            return Err(format!(
                "path item '$ref' {r} is not in this document: not followed, no routes for this path"
            ));
        };
        at = pointer(&doc.root, pointer_text)
            .and_then(Value::as_object)
            .ok_or_else(|| {
                format!(
                    "path item '$ref' {r} does not resolve to an object: no routes for this path"
                )
            })?;
    }
    Err(format!(
        "path item '$ref' goes through more than {MAX_REF_HOPS} references: no routes for this path"
    ))
}

/// The value a JSON pointer (`/components/pathItems/Report`, RFC 6901) names in the document.
fn pointer<'a>(root: &'a Map<String, Value>, pointer: &str) -> Option<&'a Value> {
    let mut tokens = pointer
        .strip_prefix('/')?
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"));
    let mut v = root.get(&tokens.next()?)?;
    for t in tokens {
        v = match v {
            Value::Object(m) => m.get(&t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Parses JSON (when the text starts with `{`) or YAML, and checks `openapi: 3.0.x | 3.1.x`.
pub fn parse_document(text: &str) -> Result<Document, ImportError> {
    let value: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| ImportError::Syntax(e.to_string()))?
    } else {
        let y: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| ImportError::Syntax(e.to_string()))?;
        yaml_to_json(y)
    };
    let Value::Object(root) = value else {
        return Err(ImportError::Version("(not a mapping)".into()));
    };
    let version = match root.get("openapi") {
        Some(Value::String(v)) => v.clone(),
        Some(other) => other.to_string(),
        None => match root.get("swagger") {
            Some(v) => format!("absent; swagger {v}"),
            None => "absent".into(),
        },
    };
    if !(version.starts_with("3.0") || version.starts_with("3.1")) {
        return Err(ImportError::Version(version));
    }
    let doc = Document { root };
    if doc.paths().next().is_none() {
        return Err(ImportError::NoPaths);
    }
    Ok(doc)
}

/// YAML → JSON value. Mapping keys that are not strings (`200:` response codes) become their
/// text, as a JSON description would write them.
fn yaml_to_json(y: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match y {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(s) => Value::Array(s.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        Y::Number(n) => n.to_string(),
                        Y::Bool(b) => b.to_string(),
                        other => serde_yaml::to_string(&other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

/// The base path of the first server (`https://api.example.com/v3` → `/v3`, `/api/v3` →
/// `/api/v3`), server variables replaced by their defaults. Other servers with another base path
/// are reported under `at`; no servers means `/`.
pub fn base_path(servers: Option<&Value>, at: &str, unmapped: &mut Vec<Unmapped>) -> String {
    let Some(list) = servers.and_then(Value::as_array).filter(|l| !l.is_empty()) else {
        return String::new();
    };
    let bases: Vec<Option<String>> = list.iter().map(|s| server_base(s, at, unmapped)).collect();
    let first = bases.first().cloned().flatten().unwrap_or_default();
    for (i, b) in bases.iter().enumerate().skip(1) {
        if let Some(b) = b {
            if *b != first {
                unmapped.push(Unmapped {
                    at: at.to_string(),
                    reason: format!(
                        "server {} has base path '{b}', not '{first}' (the first server's): \
                         only the first is routed",
                        i + 1
                    ),
                });
            }
        }
    }
    first
}

fn server_base(server: &Value, at: &str, unmapped: &mut Vec<Unmapped>) -> Option<String> {
    let url = server.get("url")?.as_str()?;
    let mut url = url.to_string();
    if let Some(vars) = server.get("variables").and_then(Value::as_object) {
        for (name, var) in vars {
            match var.get("default").and_then(Value::as_str) {
                Some(d) => url = url.replace(&format!("{{{name}}}"), d),
                None => unmapped.push(Unmapped {
                    at: at.to_string(),
                    reason: format!("server variable '{name}' has no default"),
                }),
            }
        }
    }
    // Drop scheme and authority: only the path is routed.
    let path = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            rest.find('/').map_or("", |p| &rest[p..])
        }
        None if url.starts_with("//") => url[2..].find('/').map_or("", |p| &url[2 + p..]),
        None => url.as_str(),
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.contains('{') {
        unmapped.push(Unmapped {
            at: at.to_string(),
            reason: format!("server URL '{url}' keeps a variable in its path: base path ignored"),
        });
        return Some(String::new());
    }
    Some(path.trim_end_matches('/').to_string())
}
