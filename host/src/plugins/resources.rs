//! What a pod requests and what a node offers, as the scheduler counts them
//! (upstream `k8s.io/component-helpers/resource.PodRequests` and `framework.NodeInfo.SetNode`).
//!
//! Quantities are summed exactly (in nano-units) and rounded up once per resource, so a pod of
//! two containers asking for `0.5` byte each requests 1 byte, as upstream.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::framework::Resource;
use kube_quantity::{self as quantity, NANOS_PER_UNIT};

/// A quantity in nano-units; one that does not parse counts as zero (the API server rejects it).
fn parse_nanos(q: &Quantity) -> i128 {
    quantity::Quantity::parse_json(&q.0).map_or(0, |q| q.nanos())
}

/// Resource name of CPU (counted in millicores).
pub const CPU: &str = "cpu";
/// Resource name of memory (bytes).
pub const MEMORY: &str = "memory";
/// Resource name of ephemeral storage (bytes).
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
/// Resource name of the pod count a node allows.
pub const PODS: &str = "pods";

/// CPU a container without a CPU request counts as when scoring, in millicores
/// (upstream `schedutil.DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory a container without a memory request counts as when scoring, in bytes
/// (upstream `schedutil.DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// True for resources the scheduler counts by name in [`Resource::scalar`]: extended resources
/// (`example.com/gpu`), prefixed native resources (`kubernetes.io/...`), hugepages and
/// attachable volumes (upstream `schedutil.IsScalarResourceName`).
pub fn is_scalar_resource_name(name: &str) -> bool {
    (name.contains('/') && !name.starts_with("requests."))
        || name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
}

