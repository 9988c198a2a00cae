//! Configuration: one TOML file, parsed in two stages (`file` mirrors the TOML with spans,
//! `validate` builds the typed [`Config`]). Off the request path: a reload builds a new snapshot.

mod defaults;
mod file;
mod policies;
mod types;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

pub use defaults::*;
pub use policies::*;
pub use types::*;
pub use validate::default_workers;

/// One problem in a config file, with its position: `gatewayd.toml:12:11: routes.api.timeout: …`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {reason}")]
pub struct ConfigError {
    /// File name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted field path, e.g. `routes.api.backends.blue.weight`.
    pub field: String,
    /// What is wrong, quoting the offending value.
    pub reason: String,
}

/// Every problem found in one file (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates the file at `path`. Relative paths inside it (token file, state file, log
/// directory) are resolved against the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: origin.clone(),
            line: 0,
            column: 0,
            field: "-".into(),
            reason: format!("cannot read file: {e}"),
        }])
    })?;
    parse(&src, &origin, path.parent())
}

/// Validates `src` as if read from a file named `origin` (relative paths stay as written).
pub fn from_str(src: &str, origin: &str) -> Result<Config, ConfigErrors> {
    parse(src, origin, None)
}

fn parse(src: &str, origin: &str, base_dir: Option<&Path>) -> Result<Config, ConfigErrors> {
    let raw: file::FileConfig =
        toml::from_str(src).map_err(|e| ConfigErrors(vec![serde_error(src, origin, &e)]))?;
    validate::validate(
        raw,
        src,
        origin,
        base_dir.filter(|p| !p.as_os_str().is_empty()),
    )
}

/// A syntax or shape error from the TOML decoder, placed and named like a validation error.
fn serde_error(src: &str, origin: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    let (line, column) = validate::line_col(src, offset);
    ConfigError {
        file: origin.to_string(),
        line,
        column,
        field: field_at(src, offset),
        reason: e.message().trim().to_string(),
    }
}

/// Best-effort dotted path of the key at `offset`: the enclosing `[table]` (with the route's
/// `name` when inside `[[routes]]`) plus the key on that line.
fn field_at(src: &str, offset: usize) -> String {
    let offset = offset.min(src.len());
    let line_start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
    let line = &src[line_start..line_end];
    let mut table = String::new();
    let mut table_start = 0;
    for (i, l) in src[..line_start].lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            table_start = i;
        }
    }
    let trimmed = line.trim();
    if trimmed.starts_with('[') {
        return trimmed
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string();
    }
    if table == "routes" {
        let block: Vec<&str> = src[..line_end].lines().skip(table_start + 1).collect();
        if let Some(n) = block
            .iter()
            .find_map(|l| l.trim().strip_prefix("name").map(str::trim))
            .and_then(|l| l.strip_prefix('='))
        {
            table = format!("routes.{}", n.trim().trim_matches('"'));
        }
    }
    let key = trimmed.split('=').next().map(str::trim).unwrap_or("");
    match (table.is_empty(), key.is_empty()) {
        (true, true) => "-".into(),
        (true, false) => key.into(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}
