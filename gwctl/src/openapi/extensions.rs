//! `x-meshgate-policies`, `x-meshgate-rate-limit`, `x-meshgate-cors` on a path item or an
//! operation (the operation's win over the path's for the same key).
//!
//! The config has no `[policies]` yet, so [`mapping`] says "not mapped yet" for every kind and
//! each one is reported per operation. When policies land, `mapping` returns
//! [`Mapping::Policies`] (named policies attached as written, inline rate limits and CORS rules
//! turned into generated `[policies.*]` tables) and the renderer writes `policies = [...]`: the
//! walk, the reporting and the renderer do not change.

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

/// How an extension becomes config today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// The config cannot express it yet; the reason is reported.
    NotYet(&'static str),
    /// It becomes these policy names on the route.
    #[allow(dead_code)] // Used once the config has policies (issue 12).
    Policies(Vec<String>),
}

/// Extensions found on one path item or operation, in [`Extension`] order.
pub type Found = Vec<(Extension, Value)>;

/// What the extensions of one operation became.
#[derive(Debug, Clone, Default)]
pub struct Mapped {
    /// Policy names for the route.
    pub policies: Vec<String>,
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
}

/// The meshgate extensions of a path item or operation object.
pub fn of(obj: &Map<String, Value>) -> Found {
    ALL.iter()
        .filter_map(|e| obj.get(e.key()).map(|v| (*e, v.clone())))
        .collect()
}

/// Maps an operation's extensions, the operation's own replacing the path item's of one kind.
pub fn map(path: &Found, op: &Found) -> Mapped {
    let mut out = Mapped::default();
    for ext in ALL {
        let value = op
            .iter()
            .chain(path.iter())
            .find(|(e, _)| *e == ext)
            .map(|(_, v)| v);
        let Some(value) = value else { continue };
        match mapping(ext, value) {
            Mapping::NotYet(reason) => out
                .unmapped
                .push((ext, format!("not mapped yet: {reason}"))),
            Mapping::Policies(names) => out.policies.extend(names),
        }
    }
    out
}

/// The one place that decides how an extension maps onto the config.
fn mapping(ext: Extension, value: &Value) -> Mapping {
    let _ = value;
    match ext {
        Extension::Policies => Mapping::NotYet("routes have no 'policies' in the config yet"),
        Extension::RateLimit => {
            Mapping::NotYet("the config has no rate_limit policy yet (issue 12)")
        }
        Extension::Cors => Mapping::NotYet("the config has no cors policy yet (issue 12)"),
    }
}
