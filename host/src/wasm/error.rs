//! Errors of the Wasm plugin runtime. Each names the plugin and the step that failed.

use std::path::PathBuf;

use thiserror::Error;

/// What went wrong while loading, reloading or calling a Wasm plugin.
#[derive(Debug, Error)]
pub enum WasmError {
    /// No Wasm plugin is configured under this name.
    #[error("no Wasm plugin named {0:?} is configured")]
    UnknownPlugin(String),
    /// The module file could not be read.
    #[error("plugin {plugin}: read {path}: {source}")]
    Read {
        /// The plugin.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file's sha256 differs from the pinned one.
    #[error("plugin {plugin}: sha256 of {path} is {actual}, but the configuration pins {expected}")]
    HashMismatch {
        /// The plugin.
        plugin: String,
        /// The file.
        path: PathBuf,
        /// The pinned hash.
        expected: String,
        /// The file's hash.
        actual: String,
    },
    /// The component targets a WIT package version this host does not serve.
    #[error("plugin {plugin}: component {direction} {found}, host supports {supported}")]
    WitVersion {
        /// The plugin.
        plugin: String,
        /// "exports" or "imports".
        direction: &'static str,
        /// The offending interface name, with its version.
        found: String,
        /// The version(s) this host serves.
        supported: String,
    },
    /// A step of loading a module or preparing an instance failed.
    #[error("plugin {plugin}: {step} failed: {message}")]
    Step {
        /// The plugin.
        plugin: String,
        /// The step: compile, link, instantiate, init, metadata, replay, health, swap.
        step: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The admin endpoint could not start.
    #[error("admin endpoint {addr}: {source}")]
    Admin {
        /// Where it tried to listen.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file watcher could not start.
    #[error("watch plugin files: {0}")]
    Watch(#[from] notify::Error),
}

impl WasmError {
    pub(crate) fn step(plugin: &str, step: &'static str, message: impl std::fmt::Display) -> Self {
        WasmError::Step {
            plugin: plugin.to_string(),
            step,
            message: message.to_string(),
        }
    }

    /// The step that failed, for reload statistics and log lines.
    pub fn step_name(&self) -> &'static str {
        match self {
            WasmError::UnknownPlugin(_) => "lookup",
            WasmError::Read { .. } => "read",
            WasmError::HashMismatch { .. } => "hash",
            WasmError::WitVersion { .. } => "wit-version",
            WasmError::Step { step, .. } => step,
            WasmError::Admin { .. } => "admin",
            WasmError::Watch(_) => "watch",
        }
    }
}

/// Formats a wasmtime error with its whole cause chain on one line.
pub(crate) fn chain(e: &wasmtime::Error) -> String {
    let mut out = String::new();
    for (i, cause) in e.chain().enumerate() {
        if i > 0 {
            out.push_str(": ");
        }
        out.push_str(&cause.to_string());
    }
    out
}
