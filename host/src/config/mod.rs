//! The scheduler's configuration: a `KubeSchedulerConfiguration`-shaped YAML file
//! (`apiVersion: kubescheduler.config.k8s.io/v1`) with profiles, plugins per extension point,
//! score weights and `pluginConfig` args, plus our `bindConcurrency`, `wasmPlugins` and
//! `wasmRuntime` fields.
//!
//! - [`SchedulerConfig::load`] reads and checks a file; [`SchedulerConfig::default`] is the
//!   configuration used without one (one profile, `default-scheduler`, default plugins).
//! - [`resolve_profile`] turns a [`Profile`] into plugin instances per extension point, using a
//!   [`Registry`](crate::plugins::Registry) that holds the built-in and Wasm plugins.
//!
//! Errors name the file, the field's path and its line:
//! `config.yaml: profiles[0].plugins.filter.enabled[1]: unknown plugin "Foo" (known: ...) at line 9 column 11`.
//!
//! ```
//! use wasm_scheduler::config::{resolve_profile, SchedulerConfig};
//! use wasm_scheduler::plugins::{FactoryContext, Registry};
//!
//! let config = SchedulerConfig::from_yaml_str("config.yaml", r#"
//! apiVersion: kubescheduler.config.k8s.io/v1
//! kind: KubeSchedulerConfiguration
//! profiles:
//!   - schedulerName: packer
//!     pluginConfig:
//!       - name: NodeResourcesFit
//!         args: {scoringStrategy: {type: MostAllocated}}
//! "#).unwrap();
//! let profile = resolve_profile(&config.profiles[0], &Registry::with_builtins(), &FactoryContext::empty()).unwrap();
//! assert_eq!(profile.scheduler_name, "packer");
//! ```

mod duration;
mod located;
mod resolve;
mod types;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

pub use duration::parse_duration;
pub use resolve::{
    DEFAULT_MULTI_POINT, DYNAMIC_RESOURCES, PRIORITY_SORT, ResolvedProfile, default_plugins,
    merge_plugins, resolve_profile,
};
pub use types::{
    API_VERSION, ClientConnection, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_MEMORY_LIMIT_BYTES, KIND,
    LeaderElection, PluginConfig, PluginEntry, PluginList, PluginSet, Profile, WasmConfig,
    WasmPluginConfig,
};

use types::{FileConfig, Origin};

/// The scheduler name of the default profile (upstream `v1.DefaultSchedulerName`).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// Default parallelism of Filter and Score (upstream `DefaultParallelism`).
pub const DEFAULT_PARALLELISM: usize = 16;
/// Default initial backoff of a failed pod, seconds (upstream `podInitialBackoffSeconds`).
pub const DEFAULT_POD_INITIAL_BACKOFF_SECONDS: u64 = 1;
/// Default maximum backoff of a failed pod, seconds (upstream `podMaxBackoffSeconds`).
pub const DEFAULT_POD_MAX_BACKOFF_SECONDS: u64 = 10;
/// Default number of pods in their binding cycle at once.
pub const DEFAULT_BIND_CONCURRENCY: usize = 64;

/// Errors reading or checking the configuration. The message names the file, and for
/// problems in the file the field's path and line.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML, has an unknown or mistyped field, or a value is wrong.
    #[error("{source_name}: {message}")]
    Invalid {
        /// The file (or the name given to [`SchedulerConfig::from_yaml_str`]).
        source_name: String,
        /// What is wrong, with the field's path and line when known.
        message: String,
    },
}

/// The whole configuration, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// Profiles by scheduler name; at least one.
    pub profiles: Vec<Profile>,
    /// Share of nodes to find feasible before scoring, 0–100; `None` (or 0) is adaptive:
    /// `50 - nodes/125`, at least 5% (upstream).
    pub percentage_of_nodes_to_score: Option<u32>,
    /// First backoff of a pod that failed, seconds.
    pub pod_initial_backoff_seconds: u64,
    /// Longest backoff, seconds.
    pub pod_max_backoff_seconds: u64,
    /// Workers for Filter and Score over nodes.
    pub parallelism: usize,
    /// Pods in their binding cycle (PreBind, Bind) at once.
    pub bind_concurrency: usize,
    /// Lease-based leader election for `run`.
    pub leader_election: LeaderElection,
    /// How to reach the API server.
    pub client_connection: ClientConnection,
    /// Wasm plugins and the Wasm runtime's limits.
    pub wasm: WasmConfig,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            profiles: vec![Profile::default()],
            percentage_of_nodes_to_score: None,
            pod_initial_backoff_seconds: DEFAULT_POD_INITIAL_BACKOFF_SECONDS,
            pod_max_backoff_seconds: DEFAULT_POD_MAX_BACKOFF_SECONDS,
            parallelism: DEFAULT_PARALLELISM,
            bind_concurrency: DEFAULT_BIND_CONCURRENCY,
            leader_election: LeaderElection::default(),
            client_connection: ClientConnection::default(),
            wasm: WasmConfig::default(),
        }
    }
}

