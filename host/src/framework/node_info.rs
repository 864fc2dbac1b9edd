use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

/// Resource amounts as the scheduler counts them (upstream `framework.Resource`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Number of pods (for allocatable: the node's pod capacity).
    pub allowed_pods: i64,
    /// Extended and other scalar resources by name, e.g. `example.com/gpu`.
    pub scalar: BTreeMap<String, i64>,
}

/// A pod with what the scheduler derives from it once: its effective resource requests.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The pod as last seen (or as assumed by the scheduler).
    pub pod: Arc<Pod>,
    /// Namespace, name and uid.
    pub key: wasm_scheduler_sdk::PodRef,
    /// Effective requests: max(sum of containers, any init container) plus overhead.
    pub requests: Resource,
    /// CPU (millicores) and memory (bytes) requested with scoring defaults for containers that
    /// omit them (upstream `GetNonzeroRequests`), so scoring need not walk a node's pods.
    pub non_zero_requests: NonZeroRequests,
    /// Pod affinity and anti-affinity terms, compiled once (`None` without either), so
    /// InterPodAffinity need not compile existing pods' terms every cycle.
    pub affinity: Option<Arc<crate::plugins::inter_pod_affinity::PodAffinityTerms>>,
}

/// CPU and memory as Score counts them: a container without a cpu or memory request counts
/// the scoring defaults (upstream `NodeInfo.NonZeroRequested`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NonZeroRequests {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
}

impl NonZeroRequests {
    fn add(&mut self, other: NonZeroRequests) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
    }

    fn sub(&mut self, other: NonZeroRequests) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
    }
}

/// A node with the pods assigned to it and the resources they request
/// (upstream `framework.NodeInfo`).
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node object.
    pub node: Arc<Node>,
    /// The node's name.
    pub name: String,
    /// Pods bound or assumed on the node.
    pub pods: Vec<Arc<PodInfo>>,
    /// What the node offers.
    pub allocatable: Resource,
    /// What its pods request.
    pub requested: Resource,
    /// What its pods request with scoring defaults, kept in step with `requested` by
    /// [`NodeInfo::add_pod`] and [`NodeInfo::remove_pod`].
    pub non_zero_requested: NonZeroRequests,
    /// Bumped on every change, so snapshots can copy only changed nodes.
    pub generation: u64,
    /// `spec.unschedulable`, copied here so Filter need not read the node object (a cache
    /// miss per node on large clusters).
    pub unschedulable: bool,
    /// Whether `spec.taints` is non-empty (same reason).
    has_taints: bool,
    /// Pods on the node with pod affinity or anti-affinity (upstream `PodsWithAffinity`), so
    /// InterPodAffinity looks only at them.
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    /// Pods on the node with required pod anti-affinity (upstream
    /// `PodsWithRequiredAntiAffinity`).
    pub pods_with_required_anti_affinity: Vec<Arc<PodInfo>>,
    /// `status.images`: each name with the image's size in bytes (upstream `ImageStates`),
    /// shared until the node object's image list changes.
    pub images: Arc<Vec<(String, i64)>>,
    /// The node's index on the WIT boundary (0.2.0 and later), looked up once per NodeInfo, so batches
    /// to Wasm plugins do not hash every name per call.
    pub(crate) wasm_index: std::sync::OnceLock<u32>,
}

/// A consistent view of all nodes for one scheduling cycle. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// All nodes, in a stable order.
    pub nodes: Vec<Arc<NodeInfo>>,
    /// Index into `nodes` by node name; shared, so plugins can keep it for the cycle (a new
    /// one is built only when nodes come or go).
    pub index: Arc<std::collections::HashMap<String, usize>>,
    /// Indexes of the nodes with pods that have pod affinity or anti-affinity (upstream
    /// `HavePodsWithAffinityList`), kept by [`Snapshot::set_node`].
    pub with_affinity: std::collections::BTreeSet<usize>,
    /// Indexes of the nodes with pods that have required pod anti-affinity (upstream
    /// `HavePodsWithRequiredAntiAffinityList`).
    pub with_required_anti_affinity: std::collections::BTreeSet<usize>,
    /// Image name → how many nodes have it (upstream `ImageStateSummary.NumNodes`), kept by
    /// [`Snapshot::set_node`]; copied only when a node's image list changes.
    pub image_nodes: Arc<std::collections::HashMap<String, usize>>,
}

impl Snapshot {
    /// The node with this name, if it exists.
    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }
}

/// Resource names counted in dedicated fields of [`Resource`]; every other name is a scalar.
const CPU: &str = "cpu";
const MEMORY: &str = "memory";
const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
const PODS: &str = "pods";

