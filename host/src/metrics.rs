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

/// Labels of `scheduler_pod_scheduling_sli_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SliLabels {
    /// Attempts it took, `1` … `14` or `15+` (upstream `getAttemptsLabel`).
    pub attempts: String,
}

/// Labels of `leader_election_master_status` (client-go's leader election metric).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaderLabels {
    /// The lease name.
    pub name: String,
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
    /// `scheduler_pod_scheduling_sli_duration_seconds{attempts}`: first attempt → bound.
    pub pod_scheduling_sli: Family<SliLabels, Histogram>,
    /// `scheduler_pod_scheduling_attempts`: attempts a bound pod took.
    pub pod_scheduling_attempts: Histogram,
    /// `leader_election_master_status{name}`: 1 while this instance leads.
    pub leader_status: Family<LeaderLabels, Gauge>,
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
        // metrics.go: ExponentialBuckets(0.01, 2, 20)
        let pod_scheduling_sli = Family::<SliLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 20))
        });
        // metrics.go: ExponentialBuckets(1, 2, 5)
        let pod_scheduling_attempts = Histogram::new(exponential_buckets(1.0, 2.0, 5));
        let leader_status = Family::<LeaderLabels, Gauge>::default();
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
        registry.register(
            "scheduler_pod_scheduling_sli_duration_seconds",
            "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.",
            pod_scheduling_sli.clone(),
        );
        registry.register(
            "scheduler_pod_scheduling_attempts",
            "Number of attempts to successfully schedule a pod.",
            pod_scheduling_attempts.clone(),
        );
        registry.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease.",
            leader_status.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            schedule_attempts,
            attempt_duration,
            plugin_duration,
            pending_pods,
            pod_scheduling_sli,
            pod_scheduling_attempts,
            leader_status,
        }
    }

    /// Records a pod that was bound after `attempts` attempts, the first one `since` ago
    /// (upstream observes both when the binding cycle succeeds).
    pub fn pod_scheduled(&self, attempts: u32, since: Duration) {
        let attempts_label = if attempts >= 15 {
            "15+".to_string()
        } else {
            attempts.to_string()
        };
        self.pod_scheduling_sli
            .get_or_create(&SliLabels {
                attempts: attempts_label,
            })
            .observe(since.as_secs_f64());
        self.pod_scheduling_attempts.observe(f64::from(attempts));
    }

    /// Sets `leader_election_master_status{name}` (1 leading, 0 standby).
    pub fn set_leader(&self, lease: &str, leading: bool) {
        self.leader_status
            .get_or_create(&LeaderLabels {
                name: lease.to_string(),
            })
            .set(i64::from(leading));
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
        m.pod_scheduled(2, Duration::from_millis(30));
        m.pod_scheduled(20, Duration::from_secs(1));
        m.set_leader("wasm-scheduler", true);
        let text = m.encode();
        assert!(text.contains("scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 1"), "{text}");
        assert!(text.contains("scheduler_scheduling_attempt_duration_seconds_bucket"));
        assert!(text.contains("scheduler_plugin_execution_duration_seconds_count{plugin=\"NodeResourcesFit\",extension_point=\"Filter\",status=\"Success\"} 1"));
        assert!(text.contains("scheduler_pending_pods{queue=\"unschedulable\"} 3"));
        assert!(
            text.contains("scheduler_pod_scheduling_sli_duration_seconds_count{attempts=\"2\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "scheduler_pod_scheduling_sli_duration_seconds_count{attempts=\"15+\"} 1"
            )
        );
        assert!(text.contains("scheduler_pod_scheduling_attempts_count 2"));
        assert!(text.contains("leader_election_master_status{name=\"wasm-scheduler\"} 1"));
    }
}
