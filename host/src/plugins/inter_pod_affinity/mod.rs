//! InterPodAffinity: `spec.affinity.podAffinity` and `podAntiAffinity` place a pod relative to
//! the pods already running in a topology domain (upstream
//! `pkg/scheduler/framework/plugins/interpodaffinity`).
//!
//! Filter checks the pod's required affinity (a matching pod must exist in the node's domain
//! of every term, unless no pod matches anywhere and the pod matches its own terms: the first
//! pod of a group), its required anti-affinity, and the required anti-affinity of the pods
//! already placed against the incoming pod. Score adds the weights of preferred terms, both
//! the pod's and those of existing pods (their required affinity counts
//! `hardPodAffinityWeight`).
//!
//! Counts come from the cycle's snapshot, so assumed pods count. A node changed within the
//! cycle (preemption's dry runs) is counted again, as upstream's `AddPod`/`RemovePod` do.
//! PreFilter keeps its counts for the next pod with the same terms, namespace and labels and
//! then recounts only the nodes changed since (`AffinityMemo`).
//!
//! `namespaceSelector` needs the namespaces' labels: the plugin subscribes to Namespaces and
//! keeps their labels (the cache then lists and watches them).
//!
//! Args (`InterPodAffinityArgs`): `hardPodAffinityWeight` (0..=100, default 1) and
//! `ignorePreferredTermsOfExistingPods` (default false).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;

use crate::framework::{
    ClusterEvent, CycleState, EventAction, ExtensionPoint, NodeInfo, ObjectEvent, Plugin, PodInfo,
    PreFilterResult, ResourceKind, Snapshot, Status,
};

use super::helpers::{MAX_NODE_SCORE, decode_args};
use super::label_selector::Selector;
use super::registry::RegistryError;

/// The plugin's name in the configuration.
pub const NAME: &str = "InterPodAffinity";
/// CycleState key of Filter's counts.
pub const PRE_FILTER_STATE_KEY: &str = "PreFilterInterPodAffinity";
/// CycleState key of Score's topology scores.
pub const PRE_SCORE_STATE_KEY: &str = "PreScoreInterPodAffinity";
/// CycleState key of the nodes PreScore reads (upstream reads them from the shared lister).
const SCORE_NODES_KEY: &str = "ScoreNodesInterPodAffinity";
/// Filter reason: the node's domain lacks a pod the pod's required affinity needs.
pub const ERR_REASON_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
/// Filter reason: the node's domain has a pod the pod's required anti-affinity rejects.
pub const ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't match pod anti-affinity rules";
/// Filter reason: a pod in the node's domain has required anti-affinity against this pod.
pub const ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// `pluginConfig` args (upstream `InterPodAffinityArgs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InterPodAffinityArgs {
    /// Ignored; accepted so upstream-shaped args parse.
    pub api_version: Option<String>,
    /// Ignored; accepted so upstream-shaped args parse.
    pub kind: Option<String>,
    /// Score weight of an existing pod's required affinity term the incoming pod matches.
    pub hard_pod_affinity_weight: Option<i32>,
    /// Score only with the incoming pod's preferred terms.
    pub ignore_preferred_terms_of_existing_pods: Option<bool>,
}

/// One pod (anti-)affinity term, compiled (upstream `framework.AffinityTerm`).
#[derive(Debug, Clone, PartialEq)]
pub struct AffinityTerm {
    /// Namespaces the term selects by name (the pod's own when neither names nor a selector
    /// are given).
    pub namespaces: HashSet<String>,
    /// Namespaces the term selects by labels (`Nothing` when not given).
    pub namespace_selector: Selector,
    /// Pods the term selects.
    pub selector: Selector,
    /// The node label whose value is the domain.
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(pod: &Pod, term: &PodAffinityTerm) -> Result<Self, String> {
        let own_namespace = || pod.metadata.namespace.clone().unwrap_or_default();
        let listed = term.namespaces.clone().unwrap_or_default();
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            HashSet::from([own_namespace()])
        } else {
            listed.into_iter().collect()
        };
        Ok(AffinityTerm {
            namespaces,
            namespace_selector: Selector::new(term.namespace_selector.as_ref())?,
            selector: Selector::new(term.label_selector.as_ref())?,
            topology_key: term.topology_key.clone(),
        })
    }

    /// Whether the term selects this pod; `namespace_labels` are the labels of the pod's
    /// namespace (upstream `AffinityTerm.Matches`).
    pub fn matches(
        &self,
        pod: &PodInfo,
        namespace_labels: Option<&BTreeMap<String, String>>,
    ) -> bool {
        (self.namespaces.contains(&pod.key.namespace)
            || self.namespace_selector.matches(namespace_labels))
            && self.selector.matches(pod.pod.metadata.labels.as_ref())
    }
}

