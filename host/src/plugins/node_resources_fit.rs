//! NodeResourcesFit: a pod fits a node only if the node's allocatable cpu, memory, ephemeral
//! storage, pod count and extended resources cover what the node's pods already request plus
//! what this pod requests; among the nodes that fit, it prefers the least allocated ones
//! (upstream `pkg/scheduler/framework/plugins/noderesources`, `fit.go`).
//!
//! Args (`NodeResourcesFitArgs`): `ignoredResources`, `ignoredResourceGroups`, and
//! `scoringStrategy` with `type` `LeastAllocated` (default), `MostAllocated` or
//! `RequestedToCapacityRatio`, `resources` (default cpu and memory, weight 1) and
//! `requestedToCapacityRatio.shape`.
//!
//! Extended resources backed by DRA (KEP-5004, feature `DRAExtendedResource`, beta and on by
//! default in v1.36): a resource some DeviceClass maps (`spec.extendedResourceName`, or the
//! implicit `deviceclass.resource.kubernetes.io/<class>`) is not checked on a node that does not
//! list it as allocatable: DynamicResources allocates devices for it there, so counting it here
//! too would reject every such node.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Deserialize;

use crate::framework::{
    ClusterEvent, CycleState, EventAction, ExtensionPoint, NodeInfo, ObjectEvent, Plugin, PodInfo,
    PreFilterResult, Resource, ResourceKind, Snapshot, Status,
};

use super::helpers::{MAX_NODE_SCORE, decode_args};
use super::registry::RegistryError;
use super::resources::{
    CPU, EPHEMERAL_STORAGE, MEMORY, compute_pod_requests, is_extended_resource_name,
    is_scalar_resource_name,
};

/// The plugin's name in the configuration.
pub const NAME: &str = "NodeResourcesFit";
/// CycleState key of the pod's requests, computed in PreFilter.
pub const PRE_FILTER_STATE_KEY: &str = "PreFilterNodeResourcesFit";
/// CycleState key of the pod's requests per scored resource, computed in PreScore.
pub const PRE_SCORE_STATE_KEY: &str = "PreScoreNodeResourcesFit";
/// Filter reason: the node has no room for another pod.
pub const ERR_REASON_TOO_MANY_PODS: &str = "Too many pods";
/// Filter reason: not enough cpu.
pub const ERR_REASON_INSUFFICIENT_CPU: &str = "Insufficient cpu";
/// Filter reason: not enough memory.
pub const ERR_REASON_INSUFFICIENT_MEMORY: &str = "Insufficient memory";
/// Filter reason: not enough ephemeral storage.
pub const ERR_REASON_INSUFFICIENT_EPHEMERAL_STORAGE: &str = "Insufficient ephemeral-storage";

/// Filter reason for any other resource, e.g. `Insufficient example.com/gpu`.
pub fn err_reason_insufficient(resource: &str) -> String {
    format!("Insufficient {resource}")
}

/// Utilization in percent at which a `RequestedToCapacityRatio` shape ends.
const MAX_UTILIZATION: i64 = 100;
/// Highest score of a `RequestedToCapacityRatio` shape point (upstream `MaxCustomPriorityScore`).
const MAX_CUSTOM_PRIORITY_SCORE: i64 = 10;

/// `pluginConfig` args (upstream `NodeResourcesFitArgs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeResourcesFitArgs {
    /// Ignored; accepted so upstream-shaped args parse.
    pub api_version: Option<String>,
    /// Ignored; accepted so upstream-shaped args parse.
    pub kind: Option<String>,
    /// Extended resources Filter does not check.
    #[serde(default)]
    pub ignored_resources: Vec<String>,
    /// Extended resource groups (the part before `/`) Filter does not check.
    #[serde(default)]
    pub ignored_resource_groups: Vec<String>,
    /// How Score ranks nodes.
    pub scoring_strategy: Option<ScoringStrategyArgs>,
}

/// `scoringStrategy` args.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScoringStrategyArgs {
    /// The strategy; `LeastAllocated` when unset.
    #[serde(rename = "type")]
    pub kind: Option<ScoringStrategyType>,
    /// Scored resources and their weights; cpu and memory with weight 1 when unset.
    pub resources: Option<Vec<ResourceSpec>>,
    /// The shape for `RequestedToCapacityRatio`.
    pub requested_to_capacity_ratio: Option<RequestedToCapacityRatioArgs>,
}

