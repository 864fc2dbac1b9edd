//! PodTopologySpread: `spec.topologySpreadConstraints` keep matching pods evenly spread over
//! topology domains. `DoNotSchedule` constraints filter (the skew a node would get must stay
//! within `maxSkew`), `ScheduleAnyway` constraints score (upstream
//! `pkg/scheduler/framework/plugins/podtopologyspread`).
//!
//! Counts come from the cycle's snapshot, which holds the pods bound and the pods this
//! scheduler assumed but has not bound yet, so a burst of replicas spreads as it is placed.
//! Filter also sees nodes changed for one cycle (preemption's dry runs remove victims,
//! nominated pods are added): such a node is counted again and its domain's count adjusted,
//! which is what upstream's `AddPod`/`RemovePod` extensions do. PreFilter keeps its counts for
//! the next pod with the same constraints and then recounts only the nodes changed since
//! (`SpreadMemo`), so a burst of replicas does not rescan every pod on every node.
//!
//! Args (`PodTopologySpreadArgs`): `defaultingType` (`System`, the default, or `List`) and
//! `defaultConstraints`. Default constraints apply to pods without constraints of their own,
//! with a selector built from the Services, ReplicationControllers, ReplicaSets and
//! StatefulSets that select the pod ([`default_selector`]); a pod nothing selects gets no
//! default constraints, as upstream. With `System`, they are hostname (maxSkew 3) and zone
//! (maxSkew 5), both `ScheduleAnyway`, so they only score. The plugin watches the four kinds
//! only when it has default constraints.

pub mod default_selector;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Toleration, TopologySpreadConstraint};
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;

use crate::framework::{
    ClusterEvent, CycleState, EventAction, ExtensionPoint, NodeInfo, ObjectEvent, Plugin, PodInfo,
    PreFilterResult, ResourceKind, Snapshot, Status,
};

use default_selector::SelectorSources;

use super::helpers::{MAX_NODE_SCORE, decode_args, find_untolerated_taint};
use super::label_selector::Selector;
use super::node_selector::NodeSelector;
use super::registry::RegistryError;

/// The plugin's name in the configuration.
pub const NAME: &str = "PodTopologySpread";
/// CycleState key of the Filter counts.
pub const PRE_FILTER_STATE_KEY: &str = "PreFilterPodTopologySpread";
/// CycleState key of the Score counts.
pub const PRE_SCORE_STATE_KEY: &str = "PreScorePodTopologySpread";
/// CycleState key of the snapshot's nodes, kept by PreFilter for PreScore (which upstream
/// reads from the shared lister).
const ALL_NODES_KEY: &str = "AllNodesPodTopologySpread";
/// CycleState key of the default selector PreFilter built, for PreScore.
const DEFAULT_SELECTOR_KEY: &str = "DefaultSelectorPodTopologySpread";
/// Filter reason when placing the pod on the node would exceed `maxSkew`.
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
/// Filter reason when the node lacks a constraint's topology key.
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// `kubernetes.io/hostname`: per-node domains are counted in Score itself.
const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// `topology.kubernetes.io/zone`.
const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";
/// Upstream's critical-path start: a constraint without domains has no minimum.
const NO_MINIMUM: i64 = i32::MAX as i64;

/// `pluginConfig` args (upstream `PodTopologySpreadArgs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodTopologySpreadArgs {
    /// Ignored; accepted so upstream-shaped args parse.
    pub api_version: Option<String>,
    /// Ignored; accepted so upstream-shaped args parse.
    pub kind: Option<String>,
    /// Constraints for pods that define none (with `defaultingType: List`).
    pub default_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// `System` (the default: upstream's built-in constraints) or `List`.
    pub defaulting_type: Option<String>,
}

/// Upstream `systemDefaultConstraints`: hostname with skew 3, zone with skew 5, both soft.
fn system_default_constraints() -> Vec<TopologySpreadConstraint> {
    [(LABEL_HOSTNAME, 3), (LABEL_ZONE, 5)]
        .into_iter()
        .map(|(key, skew)| TopologySpreadConstraint {
            topology_key: key.into(),
            max_skew: skew,
            when_unsatisfiable: SCHEDULE_ANYWAY.into(),
            ..Default::default()
        })
        .collect()
}

