//! The workloads, shaped like upstream `test/integration/scheduler_perf` test cases, and their
//! sizes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::BenchError;

/// A benchmark workload. Each creates its cluster, schedules the init pods, then measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Workload {
    /// 5000 nodes, 5000 init pods, 10000 measured pods with plain cpu/memory requests
    /// (upstream `SchedulingBasic/5000Nodes_10000Pods`).
    SchedulingBasic,
    /// 500 nodes with one ResourceSlice each, 2500 init and 2500 measured pods, each with a
    /// claim generated from a ResourceClaimTemplate (upstream
    /// `SchedulingWithResourceClaimTemplate/5000pods_500nodes`).
    SchedulingWithResourceClaimTemplate,
    /// As [`Workload::SchedulingWithResourceClaimTemplate`], but each node's devices are
    /// partitions (KEP-4815): a counter slice (`memory: 10Gi`) and a device slice of the same
    /// pool with ten 1Gi partitions and one whole device consuming all 10Gi (upstream
    /// `SchedulingWithResourceClaimTemplatePartitionable/5000pods_500nodes`).
    SchedulingWithResourceClaimTemplatePartitionable,
    /// 100 nodes with one ResourceSlice each; 400 ResourceClaims each shared by 5 pods,
    /// 1000 init and 1000 measured pods.
    SchedulingWithSharedClaim,
    /// 500 nodes with one ResourceSlice each, half the devices taken by init pods; then for
    /// 10 s batches of 10 pods are created, scheduled and deleted (upstream
    /// `SteadyStateClusterResourceClaimTemplate/half_500nodes`).
    SteadyStateDra,
    /// 500 nodes filled by 2000 low-priority pods (900m cpu each, 4 per node); each of 500
    /// measured high-priority pods (3 cpu) has to preempt 3 of them (upstream
    /// `PreemptionBasic/500Nodes`).
    PreemptionBasic,
    /// The same at 5000 nodes: 20000 low-priority pods, 5000 preemptors; evictions run off the
    /// scheduling loop (upstream `PreemptionAsync/5000Nodes`).
    PreemptionAsync,
    /// 5000 nodes in three zones, 1000 init pods, 1000 measured pods spread over the zones
    /// with `maxSkew: 5`, `DoNotSchedule` (upstream `TopologySpreading/5000Nodes`).
    TopologySpreading,
    /// 5000 nodes, 1000 init and 1000 measured pods with required anti-affinity to each other
    /// on the hostname (upstream `SchedulingPodAntiAffinity/5000Nodes`).
    SchedulingPodAntiAffinity,
}

/// Every workload, in the order they run by default.
pub const ALL_WORKLOADS: [Workload; 9] = [
    Workload::SchedulingBasic,
    Workload::SchedulingWithResourceClaimTemplate,
    Workload::SchedulingWithResourceClaimTemplatePartitionable,
    Workload::SchedulingWithSharedClaim,
    Workload::SteadyStateDra,
    Workload::PreemptionBasic,
    Workload::PreemptionAsync,
    Workload::TopologySpreading,
    Workload::SchedulingPodAntiAffinity,
];

impl Workload {
    /// The name used on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Workload::SchedulingBasic => "SchedulingBasic",
            Workload::SchedulingWithResourceClaimTemplate => "SchedulingWithResourceClaimTemplate",
            Workload::SchedulingWithResourceClaimTemplatePartitionable => {
                "SchedulingWithResourceClaimTemplatePartitionable"
            }
            Workload::SchedulingWithSharedClaim => "SchedulingWithSharedClaim",
            Workload::SteadyStateDra => "SteadyStateDRA",
            Workload::PreemptionBasic => "PreemptionBasic",
            Workload::PreemptionAsync => "PreemptionAsync",
            Workload::TopologySpreading => "TopologySpreading",
            Workload::SchedulingPodAntiAffinity => "SchedulingPodAntiAffinity",
        }
    }

    /// Whether the workload uses DRA (and so runs with the plugin native and as Wasm).
    pub fn uses_dra(self) -> bool {
        !matches!(
            self,
            Workload::SchedulingBasic
                | Workload::TopologySpreading
                | Workload::SchedulingPodAntiAffinity
        ) && !self.preempts()
    }

    /// Whether each node's devices are partitions sharing counters (KEP-4815).
    pub fn partitionable(self) -> bool {
        matches!(
            self,
            Workload::SchedulingWithResourceClaimTemplatePartitionable
        )
    }

    /// Whether the measured pods preempt the init pods.
    pub fn preempts(self) -> bool {
        matches!(self, Workload::PreemptionBasic | Workload::PreemptionAsync)
    }

    /// The full-size parameters.
    pub fn full_size(self) -> Sizes {
        match self {
            Workload::SchedulingBasic => Sizes {
                nodes: 5000,
                devices_per_node: 0,
                init_pods: 5000,
                measure_pods: 10_000,
                pods_per_claim: 0,
                duration: Duration::ZERO,
            },
            // Upstream `maxClaimsPerNode: 10`: 500 x 10 devices hold exactly the 5000 pods.
            Workload::SchedulingWithResourceClaimTemplate
            | Workload::SchedulingWithResourceClaimTemplatePartitionable => Sizes {
                nodes: 500,
                devices_per_node: 10,
                init_pods: 2500,
                measure_pods: 2500,
                pods_per_claim: 1,
                duration: Duration::ZERO,
            },
            Workload::SchedulingWithSharedClaim => Sizes {
                nodes: 100,
                devices_per_node: 10,
                init_pods: 1000,
                measure_pods: 1000,
                pods_per_claim: 5,
                duration: Duration::ZERO,
            },
            Workload::SteadyStateDra => Sizes {
                nodes: 500,
                devices_per_node: 10,
                init_pods: 2500,
                measure_pods: 10,
                pods_per_claim: 1,
                duration: Duration::from_secs(10),
            },
            Workload::PreemptionBasic => Sizes {
                nodes: 500,
                devices_per_node: 0,
                init_pods: 2000,
                measure_pods: 500,
                pods_per_claim: 0,
                duration: Duration::ZERO,
            },
            Workload::TopologySpreading | Workload::SchedulingPodAntiAffinity => Sizes {
                nodes: 5000,
                devices_per_node: 0,
                init_pods: 1000,
                measure_pods: 1000,
                pods_per_claim: 0,
                duration: Duration::ZERO,
            },
            Workload::PreemptionAsync => Sizes {
                nodes: 5000,
                devices_per_node: 0,
                init_pods: 20_000,
                measure_pods: 5000,
                pods_per_claim: 0,
                duration: Duration::ZERO,
            },
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_WORKLOADS
            .into_iter()
            .find(|w| w.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                BenchError::Usage(format!(
                    "unknown workload {s:?} (known: {})",
                    ALL_WORKLOADS.map(Workload::name).join(", ")
                ))
            })
    }
}

