//! The one wasmtime [`Engine`] of the process, its epoch ticker, and the cache of compiled
//! components ([`CompileCache`]: memory and disk, on by default).
//!
//! Every call into a plugin runs with an epoch deadline. A background thread bumps the epoch
//! every [`EPOCH_TICK`], so a deadline of `n` ticks traps after `n × 10 ms` at the latest.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use wasmtime::component::Component;
use wasmtime::{Config, Engine, OptLevel};

/// How often the epoch advances; the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Set to `1` to write `/tmp/perf-PID.map`, so `perf report` names the functions of Wasm
/// plugins (profiling only; it costs a little at module load).
pub const PERFMAP_ENV: &str = "WASM_SCHEDULER_PERFMAP";

/// Which compiler made a module's machine code.
///
/// A module that no cache knows first runs as [`Tier::Baseline`] code (Winch, wasmtime's
/// single-pass compiler: milliseconds for a large component, slower code), while Cranelift
/// compiles the [`Tier::Optimized`] code in the background; the plugin is then swapped again.
/// Both are cached on disk (baseline code until the optimized code replaces it), memory holds
/// optimized code only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Winch: fast to compile, slower to run.
    Baseline,
    /// Cranelift with optimizations.
    Optimized,
}

impl Tier {
    /// `baseline` or `optimized`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Baseline => "baseline",
            Tier::Optimized => "optimized",
        }
    }
}

/// The process-wide engine of optimized code: component model, epoch interruption, optimized
/// Cranelift code, parallel compilation. Created on first use together with its epoch ticker.
pub fn engine() -> &'static Engine {
    engine_for(Tier::Optimized)
}

/// The process-wide engine of a tier (each has its own epoch ticker thread). Modules, linkers
/// and stores of one engine never mix with the other's.
pub fn engine_for(tier: Tier) -> &'static Engine {
    static ENGINES: [OnceLock<Engine>; 2] = [const { OnceLock::new() }; 2];
    ENGINES[tier as usize].get_or_init(|| {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .parallel_compilation(true)
            // Trap reasons name functions, not wasm offsets; without the map a DRA compile
            // is ~10% shorter (Winch 290 → 260 ms on 2 cores).
            .generate_address_map(false);
        match tier {
            Tier::Optimized => {
                config.cranelift_opt_level(OptLevel::Speed);
            }
            Tier::Baseline => {
                // Cranelift still compiles the trampolines of a Winch module (one per function
                // that escapes, e.g. into Rust vtables: thousands in the DRA plugin); without
                // its optimizer they cost a fraction.
                config
                    .strategy(wasmtime::Strategy::Winch)
                    .cranelift_opt_level(OptLevel::None);
            }
        }
        if std::env::var_os(PERFMAP_ENV).is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).expect("the wasmtime configuration is valid");
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name(format!("wasm-epoch-{}", tier.as_str()))
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

/// Environment variable naming the directory of the compiled-component cache; overrides the
/// default location (the configuration's `wasmRuntime.cacheDir` overrides both).
pub const CACHE_DIR_ENV: &str = "WASM_SCHEDULER_CACHE_DIR";

/// Compiled components kept in memory per cache (a swap back to one of them is free).
const MEMORY_ENTRIES: usize = 8;

/// First bytes of a cache file, before the sha256 of the serialized artifact that follows.
const MAGIC: &[u8; 8] = b"WSCCv1\n\0";

/// The default cache directory: `$WASM_SCHEDULER_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/wasm-scheduler`, else `~/.cache/wasm-scheduler`; none without a home.
pub fn default_cache_dir() -> Option<PathBuf> {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env(CACHE_DIR_ENV)
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("wasm-scheduler")))
        .or_else(|| env("HOME").map(|h| h.join(".cache").join("wasm-scheduler")))
}

/// Hex sha256 of everything of a tier's engine that changes machine code (wasmtime version,
/// target, compiler and its settings), the second half of every cache key.
pub fn compatibility_hash(tier: Tier) -> &'static str {
    static HASHES: [OnceLock<String>; 2] = [const { OnceLock::new() }; 2];
    HASHES[tier as usize].get_or_init(|| {
        let mut h = ShaHasher(Sha256::new());
        engine_for(tier)
            .precompile_compatibility_hash()
            .hash(&mut h);
        hex::encode(h.0.finalize())
    })
}