/// Filters with `DoNotSchedule` constraints, scores with `ScheduleAnyway` ones.
#[derive(Debug)]
pub struct PodTopologySpread {
    default_constraints: Vec<TopologySpreadConstraint>,
    system_defaulted: bool,
    /// What default selectors are built from, fed by `on_event`.
    sources: RwLock<SelectorSources>,
    /// The last PreFilter's counts, updated for the nodes changed since (see [`SpreadMemo`]).
    memo: Mutex<Option<SpreadMemo>>,
}

impl PodTopologySpread {
    /// Creates the plugin from its args (upstream `ValidatePodTopologySpreadArgs`).
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] for undecodable or invalid args.
    pub fn new(args: &serde_json::Value) -> Result<Self, RegistryError> {
        let args: PodTopologySpreadArgs = decode_args(NAME, args)?;
        let invalid = |message: String| RegistryError::InvalidArgs {
            plugin: NAME.into(),
            message,
        };
        let listed = args.default_constraints.unwrap_or_default();
        let system = match args.defaulting_type.as_deref().unwrap_or("System") {
            "System" => true,
            "List" => false,
            other => {
                return Err(invalid(format!(
                    "defaultingType: Unsupported value: {other:?}: supported values: \"List\", \"System\""
                )));
            }
        };
        if system && !listed.is_empty() {
            return Err(invalid(
                "defaultConstraints: Invalid value: when .defaultingType is \"System\", .defaultConstraints must be empty".into(),
            ));
        }
        let mut seen = HashSet::new();
        for (i, c) in listed.iter().enumerate() {
            if c.max_skew <= 0 {
                return Err(invalid(format!(
                    "defaultConstraints[{i}].maxSkew: Invalid value: {}: must be greater than zero",
                    c.max_skew
                )));
            }
            if c.topology_key.is_empty() {
                return Err(invalid(format!(
                    "defaultConstraints[{i}].topologyKey: Required value: can not be empty"
                )));
            }
            if c.when_unsatisfiable != DO_NOT_SCHEDULE && c.when_unsatisfiable != SCHEDULE_ANYWAY {
                return Err(invalid(format!(
                    "defaultConstraints[{i}].whenUnsatisfiable: Unsupported value: {:?}: supported values: \"DoNotSchedule\", \"ScheduleAnyway\"",
                    c.when_unsatisfiable
                )));
            }
            if c.label_selector.is_some() {
                return Err(invalid(format!(
                    "defaultConstraints[{i}].labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod"
                )));
            }
            if !seen.insert((c.topology_key.clone(), c.when_unsatisfiable.clone())) {
                return Err(invalid(format!(
                    "defaultConstraints[{i}]: Duplicate value: {{{:?}, {:?}}}",
                    c.topology_key, c.when_unsatisfiable
                )));
            }
        }
        Ok(PodTopologySpread {
            default_constraints: if system {
                system_default_constraints()
            } else {
                listed
            },
            system_defaulted: system,
            sources: RwLock::new(SelectorSources::default()),
            memo: Mutex::new(None),
        })
    }

    /// The selector default constraints get (upstream `helper.DefaultSelector`), `None` when
    /// the pod has constraints of its own, there are no default constraints, or nothing
    /// selects the pod: then no default constraint applies.
    fn default_selector(&self, pod: &PodInfo) -> Option<Selector> {
        if has_own_constraints(pod) || self.default_constraints.is_empty() {
            return None;
        }
        Some(self.sources.read().default_selector(pod)).filter(|s| !s.is_empty())
    }

    /// The pod's constraints with this `whenUnsatisfiable`, or the default constraints with
    /// `default_selector` when it has none (upstream `getConstraints` /
    /// `buildDefaultConstraints`).
    fn constraints(
        &self,
        pod: &PodInfo,
        action: &str,
        default_selector: Option<&Selector>,
    ) -> Result<Vec<Constraint>, String> {
        let own = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or(&[]);
        if !own.is_empty() {
            return compile(own, pod, action, None);
        }
        match default_selector {
            Some(selector) => compile(
                &self.default_constraints,
                pod,
                action,
                Some(selector.clone()),
            ),
            None => Ok(Vec::new()),
        }
    }
}

fn has_own_constraints(pod: &PodInfo) -> bool {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty())
}

/// The default selector PreFilter built (see [`DEFAULT_SELECTOR_KEY`]).
struct DefaultSelector(Selector);

