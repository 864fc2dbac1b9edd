//! Prometheus metrics of the Wasm plugins, read from their counters at scrape time:
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `scheduler_wasm_plugin_loads_total` | plugin | modules put into service: the first load and every successful hot swap |
//! | `scheduler_wasm_plugin_reloads_total` | plugin, result | hot swaps by result (`success`, `failure`) |
//! | `scheduler_wasm_plugin_traps_total` | plugin | calls that trapped, hit the deadline or the memory cap |
//! | `scheduler_wasm_plugin_deadline_exceeded_total` | plugin | calls stopped by the call deadline |
//! | `scheduler_wasm_plugin_respawns_total` | plugin | instances replaced after a trap |
//! | `scheduler_wasm_plugin_rejected_outputs_total` | plugin | outputs refused by the output limits |
//! | `scheduler_wasm_plugin_respawn_failures_total` | plugin | replacements of a trapped instance that failed (restarts then back off) |
//! | `scheduler_wasm_plugin_log_lines_dropped_total` | plugin | log lines dropped by the log rate limit |
//! | `scheduler_wasm_plugin_quarantined_objects` | plugin | objects the plugin is no longer fed after its `on_event` failed on them |
//! | `scheduler_wasm_plugin_failed` | plugin | 1 while the plugin counts as failed (an object quarantined, or no working instance), as on `/readyz` |
//! | `scheduler_wasm_plugin_call_duration_seconds` | plugin, extension_point | time of every call into the guest, boundary included |
//! | `scheduler_wasm_compile_cache_total` | result | compiled-component cache lookups: `memory_hit`, `disk_hit`, `miss` (compiled), `corrupt` (a disk entry rejected, then recompiled) |

use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::runtime::{PluginStatus, WasmPlugins};

/// Buckets of the call latency: 1 µs to ~4 s by 2x (a Wasm call costs about 1-2 µs; the
/// default deadline is 200 ms).
fn call_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1e-6, 2.0, 22)
}

/// Call latency of one plugin by extension point (e.g. `filter`, `on-event`).
#[derive(Debug, Default)]
pub struct CallLatency {
    by_point: Mutex<Vec<(&'static str, Histogram)>>,
}

impl CallLatency {
    /// Records one call.
    pub fn observe(&self, point: &'static str, took: Duration) {
        let mut v = self.by_point.lock();
        let h = match v.iter().position(|(p, _)| *p == point) {
            Some(i) => &v[i].1,
            None => {
                v.push((point, Histogram::new(call_buckets())));
                &v[v.len() - 1].1
            }
        };
        h.observe(took.as_secs_f64());
    }

    /// The histograms by extension point (cheap clones sharing the counts).
    fn snapshot(&self) -> Vec<(&'static str, Histogram)> {
        self.by_point.lock().clone()
    }
}

/// Encodes the `scheduler_wasm_plugin_*` metrics of a [`WasmPlugins`].
pub struct WasmCollector {
    plugins: WasmPlugins,
}

impl std::fmt::Debug for WasmCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmCollector").finish_non_exhaustive()
    }
}

impl WasmCollector {
    /// A collector over these plugins.
    pub fn new(plugins: WasmPlugins) -> Self {
        WasmCollector { plugins }
    }
}

type Getter = fn(&PluginStatus) -> u64;

