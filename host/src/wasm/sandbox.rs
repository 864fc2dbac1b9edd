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
//! Plugins log through `wasm_scheduler_sdk::log` instead of stdout/stderr. What they log is
//! bounded ([`LogLimiter`]): a line is cut at [`MAX_LOG_LINE`] bytes, and a plugin may write a
//! burst of [`LOG_BURST`] lines, then [`LOG_LINES_PER_SEC`] a second; the rest is dropped,
//! counted (`scheduler_wasm_plugin_log_lines_dropped_total`) and summarised in one line when
//! dropping starts and one when it ends. So no plugin makes the scheduler write more than
//! about 1 KiB × (burst + 20 × seconds).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{StoreLimits, StoreLimitsBuilder};

use wasm_scheduler_sdk::LogLevel;

use super::bindings::{v0_1, v0_2, v0_3};

/// Longest log line kept from a plugin, in bytes; longer lines are cut (on a character
/// boundary) and marked.
pub const MAX_LOG_LINE: usize = 1024;
/// Log lines a plugin may write at once before the rate limit applies.
pub const LOG_BURST: u32 = 200;
/// Log lines a plugin may write per second once its burst is spent.
pub const LOG_LINES_PER_SEC: u32 = 20;

/// The log budget of one plugin, shared by all its instances (a respawned or hot-swapped
/// instance does not get a fresh burst): a token bucket of [`LOG_BURST`] lines refilled at
/// [`LOG_LINES_PER_SEC`].
#[derive(Debug)]
pub struct LogLimiter {
    bucket: Mutex<Bucket>,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Lines dropped since dropping started; 0 while lines pass.
    dropping: u64,
}

/// What to do with one log line.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write it; `resumed_after` lines were dropped just before it.
    Write {
        /// Lines dropped since the previous written line (0: none).
        resumed_after: u64,
    },
    /// Drop it; `first` when it is the first of a run of dropped lines.
    Drop {
        /// Whether dropping starts with this line.
        first: bool,
    },
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter {
            bucket: Mutex::new(Bucket {
                tokens: f64::from(LOG_BURST),
                refilled: Instant::now(),
                dropping: 0,
            }),
            dropped: AtomicU64::new(0),
        }
    }
}

impl LogLimiter {
    /// Decides on one line logged at `now`.
    pub fn admit(&self, now: Instant) -> Admit {
        let mut b = self.bucket.lock();
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * f64::from(LOG_LINES_PER_SEC)).min(f64::from(LOG_BURST));
        b.refilled = now.max(b.refilled);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Admit::Write {
                resumed_after: std::mem::take(&mut b.dropping),
            }
        } else {
            b.dropping += 1;
            self.dropped.fetch_add(1, Ordering::Relaxed);
            Admit::Drop {
                first: b.dropping == 1,
            }
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Cuts `message` to [`MAX_LOG_LINE`] bytes on a character boundary, saying how much was cut.
fn cap_line(message: &mut String) {
    if message.len() <= MAX_LOG_LINE {
        return;
    }
    let total = message.len();
    let mut cut = MAX_LOG_LINE;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(&format!(" … ({} of {total} bytes cut)", total - cut));
}

/// The data of one instance's store.
pub struct HostState {
    /// The plugin's configured name, for log lines.
    pub plugin: Arc<str>,
    /// The memory cap.
    pub limits: StoreLimits,
    /// The last error-level line the plugin logged (e.g. its panic message), attached to a trap.
    pub last_error: Option<String>,
    logs: Arc<LogLimiter>,
    rng: u64,
}

impl HostState {
    /// State for an instance of `plugin` whose linear memories may grow to `memory_limit` bytes
    /// and whose log lines are limited by `logs` (the plugin's, shared by its instances).
    pub fn new(plugin: Arc<str>, memory_limit: usize, logs: Arc<LogLimiter>) -> Self {
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
            logs,
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

impl HostState {
    /// The `host.log` import of every WIT version: rate limit, line cap, and the last error
    /// line kept for the reason of a trap that follows.
    fn log(&mut self, level: LogLevel, mut message: String) {
        cap_line(&mut message);
        let plugin = &*self.plugin;
        match self.logs.admit(Instant::now()) {
            Admit::Write { resumed_after: 0 } => {}
            Admit::Write { resumed_after } => {
                tracing::warn!(
                    plugin,
                    dropped = resumed_after,
                    "plugin {plugin} logs again; {resumed_after} of its lines were dropped by the log rate limit"
                );
            }
            Admit::Drop { first } => {
                if first {
                    tracing::warn!(
                        plugin,
                        "plugin {plugin} exceeded its log rate limit ({LOG_BURST} lines, then {LOG_LINES_PER_SEC} a second); dropping its lines"
                    );
                }
                if matches!(level, LogLevel::Error) {
                    // Kept (not written) so that a trap right after still names the panic.
                    self.last_error = Some(message);
                }
                return;
            }
        }
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => {
                tracing::error!(plugin, "{message}");
                self.last_error = Some(message);
            }
        }
    }
}

/// `host` and `types` of one WIT version, forwarding to [`HostState::log`].
macro_rules! host_imports {
    ($v:ident) => {
        impl $v::wit::Host for HostState {}

        impl $v::kube_scheduler::plugin::host::Host for HostState {
            fn log(&mut self, level: $v::wit::LogLevel, message: String) {
                let level = match level {
                    $v::wit::LogLevel::Trace => LogLevel::Trace,
                    $v::wit::LogLevel::Debug => LogLevel::Debug,
                    $v::wit::LogLevel::Info => LogLevel::Info,
                    $v::wit::LogLevel::Warn => LogLevel::Warn,
                    $v::wit::LogLevel::Error => LogLevel::Error,
                };
                HostState::log(self, level, message)
            }
        }
    };
}

host_imports!(v0_1);
host_imports!(v0_2);
host_imports!(v0_3);

/// The linker shared by all modules of one engine: the `host` interface and the harmless WASI
/// functions. Per module, [`module_linker`] adds trapping stubs for whatever else it imports.
pub fn base_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    v0_1::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    v0_2::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    v0_3::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_lines_are_dropped_until_the_bucket_refills() {
        let l = LogLimiter::default();
        let t0 = Instant::now();
        for _ in 0..LOG_BURST {
            assert_eq!(l.admit(t0), Admit::Write { resumed_after: 0 });
        }
        assert_eq!(l.admit(t0), Admit::Drop { first: true });
        assert_eq!(l.admit(t0), Admit::Drop { first: false });
        assert_eq!(l.dropped(), 2);
        // One line's worth of time later, one line passes and reports the drops.
        let later = t0 + Duration::from_secs(1) / LOG_LINES_PER_SEC;
        assert_eq!(l.admit(later), Admit::Write { resumed_after: 2 });
        assert_eq!(l.admit(later), Admit::Drop { first: true });
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary_and_marked() {
        let mut s = "é".repeat(MAX_LOG_LINE);
        cap_line(&mut s);
        let (kept, marker) = s.split_once(" … (").unwrap();
        assert_eq!(kept.len(), MAX_LOG_LINE);
        assert_eq!(
            marker,
            format!("{} of {} bytes cut)", MAX_LOG_LINE, 2 * MAX_LOG_LINE)
        );
        let mut short = "ok".to_string();
        cap_line(&mut short);
        assert_eq!(short, "ok");
    }
}
