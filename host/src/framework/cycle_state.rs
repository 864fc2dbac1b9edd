use std::any::Any;
use std::collections::HashMap;

/// Data plugins keep for one pod during one scheduling attempt (upstream `framework.CycleState`).
/// It is created at the start of the scheduling cycle and dropped when the binding cycle ends.
#[derive(Default)]
pub struct CycleState {
    values: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
    /// Plugins that returned `Skip` from PreFilter (their Filter is not called) or PreScore.
    pub skip_filter: std::collections::HashSet<String>,
    /// Plugins whose Score is skipped for this pod.
    pub skip_score: std::collections::HashSet<String>,
    /// Whether plugin call durations are recorded in this cycle (sampled, as upstream does).
    pub record_plugin_metrics: bool,
}

impl CycleState {
    /// Stores a value under a key, replacing any previous one.
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.values.insert(key, Box::new(value));
    }

    /// Reads the value under a key, if it exists and has type `T`.
    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.values.get(key).and_then(|v| v.downcast_ref())
    }

    /// Mutable access to the value under a key.
    pub fn read_mut<T: Any + Send + Sync>(&mut self, key: &'static str) -> Option<&mut T> {
        self.values.get_mut(key).and_then(|v| v.downcast_mut())
    }
}
