//! Native plugins and the registry where they meet Wasm plugins.
//!
//! Each plugin lives in its own file, opening with its `NAME` and its user-facing reasons, and
//! behaves as its upstream namesake in `kubernetes/pkg/scheduler/framework/plugins`:
//!
//! | plugin | points | what it does |
//! |---|---|---|
//! | [`SchedulingGates`] | PreEnqueue | holds pods with `spec.schedulingGates` |
//! | [`NodeUnschedulable`] | Filter | keeps pods off cordoned nodes |
//! | [`NodeName`] | Filter | honours `spec.nodeName` |
//! | [`NodePorts`] | Filter | host ports free on the node |
//! | [`TaintToleration`] | Filter, PreScore, Score | taints and tolerations |
//! | [`NodeAffinity`] | PreFilter, Filter, PreScore, Score | `nodeSelector` and node affinity |
//! | [`NodeResourcesFit`] | PreFilter, Filter, PreScore, Score | requests vs allocatable; LeastAllocated |
//! | [`VolumeBinding`] | PreFilter, Filter, PreScore, Score | bound volumes' node affinity; unbound claims wait |
//! | [`PodTopologySpread`] | PreFilter, Filter, PreScore, Score | `topologySpreadConstraints` |
//! | [`InterPodAffinity`] | PreFilter, Filter, PreScore, Score | pod affinity and anti-affinity |
//! | [`BalancedAllocation`] | PreScore, Score | even use of cpu and memory |
//! | [`ImageLocality`] | PreFilter, Score | nodes that have the pod's images |
//! | [`DefaultPreemption`] | PreEnqueue, PostFilter | evicts lower-priority pods when nothing fits |
//! | [`DefaultBinder`] | Bind | `POST pods/{name}/binding` |
//!
//! Start with [`Registry`]: the configuration turns plugin names into instances through it.
//! [`compute_pod_requests`] and [`node_allocatable`] are how the scheduler counts resources.

pub mod balanced_allocation;
pub mod default_binder;
pub mod default_preemption;
pub mod helpers;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod label_selector;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_selector;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod registry;
pub mod resources;
pub mod scheduling_gates;
pub mod taint_toleration;
#[cfg(test)]
pub(crate) mod testing;
pub mod volume_binding;

pub use balanced_allocation::BalancedAllocation;
pub use default_binder::DefaultBinder;
pub use default_preemption::DefaultPreemption;
pub use image_locality::ImageLocality;
pub use inter_pod_affinity::InterPodAffinity;
pub use node_affinity::NodeAffinity;
pub use node_name::NodeName;
pub use node_ports::NodePorts;
pub use node_resources_fit::NodeResourcesFit;
pub use node_unschedulable::NodeUnschedulable;
pub use pod_topology_spread::PodTopologySpread;
pub use registry::{FactoryContext, PluginFactory, Registry, RegistryError};
pub use resources::{compute_pod_non_zero_requests, compute_pod_requests, node_allocatable};
pub use scheduling_gates::SchedulingGates;
pub use taint_toleration::TaintToleration;
pub use volume_binding::VolumeBinding;