/// A preferred term with its weight (upstream `framework.WeightedAffinityTerm`).
#[derive(Debug, Clone)]
pub struct WeightedTerm {
    /// The term.
    pub term: AffinityTerm,
    /// `weight` (1..=100).
    pub weight: i64,
}

/// A pod's compiled pod affinity and anti-affinity, kept in its [`PodInfo`] so existing pods'
/// terms are compiled once, not once per cycle.
#[derive(Debug, Clone, Default)]
pub struct PodAffinityTerms {
    /// `podAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_affinity: Vec<AffinityTerm>,
    /// `podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// `podAffinity.preferredDuringSchedulingIgnoredDuringExecution`.
    pub preferred_affinity: Vec<WeightedTerm>,
    /// `podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution`.
    pub preferred_anti_affinity: Vec<WeightedTerm>,
    /// Why a selector did not compile; such a pod's terms are all dropped.
    pub error: Option<String>,
}

impl PodAffinityTerms {
    /// The pod's terms, or `None` when it has neither pod affinity nor anti-affinity.
    pub fn of(pod: &Pod) -> Option<Arc<Self>> {
        let a = pod.spec.as_ref()?.affinity.as_ref()?;
        if a.pod_affinity.is_none() && a.pod_anti_affinity.is_none() {
            return None;
        }
        let required = |t: Option<&Vec<PodAffinityTerm>>| -> Result<Vec<AffinityTerm>, String> {
            t.into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(pod, t))
                .collect()
        };
        let preferred =
            |t: Option<&Vec<WeightedPodAffinityTerm>>| -> Result<Vec<WeightedTerm>, String> {
                t.into_iter()
                    .flatten()
                    .map(|w| {
                        Ok(WeightedTerm {
                            term: AffinityTerm::new(pod, &w.pod_affinity_term)?,
                            weight: i64::from(w.weight),
                        })
                    })
                    .collect()
            };
        let aff = a.pod_affinity.as_ref();
        let anti = a.pod_anti_affinity.as_ref();
        let built = (|| {
            Ok::<_, String>(PodAffinityTerms {
                required_affinity: required(aff.and_then(|p| {
                    p.required_during_scheduling_ignored_during_execution
                        .as_ref()
                }))?,
                required_anti_affinity: required(anti.and_then(|p| {
                    p.required_during_scheduling_ignored_during_execution
                        .as_ref()
                }))?,
                preferred_affinity: preferred(aff.and_then(|p| {
                    p.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                }))?,
                preferred_anti_affinity: preferred(anti.and_then(|p| {
                    p.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                }))?,
                error: None,
            })
        })();
        Some(Arc::new(built.unwrap_or_else(|e| PodAffinityTerms {
            error: Some(e),
            ..Default::default()
        })))
    }

    fn has_required(&self) -> bool {
        !self.required_affinity.is_empty() || !self.required_anti_affinity.is_empty()
    }

    fn has_preferred(&self) -> bool {
        !self.preferred_affinity.is_empty() || !self.preferred_anti_affinity.is_empty()
    }
}

/// Pods per topology domain: node label key → value → count. Only non-zero counts are kept,
/// as upstream deletes pairs that drop to 0: "no pod matches anywhere" is an empty map. Nested
/// so lookups by borrowed label strings need no allocation.
#[derive(Debug, Clone, Default)]
struct Counts(HashMap<String, HashMap<String, i64>>);

impl Counts {
    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str, i64)> {
        self.0
            .iter()
            .flat_map(|(k, m)| m.iter().map(move |(v, n)| (k.as_str(), v.as_str(), *n)))
    }
}

fn node_label<'a>(node: &'a NodeInfo, key: &str) -> Option<&'a String> {
    node.node.metadata.labels.as_ref().and_then(|l| l.get(key))
}

