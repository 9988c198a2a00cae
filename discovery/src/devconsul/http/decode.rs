//! Request bodies as Consul reads them: Go's case-insensitive field matching plus Consul's
//! snake_case translation (`service_id`, `deregister_critical_service_after`), durations as Go
//! strings or integer nanoseconds.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::super::state::{
    CheckDefinition, CheckKind, Probe, ServiceAddress, ServiceDefinition, Status, Weights,
};
use crate::go_duration;

/// A JSON object with case- and underscore-insensitive field lookup.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Obj<'a>(pub(crate) &'a Map<String, Value>);

fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

impl<'a> Obj<'a> {
    /// Parses a body that must be a JSON object.
    pub(crate) fn parse(body: &[u8]) -> Result<Value, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Map::new()));
        }
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }

    /// Views `v` as an object.
    pub(crate) fn of(v: &'a Value) -> Result<Self, String> {
        v.as_object()
            .map(Obj)
            .ok_or_else(|| "expected a JSON object".to_owned())
    }

    /// The first present, non-null field among `names`.
    pub(crate) fn get(&self, names: &[&str]) -> Option<&'a Value> {
        let wanted: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        self.0
            .iter()
            .find(|(k, v)| !v.is_null() && wanted.contains(&normalize(k)))
            .map(|(_, v)| v)
    }

    /// A string field.
    pub(crate) fn string(&self, names: &[&str]) -> Result<Option<String>, String> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{}: expected a string, got {other}", names[0])),
        }
    }

    /// An integer field.
    pub(crate) fn int(&self, names: &[&str]) -> Result<Option<i64>, String> {
        match self.get(names) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| format!("{}: expected an integer, got {v}", names[0])),
        }
    }

    /// A boolean field.
    pub(crate) fn bool(&self, names: &[&str]) -> Result<bool, String> {
        match self.get(names) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!("{}: expected a boolean, got {other}", names[0])),
        }
    }

    /// A duration: a Go duration string or integer nanoseconds. Zero/negative → `None`.
    pub(crate) fn duration(&self, names: &[&str]) -> Result<Option<Duration>, String> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => go_duration::parse(s)
                .map(go_duration::GoDuration::positive)
                .map_err(|_| format!("{}: time: invalid duration {s:?}", names[0])),
            Some(Value::Number(n)) => Ok(n.as_u64().filter(|n| *n > 0).map(Duration::from_nanos)),
            Some(other) => Err(format!("{}: expected a duration, got {other}", names[0])),
        }
    }

    /// A list of strings.
    pub(crate) fn strings(&self, names: &[&str]) -> Result<Vec<String>, String> {
        match self.get(names) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{}: expected strings", names[0]))
                })
                .collect(),
            Some(other) => Err(format!("{}: expected a list, got {other}", names[0])),
        }
    }

    /// A string → string map (`Meta`).
    pub(crate) fn string_map(
        &self,
        names: &[&str],
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(format!("{}.{k}: expected a string, got {other}", names[0])),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(other) => Err(format!("{}: expected an object, got {other}", names[0])),
        }
    }

    /// A nested object.
    pub(crate) fn obj(&self, names: &[&str]) -> Result<Option<Obj<'a>>, String> {
        match self.get(names) {
            None => Ok(None),
            Some(v) => Obj::of(v).map(Some),
        }
    }

    /// A list of objects.
    pub(crate) fn objs(&self, names: &[&str]) -> Result<Vec<Obj<'a>>, String> {
        match self.get(names) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(Obj::of).collect(),
            Some(other) => Err(format!("{}: expected a list, got {other}", names[0])),
        }
    }

    /// True when no field carries a value (Consul ignores an empty `Check: {}`).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.values().all(|v| match v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
        })
    }
}

/// Why a registration body is refused: a decode error or a validation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    Decode(String),
    Message(String),
}

impl From<String> for Invalid {
    fn from(s: String) -> Self {
        Self::Decode(s)
    }
}

/// Service tagged addresses: `{"lan": {"Address": "…", "Port": 1}}`.
pub(crate) fn service_addresses(obj: &Obj<'_>) -> Result<BTreeMap<String, ServiceAddress>, String> {
    let Some(map) = obj.obj(&["TaggedAddresses"])? else {
        return Ok(BTreeMap::new());
    };
    map.0
        .iter()
        .map(|(k, v)| {
            let a = Obj::of(v)?;
            Ok((
                k.clone(),
                ServiceAddress {
                    address: a.string(&["Address"])?.unwrap_or_default(),
                    port: a.int(&["Port"])?.unwrap_or(0),
                },
            ))
        })
        .collect()
}

/// Weights, validated as Consul does.
pub(crate) fn weights(obj: &Obj<'_>) -> Result<Option<Weights>, Invalid> {
    let Some(w) = obj.obj(&["Weights"])? else {
        return Ok(None);
    };
    let passing = w.int(&["Passing"])?.unwrap_or(0);
    let warning = w.int(&["Warning"])?.unwrap_or(0);
    if passing < 1 {
        return Err(Invalid::Message(
            "Passing must be greater than 0".to_owned(),
        ));
    }
    if warning < 0 {
        return Err(Invalid::Message(
            "Warning must be greater or equal than 0".to_owned(),
        ));
    }
    Ok(Some(Weights { passing, warning }))
}