impl Resource {
    /// Adds `other` to `self`, field by field.
    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pods += other.allowed_pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Subtracts `other` from `self`, field by field.
    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pods -= other.allowed_pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Field-wise maximum of `self` and `other`.
    pub fn max_with(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.allowed_pods = self.allowed_pods.max(other.allowed_pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// The amount of a resource by its Kubernetes name (`cpu` in millicores).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            PODS => self.allowed_pods,
            _ => self.scalar.get(name).copied().unwrap_or(0),
        }
    }
}

impl PodInfo {
    /// Derives the pod's key and effective requests once (counted as
    /// [`crate::plugins::compute_pod_requests`] does, upstream `resourcehelper.PodRequests`).
    pub fn new(pod: Arc<Pod>) -> Self {
        let meta = &pod.metadata;
        let key = wasm_scheduler_sdk::PodRef {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        };
        let requests = crate::plugins::compute_pod_requests(&pod);
        let non_zero = crate::plugins::compute_pod_non_zero_requests(&pod);
        let affinity = crate::plugins::inter_pod_affinity::PodAffinityTerms::of(&pod);
        PodInfo {
            affinity,
            pod,
            key,
            requests,
            non_zero_requests: NonZeroRequests {
                milli_cpu: non_zero.milli_cpu,
                memory: non_zero.memory,
            },
        }
    }

    /// `spec.priority`, 0 when unset.
    pub fn priority(&self) -> i32 {
        self.pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
    }

    /// `spec.schedulerName`, `default-scheduler` when unset (the API server defaults it).
    pub fn scheduler_name(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler")
    }

    /// `spec.nodeName`, if the pod is bound.
    pub fn node_name(&self) -> Option<&str> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }
}

impl NodeInfo {
    /// A node with no pods. Allocatable comes from `status.allocatable` (or `capacity`).
    pub fn new(node: Arc<Node>) -> Self {
        let name = node.metadata.name.clone().unwrap_or_default();
        let images = Arc::new(node_images(&node));
        let allocatable = crate::plugins::node_allocatable(&node);
        let spec = node.spec.as_ref();
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let has_taints = spec
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| !t.is_empty());
        NodeInfo {
            unschedulable,
            has_taints,
            node,
            name,
            pods: Vec::new(),
            allocatable,
            requested: Resource::default(),
            non_zero_requested: NonZeroRequests::default(),
            generation: 0,
            pods_with_affinity: Vec::new(),
            pods_with_required_anti_affinity: Vec::new(),
            images,
            wasm_index: std::sync::OnceLock::new(),
        }
    }

    /// Replaces the node object, keeping its pods.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let fresh = NodeInfo::new(node);
        self.node = fresh.node;
        self.allocatable = fresh.allocatable;
        self.unschedulable = fresh.unschedulable;
        self.has_taints = fresh.has_taints;
        if fresh.images != self.images {
            self.images = fresh.images;
        }
    }

    /// Adds a pod and its requests.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(pod.non_zero_requests);
        let (affinity, required_anti) = affinity_kinds(&pod.pod);
        if affinity {
            self.pods_with_affinity.push(pod.clone());
        }
        if required_anti {
            self.pods_with_required_anti_affinity.push(pod.clone());
        }
        self.pods.push(pod);
    }

    /// Removes the pod with this uid; returns whether it was there.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.key.uid == uid) else {
            return false;
        };
        let p = self.pods.swap_remove(i);
        self.pods_with_affinity.retain(|q| q.key.uid != uid);
        self.pods_with_required_anti_affinity
            .retain(|q| q.key.uid != uid);
        self.requested.sub(&p.requests);
        self.non_zero_requested.sub(p.non_zero_requests);
        true
    }

    /// The node's taints.
    pub fn taints(&self) -> &[k8s_openapi::api::core::v1::Taint] {
        if !self.has_taints {
            return &[];
        }
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or(&[])
    }
}

/// The names and sizes of a node's `status.images`.
fn node_images(node: &Node) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for image in node.status.iter().flat_map(|s| s.images.iter().flatten()) {
        for name in image.names.iter().flatten() {
            out.push((name.clone(), image.size_bytes.unwrap_or(0)));
        }
    }
    out
}

/// Whether a pod has pod affinity or anti-affinity, and whether it has required anti-affinity.
fn affinity_kinds(pod: &Pod) -> (bool, bool) {
    let Some(a) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return (false, false);
    };
    let required_anti = a.pod_anti_affinity.as_ref().is_some_and(|anti| {
        anti.required_during_scheduling_ignored_during_execution
            .as_ref()
            .is_some_and(|t| !t.is_empty())
    });
    (
        a.pod_affinity.is_some() || a.pod_anti_affinity.is_some(),
        required_anti,
    )
}