/// One constraint, compiled for the incoming pod (upstream `topologySpreadConstraint`).
#[derive(Debug, Clone, PartialEq)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: Selector,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_node_taints: bool,
    /// Whether the incoming pod itself matches the selector (it adds 1 where it lands).
    self_match: bool,
}

/// Compiles the constraints with `action`; `selector` replaces theirs (default constraints).
fn compile(
    constraints: &[TopologySpreadConstraint],
    pod: &PodInfo,
    action: &str,
    selector: Option<Selector>,
) -> Result<Vec<Constraint>, String> {
    let labels = pod.pod.metadata.labels.as_ref();
    let mut out = Vec::new();
    for c in constraints
        .iter()
        .filter(|c| c.when_unsatisfiable == action)
    {
        // matchLabelKeys: the pod's values of these keys narrow the selector (the API server
        // may have merged them already; adding them again selects the same pods). Default
        // constraints get the default selector instead, as upstream, which replaces the
        // merged selector.
        let sel = match &selector {
            Some(s) => s.clone(),
            None => {
                let keys = c.match_label_keys.as_deref().unwrap_or(&[]);
                let pairs: Vec<(String, String)> = keys
                    .iter()
                    .filter_map(|k| Some((k.clone(), labels?.get(k)?.clone())))
                    .collect();
                let sel = Selector::new(c.label_selector.as_ref())?;
                if pairs.is_empty() {
                    sel
                } else {
                    sel.with_labels(pairs)
                }
            }
        };
        let self_match = sel.matches(labels);
        out.push(Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector: sel,
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            self_match,
        });
    }
    Ok(out)
}

/// The pod's `nodeSelector` and required node affinity (upstream `RequiredNodeAffinity`), what
/// `nodeAffinityPolicy: Honor` checks.
struct RequiredNodeAffinity {
    node_selector: Option<std::collections::BTreeMap<String, String>>,
    required: Option<NodeSelector>,
}

impl RequiredNodeAffinity {
    fn of(pod: &PodInfo) -> Self {
        let spec = pod.pod.spec.as_ref();
        RequiredNodeAffinity {
            node_selector: spec.and_then(|s| s.node_selector.clone()),
            required: spec
                .and_then(|s| s.affinity.as_ref())
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|na| {
                    na.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(|r| NodeSelector::new(&r.node_selector_terms)),
        }
    }

    fn matches(&self, node: &NodeInfo) -> bool {
        if let Some(sel) = &self.node_selector {
            let labels = node.node.metadata.labels.as_ref();
            if !sel
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            {
                return false;
            }
        }
        self.required
            .as_ref()
            .is_none_or(|r| r.matches(&node.node, &node.name))
    }
}

/// What decides which nodes count for a constraint (upstream `matchNodeInclusionPolicies`).
struct Inclusion {
    affinity: RequiredNodeAffinity,
    tolerations: Vec<Toleration>,
}

impl Inclusion {
    fn of(pod: &PodInfo) -> Self {
        Inclusion {
            affinity: RequiredNodeAffinity::of(pod),
            tolerations: pod
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default(),
        }
    }

    fn includes(&self, c: &Constraint, node: &NodeInfo) -> bool {
        if c.honor_node_affinity && !self.affinity.matches(node) {
            return false;
        }
        if c.honor_node_taints
            && find_untolerated_taint(node.taints(), &self.tolerations, |t| {
                t.effect == "NoSchedule" || t.effect == "NoExecute"
            })
            .is_some()
        {
            return false;
        }
        true
    }
}

fn node_label<'a>(node: &'a NodeInfo, key: &str) -> Option<&'a String> {
    node.node.metadata.labels.as_ref().and_then(|l| l.get(key))
}

/// Whether the node has every constraint's topology key (upstream
/// `nodeLabelsMatchSpreadConstraints`).
fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| node_label(node, &c.topology_key).is_some())
}

/// Pods on a node that the selector matches, in the namespace, not terminating (upstream
/// `countPodsMatchSelector`; an empty selector counts none).
fn count_matching(pods: &[Arc<PodInfo>], selector: &Selector, namespace: &str) -> i64 {
    if selector.is_empty() {
        return 0;
    }
    pods.iter()
        .filter(|p| {
            p.pod.metadata.deletion_timestamp.is_none()
                && p.key.namespace == namespace
                && selector.matches(p.pod.metadata.labels.as_ref())
        })
        .count() as i64
}

