//! The configuration file's shape: upstream `kubescheduler.config.k8s.io/v1`
//! `KubeSchedulerConfiguration` plus our `bindConcurrency`, `wasmPlugins` and `wasmRuntime`.
//! Every struct rejects unknown fields, and range checks run inside the parser so that their
//! errors carry the field's path and line.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::duration::parse_duration;
use super::located::Located;
use crate::framework::ExtensionPoint;

/// The only `apiVersion` accepted.
pub const API_VERSION: &str = "kubescheduler.config.k8s.io/v1";
/// The only `kind` accepted.
pub const KIND: &str = "KubeSchedulerConfiguration";

/// The document as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct FileConfig {
    #[serde(deserialize_with = "api_version")]
    #[allow(dead_code)]
    pub api_version: (),
    #[serde(deserialize_with = "kind")]
    #[allow(dead_code)]
    pub kind: (),
    #[serde(default, deserialize_with = "at_least_one")]
    pub parallelism: Option<u64>,
    #[serde(default, deserialize_with = "percentage")]
    pub percentage_of_nodes_to_score: Option<u64>,
    #[serde(default, deserialize_with = "at_least_one")]
    pub pod_initial_backoff_seconds: Option<u64>,
    #[serde(default, deserialize_with = "at_least_one")]
    pub pod_max_backoff_seconds: Option<u64>,
    #[serde(default)]
    pub profiles: Vec<FileProfile>,
    #[serde(default)]
    pub leader_election: LeaderElection,
    #[serde(default)]
    pub client_connection: ClientConnection,
    #[serde(default, deserialize_with = "at_least_one")]
    pub bind_concurrency: Option<u64>,
    #[serde(default)]
    pub wasm_plugins: Vec<Located<FileWasmPlugin>>,
    #[serde(default)]
    pub wasm_runtime: FileWasmRuntime,
}

/// A profile as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct FileProfile {
    pub scheduler_name: Option<Located<String>>,
    #[serde(default, deserialize_with = "percentage")]
    pub percentage_of_nodes_to_score: Option<u64>,
    #[serde(default)]
    pub plugins: PluginSet,
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileWasmPlugin {
    pub name: String,
    pub path: PathBuf,
    #[serde(default, deserialize_with = "sha256")]
    pub sha256: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct FileWasmRuntime {
    #[serde(default, deserialize_with = "at_least_one")]
    pub call_timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "at_least_one")]
    pub memory_limit_bytes: Option<u64>,
    pub cache_dir: Option<PathBuf>,
    pub admin_addr: Option<SocketAddr>,
}

/// One plugin in an `enabled` or `disabled` list (upstream `Plugin`).
#[derive(Debug, Clone)]
pub struct PluginEntry {
    /// The plugin's registry name; `"*"` in a `disabled` list means all defaults.
    pub name: String,
    /// Score weight (Score and multiPoint lists only); unset or 0 means 1.
    pub weight: Option<i32>,
    /// The entry's node in the file, to point errors at it.
    pub(crate) node: Option<usize>,
}

impl PluginEntry {
    /// An entry built in code.
    pub fn new(name: impl Into<String>, weight: Option<i32>) -> Self {
        PluginEntry {
            name: name.into(),
            weight,
            node: None,
        }
    }
}

impl PartialEq for PluginEntry {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.weight == other.weight
    }
}

impl Eq for PluginEntry {}

impl<'de> Deserialize<'de> for PluginEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            name: String,
            weight: Option<i32>,
        }
        let raw = Located::<Raw>::deserialize(d)?;
        Ok(PluginEntry {
            name: raw.value.name,
            weight: raw.value.weight,
            node: Some(raw.node),
        })
    }
}

/// Plugins enabled and disabled at one extension point (upstream `PluginSet`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginList {
    /// Plugins to run, in order; for defaults, naming one re-configures it in place.
    pub enabled: Vec<PluginEntry>,
    /// Default plugins not to run; `"*"` disables them all.
    pub disabled: Vec<PluginEntry>,
}

/// The plugins of a profile, per extension point (upstream `Plugins`). `multiPoint` enables a
/// plugin at every point it implements; per-point lists override it there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct PluginSet {
    /// Every point the plugin implements.
    pub multi_point: PluginList,
    /// PreEnqueue.
    pub pre_enqueue: PluginList,
    /// QueueSort: only `PrioritySort`, which the queue implements.
    pub queue_sort: PluginList,
    /// PreFilter.
    pub pre_filter: PluginList,
    /// Filter.
    pub filter: PluginList,
    /// PostFilter.
    pub post_filter: PluginList,
    /// PreScore.
    pub pre_score: PluginList,
    /// Score (weights apply here).
    pub score: PluginList,
    /// Reserve and Unreserve.
    pub reserve: PluginList,
    /// Permit.
    pub permit: PluginList,
    /// PreBind.
    pub pre_bind: PluginList,
    /// Bind.
    pub bind: PluginList,
    /// PostBind.
    pub post_bind: PluginList,
}

