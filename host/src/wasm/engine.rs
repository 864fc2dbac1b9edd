//! The one wasmtime [`Engine`] of the process, its epoch ticker, and the on-disk cache of
//! compiled components.
//!
//! Every call into a plugin runs with an epoch deadline. A background thread bumps the epoch
//! every [`EPOCH_TICK`], so a deadline of `n` ticks traps after `n × 10 ms` at the latest.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, OptLevel};

/// How often the epoch advances; the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Set to `1` to write `/tmp/perf-PID.map`, so `perf report` names the functions of Wasm
/// plugins (profiling only; it costs a little at module load).
pub const PERFMAP_ENV: &str = "WASM_SCHEDULER_PERFMAP";

/// The process-wide engine: component model, epoch interruption, optimized Cranelift code,
/// parallel compilation. Created on first use together with its epoch ticker thread.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true);
        if std::env::var_os(PERFMAP_ENV).is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).expect("the wasmtime configuration is valid");
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .expect("spawn the epoch ticker thread");
        engine
    })
}

/// Epoch ticks for a deadline of `timeout`: rounded up, plus one because the current tick may be
/// almost over.
pub fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    (timeout.as_nanos().div_ceil(tick) as u64).max(1) + 1
}

/// Compiles a component, reusing a compiled copy from `cache_dir` when there is one.
///
/// The cache key is the sha256 of the Wasm bytes and the engine's compatibility hash (wasmtime
/// version and compilation settings), so a stale entry is never picked up. A cache that cannot
/// be read or written only costs a compilation.
pub fn compile(
    bytes: &[u8],
    sha256: &str,
    cache_dir: Option<&Path>,
) -> wasmtime::Result<Component> {
    let engine = engine();
    let Some(dir) = cache_dir else {
        return Component::new(engine, bytes);
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let path = dir.join(format!("{sha256}-{:016x}.cwasm", h.finish()));
    if path.exists() {
        // SAFETY: the file was written by `Component::serialize` of this engine configuration
        // (the name carries the compatibility hash) into a directory the operator owns;
        // wasmtime still validates the header and rejects an incompatible artifact.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compiled-component cache entry")
            }
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Ok(serialized) = component.serialize() {
        let tmp = path.with_extension("tmp");
        let written = std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&tmp, serialized))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled component");
        }
    }
    Ok(component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_and_adds_a_tick() {
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
        assert_eq!(deadline_ticks(Duration::from_millis(10)), 2);
        assert_eq!(deadline_ticks(Duration::from_millis(250)), 26);
    }
}