impl SchedulerConfig {
    /// Reads and checks a configuration file. Relative paths in it (`wasmPlugins[].path`,
    /// `wasmRuntime.cacheDir`) are resolved against the file's folder.
    ///
    /// # Errors
    /// [`ConfigError::Read`] if the file cannot be read, [`ConfigError::Invalid`] otherwise.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let yaml = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml_str(&path.display().to_string(), &yaml)
    }

    /// Parses and checks a configuration. `source_name` names it in errors and, read as a
    /// path, gives the folder relative paths are resolved against.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for bad YAML, a missing, unknown or mistyped field, or a value
    /// out of range.
    pub fn from_yaml_str(source_name: &str, yaml: &str) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            source_name: source_name.to_string(),
            message,
        };
        let blank = yaml.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#') || t == "---"
        });
        if blank {
            return Err(invalid(format!(
                "the configuration is empty; it needs apiVersion: {API_VERSION} and kind: {KIND}"
            )));
        }
        let file: FileConfig = located::parse(yaml).map_err(|e| invalid(e.to_string()))?;
        let origin = Arc::new(Origin {
            source_name: source_name.to_string(),
            yaml: yaml.to_string(),
        });
        let at = |node: usize, message: String| match locate(&origin, node, &message) {
            Some(located) => invalid(located),
            None => invalid(message),
        };
        let base = Path::new(source_name)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();

        // One unnamed profile is the default scheduler; several must all be named (upstream).
        let several = file.profiles.len() > 1;
        let mut profiles = Vec::with_capacity(file.profiles.len().max(1));
        let mut names: HashMap<String, usize> = HashMap::new();
        for (index, p) in file.profiles.into_iter().enumerate() {
            let (scheduler_name, name_node) = match p.scheduler_name {
                Some(n) if !n.value.is_empty() => (n.value, Some(n.node)),
                Some(n) if several => {
                    return Err(at(
                        n.node,
                        "schedulerName must not be empty when there are several profiles".into(),
                    ));
                }
                None if several => {
                    return Err(invalid(format!(
                        "profiles[{index}].schedulerName: required when there are several profiles"
                    )));
                }
                _ => (DEFAULT_SCHEDULER_NAME.to_string(), None),
            };
            if let Some(first) = names.insert(scheduler_name.clone(), index) {
                let message =
                    format!("duplicate schedulerName {scheduler_name:?} (also profiles[{first}])");
                return Err(match name_node {
                    Some(node) => at(node, message),
                    None => invalid(format!("profiles[{index}].schedulerName: {message}")),
                });
            }
            profiles.push(Profile {
                scheduler_name,
                percentage_of_nodes_to_score: p.percentage_of_nodes_to_score.map(|v| v as u32),
                plugins: p.plugins,
                plugin_config: p.plugin_config,
                origin: Some(origin.clone()),
                index,
            });
        }
        if profiles.is_empty() {
            profiles.push(Profile {
                origin: Some(origin.clone()),
                ..Profile::default()
            });
        }

        let initial = file
            .pod_initial_backoff_seconds
            .unwrap_or(DEFAULT_POD_INITIAL_BACKOFF_SECONDS);
        let max = file
            .pod_max_backoff_seconds
            .unwrap_or(DEFAULT_POD_MAX_BACKOFF_SECONDS);
        if max < initial {
            return Err(invalid(format!(
                "podMaxBackoffSeconds ({max}) must not be less than podInitialBackoffSeconds ({initial})"
            )));
        }

        let mut wasm = WasmConfig::default();
        let mut wasm_names: HashMap<String, usize> = HashMap::new();
        for (i, entry) in file.wasm_plugins.into_iter().enumerate() {
            let w = entry.value;
            if w.name.is_empty() || w.name == PRIORITY_SORT || w.name == "*" {
                return Err(at(
                    entry.node,
                    format!("{:?} is not a usable plugin name", w.name),
                ));
            }
            if w.path.as_os_str().is_empty() {
                return Err(at(entry.node, format!("plugin {:?} needs a path", w.name)));
            }
            if let Some(first) = wasm_names.insert(w.name.clone(), i) {
                return Err(at(
                    entry.node,
                    format!(
                        "duplicate Wasm plugin name {:?} (also wasmPlugins[{first}])",
                        w.name
                    ),
                ));
            }
            wasm.plugins.push(WasmPluginConfig {
                name: w.name,
                path: base.join(w.path),
                sha256: w.sha256,
            });
        }
        let rt = file.wasm_runtime;
        wasm.call_timeout_ms = rt.call_timeout_ms.unwrap_or(DEFAULT_CALL_TIMEOUT_MS);
        wasm.memory_limit_bytes = rt.memory_limit_bytes.unwrap_or(DEFAULT_MEMORY_LIMIT_BYTES);
        wasm.cache_dir = rt.cache_dir.map(|d| base.join(d));
        wasm.admin_addr = rt.admin_addr;

        Ok(SchedulerConfig {
            profiles,
            percentage_of_nodes_to_score: file.percentage_of_nodes_to_score.map(|v| v as u32),
            pod_initial_backoff_seconds: initial,
            pod_max_backoff_seconds: max,
            parallelism: file.parallelism.map_or(DEFAULT_PARALLELISM, |v| v as usize),
            bind_concurrency: file
                .bind_concurrency
                .map_or(DEFAULT_BIND_CONCURRENCY, |v| v as usize),
            leader_election: file.leader_election,
            client_connection: file.client_connection,
            wasm,
        })
    }

    /// The profile for a scheduler name.
    pub fn profile(&self, scheduler_name: &str) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|p| p.scheduler_name == scheduler_name)
    }
}

/// The parser's located message for node `node` of the origin's document.
fn locate(origin: &Origin, node: usize, message: &str) -> Option<String> {
    located::locate::<FileConfig>(&origin.yaml, node, message)
}

#[cfg(test)]
mod tests;