/// True for extended resources: outside the `kubernetes.io/` namespace
/// (upstream `v1helper.IsExtendedResourceName`).
pub fn is_extended_resource_name(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// The effective requests of a pod, as NodeResourcesFit's Filter and the cache count them:
/// the larger of (app containers + sidecars) and each init container (plus the sidecars
/// started before it); pod-level `spec.resources.requests` replace cpu and memory; then
/// `spec.overhead` is added. Unparsable quantities count as zero (the API server rejects them).
pub fn compute_pod_requests(pod: &Pod) -> Resource {
    pod.spec
        .as_ref()
        .map(|spec| aggregate(spec, false).finish())
        .unwrap_or_default()
}

/// The requests NodeResourcesFit's Score uses: as [`compute_pod_requests`], but a container
/// without a cpu or memory request counts [`DEFAULT_MILLI_CPU_REQUEST`] and
/// [`DEFAULT_MEMORY_REQUEST`], so pods without requests still spread
/// (upstream `NonMissingContainerRequests`).
pub fn compute_pod_non_zero_requests(pod: &Pod) -> Resource {
    pod.spec
        .as_ref()
        .map(|spec| aggregate(spec, true).finish())
        .unwrap_or_default()
}

/// What a node offers: `status.allocatable` (the API server defaults it to `capacity`, so a
/// node with only `capacity` uses that). `allowed_pods` is the `pods` entry.
pub fn node_allocatable(node: &Node) -> Resource {
    let Some(status) = node.status.as_ref() else {
        return Resource::default();
    };
    let Some(list) = status.allocatable.as_ref().or(status.capacity.as_ref()) else {
        return Resource::default();
    };
    let mut acc = Nanos::default();
    acc.add_list(list, true);
    acc.finish()
}

/// Resource amounts in nano-units, so that sums round once.
#[derive(Default, Clone)]
struct Nanos {
    cpu: i128,
    memory: i128,
    ephemeral_storage: i128,
    pods: i128,
    scalar: BTreeMap<String, i128>,
}

impl Nanos {
    fn add_list(&mut self, list: &BTreeMap<String, Quantity>, with_pods: bool) {
        for (name, q) in list {
            let v = parse_nanos(q);
            match name.as_str() {
                CPU => self.cpu += v,
                MEMORY => self.memory += v,
                EPHEMERAL_STORAGE => self.ephemeral_storage += v,
                PODS if with_pods => self.pods += v,
                other if is_scalar_resource_name(other) => {
                    *self.scalar.entry(name.clone()).or_default() += v
                }
                _ => {}
            }
        }
    }

    fn add(&mut self, other: &Nanos) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    fn max_with(&mut self, other: &Nanos) {
        self.cpu = self.cpu.max(other.cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    fn finish(self) -> Resource {
        Resource {
            milli_cpu: quantity::nanos_to_milli(self.cpu),
            memory: quantity::nanos_to_value(self.memory),
            ephemeral_storage: quantity::nanos_to_value(self.ephemeral_storage),
            allowed_pods: quantity::nanos_to_value(self.pods),
            scalar: self
                .scalar
                .into_iter()
                .map(|(k, v)| (k, quantity::nanos_to_value(v)))
                .collect(),
        }
    }
}

fn container_requests(c: &Container, non_zero: bool) -> Nanos {
    let mut acc = Nanos::default();
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    if let Some(list) = requests {
        acc.add_list(list, false);
    }
    if non_zero {
        // Only a missing entry gets the default; an explicit "0" stays zero, as upstream.
        if !requests.is_some_and(|l| l.contains_key(CPU)) {
            acc.cpu = i128::from(DEFAULT_MILLI_CPU_REQUEST) * (NANOS_PER_UNIT / 1000);
        }
        if !requests.is_some_and(|l| l.contains_key(MEMORY)) {
            acc.memory = i128::from(DEFAULT_MEMORY_REQUEST) * NANOS_PER_UNIT;
        }
    }
    acc
}

fn aggregate(spec: &PodSpec, non_zero: bool) -> Nanos {
    let mut reqs = Nanos::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_zero));
    }
    // Init containers run one after another, each next to the sidecars (restartable init
    // containers) started before it; sidecars keep running next to the app containers.
    let mut sidecars = Nanos::default();
    let mut init_max = Nanos::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            sidecars.add(&r);
            init_max.max_with(&sidecars);
        } else {
            let mut running = r;
            running.add(&sidecars);
            init_max.max_with(&running);
        }
    }
    reqs.max_with(&init_max);
    if let Some(pod_level) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        // Pod-level requests (KEP-2837) replace the container sum for the resources they cover.
        for (name, q) in pod_level {
            let v = parse_nanos(q);
            match name.as_str() {
                CPU => reqs.cpu = v,
                MEMORY => reqs.memory = v,
                _ => {}
            }
        }
    }
    if let Some(overhead) = &spec.overhead {
        let mut o = Nanos::default();
        o.add_list(overhead, false);
        reqs.add(&o);
    }
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn requests_take_the_larger_of_the_container_sum_and_any_init_container() {
        // Upstream's example: containers 2+1 cpu, 1G+1G; init containers 2 cpu/1G and 2 cpu/3G.
        let p = pod(r#"
spec:
  containers:
  - {name: c1, resources: {requests: {cpu: "2", memory: 1G}}}
  - {name: c2, resources: {requests: {cpu: "1", memory: 1G}}}
  initContainers:
  - {name: i1, resources: {requests: {cpu: "2", memory: 1G}}}
  - {name: i2, resources: {requests: {cpu: "2", memory: 3G}}}
"#);
        let r = compute_pod_requests(&p);
        assert_eq!(r.milli_cpu, 3000);
        assert_eq!(r.memory, 3_000_000_000);
    }

    #[test]
    fn sidecars_add_to_the_app_containers_and_to_later_init_containers() {
        let p = pod(r#"
spec:
  containers: [{name: a, resources: {requests: {cpu: 100m}}}]
  initContainers:
  - {name: s, restartPolicy: Always, resources: {requests: {cpu: 50m}}}
  - {name: i, resources: {requests: {cpu: 120m}}}
"#);
        // app + sidecar = 150m; init container i runs next to the sidecar: 170m.
        assert_eq!(compute_pod_requests(&p).milli_cpu, 170);
    }

    #[test]
    fn overhead_and_extended_resources_are_counted() {
        let p = pod(r#"
spec:
  containers:
  - {name: a, resources: {requests: {cpu: 100m, example.com/gpu: "2", hugepages-2Mi: 4Mi, ephemeral-storage: 1Gi}}}
  overhead: {cpu: 10m, memory: 1Mi}
"#);
        let r = compute_pod_requests(&p);
        assert_eq!(r.milli_cpu, 110);
        assert_eq!(r.memory, 1 << 20);
        assert_eq!(r.ephemeral_storage, 1 << 30);
        assert_eq!(r.scalar["example.com/gpu"], 2);
        assert_eq!(r.scalar["hugepages-2Mi"], 4 << 20);
        assert_eq!(r.allowed_pods, 0);
    }

    #[test]
    fn pod_level_requests_replace_the_container_sum() {
        let p = pod(r#"
spec:
  resources: {requests: {cpu: "1"}}
  containers: [{name: a, resources: {requests: {cpu: 100m, memory: 1Mi}}}]
"#);
        let r = compute_pod_requests(&p);
        assert_eq!(r.milli_cpu, 1000);
        assert_eq!(r.memory, 1 << 20);
    }

    #[test]
    fn sub_unit_quantities_round_once_after_summing() {
        let p = pod(r#"
spec:
  containers:
  - {name: a, resources: {requests: {memory: "0.5"}}}
  - {name: b, resources: {requests: {memory: "0.5"}}}
"#);
        assert_eq!(compute_pod_requests(&p).memory, 1);
    }

    #[test]
    fn non_zero_requests_default_missing_cpu_and_memory_per_container() {
        let p = pod(r#"
spec:
  containers:
  - {name: a}
  - {name: b, resources: {requests: {cpu: "0", memory: 1Gi}}}
"#);
        let r = compute_pod_non_zero_requests(&p);
        assert_eq!(r.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.memory, DEFAULT_MEMORY_REQUEST + (1 << 30));
        assert_eq!(compute_pod_requests(&p).milli_cpu, 0);
    }

    #[test]
    fn node_allocatable_reads_allocatable_and_falls_back_to_capacity() {
        let n: Node = serde_yaml_ng::from_str(
            "status: {capacity: {cpu: '8', memory: 32Gi, pods: '110'}, allocatable: {cpu: 7500m, memory: 30Gi, pods: '110', example.com/gpu: '4', foo: '1'}}",
        )
        .unwrap();
        let r = node_allocatable(&n);
        assert_eq!(
            (r.milli_cpu, r.memory, r.allowed_pods),
            (7500, 30 << 30, 110)
        );
        assert_eq!(
            r.scalar.len(),
            1,
            "unprefixed unknown names are not counted"
        );
        let only_capacity: Node =
            serde_yaml_ng::from_str("status: {capacity: {cpu: '2'}}").unwrap();
        assert_eq!(node_allocatable(&only_capacity).milli_cpu, 2000);
    }

    #[test]
    fn scalar_names_follow_upstream() {
        assert!(is_scalar_resource_name("example.com/gpu"));
        assert!(is_scalar_resource_name("kubernetes.io/batch"));
        assert!(is_scalar_resource_name("hugepages-1Gi"));
        assert!(!is_scalar_resource_name("requests.example.com/gpu"));
        assert!(!is_scalar_resource_name("foo"));
        assert!(is_extended_resource_name("example.com/gpu"));
        assert!(!is_extended_resource_name("kubernetes.io/batch"));
    }
}