fn add(counts: &mut Counts, key: &str, value: &str, by: i64) {
    if by == 0 {
        return;
    }
    let values = match counts.0.get_mut(key) {
        Some(m) => m,
        None => counts.0.entry(key.to_string()).or_default(),
    };
    let n = match values.get_mut(value) {
        Some(n) => n,
        None => values.entry(value.to_string()).or_default(),
    };
    *n += by;
    if *n == 0 {
        values.remove(value);
        if values.is_empty() {
            counts.0.remove(key);
        }
    }
}

/// Filter's counts (upstream `preFilterState`).
#[derive(Debug, Clone, Default)]
struct FilterCounts {
    /// Domains with existing pods whose required anti-affinity selects the incoming pod.
    existing_anti: Counts,
    /// Domains with pods matching all of the pod's required affinity terms, per term key.
    affinity: Counts,
    /// Domains with pods matching one of the pod's required anti-affinity terms.
    anti: Counts,
}

impl FilterCounts {
    /// Adds (`by` = 1) or removes (-1) what one node's pods contribute.
    fn count_node(&mut self, node: &NodeInfo, s: &FilterInputs, by: i64) {
        // Most nodes hold nothing that counts: decide that without reading the node object.
        if node.pods_with_required_anti_affinity.is_empty()
            && (node.pods.is_empty() || !s.terms.has_required())
        {
            return;
        }
        let Some(labels) = node.node.metadata.labels.as_ref() else {
            return;
        };
        if labels.is_empty() {
            return;
        }
        for existing in &node.pods_with_required_anti_affinity {
            let Some(terms) = existing.affinity.as_ref() else {
                continue;
            };
            for t in &terms.required_anti_affinity {
                if let Some(v) = labels.get(&t.topology_key)
                    && t.matches(&s.pod, s.namespace_labels.as_ref())
                {
                    add(&mut self.existing_anti, &t.topology_key, v, by);
                }
            }
        }
        if !s.terms.has_required() {
            return;
        }
        for existing in &node.pods {
            // Namespace selectors of the incoming pod's terms were merged into names.
            if !s.terms.required_affinity.is_empty()
                && s.terms
                    .required_affinity
                    .iter()
                    .all(|t| t.matches(existing, None))
            {
                for t in &s.terms.required_affinity {
                    if let Some(v) = labels.get(&t.topology_key) {
                        add(&mut self.affinity, &t.topology_key, v, by);
                    }
                }
            }
            for t in &s.terms.required_anti_affinity {
                if let Some(v) = labels.get(&t.topology_key)
                    && t.matches(existing, None)
                {
                    add(&mut self.anti, &t.topology_key, v, by);
                }
            }
        }
    }
}

