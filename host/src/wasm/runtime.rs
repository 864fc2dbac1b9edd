//! [`WasmPlugins`]: the configured Wasm plugins, their factories for the registry, hot swap
//! ([`WasmPlugins::reload`]), status and metrics.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use wasmtime::component::Linker;

use super::adapter::WasmPlugin;
use super::bindings::WitVersion;
use super::engine::{CacheStats, CompileCache, Tier};
use super::error::{WasmError, chain};
use super::instance::Budget;
use super::module::{Module, sha256_hex};
use super::native::args_json;
use super::sandbox::{self, HostState};
use super::slot::{PluginStats, Slot, SlotConfig};
use crate::framework::{PluginRef, StateReplay};
use crate::plugins::{FactoryContext, PluginFactory, Registry, RegistryError};

/// Default deadline of one plugin call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(100);
/// Default memory cap of one instance.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 << 20;
/// Deadline of setup calls (init, state replay batches, health).
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// One Wasm plugin to load.
#[derive(Debug, Clone)]
pub struct PluginSource {
    /// The name the configuration uses for it.
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// If set, the file's sha256 must be this (hex); otherwise it is refused.
    pub sha256: Option<String>,
}

/// Settings of the Wasm runtime.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The plugins.
    pub plugins: Vec<PluginSource>,
    /// Deadline of one extension point call.
    pub call_timeout: Duration,
    /// Memory cap per instance, in bytes.
    pub memory_limit_bytes: usize,
    /// Where compiled components are cached on disk; none: the default directory
    /// ([`super::engine::default_cache_dir`]). Compiled components are also kept in memory.
    /// An unwritable directory leaves the cache memory-only.
    pub cache_dir: Option<PathBuf>,
    /// Serve a module no cache knows as baseline code at once and swap in its optimized code
    /// when the background compile is done ([`Tier`]). Off: compile optimized code first.
    pub tiering: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            plugins: Vec::new(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT,
            cache_dir: None,
            tiering: true,
        }
    }
}

/// The result of a successful reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// The plugin.
    pub plugin: String,
    /// sha256 of the module now serving.
    pub sha256: String,
    /// sha256 of the module that served before.
    pub previous_sha256: String,
    /// False when the file had not changed (nothing was swapped).
    pub swapped: bool,
    /// Instances swapped (one per profile using the plugin).
    pub instances: usize,
    /// The version the new module reports.
    pub version: String,
    /// Time spent compiling the new module (or loading it from a cache).
    pub compile: std::time::Duration,
    /// Time spent starting, feeding and health-checking the new instances and swapping them in.
    pub start: std::time::Duration,
}

/// A snapshot of one plugin's state and counters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    /// The plugin.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// sha256 of the serving module.
    pub sha256: String,
    /// Which compiler made the serving code.
    pub tier: Tier,
    /// The WIT version the serving module was built against.
    pub wit: WitVersion,
    /// Calls that trapped, hit the deadline or the memory cap.
    pub traps: u64,
    /// Calls stopped by the call deadline (counted in `traps` too).
    pub deadline_hits: u64,
    /// Traps since the last successful call.
    pub consecutive_traps: u64,
    /// Instances replaced after a trap.
    pub respawns: u64,
    /// Outputs refused by the output limits.
    pub rejected_outputs: u64,
    /// Successful hot swaps.
    pub reloads_ok: u64,
    /// Rejected hot swaps.
    pub reloads_failed: u64,
    /// The last trap or reload error.
    pub last_error: Option<String>,
    /// Replacements of a trapped instance that failed.
    pub respawn_failures: u64,
    /// Log lines dropped by the log rate limit.
    pub log_lines_dropped: u64,
    /// Objects the plugin is no longer fed, as `Kind namespace/name: reason`.
    pub quarantined: Vec<String>,
    /// Why the plugin counts as failed (`/readyz`), if it does.
    pub failure: Option<String>,
}

struct Entry {
    source: PluginSource,
    module: ArcSwap<Module>,
    slots: Mutex<Vec<Weak<Slot>>>,
    stats: Arc<PluginStats>,
    reload: Mutex<()>,
}

struct Inner {
    /// The linker of the optimized engine.
    linker: Linker<HostState>,
    /// The linker of the baseline engine; none when tiering is off or unavailable.
    baseline: Option<Linker<HostState>>,
    budget: Budget,
    cache: CompileCache,
    entries: BTreeMap<String, Arc<Entry>>,
    /// Background compiles of optimized code still running, and their wake-up.
    optimizing: Mutex<usize>,
    optimized: parking_lot::Condvar,
}

