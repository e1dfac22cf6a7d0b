//! `plugin.toml`: what a plugin is, what it may do, and its limits.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The world a component is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    Trigger,
    PowerUp,
    Action,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::Trigger => "trigger",
            World::PowerUp => "power-up",
            World::Action => "action",
        }
    }

    /// The default time limit of one call, host calls included.
    pub fn default_deadline_ms(self) -> u64 {
        match self {
            World::Trigger => 20,
            World::PowerUp => 5_000,
            World::Action => 30_000,
        }
    }

    /// The function a component of this world must export.
    pub fn entry_points(self) -> &'static [&'static str] {
        match self {
            World::Trigger => &["on-event"],
            World::PowerUp => &["describe", "invoke"],
            World::Action => &["run"],
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host interface a manifest may grant: the interface names of
/// `baton:plugin` (`log`, `kv`, `http`, ...).
pub const CAPABILITIES: &[&str] = &[
    "log",
    "kv",
    "http",
    "conversation",
    "tags",
    "messages",
    "notify",
    "config",
];

/// A parsed, checked `plugin.toml`.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `a-z`, `0-9` and `-`; the reason code of a trigger is `plugin:<id>`.
    pub id: String,
    pub version: String,
    pub world: World,
    /// The component file, relative to the manifest.
    pub component: PathBuf,
    #[serde(default)]
    pub description: String,
    /// Host interfaces granted to the plugin.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Hosts (`name` or `name:port`) the `http` capability may reach.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    /// Settings with their defaults; the operator's `[plugins.config.<id>]` wins.
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// Power-ups only: what a visitor says to start it (case and accents aside).
    #[serde(default)]
    pub phrases: Vec<String>,
}

/// Limits asked for by a plugin; the operator's maximums cap them.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Time limit of one call, host calls included.
    pub deadline_ms: Option<u64>,
    /// Linear memory cap.
    pub memory_mb: Option<u64>,
    /// Instructions budget (wasmtime fuel) of one call; none by default.
    pub fuel: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {error}")]
    Parse { path: String, error: String },
    #[error("{path}: {error}")]
    Invalid { path: String, error: String },
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|error| ManifestError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ManifestError::Parse { error, .. } => ManifestError::Parse {
                path: path.display().to_string(),
                error,
            },
            ManifestError::Invalid { error, .. } => ManifestError::Invalid {
                path: path.display().to_string(),
                error,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: "plugin.toml".into(),
            error: e.message().to_owned(),
        })?;
        manifest.check().map_err(|error| ManifestError::Invalid {
            path: "plugin.toml".into(),
            error,
        })?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), String> {
        let id_ok = (1..=60).contains(&self.id.len())
            && self.id.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !id_ok {
            return Err(format!(
                "id `{}` must be 1 to 60 of a-z, 0-9 and -, starting with a letter",
                self.id
            ));
        }
        if self.version.trim().is_empty() {
            return Err("version must not be empty".into());
        }
        for cap in &self.capabilities {
            if !CAPABILITIES.contains(&cap.as_str()) {
                return Err(format!(
                    "unknown capability `{cap}` (known: {})",
                    CAPABILITIES.join(", ")
                ));
            }
        }
        if !self.allowed_hosts.is_empty() && !self.grants("http") {
            return Err("allowed_hosts is set but the `http` capability is not granted".into());
        }
        for host in &self.allowed_hosts {
            if host.is_empty() || host.contains('/') || host.contains('*') {
                return Err(format!(
                    "allowed host `{host}` must be a host name or host:port, without scheme, path or wildcard"
                ));
            }
        }
        if self.limits.deadline_ms == Some(0) {
            return Err("limits.deadline_ms must be above 0".into());
        }
        if self.limits.memory_mb == Some(0) {
            return Err("limits.memory_mb must be above 0".into());
        }
        if !self.phrases.is_empty() && self.world != World::PowerUp {
            return Err("phrases are for power-ups only".into());
        }
        if self.component.is_absolute()
            || self
                .component
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err("component must be a file inside the plugin's folder".into());
        }
        Ok(())
    }

    pub fn grants(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    /// The reason code of this plugin's escalations.
    pub fn reason(&self) -> String {
        format!("plugin:{}", self.id)
    }
}

/// A config value as a plugin reads it: strings as they are, the rest as TOML.
pub fn config_string(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items
            .iter()
            .map(config_string)
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "vip"
version = "0.1.0"
world = "trigger"
component = "vip.wasm"
capabilities = ["log", "config"]
[config]
keywords = ["vip", "urgent"]
"#;

    #[test]
    fn a_good_manifest_parses() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.world, World::Trigger);
        assert!(m.grants("log") && !m.grants("http"));
        assert_eq!(config_string(&m.config["keywords"]), "vip,urgent");
        assert_eq!(m.reason(), "plugin:vip");
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let cases = [
            (
                GOOD.replace("\"vip\"\nversion", "\"VIP!\"\nversion"),
                "id `VIP!`",
            ),
            (
                GOOD.replace("\"trigger\"", "\"robot\""),
                "unknown variant `robot`",
            ),
            (
                GOOD.replace("\"config\"]", "\"files\"]"),
                "unknown capability `files`",
            ),
            (
                GOOD.replace("vip.wasm", "../x.wasm"),
                "inside the plugin's folder",
            ),
            (
                GOOD.replace("[config]", "typo = 1\n[config]"),
                "unknown field",
            ),
            (
                GOOD.replace("[config]", "allowed_hosts = [\"a.example\"]\n[config]"),
                "`http` capability is not granted",
            ),
        ];
        for (text, expected) in cases {
            let err = Manifest::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
    }
}