impl FilterCounts {
    /// Adds (`by` = 1) or takes back (-1) the counts of one node.
    fn merge(&mut self, other: &FilterCounts, by: i64) {
        for (mine, theirs) in [
            (&mut self.existing_anti, &other.existing_anti),
            (&mut self.affinity, &other.affinity),
            (&mut self.anti, &other.anti),
        ] {
            for (k, v, n) in theirs.iter() {
                add(mine, k, v, n * by);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.existing_anti.is_empty() && self.affinity.is_empty() && self.anti.is_empty()
    }

    /// What one node's pods contribute (`None`: nothing).
    fn of_node(node: &NodeInfo, s: &FilterInputs) -> Option<Arc<FilterCounts>> {
        let mut c = FilterCounts::default();
        c.count_node(node, s, 1);
        (!c.is_empty()).then(|| Arc::new(c))
    }
}

/// What Filter counts against: the incoming pod, its merged terms and its namespace's labels.
struct FilterInputs {
    pod: PodInfo,
    terms: Arc<PodAffinityTerms>,
    namespace_labels: Option<BTreeMap<String, String>>,
}

/// What Filter's counts depend on besides the nodes: pods with equal keys get equal counts.
#[derive(Debug, PartialEq)]
struct CountKey {
    namespace: String,
    labels: Option<BTreeMap<String, String>>,
    namespace_labels: Option<BTreeMap<String, String>>,
    required_affinity: Vec<AffinityTerm>,
    required_anti_affinity: Vec<AffinityTerm>,
}

impl CountKey {
    fn of(s: &FilterInputs) -> Self {
        CountKey {
            namespace: s.pod.key.namespace.clone(),
            labels: s.pod.pod.metadata.labels.clone(),
            namespace_labels: s.namespace_labels.clone(),
            required_affinity: s.terms.required_affinity.clone(),
            required_anti_affinity: s.terms.required_anti_affinity.clone(),
        }
    }
}

/// The counts of one [`CountKey`] and what each node contributed to them.
#[derive(Debug, Clone, Default)]
struct Counted {
    counts: FilterCounts,
    /// Per node: the address of the `NodeInfo` counted, to tell a node changed within the
    /// cycle (preemption's dry runs) from the counted one.
    ptrs: Vec<usize>,
    /// The same addresses as a set, so Filter's check reads neither the node's name nor a
    /// second cache line per node.
    counted: rustc_hash::FxHashSet<usize>,
    /// Per node: what it contributed (`None`: nothing).
    contributions: Vec<Option<Arc<FilterCounts>>>,
}

impl Counted {
    fn new(nodes: &[Arc<NodeInfo>], s: &FilterInputs) -> Self {
        let mut counts = FilterCounts::default();
        let contributions: Vec<_> = nodes
            .iter()
            .map(|n| {
                let c = FilterCounts::of_node(n, s);
                if let Some(c) = &c {
                    counts.merge(c, 1);
                }
                c
            })
            .collect();
        let ptrs: Vec<usize> = nodes.iter().map(|n| Arc::as_ptr(n) as usize).collect();
        Counted {
            counts,
            counted: ptrs.iter().copied().collect(),
            ptrs,
            contributions,
        }
    }

    /// Counts node `i` again, as `node`.
    fn recount(&mut self, i: usize, node: &Arc<NodeInfo>, s: &FilterInputs) {
        if let Some(old) = self.contributions[i].take() {
            self.counts.merge(&old, -1);
        }
        let new = FilterCounts::of_node(node, s);
        if let Some(c) = &new {
            self.counts.merge(c, 1);
        }
        self.contributions[i] = new;
        self.counted.remove(&self.ptrs[i]);
        self.ptrs[i] = Arc::as_ptr(node) as usize;
        self.counted.insert(self.ptrs[i]);
    }
}

/// The counts of the last PreFilter with the node versions they were counted from, so the
/// next pod with the same [`CountKey`] (replicas of one workload) recounts only the nodes that
/// changed since, instead of every pod on every node.
#[derive(Debug)]
struct AffinityMemo {
    key: CountKey,
    /// The snapshot's name index when counted: a new one means nodes came or went.
    index: Arc<HashMap<String, usize>>,
    /// The nodes as counted (held, so their addresses in `counted.ptrs` stay theirs).
    nodes: Vec<Arc<NodeInfo>>,
    counted: Arc<Counted>,
}

/// PreFilter's state.
struct PreFilterState {
    inputs: FilterInputs,
    /// The snapshot's node index, to find a node's counted contribution by name.
    index: Arc<HashMap<String, usize>>,
    counted: Arc<Counted>,
}

impl PreFilterState {
    /// The counts with a node changed within the cycle counted again (None: as counted).
    fn adjusted(&self, node: &Arc<NodeInfo>) -> Option<FilterCounts> {
        if self.counted.counted.contains(&(Arc::as_ptr(node) as usize)) {
            return None;
        }
        let i = self.index.get(&node.name).copied();
        let mut counts = self.counted.counts.clone();
        if let Some(old) = i.and_then(|i| self.counted.contributions.get(i)?.as_ref()) {
            counts.merge(old, -1);
        }
        counts.count_node(node, &self.inputs, 1);
        Some(counts)
    }
}

/// Upstream `satisfyPodAffinity`.
fn satisfies_affinity(s: &FilterInputs, counts: &FilterCounts, node: &NodeInfo) -> bool {
    let mut pods_exist = true;
    for t in &s.terms.required_affinity {
        let Some(v) = node_label(node, &t.topology_key) else {
            return false;
        };
        if counts.affinity.get(&t.topology_key, v) <= 0 {
            pods_exist = false;
        }
    }
    if pods_exist {
        return true;
    }
    // The first pod of a group: nothing matches anywhere yet, and the pod matches its own
    // terms, so it may go anywhere its terms' keys exist.
    counts.affinity.is_empty()
        && s.terms
            .required_affinity
            .iter()
            .all(|t| t.matches(&s.pod, s.namespace_labels.as_ref()))
}

/// Upstream `satisfyPodAntiAffinity`.
fn satisfies_anti_affinity(s: &FilterInputs, counts: &FilterCounts, node: &NodeInfo) -> bool {
    if counts.anti.is_empty() {
        return true;
    }
    s.terms.required_anti_affinity.iter().all(|t| {
        node_label(node, &t.topology_key).is_none_or(|v| counts.anti.get(&t.topology_key, v) <= 0)
    })
}

/// Upstream `satisfyExistingPodsAntiAffinity`.
fn satisfies_existing_anti_affinity(counts: &FilterCounts, node: &NodeInfo) -> bool {
    if counts.existing_anti.is_empty() {
        return true;
    }
    node.node
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| counts.existing_anti.get(k, v) <= 0)
}

/// The nodes PreScore looks at: all of them when the pod has preferred terms, else those
/// with pods that have affinity.
struct ScoreNodes {
    nodes: Vec<Arc<NodeInfo>>,
    all: bool,
}

/// Score's sums per domain (upstream `preScoreState.topologyScore`).
struct PreScoreState {
    /// Topology key → value → summed weights.
    topology_score: HashMap<String, HashMap<String, i64>>,
}

/// Places pods by the pods around them.
pub struct InterPodAffinity {
    hard_pod_affinity_weight: i64,
    ignore_preferred_terms_of_existing_pods: bool,
    /// Namespace name → labels, from the watch.
    namespaces: RwLock<HashMap<String, BTreeMap<String, String>>>,
    /// The last PreFilter's counts, updated for the nodes changed since (see [`AffinityMemo`]).
    memo: Mutex<Option<AffinityMemo>>,
}

impl std::fmt::Debug for InterPodAffinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterPodAffinity")
            .field("hard_pod_affinity_weight", &self.hard_pod_affinity_weight)
            .field(
                "ignore_preferred_terms_of_existing_pods",
                &self.ignore_preferred_terms_of_existing_pods,
            )
            .finish_non_exhaustive()
    }
}