/// Feeds a [`Hash`] into sha256: stable across processes, unlike `DefaultHasher`'s contract.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        unreachable!("only the digest is read")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Counts of one [`CompileCache`]'s lookups, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Served from memory (no file read, no compilation).
    pub memory_hits: u64,
    /// Served from a verified disk entry (no compilation).
    pub disk_hits: u64,
    /// Compiled to optimized code.
    pub misses: u64,
    /// Compiled to baseline code (a module no cache knew, served until its optimized code is
    /// ready).
    pub baseline_compiles: u64,
    /// Disk entries rejected as corrupt or foreign (then recompiled and rewritten).
    pub corrupt: u64,
}

/// Compiled components by key (component sha256 + [`compatibility_hash`] of the tier): in memory, and on
/// disk in a directory if one is usable. A disk entry is `MAGIC`, the sha256 of the serialized
/// artifact, then the artifact; it is only deserialized when that hash matches.
#[derive(Debug)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    memory: Mutex<VecDeque<(String, Component)>>,
    stats: Mutex<CacheStats>,
    /// Baseline entries being written in the background.
    writes: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl CompileCache {
    /// A cache in `dir` (created if missing) and in memory. If `dir` cannot be written (e.g. a
    /// read-only container), the cache is memory-only, with one warning.
    pub fn new(dir: Option<PathBuf>) -> Self {
        let dir = dir.and_then(|d| match writable(&d) {
            Ok(()) => Some(d),
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e, "compiled-component cache directory is not writable; caching in memory only");
                None
            }
        });
        CompileCache {
            dir,
            memory: Mutex::default(),
            stats: Mutex::default(),
            writes: Mutex::default(),
        }
    }

    /// A cache in memory only.
    pub fn memory_only() -> Self {
        CompileCache::new(None)
    }

    /// The directory of the disk entries, if the disk is used.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Waits until the entries written in the background are on disk.
    pub fn flush(&self) {
        let writes = std::mem::take(&mut *self.writes.lock());
        for w in writes {
            let _ = w.join();
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> CacheStats {
        *self.stats.lock()
    }

    /// Whether memory or the disk holds optimized code for `sha256` (not verified or counted:
    /// a corrupt entry is found out, and replaced, by [`CompileCache::compile`]).
    pub fn contains(&self, sha256: &str) -> bool {
        let key = key(sha256, Tier::Optimized);
        self.memory.lock().iter().any(|(k, _)| *k == key)
            || self
                .dir
                .as_ref()
                .is_some_and(|d| d.join(format!("{key}.cwasm")).is_file())
    }

    /// The optimized code of the component whose hex sha256 is `sha256`, if memory or a
    /// verified disk entry has it (counted as a hit); none otherwise (not counted).
    fn cached(&self, sha256: &str) -> Option<Component> {
        let key = key(sha256, Tier::Optimized);
        if let Some(c) = self.from_memory(&key) {
            self.stats.lock().memory_hits += 1;
            tracing::debug!(sha256, "compiled component from memory");
            return Some(c);
        }
        let start = Instant::now();
        let path = self.dir.as_ref()?.join(format!("{key}.cwasm"));
        let c = self.from_disk(&path, Tier::Optimized)?;
        self.stats.lock().disk_hits += 1;
        tracing::info!(sha256, took_ms = start.elapsed().as_millis() as u64, path = %path.display(), "compiled component from the disk cache");
        self.remember(key, c.clone());
        Some(c)
    }

    /// The compiled `bytes` (whose hex sha256 is `sha256`) at `tier`. Optimized code comes from
    /// memory, from a verified disk entry, or is compiled now (and then stored in both).
    /// Baseline code comes from a verified disk entry or is compiled now and stored on disk, so
    /// a scheduler restarted before its tier-up finished does not compile again; the optimized
    /// entry, once written, replaces it.
    ///
    /// # Errors
    /// The component does not compile.
    pub fn compile(&self, bytes: &[u8], sha256: &str, tier: Tier) -> wasmtime::Result<Component> {
        if tier == Tier::Baseline {
            let path = self
                .dir
                .as_ref()
                .map(|d| d.join(file_name(sha256, Tier::Baseline)));
            let start = Instant::now();
            if let Some(c) = path
                .as_ref()
                .and_then(|p| self.from_disk(p, Tier::Baseline))
            {
                self.stats.lock().disk_hits += 1;
                tracing::info!(
                    sha256,
                    took_ms = start.elapsed().as_millis() as u64,
                    tier = "baseline",
                    "compiled component from the disk cache"
                );
                return Ok(c);
            }
            let component = Component::new(engine_for(Tier::Baseline), bytes)?;
            self.stats.lock().baseline_compiles += 1;
            tracing::info!(
                sha256,
                took_ms = start.elapsed().as_millis() as u64,
                "compiled Wasm component with the baseline compiler"
            );
            if let Some(path) = path {
                // Off the load's path: serializing and writing cost as much as a third of
                // the compile, and only a later start needs the file.
                let c = component.clone();
                let spawned = std::thread::Builder::new()
                    .name("wasm-cache-write".into())
                    .spawn(move || store(&path, &c));
                if let Ok(handle) = spawned {
                    self.writes.lock().push(handle);
                }
            }
            return Ok(component);
        }
        if let Some(c) = self.cached(sha256) {
            return Ok(c);
        }
        let start = Instant::now();
        let component = Component::new(engine(), bytes)?;
        self.stats.lock().misses += 1;
        tracing::info!(
            sha256,
            took_ms = start.elapsed().as_millis() as u64,
            "compiled Wasm component (cache miss)"
        );
        let key = key(sha256, Tier::Optimized);
        if let Some(dir) = &self.dir {
            store(&dir.join(format!("{key}.cwasm")), &component);
            // Best effort: the baseline entry is of no use once optimized code is stored.
            self.flush();
            let _ = std::fs::remove_file(dir.join(file_name(sha256, Tier::Baseline)));
        }
        self.remember(key, component.clone());
        Ok(component)
    }

    fn from_memory(&self, key: &str) -> Option<Component> {
        let mut m = self.memory.lock();
        let i = m.iter().position(|(k, _)| k == key)?;
        // Most recently used last.
        let entry = m.remove(i)?;
        let c = entry.1.clone();
        m.push_back(entry);
        Some(c)
    }

    fn remember(&self, key: String, c: Component) {
        let mut m = self.memory.lock();
        m.retain(|(k, _)| *k != key);
        if m.len() == MEMORY_ENTRIES {
            m.pop_front();
        }
        m.push_back((key, c));
    }

    /// A verified disk entry, or none (missing, or rejected and counted as corrupt).
    fn from_disk(&self, path: &Path, tier: Tier) -> Option<Component> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read compiled-component cache entry; recompiling");
                return None;
            }
        };
        let reject = |why: &str| {
            self.stats.lock().corrupt += 1;
            tracing::warn!(path = %path.display(), reason = why, "rejected corrupt or foreign compiled-component cache entry; recompiling");
            None
        };
        let Some(payload) = verified(&data) else {
            return reject("header or checksum mismatch");
        };
        // SAFETY: `deserialize` must only see artifacts this wasmtime produced. The bytes are
        // exactly what `serialize` wrote (their sha256 matches the one stored with them), under
        // a key naming this engine's compatibility hash; wasmtime checks its own header too.
        match unsafe { Component::deserialize(engine_for(tier), payload) } {
            Ok(c) => Some(c),
            Err(_) => reject("not loadable by this engine"),
        }
    }
}