/// Every extension point with its key in the file, in the order they run.
pub const POINTS: [(ExtensionPoint, &str); 11] = [
    (ExtensionPoint::PreEnqueue, "preEnqueue"),
    (ExtensionPoint::PreFilter, "preFilter"),
    (ExtensionPoint::Filter, "filter"),
    (ExtensionPoint::PostFilter, "postFilter"),
    (ExtensionPoint::PreScore, "preScore"),
    (ExtensionPoint::Score, "score"),
    (ExtensionPoint::Reserve, "reserve"),
    (ExtensionPoint::Permit, "permit"),
    (ExtensionPoint::PreBind, "preBind"),
    (ExtensionPoint::Bind, "bind"),
    (ExtensionPoint::PostBind, "postBind"),
];

impl PluginSet {
    /// The list of one extension point.
    pub fn point(&self, p: ExtensionPoint) -> &PluginList {
        match p {
            ExtensionPoint::PreEnqueue => &self.pre_enqueue,
            ExtensionPoint::PreFilter => &self.pre_filter,
            ExtensionPoint::Filter => &self.filter,
            ExtensionPoint::PostFilter => &self.post_filter,
            ExtensionPoint::PreScore => &self.pre_score,
            ExtensionPoint::Score => &self.score,
            ExtensionPoint::Reserve => &self.reserve,
            ExtensionPoint::Permit => &self.permit,
            ExtensionPoint::PreBind => &self.pre_bind,
            ExtensionPoint::Bind => &self.bind,
            ExtensionPoint::PostBind => &self.post_bind,
        }
    }

    /// The list of one extension point, mutably.
    pub fn point_mut(&mut self, p: ExtensionPoint) -> &mut PluginList {
        match p {
            ExtensionPoint::PreEnqueue => &mut self.pre_enqueue,
            ExtensionPoint::PreFilter => &mut self.pre_filter,
            ExtensionPoint::Filter => &mut self.filter,
            ExtensionPoint::PostFilter => &mut self.post_filter,
            ExtensionPoint::PreScore => &mut self.pre_score,
            ExtensionPoint::Score => &mut self.score,
            ExtensionPoint::Reserve => &mut self.reserve,
            ExtensionPoint::Permit => &mut self.permit,
            ExtensionPoint::PreBind => &mut self.pre_bind,
            ExtensionPoint::Bind => &mut self.bind,
            ExtensionPoint::PostBind => &mut self.post_bind,
        }
    }
}

/// Args for one plugin (upstream `PluginConfig`).
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The plugin's name.
    pub name: String,
    /// Its args, handed to its factory; `null` when not given.
    pub args: serde_json::Value,
    pub(crate) node: Option<usize>,
    pub(crate) args_node: Option<usize>,
}

impl PluginConfig {
    /// Args built in code.
    pub fn new(name: impl Into<String>, args: serde_json::Value) -> Self {
        PluginConfig {
            name: name.into(),
            args,
            node: None,
            args_node: None,
        }
    }
}

impl PartialEq for PluginConfig {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.args == other.args
    }
}

impl<'de> Deserialize<'de> for PluginConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            name: String,
            args: Option<Located<serde_json::Value>>,
        }
        let raw = Located::<Raw>::deserialize(d)?;
        let (args, args_node) = match raw.value.args {
            Some(a) => (a.value, Some(a.node)),
            None => (serde_json::Value::Null, None),
        };
        Ok(PluginConfig {
            name: raw.value.name,
            args,
            node: Some(raw.node),
            args_node,
        })
    }
}

/// Where a profile came from, to point errors at lines of the file.
#[derive(Debug)]
pub(crate) struct Origin {
    pub source_name: String,
    pub yaml: String,
}

/// One scheduling profile: the plugins that schedule pods whose `spec.schedulerName` is
/// `scheduler_name` (upstream `KubeSchedulerProfile`).
#[derive(Debug, Clone)]
pub struct Profile {
    /// Pods with this `spec.schedulerName` use the profile.
    pub scheduler_name: String,
    /// Overrides the top-level `percentageOfNodesToScore` for this profile.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// The plugins as written; [`super::resolve_profile`] merges them into the defaults.
    pub plugins: PluginSet,
    /// Args per plugin.
    pub plugin_config: Vec<PluginConfig>,
    pub(crate) origin: Option<Arc<Origin>>,
    pub(crate) index: usize,
}

impl Profile {
    /// A profile with the default plugins.
    pub fn new(scheduler_name: impl Into<String>) -> Self {
        Profile {
            scheduler_name: scheduler_name.into(),
            percentage_of_nodes_to_score: None,
            plugins: PluginSet::default(),
            plugin_config: Vec::new(),
            origin: None,
            index: 0,
        }
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile::new(super::DEFAULT_SCHEDULER_NAME)
    }
}

impl PartialEq for Profile {
    fn eq(&self, other: &Self) -> bool {
        self.scheduler_name == other.scheduler_name
            && self.percentage_of_nodes_to_score == other.percentage_of_nodes_to_score
            && self.plugins == other.plugins
            && self.plugin_config == other.plugin_config
    }
}