impl InterPodAffinity {
    /// Creates the plugin from its args (upstream `ValidateInterPodAffinityArgs`).
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] for undecodable args or a weight outside 0..=100.
    pub fn new(args: &serde_json::Value) -> Result<Self, RegistryError> {
        let args: InterPodAffinityArgs = decode_args(NAME, args)?;
        let weight = args.hard_pod_affinity_weight.unwrap_or(1);
        if !(0..=100).contains(&weight) {
            return Err(RegistryError::InvalidArgs {
                plugin: NAME.into(),
                message: format!(
                    "hardPodAffinityWeight: Invalid value: {weight}: not in valid range [0-100]"
                ),
            });
        }
        Ok(InterPodAffinity {
            hard_pod_affinity_weight: i64::from(weight),
            ignore_preferred_terms_of_existing_pods: args
                .ignore_preferred_terms_of_existing_pods
                .unwrap_or(false),
            namespaces: RwLock::new(HashMap::new()),
            memo: Mutex::new(None),
        })
    }

    /// The Namespace kind the plugin watches.
    pub fn namespace_kind() -> ResourceKind {
        ResourceKind::new("v1", "Namespace")
    }

    /// Filter's counts for `key` over the snapshot's nodes: the memo's, brought up to date
    /// node by node, or counted afresh.
    fn count(&self, key: CountKey, snapshot: &Snapshot, s: &FilterInputs) -> Arc<Counted> {
        let mut memo = self.memo.lock();
        if let Some(m) = memo.as_mut()
            && m.key == key
            && Arc::ptr_eq(&m.index, &snapshot.index)
            && m.nodes.len() == snapshot.nodes.len()
        {
            for (i, (old, new)) in m.nodes.iter_mut().zip(&snapshot.nodes).enumerate() {
                if !Arc::ptr_eq(old, new) {
                    // Copies the counts only when an earlier cycle's state still holds them.
                    Arc::make_mut(&mut m.counted).recount(i, new, s);
                    *old = new.clone();
                }
            }
            return m.counted.clone();
        }
        let counted = Arc::new(Counted::new(&snapshot.nodes, s));
        *memo = Some(AffinityMemo {
            key,
            index: snapshot.index.clone(),
            nodes: snapshot.nodes.clone(),
            counted: counted.clone(),
        });
        counted
    }

    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces.read().get(namespace).cloned()
    }

    /// The pod's terms with their namespace selectors turned into namespace names (upstream
    /// `mergeAffinityTermNamespacesIfNotEmpty`); an empty selector (all namespaces) stays.
    fn merged(&self, terms: &Arc<PodAffinityTerms>, required: bool) -> Arc<PodAffinityTerms> {
        let needs = |t: &AffinityTerm| matches!(&t.namespace_selector, Selector::Requirements(r) if !r.is_empty());
        let any = if required {
            terms
                .required_affinity
                .iter()
                .chain(&terms.required_anti_affinity)
                .any(needs)
        } else {
            terms
                .preferred_affinity
                .iter()
                .chain(&terms.preferred_anti_affinity)
                .any(|w| needs(&w.term))
        };
        if !any {
            return terms.clone();
        }
        let namespaces = self.namespaces.read();
        let merge = |t: &mut AffinityTerm| {
            if !needs(t) {
                return;
            }
            for (name, labels) in namespaces.iter() {
                if t.namespace_selector.matches(Some(labels)) {
                    t.namespaces.insert(name.clone());
                }
            }
            t.namespace_selector = Selector::Nothing;
        };
        let mut out = (**terms).clone();
        out.required_affinity.iter_mut().for_each(merge);
        out.required_anti_affinity.iter_mut().for_each(merge);
        out.preferred_affinity
            .iter_mut()
            .for_each(|w| merge(&mut w.term));
        out.preferred_anti_affinity
            .iter_mut()
            .for_each(|w| merge(&mut w.term));
        Arc::new(out)
    }

    /// Adds what one existing pod contributes to the domain sums (upstream
    /// `processExistingPod`).
    fn process_existing_pod(
        &self,
        incoming: &PodInfo,
        terms: &PodAffinityTerms,
        namespace_labels: Option<&BTreeMap<String, String>>,
        existing: &PodInfo,
        node: &NodeInfo,
        scores: &mut HashMap<String, HashMap<String, i64>>,
    ) {
        let Some(labels) = node.node.metadata.labels.as_ref().filter(|l| !l.is_empty()) else {
            return;
        };
        let mut process = |t: &AffinityTerm,
                           weight: i64,
                           pod: &PodInfo,
                           ns: Option<&BTreeMap<String, String>>| {
            if let Some(v) = labels.get(&t.topology_key)
                && t.matches(pod, ns)
            {
                *scores
                    .entry(t.topology_key.clone())
                    .or_default()
                    .entry(v.clone())
                    .or_default() += weight;
            }
        };
        // The incoming pod's preferred terms against the existing pod (names already merged).
        for w in &terms.preferred_affinity {
            process(&w.term, w.weight, existing, None);
        }
        for w in &terms.preferred_anti_affinity {
            process(&w.term, -w.weight, existing, None);
        }
        // The existing pod's terms against the incoming pod.
        let Some(theirs) = existing.affinity.as_ref() else {
            return;
        };
        if self.hard_pod_affinity_weight > 0 {
            for t in &theirs.required_affinity {
                process(t, self.hard_pod_affinity_weight, incoming, namespace_labels);
            }
        }
        for w in &theirs.preferred_affinity {
            process(&w.term, w.weight, incoming, namespace_labels);
        }
        for w in &theirs.preferred_anti_affinity {
            process(&w.term, -w.weight, incoming, namespace_labels);
        }
    }
}