/// The cache key of a component's code at `tier`: its sha256 and the tier's
/// [`compatibility_hash`].
fn key(sha256: &str, tier: Tier) -> String {
    format!("{sha256}-{}", &compatibility_hash(tier)[..16])
}

/// The disk entry's file name; baseline entries say so in the name.
fn file_name(sha256: &str, tier: Tier) -> String {
    match tier {
        Tier::Optimized => format!("{}.cwasm", key(sha256, tier)),
        Tier::Baseline => format!("{}.baseline.cwasm", key(sha256, tier)),
    }
}

/// The artifact of a cache file if its header and checksum are right.
fn verified(data: &[u8]) -> Option<&[u8]> {
    let rest = data.strip_prefix(MAGIC.as_slice())?;
    let (sum, payload) = rest.split_at_checked(32)?;
    (Sha256::digest(payload).as_slice() == sum).then_some(payload)
}

/// Writes a cache entry atomically (temp file + rename); a failure only costs a later compile.
fn store(path: &Path, component: &Component) {
    let written = component
        .serialize()
        .map_err(std::io::Error::other)
        .and_then(|artifact| {
            let mut data = Vec::with_capacity(MAGIC.len() + 32 + artifact.len());
            data.extend_from_slice(MAGIC);
            data.extend_from_slice(&Sha256::digest(&artifact));
            data.extend_from_slice(&artifact);
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, data).and_then(|()| std::fs::rename(&tmp, path))
        });
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "could not write compiled-component cache entry");
    }
}