/// A Wasm plugin to load and register under `name` (our `wasmPlugins` extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmPluginConfig {
    /// The registry name; the name of a built-in replaces the built-in.
    pub name: String,
    /// The `.wasm` component, resolved against the configuration file's folder.
    pub path: PathBuf,
    /// Expected SHA-256 of the file (lowercase hex); loading fails on a mismatch.
    pub sha256: Option<String>,
}

/// The Wasm runtime's settings (our `wasmPlugins` and `wasmRuntime` extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmConfig {
    /// Plugins to load.
    pub plugins: Vec<WasmPluginConfig>,
    /// Deadline of one guest call, in milliseconds.
    pub call_timeout_ms: u64,
    /// Memory cap of one plugin instance, in bytes.
    pub memory_limit_bytes: u64,
    /// Where compiled modules are cached; none means no cache.
    pub cache_dir: Option<PathBuf>,
    /// Address of the admin endpoint (plugin hot swap), if any.
    pub admin_addr: Option<SocketAddr>,
}

/// Default deadline of a guest call.
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 200;
/// Default memory cap of a plugin instance: 64 MiB.
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 64 << 20;

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            plugins: Vec::new(),
            call_timeout_ms: DEFAULT_CALL_TIMEOUT_MS,
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            cache_dir: None,
            admin_addr: None,
        }
    }
}

/// Lease-based leader election (upstream `LeaderElectionConfiguration`; durations are Go
/// duration strings such as `15s`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LeaderElection {
    /// Elect a leader before scheduling (upstream default: true).
    pub leader_elect: bool,
    /// How long a lease is valid (default 15s).
    #[serde(deserialize_with = "duration")]
    pub lease_duration: Duration,
    /// How long the leader retries renewing before giving up (default 10s).
    #[serde(deserialize_with = "duration")]
    pub renew_deadline: Duration,
    /// Wait between attempts (default 2s).
    #[serde(deserialize_with = "duration")]
    pub retry_period: Duration,
    /// Only `leases` is supported.
    #[serde(deserialize_with = "resource_lock")]
    pub resource_lock: String,
    /// Lease name (default `wasm-scheduler`, so it does not contend with kube-scheduler's).
    pub resource_name: String,
    /// Lease namespace (default `kube-system`).
    pub resource_namespace: String,
}

impl Default for LeaderElection {
    fn default() -> Self {
        LeaderElection {
            leader_elect: true,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            resource_lock: "leases".into(),
            resource_name: "wasm-scheduler".into(),
            resource_namespace: "kube-system".into(),
        }
    }
}

/// How to reach the API server (upstream `ClientConnectionConfiguration`, `kubeconfig` only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConnection {
    /// Kubeconfig file; the `--kubeconfig` flag wins over it.
    pub kubeconfig: Option<PathBuf>,
}

// ---- field checks that run inside the parser, so errors carry the field's path and line ----

/// A visitor for an optional integer in a range.
struct Bounded {
    min: u64,
    max: u64,
}

impl<'de> Visitor<'de> for Bounded {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an integer from {} to {}", self.min, self.max)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        if v < self.min || v > self.max {
            return Err(E::custom(format_args!(
                "{v} is out of range: expected {}",
                Expecting(&self)
            )));
        }
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format_args!(
                "{v} is out of range: expected {}",
                Expecting(&self)
            ))),
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

struct Expecting<'a, V>(&'a V);

impl<'de, V: Visitor<'de>> fmt::Display for Expecting<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
}

fn percentage<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(Bounded { min: 0, max: 100 })
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(Bounded {
        min: 1,
        max: u64::MAX,
    })
}

/// A visitor for a string checked by a function.
struct Checked<T, F>(F, &'static str, PhantomData<T>);

impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for Checked<T, F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

fn checked<'de, D: Deserializer<'de>, T>(
    d: D,
    what: &'static str,
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    d.deserialize_str(Checked(f, what, PhantomData))
}

fn api_version<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    checked(d, "an apiVersion string", |v| {
        if v == API_VERSION {
            Ok(())
        } else {
            Err(format!(
                "unsupported apiVersion {v:?}, expected {API_VERSION:?}"
            ))
        }
    })
}

fn kind<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    checked(d, "a kind string", |v| {
        if v == KIND {
            Ok(())
        } else {
            Err(format!("unsupported kind {v:?}, expected {KIND:?}"))
        }
    })
}

fn sha256<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked(d, "a SHA-256 in hex", |v| {
        if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Some(v.to_ascii_lowercase()))
        } else {
            Err(format!("{v:?} is not a SHA-256 (64 hex digits)"))
        }
    })
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    checked(d, "a duration such as 15s", parse_duration)
}

fn resource_lock<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked(d, "a resource lock", |v| {
        if v == "leases" {
            Ok(v.to_string())
        } else {
            Err(format!(
                "unsupported resourceLock {v:?}, expected \"leases\""
            ))
        }
    })
}