fn pod_terms(pod: &PodInfo) -> Arc<PodAffinityTerms> {
    pod.affinity.clone().unwrap_or_default()
}

impl Plugin for InterPodAffinity {
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

    /// Pods come, go or change labels; nodes come or change labels (upstream
    /// `EventsToRegister`).
    fn requeue_on(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent {
                resource: ResourceKind::pod(),
                actions: vec![
                    EventAction::Added,
                    EventAction::Modified,
                    EventAction::Deleted,
                ],
            },
            ClusterEvent {
                resource: ResourceKind::node(),
                actions: vec![EventAction::Added, EventAction::Modified],
            },
        ]
    }

    fn subscriptions(&self) -> Vec<ResourceKind> {
        vec![Self::namespace_kind()]
    }

    fn on_event(&self, event: &ObjectEvent) {
        if event.resource != Self::namespace_kind() {
            return;
        }
        let Ok(ns) = serde_json::from_str::<Namespace>(&event.object) else {
            return;
        };
        let name = ns.metadata.name.clone().unwrap_or_default();
        let mut namespaces = self.namespaces.write();
        if event.action == EventAction::Deleted {
            namespaces.remove(&name);
        } else {
            namespaces.insert(name, ns.metadata.labels.unwrap_or_default());
        }
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> PreFilterResult {
        let terms = pod_terms(pod);
        // PreScore's nodes: all when the pod has preferred terms, else those with affinity pods
        // (cheap: usually none).
        if terms.has_preferred() {
            state.write(
                SCORE_NODES_KEY,
                ScoreNodes {
                    nodes: snapshot.nodes.clone(),
                    all: true,
                },
            );
        } else if !self.ignore_preferred_terms_of_existing_pods {
            state.write(
                SCORE_NODES_KEY,
                ScoreNodes {
                    nodes: snapshot
                        .with_affinity
                        .iter()
                        .map(|&i| snapshot.nodes[i].clone())
                        .collect(),
                    all: false,
                },
            );
        }
        if let Some(e) = &terms.error {
            return PreFilterResult {
                status: Status::error(e.clone()),
                node_names: None,
            };
        }
        if !terms.has_required() && snapshot.with_required_anti_affinity.is_empty() {
            return PreFilterResult {
                status: Status::skip(),
                node_names: None,
            };
        }
        let inputs = FilterInputs {
            pod: pod.clone(),
            terms: self.merged(&terms, true),
            namespace_labels: self.namespace_labels(&pod.key.namespace),
        };
        let counted = self.count(CountKey::of(&inputs), snapshot, &inputs);
        state.write(
            PRE_FILTER_STATE_KEY,
            PreFilterState {
                inputs,
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
                let adjusted = s.adjusted(node);
                let counts = adjusted.as_ref().unwrap_or(&s.counted.counts);
                if !satisfies_affinity(&s.inputs, counts, node) {
                    return Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
                }
                if !satisfies_anti_affinity(&s.inputs, counts, node) {
                    return Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
                }
                if !satisfies_existing_anti_affinity(counts, node) {
                    return Status::unschedulable(
                        ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH,
                    );
                }
                Status::success()
            })
            .collect()
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Status {
        if nodes.is_empty() {
            return Status::skip();
        }
        let Some(ScoreNodes {
            nodes: all,
            all: every,
        }) = state.read::<ScoreNodes>(SCORE_NODES_KEY)
        else {
            // ignorePreferredTermsOfExistingPods and no preferred terms of its own.
            return Status::skip();
        };
        if all.is_empty() {
            return Status::skip();
        }
        let terms = pod_terms(pod);
        if terms.error.is_some() {
            return Status::skip();
        }
        let terms = self.merged(&terms, false);
        let namespace_labels = self.namespace_labels(&pod.key.namespace);
        let mut topology_score: HashMap<String, HashMap<String, i64>> = HashMap::new();
        for n in all.iter() {
            let pods = if *every {
                &n.pods
            } else {
                &n.pods_with_affinity
            };
            for existing in pods {
                self.process_existing_pod(
                    pod,
                    &terms,
                    namespace_labels.as_ref(),
                    existing,
                    n,
                    &mut topology_score,
                );
            }
        }
        if topology_score.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_STATE_KEY, PreScoreState { topology_score });
        Status::success()
    }

    /// The summed weights of the node's domains.
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
                s.topology_score
                    .iter()
                    .filter_map(|(key, values)| values.get(node_label(n, key)?))
                    .sum()
            })
            .collect())
    }

    /// Upstream: `MaxNodeScore * (score - min) / (max - min)`, 0 when all are equal.
    fn normalize_score(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        if state.read::<PreScoreState>(PRE_SCORE_STATE_KEY).is_none() {
            return Status::success();
        }
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests;