/// The one thread that compiles optimized code in the background, one module at a time.
/// wasmtime's parallel compilation runs on the rayon pool it is called from, so Cranelift keeps
/// to this thread and leaves the other cores to scheduling cycles and to Winch compiling a
/// newer module (which, on the shared pool, used to queue behind it: a hot swap during an
/// optimizing compile took 2.9 s instead of 0.5 s).
/// None if the thread cannot be started (then baseline code keeps serving).
fn optimizer_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "wasm-optimize".into())
            .start_handler(|_| lower_priority())
            .build()
            .map_err(|e| tracing::error!(error = %e, "cannot start the optimizing compile thread"))
            .ok()
    })
    .as_ref()
}

/// Puts the calling thread at nice 10, below scheduling cycles and baseline compiles: tier-up
/// is an optimization and may wait for a free core. Best effort (Linux nices threads singly).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; no memory is passed.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// The configured Wasm plugins. Cheap to clone; all clones share the plugins.
#[derive(Clone)]
pub struct WasmPlugins {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WasmPlugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.inner.entries.keys()).finish()
    }
}

impl WasmPlugins {
    /// Loads every configured module: read, check the pin, compile (or take it from the cache),
    /// check the WIT version, link. Instances are created later, by the factories.
    ///
    /// # Errors
    /// The first module that fails to load, naming the plugin and the step.
    pub fn load(settings: &Settings) -> Result<WasmPlugins, WasmError> {
        let link_error = |e: wasmtime::Error| WasmError::step("*", "link", chain(&e));
        let linker = sandbox::base_linker(super::engine::engine()).map_err(link_error)?;
        let baseline = settings
            .tiering
            .then(|| sandbox::base_linker(super::engine::engine_for(Tier::Baseline)))
            .transpose()
            .map_err(link_error)?;
        let cache = CompileCache::new(
            settings
                .cache_dir
                .clone()
                .or_else(super::engine::default_cache_dir),
        );
        let budget = Budget {
            call: settings.call_timeout,
            setup: SETUP_TIMEOUT.max(settings.call_timeout),
            memory: settings.memory_limit_bytes,
        };
        let mut inner = Inner {
            linker,
            baseline,
            budget,
            cache,
            entries: BTreeMap::new(),
            optimizing: Mutex::new(0),
            optimized: parking_lot::Condvar::new(),
        };
        let mut baseline_modules = Vec::new();
        for source in &settings.plugins {
            let start = std::time::Instant::now();
            let bytes = std::fs::read(&source.path).map_err(|e| WasmError::Read {
                plugin: source.name.clone(),
                path: source.path.clone(),
                source: e,
            })?;
            let sha256 = sha256_hex(&bytes);
            let module = inner.build(source, &bytes, &sha256)?;
            tracing::info!(plugin = %source.name, path = %source.path.display(), sha256 = %module.sha256, tier = module.tier.as_str(), took_ms = start.elapsed().as_millis() as u64, "loaded Wasm plugin");
            if module.tier == Tier::Baseline {
                baseline_modules.push((source.name.clone(), bytes, sha256));
            }
            let entry = Entry {
                source: source.clone(),
                module: ArcSwap::from_pointee(module),
                slots: Mutex::new(Vec::new()),
                stats: Arc::default(),
                reload: Mutex::new(()),
            };
            inner.entries.insert(source.name.clone(), Arc::new(entry));
        }
        let plugins = WasmPlugins {
            inner: Arc::new(inner),
        };
        for (name, bytes, sha256) in baseline_modules {
            plugins.optimize_later(&name, bytes, sha256);
        }
        Ok(plugins)
    }

    /// Compiles the optimized code of a plugin that serves baseline code, in the background,
    /// then swaps every instance to it (same path as a reload) unless the plugin was reloaded
    /// meanwhile. A failure leaves the baseline code serving and is logged.
    fn optimize_later(&self, name: &str, bytes: Vec<u8>, sha256: String) {
        *self.inner.optimizing.lock() += 1;
        let this = self.clone();
        let plugin = name.to_string();
        let Some(pool) = optimizer_pool() else {
            tracing::error!(
                plugin = name,
                "no optimizing compile; baseline code keeps serving"
            );
            *self.inner.optimizing.lock() -= 1;
            return;
        };
        pool.spawn(move || {
            this.optimize(&plugin, &bytes, &sha256);
            let mut n = this.inner.optimizing.lock();
            *n -= 1;
            this.inner.optimized.notify_all();
        });
    }