/// A scoring strategy (upstream `ScoringStrategyType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum ScoringStrategyType {
    /// Prefer nodes with the most free resources (spreads pods).
    #[default]
    LeastAllocated,
    /// Prefer nodes with the least free resources (packs pods).
    MostAllocated,
    /// Score utilization through a piecewise linear function.
    RequestedToCapacityRatio,
}

/// A scored resource and its weight.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Resource name, e.g. `cpu` or `example.com/gpu`.
    pub name: String,
    /// Weight, 1 to 100.
    pub weight: i64,
}

/// `requestedToCapacityRatio` args.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedToCapacityRatioArgs {
    /// Points of the function, by increasing utilization.
    pub shape: Vec<UtilizationShapePoint>,
}

/// One point of the `RequestedToCapacityRatio` function.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UtilizationShapePoint {
    /// Utilization in percent, 0 to 100.
    pub utilization: i64,
    /// Score at that utilization, 0 to 10.
    pub score: i64,
}

/// Which field of [`Resource`] a scored resource reads.
#[derive(Debug, Clone)]
enum Field {
    Cpu,
    Memory,
    EphemeralStorage,
    Scalar(String),
    /// Not a resource the scheduler counts; scores nothing.
    Unknown,
}

#[derive(Debug, Clone)]
struct Scored {
    field: Field,
    weight: i64,
}

#[derive(Debug, Clone)]
enum Scorer {
    Least,
    Most,
    /// Shape points with scores already scaled to `0..=MAX_NODE_SCORE`.
    Ratio(Vec<(i64, i64)>),
}

/// Checks that a node has room for the pod and ranks nodes by allocation.
#[derive(Debug)]
pub struct NodeResourcesFit {
    ignored_resources: HashSet<String>,
    ignored_groups: HashSet<String>,
    scorer: Scorer,
    resources: Vec<Scored>,
    /// DeviceClasses by name: `spec.extendedResourceName`, if set.
    classes: RwLock<HashMap<String, Option<String>>>,
}

/// The pod's requests and the scalar resources Filter checks, with their failure reasons.
struct PreFilterState {
    requests: Resource,
    /// `(name, amount, reason, backed by DRA)` of every non-zero, non-ignored scalar request.
    scalars: Vec<(String, i64, String, bool)>,
}

struct PreScoreState {
    /// The pod's request per scored resource (non-zero defaults for cpu and memory).
    pod_requests: Vec<i64>,
}