impl Collector for WasmCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let statuses = self.plugins.statuses();
        let simple: [(&str, &str, Getter); 7] = [
            (
                "scheduler_wasm_plugin_loads",
                "Wasm modules put into service: the first load and every successful hot swap.",
                |s| 1 + s.reloads_ok,
            ),
            (
                "scheduler_wasm_plugin_traps",
                "Plugin calls that trapped, hit the deadline or the memory cap.",
                |s| s.traps,
            ),
            (
                "scheduler_wasm_plugin_deadline_exceeded",
                "Plugin calls stopped by the call deadline (also counted as traps).",
                |s| s.deadline_hits,
            ),
            (
                "scheduler_wasm_plugin_respawns",
                "Plugin instances replaced after a trap.",
                |s| s.respawns,
            ),
            (
                "scheduler_wasm_plugin_rejected_outputs",
                "Plugin outputs refused by the output limits.",
                |s| s.rejected_outputs,
            ),
            (
                "scheduler_wasm_plugin_respawn_failures",
                "Replacements of a trapped plugin instance that failed.",
                |s| s.respawn_failures,
            ),
            (
                "scheduler_wasm_plugin_log_lines_dropped",
                "Plugin log lines dropped by the log rate limit.",
                |s| s.log_lines_dropped,
            ),
        ];
        for (name, help, get) in simple {
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstCounter::<u64>::TYPE)?;
            for s in &statuses {
                let labels = [("plugin", s.name.as_str())];
                ConstCounter::new(get(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        let gauges: [(&str, &str, Getter); 2] = [
            (
                "scheduler_wasm_plugin_quarantined_objects",
                "Objects a plugin is no longer fed because its on_event failed on them.",
                |s| s.quarantined.len() as u64,
            ),
            (
                "scheduler_wasm_plugin_failed",
                "1 while a plugin counts as failed: an object is quarantined or no instance works.",
                |s| u64::from(s.failure.is_some()),
            ),
        ];
        for (name, help, get) in gauges {
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstGauge::<i64>::TYPE)?;
            for s in &statuses {
                let labels = [("plugin", s.name.as_str())];
                ConstGauge::new(get(s) as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "scheduler_wasm_plugin_reloads",
            "Hot swaps of Wasm plugins by result.",
            None,
            ConstCounter::<u64>::TYPE,
        )?;
        for s in &statuses {
            for (result, n) in [("success", s.reloads_ok), ("failure", s.reloads_failed)] {
                let labels = [("plugin", s.name.as_str()), ("result", result)];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        let cache = self.plugins.cache_stats();
        let mut family = encoder.encode_descriptor(
            "scheduler_wasm_compile_cache",
            "Compiled-component cache lookups by result (memory_hit, disk_hit, miss, corrupt; baseline: compiled to baseline code, served until the optimized code is ready).",
            None,
            ConstCounter::<u64>::TYPE,
        )?;
        for (result, n) in [
            ("memory_hit", cache.memory_hits),
            ("disk_hit", cache.disk_hits),
            ("miss", cache.misses),
            ("corrupt", cache.corrupt),
            ("baseline", cache.baseline_compiles),
        ] {
            ConstCounter::new(n).encode(family.encode_family(&[("result", result)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "scheduler_wasm_plugin_call_duration_seconds",
            "Duration of calls into Wasm plugins by extension point, boundary crossing included.",
            None,
            MetricType::Histogram,
        )?;
        for name in self.plugins.names() {
            let Some(stats) = self.plugins.stats(&name) else {
                continue;
            };
            for (point, h) in stats.call_latency.snapshot() {
                let labels = [("plugin", name.as_str()), ("extension_point", point)];
                h.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_latency_keeps_one_histogram_per_point() {
        let c = CallLatency::default();
        c.observe("filter", Duration::from_micros(3));
        c.observe("filter", Duration::from_micros(5));
        c.observe("score", Duration::from_micros(2));
        let snap = c.snapshot();
        assert_eq!(snap.len(), 2);
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("x", "x", snap[0].1.clone());
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("x_count 2"), "{text}");
    }

    #[test]
    fn the_compile_cache_counters_are_exported_by_result() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = WasmPlugins::load(&crate::wasm::Settings {
            cache_dir: Some(dir.path().to_path_buf()),
            ..crate::wasm::Settings::default()
        })
        .unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        plugins.register_metrics(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for result in ["memory_hit", "disk_hit", "miss", "corrupt"] {
            let line = format!("scheduler_wasm_compile_cache_total{{result=\"{result}\"}} 0");
            assert!(text.contains(&line), "{line} in {text}");
        }
    }
}