    fn optimize(&self, name: &str, bytes: &[u8], sha256: &str) {
        let Ok(entry) = self.entry(name) else { return };
        if entry.module.load().sha256 != sha256 {
            return; // replaced while queued: the newer module has its own optimizing compile
        }
        let start = std::time::Instant::now();
        let module = match self
            .inner
            .build_at(&entry.source, bytes, sha256, Tier::Optimized)
        {
            Ok(m) => Arc::new(m),
            Err(e) => {
                tracing::error!(plugin = name, error = %e, "optimizing compile failed; baseline code keeps serving");
                return;
            }
        };
        let _one_at_a_time = entry.reload.lock();
        let current = entry.module.load();
        if current.sha256 != module.sha256 || current.tier == Tier::Optimized {
            return; // reloaded meanwhile: that reload owns the plugin now
        }
        match swap_slots(&entry, &module) {
            Ok(instances) => {
                entry.module.store(module);
                tracing::info!(
                    plugin = name,
                    instances = instances.len(),
                    took_ms = start.elapsed().as_millis() as u64,
                    "optimized code serving"
                );
            }
            Err(e) => {
                tracing::error!(plugin = name, step = e.step_name(), error = %e, "could not swap in the optimized code; baseline code keeps serving");
            }
        }
    }

    /// Waits until no optimizing compile runs (every plugin serves optimized code, or its
    /// optimization failed), at most `timeout`; whether that happened.
    pub fn wait_optimized(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut n = self.inner.optimizing.lock();
        while *n > 0 {
            if self
                .inner
                .optimized
                .wait_until(&mut n, deadline)
                .timed_out()
            {
                return *n == 0;
            }
        }
        true
    }

