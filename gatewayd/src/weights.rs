//! Runtime traffic weights: overrides of the file's weights, with revisions and a history.
//!
//! Without Consul they persist to a local state file (write to a temporary file, fsync, rename,
//! fsync the directory), so a flip survives a restart and a crash never leaves half a file.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::admin::model::WeightChange;
use crate::config::RouteConfig;
use crate::snapshot::WeightOverride;

/// History entries kept per route.
pub const HISTORY: usize = 100;
/// Largest weight of one backend.
pub const MAX_WEIGHT: u32 = 10_000;

/// Why a weight change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    /// The body names an unknown backend or has impossible values.
    #[error("{field}: {reason}")]
    Invalid {
        /// Offending field, e.g. `weights.purple`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// `expected_revision` is not the current revision (someone else changed it first).
    #[error("route {route} is at revision {current}, not {expected}")]
    Conflict {
        /// Route.
        route: String,
        /// Current revision.
        current: u64,
        /// Revision the caller expected.
        expected: u64,
    },
    /// Consul could not be read or written; nothing was changed.
    #[error("weights store unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// The state file could not be written; nothing was changed.
    #[error("cannot persist weights to {path}: {reason}")]
    Persist {
        /// State file.
        path: String,
        /// OS error.
        reason: String,
    },
}

/// Validates a full weight map for `route`: known backends, each ≤ 10000, at least one > 0.
/// Backends not named get 0.
pub fn validate(
    route: &RouteConfig,
    weights: &BTreeMap<String, u32>,
) -> Result<BTreeMap<String, u32>, WeightsError> {
    for (name, &w) in weights {
        if !route.backends.iter().any(|b| &b.name == name) {
            let known: Vec<_> = route.backends.iter().map(|b| b.name.as_str()).collect();
            return Err(WeightsError::Invalid {
                field: format!("weights.{name}"),
                reason: format!(
                    "unknown backend (route {} has: {})",
                    route.name,
                    known.join(", ")
                ),
            });
        }
        if w > MAX_WEIGHT {
            return Err(WeightsError::Invalid {
                field: format!("weights.{name}"),
                reason: format!("{w} is above {MAX_WEIGHT}"),
            });
        }
    }
    if weights.values().all(|&w| w == 0) {
        return Err(WeightsError::Invalid {
            field: "weights".into(),
            reason: "at least one backend needs a weight above 0".into(),
        });
    }
    Ok(route
        .backends
        .iter()
        .map(|b| (b.name.clone(), weights.get(&b.name).copied().unwrap_or(0)))
        .collect())
}

/// The state of one route's weights.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteWeights {
    /// Current override (`None`: the file's weights apply).
    pub current: Option<BTreeMap<String, u32>>,
    /// Revision; increases with every change, including a return to the file's weights.
    pub revision: u64,
    /// Changes, oldest first.
    pub history: VecDeque<WeightChange>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    routes: BTreeMap<String, RouteWeights>,
}

/// Weight overrides of every route, persisted to the state file when one is configured, or
/// mirrored from Consul KV (`kv`), where they are written with CAS by [`crate::consul`].
#[derive(Debug, Default)]
pub struct WeightStore {
    path: Option<PathBuf>,
    routes: BTreeMap<String, RouteWeights>,
    kv: bool,
}