/// What PreFilter's counts depend on besides the nodes: pods with equal keys get equal counts.
#[derive(Debug, PartialEq)]
struct CountKey {
    namespace: String,
    /// Topology key, selector and node inclusion policies of each constraint.
    constraints: Vec<(String, Selector, bool, bool)>,
    node_selector: Option<std::collections::BTreeMap<String, String>>,
    required: Option<k8s_openapi::api::core::v1::NodeSelector>,
    tolerations: Vec<Toleration>,
}

impl CountKey {
    fn of(pod: &PodInfo, constraints: &[Constraint], inclusion: &Inclusion) -> Self {
        let spec = pod.pod.spec.as_ref();
        CountKey {
            namespace: pod.key.namespace.clone(),
            constraints: constraints
                .iter()
                .map(|c| {
                    (
                        c.topology_key.clone(),
                        c.selector.clone(),
                        c.honor_node_affinity,
                        c.honor_node_taints,
                    )
                })
                .collect(),
            node_selector: inclusion.affinity.node_selector.clone(),
            required: spec
                .and_then(|s| s.affinity.as_ref())
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|na| {
                    na.required_during_scheduling_ignored_during_execution
                        .clone()
                }),
            tolerations: inclusion.tolerations.clone(),
        }
    }
}

/// Per-domain counts of one [`CountKey`] and what each node contributed to them.
#[derive(Debug, Clone, Default)]
struct Counted {
    /// Constraints per node (the stride of `matches` and `eligible`).
    stride: usize,
    /// Per node: the address of the `NodeInfo` counted, to tell a node changed within the
    /// cycle (preemption's dry runs, nominated pods) from the counted one.
    ptrs: Vec<usize>,
    /// The same addresses as a set, so Filter's check reads neither the node's name nor a
    /// second cache line per node.
    counted: rustc_hash::FxHashSet<usize>,
    /// Per node and constraint: its matching pods.
    matches: Vec<i64>,
    /// Per node and constraint: whether the node counts for the constraint.
    eligible: Vec<bool>,
    /// Per constraint: matching pods per domain of the eligible nodes.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: eligible nodes per domain, to drop a domain with its last node.
    domain_nodes: Vec<HashMap<String, usize>>,
    /// Per constraint: the smallest count over its domains (upstream critical path).
    min: Vec<i64>,
}

impl Counted {
    fn new(nodes: &[Arc<NodeInfo>], s: &Inputs<'_>) -> Self {
        let stride = s.constraints.len();
        let mut c = Counted {
            stride,
            ptrs: vec![0; nodes.len()],
            matches: vec![0; nodes.len() * stride],
            eligible: vec![false; nodes.len() * stride],
            counted: rustc_hash::FxHashSet::default(),
            counts: vec![HashMap::new(); stride],
            domain_nodes: vec![HashMap::new(); stride],
            min: Vec::new(),
        };
        c.counted.reserve(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            c.add(i, n, s);
        }
        c.update_min();
        c
    }

    /// Counts node `i` as `node`.
    fn add(&mut self, i: usize, node: &Arc<NodeInfo>, s: &Inputs<'_>) {
        self.ptrs[i] = Arc::as_ptr(node) as usize;
        self.counted.insert(self.ptrs[i]);
        let all_keys = has_all_keys(node, s.constraints);
        for (k, c) in s.constraints.iter().enumerate() {
            let at = i * self.stride + k;
            let found = count_matching(&node.pods, &c.selector, s.namespace);
            self.matches[at] = found;
            self.eligible[at] = all_keys && s.inclusion.includes(c, node);
            if !self.eligible[at] {
                continue;
            }
            let value = node_label(node, &c.topology_key).expect("has_all_keys");
            match self.counts[k].get_mut(value) {
                Some(n) => *n += found,
                None => {
                    self.counts[k].insert(value.clone(), found);
                }
            }
            *self.domain_nodes[k].entry(value.clone()).or_default() += 1;
        }
    }