    /// Lookups of the compiled-component cache so far (memory and disk hits, compilations,
    /// rejected entries).
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// The disk directory of the compiled-component cache; none when memory-only.
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.inner.cache.dir()
    }

    /// The configured plugin names.
    pub fn names(&self) -> Vec<String> {
        self.inner.entries.keys().cloned().collect()
    }

    /// The files of the configured plugins, by name (for the file watcher).
    pub fn paths(&self) -> Vec<(String, PathBuf)> {
        self.inner
            .entries
            .iter()
            .map(|(n, e)| (n.clone(), e.source.path.clone()))
            .collect()
    }

    /// Creates an instance of a configured plugin with these args, fed from `state`.
    ///
    /// # Errors
    /// [`WasmError::UnknownPlugin`], or the step that failed (instantiate, init, ...).
    pub fn create(
        &self,
        name: &str,
        args: &serde_json::Value,
        state: Arc<dyn StateReplay>,
    ) -> Result<WasmPlugin, WasmError> {
        let entry = self.entry(name)?;
        // A swap in progress (reload, optimized code) collects the slots under this lock: the
        // new slot is either among them or created from the module they swap to.
        let _no_swap = entry.reload.lock();
        let module = entry.module.load_full();
        let cfg = SlotConfig {
            name: entry.source.name.as_str().into(),
            args: args_json(args),
            state,
            budget: self.inner.budget,
            stats: entry.stats.clone(),
        };
        let slot = Arc::new(Slot::new(&module, cfg)?);
        let mut slots = entry.slots.lock();
        slots.retain(|w| w.strong_count() > 0);
        slots.push(Arc::downgrade(&slot));
        Ok(WasmPlugin::new(slot))
    }

    /// A registry factory for a configured plugin.
    pub fn factory(&self, name: &str) -> PluginFactory {
        let this = self.clone();
        let name = name.to_string();
        Arc::new(move |args, ctx: &FactoryContext| {
            let plugin = this
                .create(&name, args, ctx.state.clone())
                .map_err(|e| match e {
                    WasmError::Step {
                        step: "init",
                        message,
                        ..
                    } => RegistryError::InvalidArgs {
                        plugin: name.clone(),
                        message,
                    },
                    e => RegistryError::Create {
                        plugin: name.clone(),
                        message: e.to_string(),
                    },
                })?;
            Ok(Arc::new(plugin) as PluginRef)
        })
    }

    /// Registers every configured plugin under its name. A name of a built-in plugin replaces
    /// the built-in, on purpose (the operator configured the module under that name).
    pub fn register_all(&self, registry: &mut Registry) {
        for name in self.inner.entries.keys() {
            if registry.replace(name, self.factory(name)).is_some() {
                tracing::info!(plugin = %name, "Wasm plugin replaces the plugin registered under the same name");
            }
        }
    }

    /// Reloads a plugin from its file: read and hash → check the pin → compile → check the WIT
    /// version → for every live instance: instantiate, init, replay state, health → swap all.
    /// If the file did not change, nothing happens. If any step fails, the old module keeps
    /// serving, the failure is counted and logged, and the error names the step.
    ///
    /// # Errors
    /// The failed step, as a [`WasmError`].
    pub fn reload(&self, name: &str) -> Result<ReloadOutcome, WasmError> {
        let entry = self.entry(name)?;
        let _one_at_a_time = entry.reload.lock();
        let result = self.reload_entry(&entry);
        match &result {
            Ok(o) if o.swapped => {
                entry.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(plugin = name, sha256 = %o.sha256, previous = %o.previous_sha256, version = %o.version, instances = o.instances, compile_ms = o.compile.as_millis() as u64, start_ms = o.start.as_millis() as u64, "hot-swapped Wasm plugin");
            }
            Ok(_) => tracing::debug!(plugin = name, "plugin file unchanged; nothing to reload"),
            Err(e) => {
                entry.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                *entry.stats.last_error.lock() = Some(e.to_string());
                tracing::error!(plugin = name, step = e.step_name(), error = %e, "rejected Wasm plugin reload; the old module keeps serving");
            }
        }
        result
    }

    fn reload_entry(&self, entry: &Entry) -> Result<ReloadOutcome, WasmError> {
        let src = &entry.source;
        let old = entry.module.load_full();
        let bytes = std::fs::read(&src.path).map_err(|source| WasmError::Read {
            plugin: src.name.clone(),
            path: src.path.clone(),
            source,
        })?;
        let mut outcome = ReloadOutcome {
            plugin: src.name.clone(),
            sha256: sha256_hex(&bytes),
            previous_sha256: old.sha256.clone(),
            swapped: false,
            instances: 0,
            version: String::new(),
            compile: std::time::Duration::ZERO,
            start: std::time::Duration::ZERO,
        };
        if outcome.sha256 == old.sha256 {
            return Ok(outcome);
        }
        let at = std::time::Instant::now();
        let module = Arc::new(self.inner.build(src, &bytes, &outcome.sha256)?);
        outcome.compile = at.elapsed();
        let instances = swap_slots(entry, &module)?;
        outcome.start = at.elapsed() - outcome.compile;
        outcome.instances = instances.len();
        outcome.version = instances.first().cloned().unwrap_or_default();
        let tier = module.tier;
        entry.module.store(module);
        outcome.swapped = true;
        if tier == Tier::Baseline {
            self.optimize_later(&src.name, bytes, outcome.sha256.clone());
        }
        Ok(outcome)
    }

    /// Reloads every plugin (SIGHUP); returns each result.
    pub fn reload_all(&self) -> Vec<(String, Result<ReloadOutcome, WasmError>)> {
        self.names()
            .into_iter()
            .map(|n| {
                let r = self.reload(&n);
                (n, r)
            })
            .collect()
    }

    /// Status and counters of a plugin.
    pub fn status(&self, name: &str) -> Option<PluginStatus> {
        let e = self.inner.entries.get(name)?;
        let s = &e.stats;
        Some(PluginStatus {
            name: name.to_string(),
            path: e.source.path.clone(),
            sha256: e.module.load().sha256.clone(),
            tier: e.module.load().tier,
            wit: e.module.load().wit,
            traps: s.traps.load(Ordering::Relaxed),
            deadline_hits: s.deadline_hits.load(Ordering::Relaxed),
            consecutive_traps: s.consecutive_traps.load(Ordering::Relaxed),
            respawns: s.respawns.load(Ordering::Relaxed),
            rejected_outputs: s.rejected_outputs.load(Ordering::Relaxed),
            reloads_ok: s.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: s.reloads_failed.load(Ordering::Relaxed),
            last_error: s.last_error.lock().clone(),
            respawn_failures: s.respawn_failures.load(Ordering::Relaxed),
            log_lines_dropped: s.logs.dropped(),
            quarantined: s.quarantine.list(),
            failure: s.failure(),
        })
    }

    /// The live counters of a plugin (for metrics).
    pub fn stats(&self, name: &str) -> Option<Arc<super::slot::PluginStats>> {
        self.inner.entries.get(name).map(|e| e.stats.clone())
    }

    /// Status of every plugin.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        self.inner
            .entries
            .keys()
            .filter_map(|n| self.status(n))
            .collect()
    }

    /// Adds `scheduler_wasm_plugin_*` counters (traps, respawns, rejected outputs, reloads by
    /// result) to a Prometheus registry; they are read from the plugins at scrape time.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(super::metrics::WasmCollector::new(self.clone())));
    }

    fn entry(&self, name: &str) -> Result<Arc<Entry>, WasmError> {
        self.inner
            .entries
            .get(name)
            .cloned()
            .ok_or_else(|| WasmError::UnknownPlugin(name.to_string()))
    }
}

