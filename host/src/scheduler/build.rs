//! Building a scheduler from a configuration: plugins (built-in, SDK plugins compiled in, Wasm
//! modules) → profiles → a running [`Scheduler`].

use std::sync::Arc;
use std::time::Duration;

use kube::Client;

use crate::cache::Cache;
use crate::config::{ConfigError, SchedulerConfig, resolve_profile};
use crate::framework::Framework;
use crate::metrics::Metrics;
use crate::plugins::{FactoryContext, Registry};
use crate::queue::QueueConfig;
use crate::wasm::{self, Settings, WasmError, WasmPlugins};

use super::{Scheduler, SchedulerError, SchedulerOptions};

/// Errors building a scheduler.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A Wasm module failed to load.
    #[error("loading Wasm plugins: {0}")]
    Wasm(#[from] WasmError),
    /// A profile does not resolve (unknown plugin, bad args, ...).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The scheduler could not start.
    #[error(transparent)]
    Start(#[from] SchedulerError),
}

/// The scheduler options a configuration asks for.
pub fn options(config: &SchedulerConfig) -> SchedulerOptions {
    SchedulerOptions {
        percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
        queue: QueueConfig {
            initial_backoff: Duration::from_secs(config.pod_initial_backoff_seconds),
            max_backoff: Duration::from_secs(config.pod_max_backoff_seconds),
            ..QueueConfig::default()
        },
        // More Filter threads than cores only adds thread start-up cost.
        parallelism: config
            .parallelism
            .min(std::thread::available_parallelism().map_or(1, |n| n.get())),
        bind_concurrency: config.bind_concurrency,
        ..SchedulerOptions::default()
    }
}

/// Loads the configured Wasm modules (none configured: `None`).
///
/// # Errors
/// The first module that fails to load.
pub fn load_wasm(config: &SchedulerConfig) -> Result<Option<WasmPlugins>, WasmError> {
    if config.wasm.plugins.is_empty() {
        return Ok(None);
    }
    let settings = Settings::from_config(&config.wasm);
    WasmPlugins::load(&settings).map(Some)
}

/// Builds and starts a scheduler: registers the SDK plugins compiled into the host and the
/// configured Wasm modules in `registry` (a Wasm module named like a built-in replaces it),
/// resolves every profile with the cache as the plugins' state source, and starts watching
/// and scheduling through `client`.
///
/// # Errors
/// A Wasm module or a profile that does not load, or a scheduler that cannot start.
pub async fn build(
    client: Client,
    config: &SchedulerConfig,
    registry: Registry,
    metrics: Arc<Metrics>,
) -> Result<Scheduler, BuildError> {
    build_with(client, config, registry, metrics, options(config)).await
}

/// Like [`build`] with explicit scheduler options (e.g. [`SchedulerOptions::start_paused`]
/// for a leader-election standby); start from [`options`] of the configuration.
///
/// # Errors
/// As [`build`].
pub async fn build_with(
    client: Client,
    config: &SchedulerConfig,
    mut registry: Registry,
    metrics: Arc<Metrics>,
    options: SchedulerOptions,
) -> Result<Scheduler, BuildError> {
    wasm::register_native_sdk_plugins(&mut registry);
    let wasm_plugins = load_wasm(config)?;
    if let Some(w) = &wasm_plugins {
        w.register_all(&mut registry);
        metrics.register_more(|r| w.register_metrics(r));
    }
    let cache = Cache::new();
    let ctx = FactoryContext {
        client: Some(client.clone()),
        state: cache.clone(),
    };
    let mut profiles = Vec::with_capacity(config.profiles.len());
    for profile in &config.profiles {
        let resolved = resolve_profile(profile, &registry, &ctx)?;
        let framework = Framework::new(
            resolved.scheduler_name,
            &resolved.points,
            Some(metrics.clone()),
        )
        .with_percentage_of_nodes_to_score(resolved.percentage_of_nodes_to_score);
        profiles.push(Arc::new(framework));
    }
    let mut scheduler = Scheduler::start(client, cache, profiles, options, metrics)?;
    scheduler.wasm = wasm_plugins;
    Ok(scheduler)
}
