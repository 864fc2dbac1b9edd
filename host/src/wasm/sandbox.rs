//! What a plugin instance may touch: the `host` interface (logging) and an empty WASI
//! environment. Nothing is granted: no files, no network, no clock, no environment variables,
//! no stdio.
//!
//! Rust's standard library for `wasm32-wasip2` links against a few WASI interfaces even when a
//! plugin never uses them. The host defines only the harmless ones:
//! - `wasi:cli/environment`: no variables, no arguments, no working directory;
//! - `wasi:cli/exit`: traps ("plugin called exit");
//! - `wasi:random/insecure-seed` and `wasi:random/random`: a fixed, deterministic sequence, so
//!   `HashMap` works and decisions stay reproducible.
//!
//! Every other import (stdio streams, filesystem, sockets, clocks, ...) is linked to a function
//! that traps with the import's name, so such a module loads but fails the call that uses it.
//! Plugins log through `wasm_scheduler_sdk::log` instead of stdout/stderr.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{StoreLimits, StoreLimitsBuilder};

use super::bindings::{self, wit};

/// Longest log line kept from a plugin, in bytes.
pub const MAX_LOG_LINE: usize = 4096;

/// The data of one instance's store.
pub struct HostState {
    /// The plugin's configured name, for log lines.
    pub plugin: Arc<str>,
    /// The memory cap.
    pub limits: StoreLimits,
    /// The last error-level line the plugin logged (e.g. its panic message), attached to a trap.
    pub last_error: Option<String>,
    rng: u64,
}

impl HostState {
    /// State for an instance of `plugin` whose linear memories may grow to `memory_limit` bytes.
    pub fn new(plugin: Arc<str>, memory_limit: usize) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_limit)
            .instances(64)
            .tables(64)
            .memories(16)
            .trap_on_grow_failure(true)
            .build();
        HostState {
            plugin,
            limits,
            last_error: None,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// splitmix64: deterministic, never touches the host's entropy.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl wit::Host for HostState {}

impl bindings::kube_scheduler::plugin::host::Host for HostState {
    fn log(&mut self, level: wit::LogLevel, mut message: String) {
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let plugin = &*self.plugin;
        match level {
            wit::LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            wit::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            wit::LogLevel::Info => tracing::info!(plugin, "{message}"),
            wit::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            wit::LogLevel::Error => {
                tracing::error!(plugin, "{message}");
                self.last_error = Some(message);
            }
        }
    }
}

/// The linker shared by all modules: the `host` interface and the harmless WASI functions.
/// Per module, [`module_linker`] adds trapping stubs for whatever else it imports.
pub fn base_linker() -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(super::engine::engine());
    bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;

    let mut env = linker.instance("wasi:cli/environment@0.2.6")?;
    env.func_wrap("get-environment", |_, (): ()| {
        Ok((Vec::<(String, String)>::new(),))
    })?;
    env.func_wrap("get-arguments", |_, (): ()| Ok((Vec::<String>::new(),)))?;
    env.func_wrap("initial-cwd", |_, (): ()| Ok((None::<String>,)))?;

    let mut exit = linker.instance("wasi:cli/exit@0.2.6")?;
    exit.func_wrap(
        "exit",
        |_, (_status,): (Result<(), ()>,)| -> wasmtime::Result<()> {
            wasmtime::bail!("plugin called exit")
        },
    )?;

    let mut seed = linker.instance("wasi:random/insecure-seed@0.2.6")?;
    seed.func_wrap("insecure-seed", |mut s, (): ()| {
        let state: &mut HostState = s.data_mut();
        Ok(((state.next_random(), state.next_random()),))
    })?;

    let mut random = linker.instance("wasi:random/random@0.2.6")?;
    random.func_wrap("get-random-u64", |mut s, (): ()| {
        Ok((s.data_mut().next_random(),))
    })?;
    random.func_wrap("get-random-bytes", |mut s, (len,): (u64,)| {
        wasmtime::ensure!(len <= 1 << 20, "plugin asked for {len} random bytes");
        let state: &mut HostState = s.data_mut();
        let bytes: Vec<u8> = (0..len).map(|_| state.next_random() as u8).collect();
        Ok((bytes,))
    })?;
    Ok(linker)
}

/// The base linker plus a trapping stub for every other import of `component`.
pub fn module_linker(
    base: &Linker<HostState>,
    component: &wasmtime::component::Component,
) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = base.clone();
    linker.define_unknown_imports_as_traps(component)?;
    Ok(linker)
}