    /// Takes back what node `i`, counted as `node`, contributed.
    fn remove(&mut self, i: usize, node: &NodeInfo, s: &Inputs<'_>) {
        self.counted.remove(&self.ptrs[i]);
        for (k, c) in s.constraints.iter().enumerate() {
            let at = i * self.stride + k;
            if !self.eligible[at] {
                continue;
            }
            let value = node_label(node, &c.topology_key).expect("counted as eligible");
            if let Some(n) = self.counts[k].get_mut(value) {
                *n -= self.matches[at];
            }
            if let Some(n) = self.domain_nodes[k].get_mut(value) {
                *n -= 1;
                if *n == 0 {
                    self.domain_nodes[k].remove(value);
                    self.counts[k].remove(value);
                }
            }
        }
    }

    fn update_min(&mut self) {
        self.min = self
            .counts
            .iter()
            .map(|m| m.values().copied().min().unwrap_or(NO_MINIMUM))
            .collect();
    }
}

/// What the counts are computed from, borrowed for a count.
struct Inputs<'a> {
    constraints: &'a [Constraint],
    inclusion: &'a Inclusion,
    namespace: &'a str,
}

/// The counts of the last PreFilter with the node versions they were counted from, so the
/// next pod with the same [`CountKey`] (replicas of one workload) recounts only the nodes that
/// changed since, instead of every pod on every node.
#[derive(Debug)]
struct SpreadMemo {
    key: CountKey,
    /// The snapshot's name index when counted: a new one means nodes came or went.
    index: Arc<HashMap<String, usize>>,
    /// The nodes as counted (held, so their addresses in `counted.ptrs` stay theirs).
    nodes: Vec<Arc<NodeInfo>>,
    counted: Arc<Counted>,
}

impl PodTopologySpread {
    /// The counts for `key` over the snapshot's nodes: the memo's, brought up to date node by
    /// node, or counted afresh.
    fn count(&self, key: CountKey, snapshot: &Snapshot, s: &Inputs<'_>) -> Arc<Counted> {
        let mut memo = self.memo.lock();
        if let Some(m) = memo.as_mut()
            && m.key == key
            && Arc::ptr_eq(&m.index, &snapshot.index)
            && m.nodes.len() == snapshot.nodes.len()
        {
            let mut changed = false;
            for (i, (old, new)) in m.nodes.iter_mut().zip(&snapshot.nodes).enumerate() {
                if Arc::ptr_eq(old, new) {
                    continue;
                }
                // Copies the counts only when an earlier cycle's state still holds them.
                let counted = Arc::make_mut(&mut m.counted);
                counted.remove(i, old, s);
                counted.add(i, new, s);
                *old = new.clone();
                changed = true;
            }
            if changed {
                Arc::make_mut(&mut m.counted).update_min();
            }
            return m.counted.clone();
        }
        let counted = Arc::new(Counted::new(&snapshot.nodes, s));
        *memo = Some(SpreadMemo {
            key,
            index: snapshot.index.clone(),
            nodes: snapshot.nodes.clone(),
            counted: counted.clone(),
        });
        counted
    }
}

/// Filter's counts for one pod (upstream `preFilterState`).
struct PreFilterState {
    constraints: Vec<Constraint>,
    inclusion: Inclusion,
    namespace: String,
    /// The snapshot's node index, to find a node's counted contribution by name.
    index: Arc<HashMap<String, usize>>,
    counted: Arc<Counted>,
}

impl PreFilterState {
    /// Whether a node counts for a constraint.
    fn eligible(&self, node: &NodeInfo, c: &Constraint) -> bool {
        has_all_keys(node, &self.constraints) && self.inclusion.includes(c, node)
    }

    /// How many more matching pods the node has now than when it was counted, per constraint
    /// (`None` for a node Filter gets as it was counted).
    fn deltas(&self, node: &Arc<NodeInfo>) -> Option<Vec<i64>> {
        if self.counted.counted.contains(&(Arc::as_ptr(node) as usize)) {
            return None;
        }
        let &i = self.index.get(&node.name)?;
        let stride = self.counted.stride;
        Some(
            self.constraints
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    if !self.eligible(node, c) {
                        return 0;
                    }
                    count_matching(&node.pods, &c.selector, &self.namespace)
                        - self.counted.matches[i * stride + k]
                })
                .collect(),
        )
    }

    /// The global minimum for a constraint, 0 while there are fewer eligible domains than
    /// `minDomains` (upstream `minMatchNum`).
    fn min_match(&self, i: usize, domain: &str, delta: i64) -> i64 {
        let c = &self.constraints[i];
        let counts = &self.counted.counts[i];
        if (counts.len() as i64) < c.min_domains {
            return 0;
        }
        if delta == 0 {
            return self.counted.min[i];
        }
        counts
            .iter()
            .map(|(v, n)| if v == domain { n + delta } else { *n })
            .min()
            .unwrap_or(NO_MINIMUM)
    }
}