impl WeightStore {
    /// Loads the state file (a missing file is an empty store). A corrupt file is moved aside to
    /// `<file>.corrupt-<unix seconds>` and reported; the file's weights then apply.
    pub fn load(path: Option<PathBuf>) -> (Self, Option<String>) {
        let Some(p) = path.clone() else {
            return (Self::default(), None);
        };
        match std::fs::read(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                Self {
                    path,
                    routes: BTreeMap::new(),
                    kv: false,
                },
                None,
            ),
            Err(e) => (
                Self {
                    path,
                    routes: BTreeMap::new(),
                    kv: false,
                },
                Some(format!("cannot read {}: {e}", p.display())),
            ),
            Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
                Ok(s) => (
                    Self {
                        path,
                        routes: s.routes,
                        kv: false,
                    },
                    None,
                ),
                Err(e) => {
                    let secs = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let mut aside = p.clone().into_os_string();
                    aside.push(format!(".corrupt-{secs}"));
                    let aside = PathBuf::from(aside);
                    let _ = std::fs::rename(&p, &aside);
                    (
                        Self {
                            path,
                            routes: BTreeMap::new(),
                            kv: false,
                        },
                        Some(format!(
                            "{} is not a weights state file ({e}); moved to {}",
                            p.display(),
                            aside.display()
                        )),
                    )
                }
            },
        }
    }

    /// Overrides for snapshot building.
    pub fn overrides(&self) -> BTreeMap<String, WeightOverride> {
        self.routes
            .iter()
            .filter_map(|(r, w)| {
                w.current.clone().map(|weights| {
                    (
                        r.clone(),
                        WeightOverride {
                            weights,
                            revision: w.revision,
                            store: if self.kv { "consul" } else { "state_file" },
                        },
                    )
                })
            })
            .collect()
    }

    /// State of one route.
    pub fn route(&self, name: &str) -> Option<&RouteWeights> {
        self.routes.get(name)
    }

    /// Sets `route`'s weights (`None`: back to the file's). `effective` are the weights serving
    /// now (recorded as `previous`). Persists before answering; on a write failure nothing changes.
    pub fn change(
        &mut self,
        route: &RouteConfig,
        effective: BTreeMap<String, u32>,
        new: Option<BTreeMap<String, u32>>,
        expected_revision: Option<u64>,
        changed_by: String,
        reason: String,
    ) -> Result<WeightChange, WeightsError> {
        let entry = self.routes.get(&route.name).cloned().unwrap_or_default();
        let (next, change) = plan_change(
            route,
            &entry,
            effective,
            new,
            expected_revision,
            changed_by,
            reason,
        )?;
        let old = self.routes.insert(route.name.clone(), next);
        if let Err(e) = self.persist() {
            match old {
                Some(o) => self.routes.insert(route.name.clone(), o),
                None => self.routes.remove(&route.name),
            };
            return Err(e);
        }
        Ok(change)
    }

    /// Replaces every route's state at once (from Consul KV) and marks overrides as `consul`.
    /// Returns the names of routes whose state changed.
    pub fn replace_from_kv(&mut self, routes: BTreeMap<String, RouteWeights>) -> Vec<String> {
        self.kv = true;
        let mut changed: Vec<String> = routes
            .iter()
            .filter(|(k, v)| self.routes.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        changed.extend(
            self.routes
                .keys()
                .filter(|k| !routes.contains_key(*k))
                .cloned(),
        );
        self.routes = routes;
        changed
    }

    fn persist(&self) -> Result<(), WeightsError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let state = StateFile {
            version: 1,
            routes: self.routes.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&state).map_err(|e| persist_err(path, e))?;
        write_atomic(path, &bytes).map_err(|e| persist_err(path, e))
    }
}

/// The next state of a route's weights and the change record, or why not: validation,
/// revision check, revision bump, history bounded to [`HISTORY`]. Shared by the state file and
/// the Consul KV stores.
pub fn plan_change(
    route: &RouteConfig,
    entry: &RouteWeights,
    effective: BTreeMap<String, u32>,
    new: Option<BTreeMap<String, u32>>,
    expected_revision: Option<u64>,
    changed_by: String,
    reason: String,
) -> Result<(RouteWeights, WeightChange), WeightsError> {
    let new = new.map(|w| validate(route, &w)).transpose()?;
    if let Some(exp) = expected_revision {
        if exp != entry.revision {
            return Err(WeightsError::Conflict {
                route: route.name.clone(),
                current: entry.revision,
                expected: exp,
            });
        }
    }
    let weights = new.clone().unwrap_or_else(|| {
        route
            .backends
            .iter()
            .map(|b| (b.name.clone(), b.weight))
            .collect()
    });
    let change = WeightChange {
        revision: entry.revision + 1,
        previous: effective,
        weights,
        changed_by,
        changed_at: rfc3339(SystemTime::now()),
        reason,
    };
    let mut next = entry.clone();
    next.revision = change.revision;
    next.current = new;
    next.history.push_back(change.clone());
    while next.history.len() > HISTORY {
        next.history.pop_front();
    }
    Ok((next, change))
}

/// The JSON value of `meshgate/<cluster>/routes/<route>/weights` in Consul KV (DESIGN §4, plus
/// the history so one CAS write keeps both consistent). `weights: null` means the file's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvValue {
    /// Backend → weight, or `null` for the config file's weights.
    pub weights: Option<BTreeMap<String, u32>>,
    /// Revision, +1 per change.
    pub revision: u64,
    /// Who made the last change.
    #[serde(default)]
    pub changed_by: String,
    /// When (RFC 3339).
    #[serde(default)]
    pub changed_at: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// Last changes, oldest first.
    #[serde(default)]
    pub history: VecDeque<WeightChange>,
}