/// Creates `dir` and checks a file can be written in it.
fn writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
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

    fn component() -> Vec<u8> {
        // The smallest component; compiles in milliseconds.
        b"\0asm\x0d\0\x01\0".to_vec()
    }

    #[test]
    fn a_warm_disk_cache_does_not_recompile_and_memory_serves_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = component();
        let sha = crate::wasm::sha256_hex(&bytes);
        let cold = CompileCache::new(Some(dir.path().to_path_buf()));
        cold.compile(&bytes, &sha, Tier::Optimized).unwrap();
        cold.compile(&bytes, &sha, Tier::Optimized).unwrap();
        assert_eq!(
            cold.stats(),
            CacheStats {
                misses: 1,
                memory_hits: 1,
                ..CacheStats::default()
            }
        );
        let warm = CompileCache::new(Some(dir.path().to_path_buf()));
        warm.compile(&bytes, &sha, Tier::Optimized).unwrap();
        assert_eq!(
            warm.stats(),
            CacheStats {
                disk_hits: 1,
                ..CacheStats::default()
            }
        );
    }

    #[test]
    fn baseline_code_is_reused_by_a_restart_until_optimized_code_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = component();
        let sha = crate::wasm::sha256_hex(&bytes);
        let baseline_file = dir.path().join(file_name(&sha, Tier::Baseline));
        let first = CompileCache::new(Some(dir.path().to_path_buf()));
        first.compile(&bytes, &sha, Tier::Baseline).unwrap();
        first.flush();
        assert_eq!(first.stats().baseline_compiles, 1);
        assert!(baseline_file.is_file());
        // Restarted before tier-up: the baseline entry serves, nothing compiles, and it does not
        // pass for optimized code.
        let restarted = CompileCache::new(Some(dir.path().to_path_buf()));
        assert!(!restarted.contains(&sha));
        restarted.compile(&bytes, &sha, Tier::Baseline).unwrap();
        assert_eq!(
            restarted.stats(),
            CacheStats {
                disk_hits: 1,
                ..CacheStats::default()
            }
        );
        // A corrupt baseline entry is rejected and recompiled.
        std::fs::write(&baseline_file, b"short").unwrap();
        let again = CompileCache::new(Some(dir.path().to_path_buf()));
        again.compile(&bytes, &sha, Tier::Baseline).unwrap();
        again.flush();
        assert_eq!(
            (again.stats().corrupt, again.stats().baseline_compiles),
            (1, 1)
        );
        // Tier-up stores the optimized code and drops the baseline entry.
        again.compile(&bytes, &sha, Tier::Optimized).unwrap();
        assert!(again.contains(&sha));
        assert!(!baseline_file.exists());
    }

    #[test]
    fn a_corrupt_or_foreign_entry_is_rejected_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = component();
        let sha = crate::wasm::sha256_hex(&bytes);
        CompileCache::new(Some(dir.path().to_path_buf()))
            .compile(&bytes, &sha, Tier::Optimized)
            .unwrap();
        let entry = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut flipped = std::fs::read(&entry).unwrap();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        let mut foreign = b"WSCCv1\n\0".to_vec();
        foreign.extend_from_slice(&Sha256::digest(b"not an artifact"));
        foreign.extend_from_slice(b"not an artifact");
        for bad in [flipped, foreign, b"short".to_vec()] {
            std::fs::write(&entry, &bad).unwrap();
            let cache = CompileCache::new(Some(dir.path().to_path_buf()));
            cache.compile(&bytes, &sha, Tier::Optimized).unwrap();
            assert_eq!(
                cache.stats(),
                CacheStats {
                    corrupt: 1,
                    misses: 1,
                    ..CacheStats::default()
                }
            );
            let rewritten = std::fs::read(&entry).unwrap();
            assert!(
                verified(&rewritten).is_some(),
                "rewritten with a valid checksum"
            );
            let next = CompileCache::new(Some(dir.path().to_path_buf()));
            next.compile(&bytes, &sha, Tier::Optimized).unwrap();
            assert_eq!(next.stats().disk_hits, 1);
        }
    }

    #[test]
    fn an_unwritable_directory_falls_back_to_memory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let cache = CompileCache::new(Some(file.join("cache")));
        assert_eq!(cache.dir(), None);
        let bytes = component();
        let sha = crate::wasm::sha256_hex(&bytes);
        cache.compile(&bytes, &sha, Tier::Optimized).unwrap();
        cache.compile(&bytes, &sha, Tier::Optimized).unwrap();
        assert_eq!(
            cache.stats(),
            CacheStats {
                misses: 1,
                memory_hits: 1,
                ..CacheStats::default()
            }
        );
    }
}