/// The snapshot's nodes for PreScore.
struct AllNodes(Arc<Vec<Arc<NodeInfo>>>);

/// Score's counts (upstream `preScoreState`).
struct PreScoreState {
    constraints: Vec<Constraint>,
    /// Per constraint: matching pods per domain of the feasible nodes (not for hostname).
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: `ln(domains + 2)`.
    weights: Vec<f64>,
    /// Feasible nodes lacking a topology key: scored 0.
    ignored: HashSet<String>,
    /// The same by position in PreScore's node list, for NormalizeScore.
    ignored_at: Vec<bool>,
    namespace: String,
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &str {
        NAME
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![
            ExtensionPoint::PreFilter,
            ExtensionPoint::Filter,
            ExtensionPoint::PreScore,
            ExtensionPoint::Score,
        ]
    }

    /// Matching pods come and go or change labels; nodes come, go or change labels and taints
    /// (upstream `EventsToRegister`).
    fn requeue_on(&self) -> Vec<ClusterEvent> {
        let all = vec![
            EventAction::Added,
            EventAction::Modified,
            EventAction::Deleted,
        ];
        vec![
            ClusterEvent {
                resource: ResourceKind::pod(),
                actions: all.clone(),
            },
            ClusterEvent {
                resource: ResourceKind::node(),
                actions: all,
            },
        ]
    }

    /// Default selectors are built from these kinds (upstream's listers), watched only when
    /// there are default constraints.
    fn subscriptions(&self) -> Vec<ResourceKind> {
        if self.default_constraints.is_empty() {
            Vec::new()
        } else {
            default_selector::kinds()
        }
    }

