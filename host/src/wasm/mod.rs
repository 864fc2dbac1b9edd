//! # The Wasm plugin runtime
//!
//! Runs scheduler plugins built as WebAssembly components against the WIT world
//! `kube-scheduler:plugin/plugin@0.3.0` (`wit/plugin.wit`) and its frozen predecessors 0.2.0
//! and 0.1.0, side by side. Three types matter:
//!
//! - [`WasmPlugins`]: the configured modules, loaded once ([`WasmPlugins::load`]); gives the
//!   registry a factory per plugin and hot-swaps a plugin with [`WasmPlugins::reload`].
//! - [`WasmPlugin`]: one plugin instance behind the framework's `Plugin` trait.
//! - [`NativeSdkPlugin`]: the same SDK plugin compiled into the host, for tests and to measure
//!   the Wasm boundary.
//!
//! Two wasmtime engines serve the process, one per [`Tier`] ([`engine::engine_for`]). A module
//! is compiled once to optimized code (cached in memory and on disk, [`engine::CompileCache`]);
//! a module no cache knows serves Winch's baseline code within milliseconds while the optimized
//! code compiles in the background. Its WIT version is checked by name, and it is
//! pre-instantiated. Every
//! instance has its own store with a memory cap, every call an epoch deadline. A trap, deadline
//! or oversized output fails only the pod at hand with an `Error` status naming the plugin; the
//! trapped instance is replaced by a fresh one fed the current state. Plugins get no
//! filesystem, network, clock or stdio ([`sandbox`]).
//!
//! ```no_run
//! use std::sync::Arc;
//! use wasm_scheduler::plugins::{FactoryContext, Registry};
//! use wasm_scheduler::wasm::{PluginSource, Settings, WasmPlugins};
//!
//! let settings = Settings {
//!     plugins: vec![PluginSource {
//!         name: "NodeLabel".into(),
//!         path: "target/wasm32-wasip2/plugin/node_label_plugin.wasm".into(),
//!         sha256: None,
//!     }],
//!     ..Settings::default()
//! };
//! let plugins = WasmPlugins::load(&settings)?;
//! let mut registry = Registry::with_builtins();
//! plugins.register_all(&mut registry);
//! let plugin = registry.create("NodeLabel", &serde_json::json!({}), &FactoryContext::empty())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod adapter;
pub mod bindings;
mod convert;
pub mod engine;
mod error;
pub mod fields;
mod instance;
pub mod limits;
mod metrics;
mod module;
mod native;
mod node_index;
mod quarantine;
mod reload;
mod runtime;
pub mod sandbox;
mod slot;

pub use adapter::WasmPlugin;
pub use engine::Tier;
pub use error::WasmError;
pub use instance::Budget;
pub use metrics::{CallLatency, WasmCollector};
pub use module::{Module, sha256_hex};
pub use native::{NativeSdkPlugin, register_native_sdk_plugins};
#[cfg(unix)]
pub use reload::spawn_sighup_reloader;
pub use reload::{AdminServer, DEBOUNCE, FileWatcher, serve_admin};
pub use runtime::{
    DEFAULT_CALL_TIMEOUT, DEFAULT_MEMORY_LIMIT, PluginSource, PluginStatus, ReloadOutcome,
    SETUP_TIMEOUT, Settings, WasmPlugins, register_plugins,
};
pub use slot::{PluginStats, Slot};