impl Settings {
    /// The runtime settings of a scheduler configuration's `wasmPlugins` / `wasmRuntime`.
    pub fn from_config(config: &crate::config::WasmConfig) -> Self {
        Settings {
            plugins: config
                .plugins
                .iter()
                .map(|p| PluginSource {
                    name: p.name.clone(),
                    path: p.path.clone(),
                    sha256: p.sha256.clone(),
                })
                .collect(),
            call_timeout: Duration::from_millis(config.call_timeout_ms),
            memory_limit_bytes: usize::try_from(config.memory_limit_bytes).unwrap_or(usize::MAX),
            cache_dir: config.cache_dir.clone(),
            tiering: true,
        }
    }
}

/// Loads the configured Wasm plugins and registers each under its configured name (replacing a
/// built-in of the same name). Keep the returned handle to reload them.
///
/// # Errors
/// The first module that fails to load.
pub fn register_plugins(
    config: &crate::config::WasmConfig,
    registry: &mut Registry,
) -> Result<WasmPlugins, WasmError> {
    let plugins = WasmPlugins::load(&Settings::from_config(config))?;
    plugins.register_all(registry);
    Ok(plugins)
}

impl Inner {
    /// A module of `bytes` (hex sha256 `sha256`) for `source`: optimized code if a cache has it
    /// or tiering is off, else baseline code (falling back to optimized code if the baseline
    /// compiler refuses it).
    fn build(
        &self,
        source: &PluginSource,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<Module, WasmError> {
        if self.baseline.is_none() || self.cache.contains(sha256) {
            return self.build_at(source, bytes, sha256, Tier::Optimized);
        }
        match self.build_at(source, bytes, sha256, Tier::Baseline) {
            Err(WasmError::Step {
                step: "compile",
                message,
                ..
            }) => {
                tracing::warn!(plugin = %source.name, error = %message, "the baseline compiler refused the module; compiling optimized code first");
                self.build_at(source, bytes, sha256, Tier::Optimized)
            }
            other => other,
        }
    }

    /// A module of `bytes` for `source` compiled at `tier`, linked by that tier's linker.
    fn build_at(
        &self,
        source: &PluginSource,
        bytes: &[u8],
        sha256: &str,
        tier: Tier,
    ) -> Result<Module, WasmError> {
        let linker = match tier {
            Tier::Optimized => &self.linker,
            Tier::Baseline => self
                .baseline
                .as_ref()
                .expect("baseline code is only built with tiering on"),
        };
        Module::from_bytes(
            &source.name,
            &source.path,
            bytes,
            sha256,
            source.sha256.as_deref(),
            &self.cache,
            linker,
            tier,
        )
    }
}

/// Starts a replacement of every live slot of `entry` from `module`, then swaps them all, so
/// either all switch or none does; the versions the new instances report.
fn swap_slots(entry: &Entry, module: &Arc<Module>) -> Result<Vec<String>, WasmError> {
    let slots: Vec<Arc<Slot>> = entry
        .slots
        .lock()
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    let prepared = slots
        .iter()
        .map(|s| s.prepare(module))
        .collect::<Result<Vec<_>, _>>()?;
    let mut versions = Vec::new();
    for p in prepared {
        versions.push(p.metadata().version.clone());
        p.commit()?;
    }
    Ok(versions)
}