/// How the `DynamicResources` plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PluginMode {
    /// The SDK plugin compiled into the host (`register_native_sdk_plugins`).
    Native,
    /// `dra_plugin.wasm` loaded as a Wasm component under the name `DynamicResources`.
    Wasm,
}

impl PluginMode {
    /// `native` or `wasm`.
    pub fn name(self) -> &'static str {
        match self {
            PluginMode::Native => "native",
            PluginMode::Wasm => "wasm",
        }
    }
}

impl FromStr for PluginMode {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "native" => Ok(PluginMode::Native),
            "wasm" => Ok(PluginMode::Wasm),
            _ => Err(BenchError::Usage(format!(
                "unknown plugin mode {s:?} (native or wasm)"
            ))),
        }
    }
}

/// The size of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// Nodes.
    pub nodes: usize,
    /// Devices in each node's ResourceSlice (0: no DRA objects).
    pub devices_per_node: usize,
    /// Pods created and scheduled before measuring.
    pub init_pods: usize,
    /// Pods measured; for the steady state, the pods in flight at once.
    pub measure_pods: usize,
    /// Pods sharing one ResourceClaim (1: a claim per pod from a template; 0: no claims).
    pub pods_per_claim: usize,
    /// How long the steady state runs (zero for the other workloads).
    pub duration: Duration,
}

impl Sizes {
    /// Scales every count by `factor` (at least 1 node and 1 measured pod); the steady state's
    /// duration and batch stay, and devices per node stay so the cluster fills the same way.
    pub fn scaled(self, factor: f64) -> Sizes {
        let scale = |n: usize, min: usize| {
            if n == 0 {
                0
            } else {
                ((n as f64 * factor).round() as usize).max(min)
            }
        };
        let steady = !self.duration.is_zero();
        Sizes {
            nodes: scale(self.nodes, 1),
            init_pods: scale(self.init_pods, 0),
            measure_pods: if steady {
                self.measure_pods
            } else {
                scale(self.measure_pods, 1)
            },
            duration: if steady && factor < 1.0 {
                Duration::from_secs(2)
            } else {
                self.duration
            },
            ..self
        }
    }
}

/// One run: a workload, its sizes and the DRA plugin's mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The workload.
    pub workload: Workload,
    /// Its sizes.
    pub sizes: Sizes,
    /// How the DRA plugin runs.
    pub mode: PluginMode,
    /// API faults injected into the scheduler's requests during the measured phase (the
    /// `--faults` text form of `embedded_apiserver::FaultPlan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for w in ALL_WORKLOADS {
            assert_eq!(w.name().parse::<Workload>().unwrap(), w);
        }
        assert!("nope".parse::<Workload>().is_err());
    }

    #[test]
    fn quick_sizes_are_a_tenth() {
        let s = Workload::SchedulingBasic.full_size().scaled(0.1);
        assert_eq!((s.nodes, s.init_pods, s.measure_pods), (500, 500, 1000));
        let d = Workload::SteadyStateDra.full_size().scaled(0.1);
        assert_eq!((d.nodes, d.devices_per_node, d.measure_pods), (50, 10, 10));
        assert_eq!(d.duration, Duration::from_secs(2));
    }
}