impl NodeResourcesFit {
    /// Creates the plugin from its args.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] for undecodable or invalid args.
    pub fn new(args: &serde_json::Value) -> Result<Self, RegistryError> {
        let args: NodeResourcesFitArgs = decode_args(NAME, args)?;
        let invalid = |message: String| RegistryError::InvalidArgs {
            plugin: NAME.into(),
            message,
        };
        for g in &args.ignored_resource_groups {
            if g.contains('/') {
                return Err(invalid(format!(
                    "ignoredResourceGroups: {g:?} must not contain \"/\""
                )));
            }
        }
        let strategy = args.scoring_strategy.unwrap_or_default();
        let specs = strategy.resources.unwrap_or_else(|| {
            vec![
                ResourceSpec {
                    name: CPU.into(),
                    weight: 1,
                },
                ResourceSpec {
                    name: MEMORY.into(),
                    weight: 1,
                },
            ]
        });
        let mut seen = HashSet::new();
        let mut resources = Vec::with_capacity(specs.len());
        for (i, r) in specs.into_iter().enumerate() {
            if !(1..=100).contains(&r.weight) {
                return Err(invalid(format!(
                    "scoringStrategy.resources[{i}].weight: {} is not in 1..=100",
                    r.weight
                )));
            }
            if !seen.insert(r.name.clone()) {
                return Err(invalid(format!(
                    "scoringStrategy.resources[{i}].name: duplicate resource {:?}",
                    r.name
                )));
            }
            let field = match r.name.as_str() {
                CPU => Field::Cpu,
                MEMORY => Field::Memory,
                EPHEMERAL_STORAGE => Field::EphemeralStorage,
                n if is_scalar_resource_name(n) => Field::Scalar(r.name.clone()),
                _ => Field::Unknown,
            };
            resources.push(Scored {
                field,
                weight: r.weight,
            });
        }
        let scorer = match strategy.kind.unwrap_or_default() {
            ScoringStrategyType::LeastAllocated => Scorer::Least,
            ScoringStrategyType::MostAllocated => Scorer::Most,
            ScoringStrategyType::RequestedToCapacityRatio => {
                let shape = strategy
                    .requested_to_capacity_ratio
                    .map(|r| r.shape)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        invalid(
                            "scoringStrategy.requestedToCapacityRatio.shape: must not be empty"
                                .into(),
                        )
                    })?;
                let mut prev = -1;
                for (i, p) in shape.iter().enumerate() {
                    if !(0..=MAX_UTILIZATION).contains(&p.utilization) || p.utilization <= prev {
                        return Err(invalid(format!(
                            "scoringStrategy.requestedToCapacityRatio.shape[{i}].utilization: must be in 0..=100 and increasing"
                        )));
                    }
                    if !(0..=MAX_CUSTOM_PRIORITY_SCORE).contains(&p.score) {
                        return Err(invalid(format!(
                            "scoringStrategy.requestedToCapacityRatio.shape[{i}].score: must be in 0..=10"
                        )));
                    }
                    prev = p.utilization;
                }
                let scale = MAX_NODE_SCORE / MAX_CUSTOM_PRIORITY_SCORE;
                Scorer::Ratio(
                    shape
                        .iter()
                        .map(|p| (p.utilization, p.score * scale))
                        .collect(),
                )
            }
        };
        Ok(NodeResourcesFit {
            ignored_resources: args.ignored_resources.into_iter().collect(),
            ignored_groups: args.ignored_resource_groups.into_iter().collect(),
            scorer,
            resources,
            classes: RwLock::default(),
        })
    }

    /// Whether a DeviceClass maps extended resource `name` (upstream `DeviceClassResolver`).
    fn backed_by_dra(&self, name: &str) -> bool {
        let classes = self.classes.read();
        match name.strip_prefix(DEVICE_CLASS_PREFIX) {
            Some(class) => classes.contains_key(class),
            None => classes.values().any(|e| e.as_deref() == Some(name)),
        }
    }

    fn is_ignored(&self, name: &str) -> bool {
        is_extended_resource_name(name)
            && (self.ignored_resources.contains(name)
                || (!self.ignored_groups.is_empty()
                    && self
                        .ignored_groups
                        .contains(name.split('/').next().unwrap_or(name))))
    }

    fn pre_filter_state(&self, pod: &PodInfo) -> PreFilterState {
        let requests = compute_pod_requests(&pod.pod);
        let scalars = requests
            .scalar
            .iter()
            .filter(|(name, amount)| **amount != 0 && !self.is_ignored(name))
            .map(|(name, amount)| {
                let backed = self.backed_by_dra(name);
                (name.clone(), *amount, err_reason_insufficient(name), backed)
            })
            .collect();
        PreFilterState { requests, scalars }
    }

    /// The pod's requests as Score counts them: the scoring defaults apply to cpu and memory
    /// only, so the other resources are the plain requests.
    fn pod_score_requests(&self, pod: &PodInfo) -> Vec<i64> {
        self.resources
            .iter()
            .map(|r| match &r.field {
                Field::Cpu => pod.non_zero_requests.milli_cpu,
                Field::Memory => pod.non_zero_requests.memory,
                Field::EphemeralStorage => pod.requests.ephemeral_storage,
                Field::Scalar(name) => pod.requests.scalar.get(name).copied().unwrap_or(0),
                Field::Unknown => 0,
            })
            .collect()
    }

    /// `(allocatable, requested including the pod)` of one scored resource on a node; `(0, 0)`
    /// means the resource is not scored (upstream `calculateResourceAllocatableRequest`).
    fn allocatable_and_requested(
        &self,
        r: &Scored,
        node: &NodeInfo,
        non_zero: (i64, i64),
        pod_request: i64,
    ) -> (i64, i64) {
        match &r.field {
            Field::Cpu => (node.allocatable.milli_cpu, non_zero.0 + pod_request),
            Field::Memory => (node.allocatable.memory, non_zero.1 + pod_request),
            Field::EphemeralStorage => (
                node.allocatable.ephemeral_storage,
                node.requested.ephemeral_storage + pod_request,
            ),
            // An extended resource the pod does not request is not scored.
            Field::Scalar(_) if pod_request == 0 => (0, 0),
            Field::Scalar(name) => (
                node.allocatable.scalar.get(name).copied().unwrap_or(0),
                node.requested.scalar.get(name).copied().unwrap_or(0) + pod_request,
            ),
            Field::Unknown => (0, 0),
        }
    }

    fn score_node(&self, node: &NodeInfo, pod_requests: &[i64]) -> i64 {
        let non_zero = non_zero_requested(node);
        let (mut total, mut weights) = (0i64, 0i64);
        for (r, &pod_request) in self.resources.iter().zip(pod_requests) {
            let (allocatable, requested) =
                self.allocatable_and_requested(r, node, non_zero, pod_request);
            if allocatable == 0 {
                continue;
            }
            let s = match &self.scorer {
                Scorer::Least => least_requested_score(requested, allocatable),
                Scorer::Most => most_requested_score(requested, allocatable),
                Scorer::Ratio(shape) => {
                    let utilization = if requested > allocatable {
                        MAX_UTILIZATION
                    } else {
                        requested * MAX_UTILIZATION / allocatable
                    };
                    let s = broken_linear(shape, utilization);
                    // RequestedToCapacityRatio averages only resources that scored above zero.
                    if s <= 0 {
                        continue;
                    }
                    s
                }
            };
            total += s * r.weight;
            weights += r.weight;
        }
        if weights == 0 {
            return 0;
        }
        match self.scorer {
            // Upstream rounds this one to the nearest integer.
            Scorer::Ratio(_) => (total + weights / 2) / weights,
            _ => total / weights,
        }
    }
}