impl Snapshot {
    /// A snapshot of these nodes, indexed by name.
    pub fn from_nodes(nodes: Vec<Arc<NodeInfo>>) -> Self {
        let index = Arc::new(
            nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.clone(), i))
                .collect(),
        );
        let mut s = Snapshot {
            nodes,
            index,
            ..Default::default()
        };
        let mut images: std::collections::HashMap<String, usize> = Default::default();
        for i in 0..s.nodes.len() {
            s.index_affinity(i);
            for (name, _) in s.nodes[i].images.iter() {
                *images.entry(name.clone()).or_default() += 1;
            }
        }
        s.image_nodes = Arc::new(images);
        s
    }

    /// Replaces the node at `i` (same name), keeping the affinity and image indexes current.
    pub fn set_node(&mut self, i: usize, node: Arc<NodeInfo>) {
        let old = std::mem::replace(&mut self.nodes[i], node);
        if !Arc::ptr_eq(&old.images, &self.nodes[i].images) {
            let images = Arc::make_mut(&mut self.image_nodes);
            for (name, _) in old.images.iter() {
                if let Some(n) = images.get_mut(name) {
                    *n -= 1;
                    if *n == 0 {
                        images.remove(name);
                    }
                }
            }
            for (name, _) in self.nodes[i].images.iter() {
                *images.entry(name.clone()).or_default() += 1;
            }
        }
        self.index_affinity(i);
    }

    fn index_affinity(&mut self, i: usize) {
        let n = &self.nodes[i];
        if n.pods_with_affinity.is_empty() {
            self.with_affinity.remove(&i);
        } else {
            self.with_affinity.insert(i);
        }
        if n.pods_with_required_anti_affinity.is_empty() {
            self.with_required_anti_affinity.remove(&i);
        } else {
            self.with_required_anti_affinity.insert(i);
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(
            serde_yaml_ng::from_str(yaml).unwrap(),
        )))
    }

    #[test]
    fn requests_take_the_larger_of_containers_and_init_containers() {
        let p = pod(r#"
metadata: {name: p, namespace: d, uid: u1}
spec:
  containers:
  - {name: a, resources: {requests: {cpu: 100m, memory: 1Gi}}}
  - {name: b, resources: {requests: {cpu: 200m, example.com/gpu: "1"}}}
  initContainers:
  - {name: i, resources: {requests: {cpu: "1"}}}
  overhead: {cpu: 10m}
"#);
        assert_eq!(p.requests.milli_cpu, 1010);
        assert_eq!(p.requests.memory, 1 << 30);
        assert_eq!(p.requests.scalar["example.com/gpu"], 1);
        assert_eq!(p.key.uid, "u1");
    }

    #[test]
    fn sidecars_add_to_the_pod_requests() {
        let p = pod(r#"
metadata: {name: p}
spec:
  containers: [{name: a, resources: {requests: {cpu: 100m}}}]
  initContainers: [{name: s, restartPolicy: Always, resources: {requests: {cpu: 50m}}}]
"#);
        assert_eq!(p.requests.milli_cpu, 150);
    }

    #[test]
    fn node_info_tracks_pods_and_requests() {
        let node: Node = serde_yaml_ng::from_str(
            "metadata: {name: n}\nstatus: {allocatable: {cpu: '2', memory: 4Gi, pods: '110'}}",
        )
        .unwrap();
        let mut n = NodeInfo::new(Arc::new(node));
        assert_eq!(n.allocatable.milli_cpu, 2000);
        assert_eq!(n.allocatable.allowed_pods, 110);
        let p = pod(
            "metadata: {name: p, uid: u}\nspec: {containers: [{name: a, resources: {requests: {cpu: 500m}}}]}",
        );
        n.add_pod(p);
        let no_requests = pod("metadata: {name: q, uid: v}\nspec: {containers: [{name: a}]}");
        n.add_pod(no_requests);
        assert_eq!(n.requested.milli_cpu, 500);
        assert_eq!(n.pods.len(), 2);
        // The scoring sums count 100m and 200Mi for a container that requests nothing.
        assert_eq!(
            n.non_zero_requested,
            NonZeroRequests {
                milli_cpu: 600,
                memory: 2 * 200 * 1024 * 1024
            }
        );
        assert!(n.remove_pod("u"));
        assert!(n.remove_pod("v"));
        assert_eq!(n.requested, Resource::default());
        assert_eq!(n.non_zero_requested, NonZeroRequests::default());
    }
}
