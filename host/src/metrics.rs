//! Prometheus metrics with upstream kube-scheduler names
//! (kubernetes/pkg/scheduler/metrics/metrics.go), served as text by `/metrics`.

use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of `scheduler_schedule_attempts_total` and `scheduler_scheduling_attempt_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// `scheduled`, `unschedulable` or `error`.
    pub result: &'static str,
    /// The profile's scheduler name.
    pub profile: String,
}

/// Labels of `scheduler_plugin_execution_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// Plugin name.
    pub plugin: String,
    /// Extension point, e.g. `Filter`.
    pub extension_point: &'static str,
    /// Status code, e.g. `Success`.
    pub status: &'static str,
}

/// Labels of `scheduler_pending_pods`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `active`, `backoff`, `unschedulable` or `gated`.
    pub queue: &'static str,
}

/// The scheduler's metrics and the registry that exposes them.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// `scheduler_schedule_attempts_total{result, profile}`.
    pub schedule_attempts: Family<AttemptLabels, Counter>,
    /// `scheduler_scheduling_attempt_duration_seconds{result, profile}`.
    pub attempt_duration: Family<AttemptLabels, Histogram>,
    /// `scheduler_plugin_execution_duration_seconds{plugin, extension_point, status}`.
    pub plugin_duration: Family<PluginLabels, Histogram>,
    /// `scheduler_pending_pods{queue}`.
    pub pending_pods: Family<QueueLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers all metrics. Buckets are upstream's.
    pub fn new() -> Self {
        let schedule_attempts = Family::<AttemptLabels, Counter>::default();
        // metrics.go: ExponentialBuckets(0.001, 2, 15)
        let attempt_duration = Family::<AttemptLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        // metrics.go: ExponentialBuckets(0.00001, 1.5, 20)
        let plugin_duration = Family::<PluginLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00001, 1.5, 20))
        });
        let pending_pods = Family::<QueueLabels, Gauge>::default();
        let mut registry = Registry::default();
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
            schedule_attempts.clone(),
        );
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            attempt_duration.clone(),
        );
        registry.register(
            "scheduler_plugin_execution_duration_seconds",
            "Duration for running a plugin at a specific extension point.",
            plugin_duration.clone(),
        );
        registry.register(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that the scheduler never attempted to schedule because they are gated.",
            pending_pods.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            schedule_attempts,
            attempt_duration,
            plugin_duration,
            pending_pods,
        }
    }

    /// Records one scheduling attempt.
    pub fn attempt(&self, profile: &str, result: &'static str, took: Duration) {
        let labels = AttemptLabels {
            result,
            profile: profile.to_string(),
        };
        self.schedule_attempts.get_or_create(&labels).inc();
        self.attempt_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records one plugin call.
    pub fn plugin(
        &self,
        plugin: &str,
        extension_point: &'static str,
        status: &'static str,
        took: Duration,
    ) {
        let labels = PluginLabels {
            plugin: plugin.to_string(),
            extension_point,
            status,
        };
        self.plugin_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Sets the pending pod gauges.
    pub fn set_pending(&self, active: usize, backoff: usize, unschedulable: usize, gated: usize) {
        for (queue, n) in [
            ("active", active),
            ("backoff", backoff),
            ("unschedulable", unschedulable),
            ("gated", gated),
        ] {
            self.pending_pods
                .get_or_create(&QueueLabels { queue })
                .set(n as i64);
        }
    }

    /// Adds more metrics (e.g. the Wasm runtime's) to the same registry.
    pub fn register_more(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.registry.lock());
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_upstream_metric_names() {
        let m = Metrics::new();
        m.attempt("default-scheduler", "scheduled", Duration::from_millis(2));
        m.plugin(
            "NodeResourcesFit",
            "Filter",
            "Success",
            Duration::from_micros(3),
        );
        m.set_pending(1, 2, 3, 4);
        let text = m.encode();
        assert!(text.contains("scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 1"), "{text}");
        assert!(text.contains("scheduler_scheduling_attempt_duration_seconds_bucket"));
        assert!(text.contains("scheduler_plugin_execution_duration_seconds_count{plugin=\"NodeResourcesFit\",extension_point=\"Filter\",status=\"Success\"} 1"));
        assert!(text.contains("scheduler_pending_pods{queue=\"unschedulable\"} 3"));
    }
}