/// CPU and memory requested on the node, counting a container without a cpu or memory request
/// as the scoring defaults (upstream `NodeInfo.NonZeroRequested`), kept as a running sum by
/// `NodeInfo` so scoring does not walk the node's pods.
fn non_zero_requested(node: &NodeInfo) -> (i64, i64) {
    (
        node.non_zero_requested.milli_cpu,
        node.non_zero_requested.memory,
    )
}

/// `(capacity - requested) * 100 / capacity`, 0 when over capacity.
fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// `requested * 100 / capacity`, capped at 100 (defaults can push requests over capacity).
fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// The piecewise linear function through the shape points (upstream `BuildBrokenLinearFunction`).
fn broken_linear(shape: &[(i64, i64)], p: i64) -> i64 {
    for (i, &(u, s)) in shape.iter().enumerate() {
        if p <= u {
            if i == 0 {
                return s;
            }
            let (pu, ps) = shape[i - 1];
            return ps + (s - ps) * (p - pu) / (u - pu);
        }
    }
    shape.last().map_or(0, |&(_, s)| s)
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &str {
        NAME
    }

    fn subscriptions(&self) -> Vec<ResourceKind> {
        vec![ResourceKind::device_class()]
    }

    fn on_event(&self, event: &ObjectEvent) {
        if event.resource != ResourceKind::device_class() {
            return;
        }
        let Ok(class) = serde_json::from_str::<DeviceClassJson>(&event.object) else {
            return;
        };
        let mut classes = self.classes.write();
        if event.action == EventAction::Deleted {
            classes.remove(&class.metadata.name);
        } else {
            classes.insert(class.metadata.name, class.spec.extended_resource_name);
        }
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![
            ExtensionPoint::PreFilter,
            ExtensionPoint::Filter,
            ExtensionPoint::PreScore,
            ExtensionPoint::Score,
        ]
    }

    /// A pod deleted or scaled down frees room; a node added or resized adds room (upstream:
    /// Pod/Delete|UpdatePodScaleDown, Node/Add|UpdateNodeAllocatable).
    fn requeue_on(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent {
                resource: ResourceKind::pod(),
                actions: vec![EventAction::Deleted, EventAction::Modified],
            },
            ClusterEvent {
                resource: ResourceKind::node(),
                actions: vec![EventAction::Added, EventAction::Modified],
            },
            // A class that starts mapping an extended resource leaves it to DRA: a pod rejected
            // for "Insufficient example.com/gpu" may fit now (upstream registers DeviceClass
            // add/update with DRAExtendedResource too).
            ClusterEvent {
                resource: ResourceKind::device_class(),
                actions: vec![EventAction::Added, EventAction::Modified],
            },
        ]
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> PreFilterResult {
        state.write(PRE_FILTER_STATE_KEY, self.pre_filter_state(pod));
        PreFilterResult::default()
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
        let computed;
        let s = match state.read::<PreFilterState>(PRE_FILTER_STATE_KEY) {
            Some(s) => s,
            None => {
                computed = self.pre_filter_state(pod);
                &computed
            }
        };
        nodes.iter().map(|n| fits(s, n)).collect()
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _nodes: &[Arc<NodeInfo>]) -> Status {
        state.write(
            PRE_SCORE_STATE_KEY,
            PreScoreState {
                pod_requests: self.pod_score_requests(pod),
            },
        );
        Status::success()
    }

    fn score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        let computed;
        let pod_requests = match state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) {
            Some(s) => &s.pod_requests,
            None => {
                computed = self.pod_score_requests(pod);
                &computed
            }
        };
        Ok(nodes
            .iter()
            .map(|n| self.score_node(n, pod_requests))
            .collect())
    }
}