impl KvValue {
    /// From a route's state.
    pub fn from_state(w: &RouteWeights) -> Self {
        let last = w.history.back();
        Self {
            weights: w.current.clone(),
            revision: w.revision,
            changed_by: last.map(|c| c.changed_by.clone()).unwrap_or_default(),
            changed_at: last.map(|c| c.changed_at.clone()).unwrap_or_default(),
            reason: last.map(|c| c.reason.clone()).unwrap_or_default(),
            history: w.history.clone(),
        }
    }

    /// To a route's state.
    pub fn into_state(self) -> RouteWeights {
        RouteWeights {
            current: self.weights,
            revision: self.revision,
            history: self.history,
        }
    }
}

fn persist_err(path: &Path, e: impl std::fmt::Display) -> WeightsError {
    WeightsError::Persist {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Writes `bytes` to `path` atomically: temporary file in the same directory, fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, 0o644)
}

/// [`write_atomic`] with the file created with `mode` (e.g. 0o600 for secrets: never readable by
/// others, not even for a moment).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// RFC 3339 UTC with seconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn route() -> RouteConfig {
        let cfg = crate::config::from_str(
            r#"
[services.blue]
endpoints = ["127.0.0.1:1"]
[services.green]
endpoints = ["127.0.0.1:2"]
[[routes]]
name = "web"
backends = [{ name = "blue", weight = 100 }, { name = "green", weight = 0 }]
"#,
            "t.toml",
        )
        .unwrap();
        cfg.routes[0].clone()
    }

    fn w(b: u32, g: u32) -> BTreeMap<String, u32> {
        [("blue".to_string(), b), ("green".to_string(), g)].into()
    }

    #[test]
    fn changes_persist_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let r = route();
        let (mut s, err) = WeightStore::load(Some(path.clone()));
        assert!(err.is_none());
        let c = s
            .change(
                &r,
                w(100, 0),
                Some(w(0, 100)),
                Some(0),
                "me".into(),
                "flip".into(),
            )
            .unwrap();
        assert_eq!(c.revision, 1);
        let (s2, _) = WeightStore::load(Some(path));
        assert_eq!(s2.overrides()["web"].weights, w(0, 100));
        assert_eq!(s2.route("web").unwrap().history.len(), 1);
    }

    #[test]
    fn stale_revision_conflicts() {
        let r = route();
        let mut s = WeightStore::default();
        s.change(&r, w(100, 0), Some(w(0, 100)), None, "a".into(), "".into())
            .unwrap();
        let e = s
            .change(
                &r,
                w(0, 100),
                Some(w(100, 0)),
                Some(0),
                "b".into(),
                "".into(),
            )
            .unwrap_err();
        assert_eq!(
            e,
            WeightsError::Conflict {
                route: "web".into(),
                current: 1,
                expected: 0
            }
        );
    }

    #[test]
    fn rejects_unknown_backends_and_all_zero() {
        let r = route();
        let mut bad = w(1, 1);
        bad.insert("purple".into(), 1);
        assert!(
            matches!(validate(&r, &bad), Err(WeightsError::Invalid { field, .. }) if field == "weights.purple")
        );
        assert!(matches!(
            validate(&r, &w(0, 0)),
            Err(WeightsError::Invalid { .. })
        ));
        assert_eq!(
            validate(&r, &[("green".to_string(), 5)].into()).unwrap(),
            w(0, 5)
        );
    }

    #[test]
    fn corrupt_state_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{not json").unwrap();
        let (s, err) = WeightStore::load(Some(path.clone()));
        assert!(err.unwrap().contains("moved to"));
        assert!(s.overrides().is_empty());
        let moved = std::fs::read_dir(dir.path()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        });
        assert!(moved, "corrupt file kept aside");
    }

    #[test]
    fn history_is_bounded() {
        let r = route();
        let mut s = WeightStore::default();
        for i in 0..(HISTORY as u32 + 5) {
            s.change(
                &r,
                w(100, 0),
                Some(w(100 - i % 100, i % 100 + 1)),
                None,
                "a".into(),
                "".into(),
            )
            .unwrap();
        }
        assert_eq!(s.route("web").unwrap().history.len(), HISTORY);
    }
}