/// A check definition (`Check`, an element of `Checks`, or a `/v1/agent/check/register` body).
/// `None` when the object is empty.
pub(crate) fn check_definition(c: &Obj<'_>) -> Result<Option<CheckDefinition>, Invalid> {
    if c.is_empty() {
        return Ok(None);
    }
    let status = match c.string(&["Status"])?.filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(Status::parse(&s).ok_or_else(|| {
            Invalid::Message("Status for checks must 'passing', 'warning', 'critical'".to_owned())
        })?),
    };
    let ttl = c.duration(&["TTL"])?;
    let interval = c.duration(&["Interval"])?;
    let kind_of = |names: &[&str]| {
        c.get(names)
            .is_some_and(|v| !matches!(v, Value::String(s) if s.is_empty()))
    };
    let interval_kind = [
        (&["HTTP"][..], "http"),
        (&["TCP"][..], "tcp"),
        (&["UDP"][..], "udp"),
        (&["GRPC"][..], "grpc"),
        (&["H2PING"][..], "h2ping"),
        (&["Args", "ScriptArgs"][..], "script"),
        (&["DockerContainerID"][..], "docker"),
        (&["OSService"][..], "os_service"),
    ]
    .into_iter()
    .find(|(names, _)| kind_of(names))
    .map(|(_, kind)| kind);
    let kind = if let Some(kind) = interval_kind {
        if interval.is_none() {
            return Err(Invalid::Message(
                "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, or TCP checks"
                    .to_owned(),
            ));
        }
        match kind {
            "http" => CheckKind::Probe(Probe::Http {
                url: c.string(&["HTTP"])?.unwrap_or_default(),
                method: c
                    .string(&["Method"])?
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "GET".to_owned()),
            }),
            "tcp" => CheckKind::Probe(Probe::Tcp {
                addr: c.string(&["TCP"])?.unwrap_or_default(),
            }),
            other => CheckKind::Other(other),
        }
    } else if kind_of(&["AliasService", "AliasNode"]) {
        CheckKind::Other("alias")
    } else if let Some(ttl) = ttl {
        CheckKind::Ttl(ttl)
    } else {
        return Err(Invalid::Message(
            "Invalid check: TTL must be > 0 for TTL checks".to_owned(),
        ));
    };
    Ok(Some(CheckDefinition {
        id: c.string(&["CheckID", "ID"])?.filter(|s| !s.is_empty()),
        name: c.string(&["Name"])?.filter(|s| !s.is_empty()),
        notes: c.string(&["Notes"])?.unwrap_or_default(),
        status,
        kind,
        interval,
        timeout: c.duration(&["Timeout"])?,
        deregister_after: c.duration(&["DeregisterCriticalServiceAfter"])?,
        service_id: c.string(&["ServiceID"])?.filter(|s| !s.is_empty()),
    }))
}

/// A `/v1/agent/service/register` body.
pub(crate) fn service_definition(body: &Value) -> Result<ServiceDefinition, Invalid> {
    let s = Obj::of(body)?;
    let name = s
        .string(&["Name"])?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Invalid::Message("Missing service name".to_owned()))?;
    let mut checks = Vec::new();
    if let Some(c) = s.obj(&["Check"])? {
        checks.extend(check_definition(&c)?);
    }
    for c in s.objs(&["Checks"])? {
        checks.extend(check_definition(&c)?);
    }
    Ok(ServiceDefinition {
        id: s.string(&["ID"])?.filter(|id| !id.is_empty()),
        name,
        tags: s.strings(&["Tags"])?,
        address: s.string(&["Address"])?.unwrap_or_default(),
        tagged_addresses: service_addresses(&s)?,
        meta: s.string_map(&["Meta"])?,
        port: s.int(&["Port"])?.unwrap_or(0),
        weights: weights(&s)?,
        enable_tag_override: s.bool(&["EnableTagOverride"])?,
        kind: s.string(&["Kind"])?.unwrap_or_default(),
        checks,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_spec_body() {
        let body = json!({"ID":"api-1","Name":"api","Tags":["v2"],"Address":"10.0.0.7","Port":8080,
            "Meta":{"v":"2"},"Weights":{"Passing":10,"Warning":1},
            "Check":{"TTL":"15s","DeregisterCriticalServiceAfter":"1m"}});
        let def = service_definition(&body).unwrap();
        assert_eq!(def.id.as_deref(), Some("api-1"));
        assert_eq!(
            def.weights,
            Some(Weights {
                passing: 10,
                warning: 1
            })
        );
        assert_eq!(def.checks.len(), 1);
        assert_eq!(def.checks[0].kind, CheckKind::Ttl(Duration::from_secs(15)));
        assert_eq!(
            def.checks[0].deregister_after,
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn accepts_other_casings() {
        let body = json!({"name":"api","port":1,"check":{"ttl":"10s","deregister_critical_service_after":"90s"},
            "enable_tag_override":true});
        let def = service_definition(&body).unwrap();
        assert!(def.enable_tag_override);
        assert_eq!(
            def.checks[0].deregister_after,
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn validates() {
        assert_eq!(
            service_definition(&json!({"Port": 1})).unwrap_err(),
            Invalid::Message("Missing service name".into())
        );
        assert!(matches!(
            service_definition(&json!({"Name":"a","Check":{"Name":"x"}})),
            Err(Invalid::Message(m)) if m.contains("TTL must be > 0")
        ));
        assert!(matches!(
            service_definition(&json!({"Name":"a","Check":{"HTTP":"http://x"}})),
            Err(Invalid::Message(m)) if m.contains("Interval must be > 0")
        ));
        assert!(service_definition(&json!({"Name":"a","Check":{}}))
            .unwrap()
            .checks
            .is_empty());
        assert!(matches!(
            service_definition(&json!({"Name":"a","Check":{"TTL":"1s","Status":"ok"}})),
            Err(Invalid::Message(_))
        ));
    }
}