    fn on_event(&self, event: &ObjectEvent) {
        self.sources.write().on_event(event);
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> PreFilterResult {
        // Pods without constraints that nothing selects skip at once: no node is read. For a
        // pod without constraints, that costs a map lookup of its namespace's Services and of
        // its controller.
        let default_selector = self.default_selector(pod);
        if !has_own_constraints(pod) && default_selector.is_none() {
            return PreFilterResult {
                status: Status::skip(),
                node_names: None,
            };
        }
        // PreScore needs every node only for ScheduleAnyway constraints (or to report their
        // error); copying 5000 node handles per cycle is not free.
        let scoring = self.constraints(pod, SCHEDULE_ANYWAY, default_selector.as_ref());
        if !matches!(&scoring, Ok(c) if c.is_empty()) {
            state.write(ALL_NODES_KEY, AllNodes(Arc::new(snapshot.nodes.clone())));
        }
        let constraints = self.constraints(pod, DO_NOT_SCHEDULE, default_selector.as_ref());
        if let Some(selector) = default_selector {
            state.write(DEFAULT_SELECTOR_KEY, DefaultSelector(selector));
        }
        let constraints = match constraints {
            Ok(c) => c,
            Err(e) => {
                return PreFilterResult {
                    status: Status::error(e),
                    node_names: None,
                };
            }
        };
        if constraints.is_empty() {
            return PreFilterResult {
                status: Status::skip(),
                node_names: None,
            };
        }
        let inclusion = Inclusion::of(pod);
        let namespace = pod.key.namespace.clone();
        let key = CountKey::of(pod, &constraints, &inclusion);
        let inputs = Inputs {
            constraints: &constraints,
            inclusion: &inclusion,
            namespace: &namespace,
        };
        let counted = self.count(key, snapshot, &inputs);
        state.write(
            PRE_FILTER_STATE_KEY,
            PreFilterState {
                constraints,
                inclusion,
                namespace,
                index: snapshot.index.clone(),
                counted,
            },
        );
        PreFilterResult::default()
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_STATE_KEY) else {
            return vec![Status::success(); nodes.len()];
        };
        nodes
            .iter()
            .map(|node| {
                let deltas = s.deltas(node);
                for (i, c) in s.constraints.iter().enumerate() {
                    let Some(value) = node_label(node, &c.topology_key) else {
                        return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
                    };
                    let delta = deltas.as_ref().map_or(0, |d| d[i]);
                    let min = s.min_match(i, value, delta);
                    let matching = s.counted.counts[i].get(value).copied().unwrap_or(0) + delta;
                    let skew = matching + i64::from(c.self_match) - min;
                    if skew > c.max_skew {
                        return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
                    }
                }
                Status::success()
            })
            .collect()
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Status {
        let Some(AllNodes(all)) = state.read::<AllNodes>(ALL_NODES_KEY) else {
            // PreFilter found no constraint of any kind.
            return Status::skip();
        };
        let all = all.clone();
        if nodes.is_empty() || all.is_empty() {
            return Status::skip();
        }
        let default_selector = state
            .read::<DefaultSelector>(DEFAULT_SELECTOR_KEY)
            .map(|s| &s.0);
        let constraints = match self.constraints(pod, SCHEDULE_ANYWAY, default_selector) {
            Ok(c) if c.is_empty() => return Status::skip(),
            Ok(c) => c,
            Err(e) => return Status::error(e),
        };
        // Only the pod's own constraints need every key on a node; system defaults let nodes
        // without a zone label still spread by hostname.
        let require_all = has_own_constraints(pod) || !self.system_defaulted;
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        let mut ignored = HashSet::new();
        let mut ignored_at = Vec::with_capacity(nodes.len());
        for n in nodes {
            if require_all && !has_all_keys(n, &constraints) {
                ignored.insert(n.name.clone());
                ignored_at.push(true);
                continue;
            }
            ignored_at.push(false);
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME {
                    continue;
                }
                // A node without the key (possible only with system defaults) is in the
                // domain "", which counts for the weight as upstream's.
                let v = node_label(n, &c.topology_key).map_or("", String::as_str);
                counts[i].entry(v.to_string()).or_default();
            }
        }
        let scored = nodes.len() - ignored.len();
        let weights = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    scored
                } else {
                    counts[i].len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let inclusion = Inclusion::of(pod);
        let namespace = pod.key.namespace.clone();
        for n in all.iter() {
            if require_all && !has_all_keys(n, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !inclusion.includes(c, n) {
                    continue;
                }
                // Only domains of feasible nodes are counted; hostname is counted in Score.
                let v = node_label(n, &c.topology_key).map_or("", String::as_str);
                if let Some(total) = counts[i].get_mut(v) {
                    *total += count_matching(&n.pods, &c.selector, &namespace);
                }
            }
        }
        state.write(
            PRE_SCORE_STATE_KEY,
            PreScoreState {
                constraints,
                counts,
                weights,
                ignored,
                ignored_at,
                namespace,
            },
        );
        Status::success()
    }

    /// The matching pods the node's domains already hold, weighted per constraint; fewer is
    /// better, so NormalizeScore reverses it.
    fn score(
        &self,
        state: &CycleState,
        _pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) else {
            return Ok(vec![0; nodes.len()]);
        };
        Ok(nodes
            .iter()
            .map(|n| {
                if s.ignored.contains(&n.name) {
                    return 0;
                }
                let mut score = 0.0;
                for (i, c) in s.constraints.iter().enumerate() {
                    let Some(v) = node_label(n, &c.topology_key) else {
                        continue;
                    };
                    let count = if c.topology_key == LABEL_HOSTNAME {
                        count_matching(&n.pods, &c.selector, &s.namespace)
                    } else {
                        s.counts[i].get(v).copied().unwrap_or(0)
                    };
                    score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
                }
                score.round() as i64
            })
            .collect())
    }

    /// Upstream: `MaxNodeScore * (max + min - score) / max`; ignored nodes get 0.
    fn normalize_score(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) else {
            return Status::success();
        };
        let ignored = |i: usize| s.ignored_at.get(i).copied().unwrap_or(false);
        let mut min = i64::MAX;
        let mut max = 0;
        for (i, &score) in scores.iter().enumerate() {
            if ignored(i) {
                continue;
            }
            min = min.min(score);
            max = max.max(score);
        }
        for (i, score) in scores.iter_mut().enumerate() {
            *score = if ignored(i) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *score) / max
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests;
