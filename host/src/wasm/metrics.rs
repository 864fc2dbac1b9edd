//! Prometheus counters of the Wasm plugins, read from their stats at scrape time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use super::runtime::{PluginStatus, WasmPlugins};

/// Encodes `scheduler_wasm_plugin_traps_total{plugin}`, `..._respawns_total{plugin}`,
/// `..._rejected_outputs_total{plugin}` and `..._reloads_total{plugin, result}`.
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
        let simple: [(&str, &str, Getter); 3] = [
            (
                "scheduler_wasm_plugin_traps",
                "Plugin calls that trapped, hit the deadline or the memory cap.",
                |s| s.traps,
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
        ];
        for (name, help, get) in simple {
            let counter = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            for s in &statuses {
                let labels = [("plugin", s.name.as_str())];
                ConstCounter::new(get(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        let counter = ConstCounter::new(0u64);
        let mut family = encoder.encode_descriptor(
            "scheduler_wasm_plugin_reloads",
            "Hot swaps of Wasm plugins by result.",
            None,
            counter.metric_type(),
        )?;
        for s in &statuses {
            for (result, n) in [("success", s.reloads_ok), ("failure", s.reloads_failed)] {
                let labels = [("plugin", s.name.as_str()), ("result", result)];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
