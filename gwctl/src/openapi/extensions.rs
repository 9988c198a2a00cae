//! `x-meshgate-policies`, `x-meshgate-rate-limit`, `x-meshgate-cors` on a path item or an
//! operation (the operation's win over the path's for the same key).
//!
//! Named policies are attached as written; inline tables become generated `[policies.*]` tables,
//! each checked by gatewayd's own validation so that the output always validates. A new policy
//! kind is one more [`Extension`] and its `kind()`.

use serde_json::{Map, Value};

/// A meshgate extension of the description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// `x-meshgate-policies`: names of `[policies.*]` to attach, in order.
    Policies,
    /// `x-meshgate-rate-limit`: an inline rate limit (`rate`, `burst`, `key`, …).
    RateLimit,
    /// `x-meshgate-cors`: inline CORS rules (`allow_origins`, …).
    Cors,
}

/// A `[policies.NAME]` table the import writes for an inline extension.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// `<route>-rate-limit` or `<route>-cors`.
    pub name: String,
    /// The table's keys, `kind` first.
    pub table: toml::Table,
}

/// Extensions found on one path item or operation, in [`Extension`] order.
pub type Found = Vec<(Extension, Value)>;

/// What the extensions of one operation became.
#[derive(Debug, Clone, Default)]
pub struct Mapped {
    /// Policy names for the route, in the order: named, then generated rate limit and CORS.
    pub policies: Vec<String>,
    /// Policies written for inline extensions.
    pub generated: Vec<Generated>,
    /// Extensions not mapped, with the reason.
    pub unmapped: Vec<(Extension, String)>,
}

const ALL: [Extension; 3] = [Extension::Policies, Extension::RateLimit, Extension::Cors];

// === impl Extension ===

impl Extension {
    /// The key in the description.
    pub fn key(self) -> &'static str {
        match self {
            Self::Policies => "x-meshgate-policies",
            Self::RateLimit => "x-meshgate-rate-limit",
            Self::Cors => "x-meshgate-cors",
        }
    }

    /// `kind` of the policy an inline extension becomes, and the suffix of its name.
    fn kind(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Policies => None,
            Self::RateLimit => Some(("rate_limit", "rate-limit")),
            Self::Cors => Some(("cors", "cors")),
        }
    }
}

/// The meshgate extensions of a path item or operation object.
pub fn of(obj: &Map<String, Value>) -> Found {
    ALL.iter()
        .filter_map(|e| obj.get(e.key()).map(|v| (*e, v.clone())))
        .collect()
}

/// Maps an operation's extensions (the operation's own replacing the path item's of one kind)
/// for the route named `route`:
/// - `x-meshgate-policies: [a, b]` (or one name) attaches those `[policies.*]` as written; the
///   config must define them;
/// - `x-meshgate-rate-limit` / `x-meshgate-cors` as a name attach that policy; as an object they
///   become a `[policies.<route>-rate-limit]` / `[policies.<route>-cors]` table with those keys,
///   checked by gatewayd's own validation: one it refuses is reported and left out.
pub fn map(path: &Found, op: &Found, route: &str) -> Mapped {
    let mut out = Mapped::default();
    for ext in ALL {
        let value = op
            .iter()
            .chain(path.iter())
            .find(|(e, _)| *e == ext)
            .map(|(_, v)| v);
        let Some(value) = value else { continue };
        match (value, ext.kind()) {
            (Value::String(name), _) => out.policies.push(name.clone()),
            (Value::Array(names), None) => {
                for n in names {
                    match n.as_str() {
                        Some(n) => out.policies.push(n.to_string()),
                        None => out
                            .unmapped
                            .push((ext, format!("{n} is not a policy name: left out"))),
                    }
                }
            }
            (Value::Object(keys), Some((kind, suffix))) => {
                match generate(keys, kind, &format!("{route}-{suffix}")) {
                    Ok(g) => {
                        out.policies.push(g.name.clone());
                        out.generated.push(g);
                    }
                    Err(reason) => out.unmapped.push((ext, reason)),
                }
            }
            (other, _) => out.unmapped.push((
                ext,
                format!("{other} is neither a policy name nor a table of its keys: left out"),
            )),
        }
    }
    out
}

/// A policy table from an inline extension, validated as gatewayd would.
fn generate(keys: &Map<String, Value>, kind: &str, name: &str) -> Result<Generated, String> {
    let mut table = toml::Table::new();
    table.insert("kind".into(), toml::Value::String(kind.into()));
    for (k, v) in keys {
        let v = toml::Value::try_from(v).map_err(|e| format!("'{k}': {e}: left out"))?;
        table.insert(k.clone(), v);
    }
    let g = Generated {
        name: name.to_string(),
        table,
    };
    // On a route of its own, as the import uses it: what a policy needs from its route (a
    // claim-keyed limit needs a jwt policy beside it) is checked too.
    let src = format!(
        "[services.s]\nendpoints = [\"127.0.0.1:1\"]\n\n[[routes]]\nname = \"r\"\npolicies = [\"{name}\"]\nbackends = [{{ name = \"s\", weight = 1 }}]\n\n{}",
        super::render::policy_table(&g)
    );
    match gatewayd::config::from_str(&src, "x") {
        Ok(_) => Ok(g),
        Err(e) => {
            let reasons: Vec<String> =
                e.0.iter()
                    .map(|e| format!("{}: {}", e.field, e.reason))
                    .collect();
            Err(format!(
                "refused by validation: {}: left out",
                reasons.join("; ")
            ))
        }
    }
}