/// The prefix of a DeviceClass's implicit extended resource name.
const DEVICE_CLASS_PREFIX: &str = "deviceclass.resource.kubernetes.io/";

/// What Fit reads of a DeviceClass.
#[derive(Deserialize)]
struct DeviceClassJson {
    metadata: ClassMetaJson,
    #[serde(default)]
    spec: ClassSpecJson,
}

#[derive(Deserialize)]
struct ClassMetaJson {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ClassSpecJson {
    #[serde(default)]
    extended_resource_name: Option<String>,
}

/// Filter for one node (upstream `fitsRequest`); allocates only to report failures.
fn fits(s: &PreFilterState, node: &NodeInfo) -> Status {
    let mut reasons = Vec::new();
    if node.pods.len() as i64 + 1 > node.allocatable.allowed_pods {
        reasons.push(ERR_REASON_TOO_MANY_PODS.to_string());
    }
    let req = &s.requests;
    let (alloc, used) = (&node.allocatable, &node.requested);
    if req.milli_cpu > 0 && req.milli_cpu > alloc.milli_cpu - used.milli_cpu {
        reasons.push(ERR_REASON_INSUFFICIENT_CPU.to_string());
    }
    if req.memory > 0 && req.memory > alloc.memory - used.memory {
        reasons.push(ERR_REASON_INSUFFICIENT_MEMORY.to_string());
    }
    if req.ephemeral_storage > 0
        && req.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
    {
        reasons.push(ERR_REASON_INSUFFICIENT_EPHEMERAL_STORAGE.to_string());
    }
    for (name, amount, reason, backed) in &s.scalars {
        let allocatable = alloc.scalar.get(name).copied().unwrap_or(0);
        if *backed && allocatable == 0 {
            continue; // DynamicResources allocates it on this node
        }
        let available = allocatable - used.scalar.get(name).copied().unwrap_or(0);
        if *amount > available {
            reasons.push(reason.clone());
        }
    }
    if reasons.is_empty() {
        Status::success()
    } else {
        Status {
            code: crate::framework::Code::Unschedulable,
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{node_info, pod};

    fn plugin() -> NodeResourcesFit {
        NodeResourcesFit::new(&serde_json::Value::Null).unwrap()
    }

    const NODE: &str = "metadata: {name: n}\nstatus: {allocatable: {cpu: '4', memory: 8Gi, pods: '3', example.com/gpu: '2', ephemeral-storage: 10Gi}}";

    fn requesting(resources: &str) -> PodInfo {
        pod(&format!(
            "metadata: {{name: p}}\nspec: {{containers: [{{name: c, resources: {{requests: {resources}}}}}]}}"
        ))
    }

    fn filter_one(pl: &NodeResourcesFit, p: &PodInfo, n: NodeInfo) -> Status {
        let mut state = CycleState::default();
        assert!(
            pl.pre_filter(&mut state, p, &Snapshot::default())
                .status
                .is_success()
        );
        pl.filter(&state, p, &[Arc::new(n)]).remove(0)
    }

    #[test]
    fn a_pod_that_fits_passes() {
        let s = filter_one(
            &plugin(),
            &requesting("{cpu: '2', memory: 4Gi, example.com/gpu: '2'}"),
            node_info(NODE, &[]),
        );
        assert!(s.is_success(), "{s:?}");
    }

    #[test]
    fn every_insufficient_resource_is_reported_in_upstream_order() {
        let used =
            requesting("{cpu: '3', memory: 6Gi, example.com/gpu: '1', ephemeral-storage: 9Gi}");
        let p =
            requesting("{cpu: 1500m, memory: 3Gi, example.com/gpu: '2', ephemeral-storage: 2Gi}");
        let s = filter_one(&plugin(), &p, node_info(NODE, &[used]));
        assert_eq!(s.code, Code::Unschedulable);
        assert_eq!(
            s.reasons,
            [
                "Insufficient cpu",
                "Insufficient memory",
                "Insufficient ephemeral-storage",
                "Insufficient example.com/gpu"
            ]
        );
    }

    #[test]
    fn a_full_node_has_too_many_pods() {
        let small = requesting("{cpu: 10m}");
        let n = node_info(NODE, &[small.clone(), small.clone(), small.clone()]);
        let s = filter_one(
            &plugin(),
            &pod("metadata: {name: p}\nspec: {containers: [{name: c}]}"),
            n,
        );
        assert_eq!(s.reasons, [ERR_REASON_TOO_MANY_PODS]);
    }

    #[test]
    fn extended_resources_missing_on_the_node_are_insufficient() {
        let s = filter_one(
            &plugin(),
            &requesting("{example.com/fpga: '1'}"),
            node_info(NODE, &[]),
        );
        assert_eq!(s.reasons, ["Insufficient example.com/fpga"]);
    }

    #[test]
    fn extended_resources_backed_by_dra_are_left_to_dynamic_resources() {
        let pl = plugin();
        let class = |name: &str, ext: Option<&str>| ObjectEvent {
            action: EventAction::Added,
            resource: ResourceKind::device_class(),
            object: serde_json::json!({"metadata": {"name": name},
                "spec": {"extendedResourceName": ext}})
            .to_string(),
        };
        const BARE: &str =
            "metadata: {name: b}\nstatus: {allocatable: {cpu: '4', memory: 8Gi, pods: '3'}}";
        let p = requesting("{example.com/gpu: '2', deviceclass.resource.kubernetes.io/fpga: '1'}");
        // No class maps them yet: both are insufficient on a node without them.
        let s = filter_one(&pl, &p, node_info(BARE, &[]));
        assert_eq!(s.reasons.len(), 2, "{s:?}");
        pl.on_event(&class("gpu", Some("example.com/gpu")));
        pl.on_event(&class("fpga", None));
        // A node that does not list them: DRA's to allocate, not counted here.
        let s = filter_one(&pl, &p, node_info(BARE, &[]));
        assert!(s.is_success(), "{s:?}");
        // A node with a device plugin for the GPU (2 allocatable) is checked as before.
        let used = requesting("{example.com/gpu: '1'}");
        let s = filter_one(&pl, &p, node_info(NODE, &[used]));
        assert_eq!(s.reasons, ["Insufficient example.com/gpu"]);
        // The class is deleted: the GPU is a plain extended resource again.
        let mut gone = class("gpu", Some("example.com/gpu"));
        gone.action = EventAction::Deleted;
        pl.on_event(&gone);
        let s = filter_one(&pl, &p, node_info(BARE, &[]));
        assert_eq!(s.reasons, ["Insufficient example.com/gpu"]);
    }

    #[test]
    fn ignored_resources_and_groups_are_not_checked() {
        let pl = NodeResourcesFit::new(&serde_json::json!({
            "ignoredResources": ["example.com/fpga"], "ignoredResourceGroups": ["vendor.io"]
        }))
        .unwrap();
        let s = filter_one(
            &pl,
            &requesting("{example.com/fpga: '1', vendor.io/x: '5'}"),
            node_info(NODE, &[]),
        );
        assert!(s.is_success(), "{s:?}");
    }

    fn scores(pl: &NodeResourcesFit, p: &PodInfo, nodes: Vec<NodeInfo>) -> Vec<i64> {
        let nodes: Vec<_> = nodes.into_iter().map(Arc::new).collect();
        let mut state = CycleState::default();
        assert!(pl.pre_score(&mut state, p, &nodes).is_success());
        pl.score(&state, p, &nodes).unwrap()
    }

    const BIG: &str =
        "metadata: {name: big}\nstatus: {allocatable: {cpu: '4', memory: 4Gi, pods: '110'}}";
    const SMALL: &str =
        "metadata: {name: small}\nstatus: {allocatable: {cpu: '2', memory: 2Gi, pods: '110'}}";

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let p = requesting("{cpu: '1', memory: 1Gi}");
        // big: cpu (4-1)/4 = 75, memory 75 → 75; small: 50, 50 → 50.
        assert_eq!(
            scores(
                &plugin(),
                &p,
                vec![node_info(BIG, &[]), node_info(SMALL, &[])]
            ),
            [75, 50]
        );
    }

    #[test]
    fn most_allocated_prefers_the_fuller_node() {
        let pl = NodeResourcesFit::new(
            &serde_json::json!({"scoringStrategy": {"type": "MostAllocated"}}),
        )
        .unwrap();
        let p = requesting("{cpu: '1', memory: 1Gi}");
        assert_eq!(
            scores(&pl, &p, vec![node_info(BIG, &[]), node_info(SMALL, &[])]),
            [25, 50]
        );
    }

    #[test]
    fn pods_without_requests_score_with_the_upstream_defaults() {
        let p = pod("metadata: {name: p}\nspec: {containers: [{name: c}]}");
        // cpu: (4000-100)*100/4000 = 97; memory: (4Gi-200Mi)*100/4Gi = 95 → (97+95)/2 = 96.
        assert_eq!(scores(&plugin(), &p, vec![node_info(BIG, &[])]), [96]);
        // The node's pods without requests count too: cpu 200m and memory 400Mi used.
        assert_eq!(
            scores(
                &plugin(),
                &p,
                vec![node_info(BIG, std::slice::from_ref(&p))]
            ),
            [(95 + 90) / 2]
        );
    }

    #[test]
    fn weights_and_extended_resources_shape_the_score() {
        let pl = NodeResourcesFit::new(&serde_json::json!({"scoringStrategy": {
            "resources": [{"name": "cpu", "weight": 1}, {"name": "example.com/gpu", "weight": 3}]
        }}))
        .unwrap();
        let n = node_info(NODE, &[]);
        // cpu (4000-1000)/4000 = 75 (w1), gpu (2-1)/2 = 50 (w3) → (75 + 150) / 4 = 56.
        assert_eq!(
            scores(
                &pl,
                &requesting("{cpu: '1', example.com/gpu: '1'}"),
                vec![n.clone()]
            ),
            [56]
        );
        // A pod that does not request the gpu is scored on cpu only.
        assert_eq!(scores(&pl, &requesting("{cpu: '1'}"), vec![n]), [75]);
    }

    #[test]
    fn requested_to_capacity_ratio_follows_the_shape() {
        let pl = NodeResourcesFit::new(&serde_json::json!({"scoringStrategy": {
            "type": "RequestedToCapacityRatio",
            "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]}
        }}))
        .unwrap();
        // 25% utilization of cpu and memory on the big node → 25.
        assert_eq!(
            scores(
                &pl,
                &requesting("{cpu: '1', memory: 1Gi}"),
                vec![node_info(BIG, &[])]
            ),
            [25]
        );
    }

    #[test]
    fn errors_when_args_are_invalid() {
        let bad = |v: serde_json::Value| NodeResourcesFit::new(&v).unwrap_err().to_string();
        assert!(
            bad(serde_json::json!({"scoringStrategy": {"type": "Random"}}))
                .contains("unknown variant `Random`")
        );
        assert_eq!(
            bad(
                serde_json::json!({"scoringStrategy": {"resources": [{"name": "cpu", "weight": 0}]}})
            ),
            "plugin \"NodeResourcesFit\": invalid args: scoringStrategy.resources[0].weight: 0 is not in 1..=100"
        );
        assert_eq!(
            bad(serde_json::json!({"scoringStrategy": {"type": "RequestedToCapacityRatio"}})),
            "plugin \"NodeResourcesFit\": invalid args: scoringStrategy.requestedToCapacityRatio.shape: must not be empty"
        );
    }

    #[test]
    fn the_least_and_most_allocated_formulas_match_upstream() {
        assert_eq!(least_requested_score(3000, 4000), 25);
        assert_eq!(least_requested_score(5000, 4000), 0);
        assert_eq!(most_requested_score(5000, 4000), 100);
        assert_eq!(broken_linear(&[(0, 100), (50, 0)], 25), 50);
        assert_eq!(broken_linear(&[(10, 30), (50, 70)], 80), 70);
    }
}
