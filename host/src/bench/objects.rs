//! The objects of the workloads, shaped like upstream scheduler_perf's templates
//! (`test/integration/scheduler_perf/templates`, `dra/templates`).

use serde_json::{Value, json};

/// The DRA driver of the benchmark's ResourceSlices (upstream's test driver).
pub const DRIVER: &str = "test-driver.cdi.k8s.io";
/// The DeviceClass every claim asks for.
pub const DEVICE_CLASS: &str = "test-class";
/// The ResourceClaimTemplate in each pod namespace.
pub const CLAIM_TEMPLATE: &str = "test-claim-template";
/// Namespace of the pods created before measuring.
pub const INIT_NAMESPACE: &str = "init";
/// Namespace of the measured pods.
pub const TEST_NAMESPACE: &str = "test";
/// The container image of every pod.
const IMAGE: &str = "registry.k8s.io/pause:3.10";

/// A namespace.
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// Node `i`: 4 cpu, 32Gi, 110 pods (upstream `node-default.yaml`).
pub fn node(i: usize) -> Value {
    let name = node_name(i);
    let resources = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True"}],
            "phase": "Running",
        },
    })
}

/// Node `i` with a zone label, one of three (upstream `labelNodePrepareStrategy` with
/// `topology.kubernetes.io/zone` values `moon-1..3`).
pub fn zoned_node(i: usize) -> Value {
    let mut n = node(i);
    n["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!(format!("moon-{}", i % 3 + 1));
    n
}

/// A plain pod (upstream `pod-default.yaml`) with either a zone spread constraint
/// (`pod-with-topology-spreading.yaml`: `maxSkew: 5`, `DoNotSchedule`, `color: blue`) or
/// required anti-affinity on the hostname (`pod-with-pod-anti-affinity.yaml`, `color: green`).
pub fn placed_pod(namespace: &str, name: &str, spread: bool) -> Value {
    let mut p = pod(namespace, name, PodClaim::None);
    if spread {
        p["metadata"]["labels"] = json!({"color": "blue"});
        p["spec"]["topologySpreadConstraints"] = json!([{
            "maxSkew": 5,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"color": "blue"}},
        }]);
    } else {
        p["metadata"]["labels"] = json!({"color": "green"});
        p["spec"]["affinity"] = json!({"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"color": "green"}},
                "topologyKey": "kubernetes.io/hostname",
            }],
        }});
    }
    p
}

/// The name of node `i`.
pub fn node_name(i: usize) -> String {
    format!("scheduler-perf-{i}")
}

/// The DeviceClass: the driver's devices, chosen by a CEL selector (upstream `deviceclass.yaml`).
pub fn device_class() -> Value {
    json!({
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": DEVICE_CLASS},
        "spec": {"selectors": [{"cel": {"expression": format!("device.driver == \"{DRIVER}\"")}}]},
    })
}

/// Node `i`'s ResourceSlice: one pool of `devices` devices (upstream `createResourceDriver`).
pub fn resource_slice(i: usize, devices: usize) -> Value {
    let node = node_name(i);
    let devices: Vec<Value> = (0..devices)
        .map(|d| {
            json!({
                "name": format!("device-{d}"),
                "attributes": {"model": {"string": "bench"}, "index": {"int": d}},
                "capacity": {"memory": {"value": "1Gi"}},
            })
        })
        .collect();
    json!({
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": format!("{node}-{DRIVER}")},
        "spec": {
            "driver": DRIVER,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    })
}

/// Node `i`'s partitionable devices (KEP-4815), as two slices of one pool: the counter set
/// (`memory`: `partitions` Gi), then `partitions` devices of 1Gi each and one whole device
/// consuming all of it. Only the partitions fit `partitions` claims; the whole device is
/// checked and refused once any partition is taken.
pub fn partitionable_slices(i: usize, partitions: usize) -> [Value; 2] {
    let node = node_name(i);
    let pool = json!({"name": node, "generation": 1, "resourceSliceCount": 2});
    let consumes = |gi: usize| json!([{"counterSet": "gpu", "counters": {"memory": {"value": format!("{gi}Gi")}}}]);
    let mut devices: Vec<Value> = (0..partitions)
        .map(|d| {
            json!({
                "name": format!("device-{d}"),
                "attributes": {"model": {"string": "bench"}, "index": {"int": d}},
                "capacity": {"memory": {"value": "1Gi"}},
                "consumesCounters": consumes(1),
            })
        })
        .collect();
    devices.push(json!({
        "name": "device-whole",
        "attributes": {"model": {"string": "bench"}, "index": {"int": partitions}},
        "capacity": {"memory": {"value": format!("{partitions}Gi")}},
        "consumesCounters": consumes(partitions),
    }));
    [
        json!({
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": format!("{node}-{DRIVER}-counters")},
            "spec": {
                "driver": DRIVER,
                "nodeName": node,
                "pool": pool,
                "sharedCounters": [{"name": "gpu", "counters": {"memory": {"value": format!("{partitions}Gi")}}}],
            },
        }),
        json!({
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": format!("{node}-{DRIVER}")},
            "spec": {"driver": DRIVER, "nodeName": node, "pool": pool, "devices": devices},
        }),
    ]
}

/// The claim spec: one device of [`DEVICE_CLASS`].
fn claim_spec() -> Value {
    json!({"devices": {"requests": [{"name": "req-0", "exactly": {"deviceClassName": DEVICE_CLASS}}]}})
}

/// The ResourceClaimTemplate of a namespace (upstream `resourceclaimtemplate.yaml`).
pub fn claim_template(namespace: &str) -> Value {
    json!({
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": CLAIM_TEMPLATE, "namespace": namespace},
        "spec": {"spec": claim_spec()},
    })
}

/// A ResourceClaim for pods to share (upstream `resourceclaim.yaml`).
pub fn claim(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": claim_spec(),
    })
}

/// The PriorityClass of the preemption workloads' init pods.
pub const LOW_PRIORITY: &str = "low-priority";
/// The PriorityClass of their measured pods.
pub const HIGH_PRIORITY: &str = "high-priority";

/// The preemption workloads' classes: priority 1 and 10 (the values upstream's
/// `pod-low-priority.yaml` / `pod-high-priority.yaml` set directly; here the API server's
/// Priority admission sets them from the class).
pub fn priority_classes() -> Vec<Value> {
    [(LOW_PRIORITY, 1), (HIGH_PRIORITY, 10)]
        .into_iter()
        .map(|(name, value)| {
            json!({
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
            })
        })
        .collect()
}

/// A pod of the preemption workloads: low priority with 900m cpu (4 fill a node), or high
/// priority with 3 cpu (upstream `pod-low-priority.yaml`, `pod-high-priority.yaml`). Victims
/// have a grace period of 0: no kubelet runs to stop them, so they go at once.
pub fn priority_pod(namespace: &str, name: &str, high: bool) -> Value {
    let (class, cpu) = if high {
        (HIGH_PRIORITY, "3")
    } else {
        (LOW_PRIORITY, "900m")
    };
    let r = json!({"cpu": cpu, "memory": "500Mi"});
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "priorityClassName": class,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "pause", "image": IMAGE, "resources": {"requests": r, "limits": r}}],
        },
    })
}

/// What a pod asks for.
#[derive(Debug, Clone, Copy)]
pub enum PodClaim<'a> {
    /// 100m cpu and 500Mi memory, no claim (upstream `pod-default.yaml`).
    None,
    /// A claim generated from [`CLAIM_TEMPLATE`] (upstream `pod-with-claim-template.yaml`).
    Template,
    /// The named, shared ResourceClaim.
    Shared(&'a str),
}

/// A pod.
pub fn pod(namespace: &str, name: &str, claim: PodClaim<'_>) -> Value {
    let mut container = json!({"name": "pause", "image": IMAGE});
    let mut spec = json!({});
    match claim {
        PodClaim::None => {
            let r = json!({"cpu": "100m", "memory": "500Mi"});
            container["resources"] = json!({"requests": r, "limits": r});
        }
        PodClaim::Template => {
            container["resources"] = json!({"claims": [{"name": "resource"}]});
            spec["resourceClaims"] =
                json!([{"name": "resource", "resourceClaimTemplateName": CLAIM_TEMPLATE}]);
        }
        PodClaim::Shared(claim) => {
            container["resources"] = json!({"claims": [{"name": "resource"}]});
            spec["resourceClaims"] = json!([{"name": "resource", "resourceClaimName": claim}]);
        }
    }
    spec["containers"] = json!([container]);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_deserialize_as_their_kubernetes_types() {
        use k8s_openapi::api::core::v1::{Node, Pod};
        use k8s_openapi::api::resource::v1::{
            DeviceClass, ResourceClaim, ResourceClaimTemplate, ResourceSlice,
        };
        serde_json::from_value::<Node>(node(3)).unwrap();
        serde_json::from_value::<DeviceClass>(device_class()).unwrap();
        let slice: ResourceSlice = serde_json::from_value(resource_slice(3, 10)).unwrap();
        assert_eq!(slice.spec.devices.map(|d| d.len()), Some(10));
        serde_json::from_value::<ResourceClaimTemplate>(claim_template("test")).unwrap();
        serde_json::from_value::<ResourceClaim>(claim("test", "c")).unwrap();
        serde_json::from_value::<Node>(zoned_node(3)).unwrap();
        for spread in [true, false] {
            serde_json::from_value::<Pod>(placed_pod("test", "p", spread)).unwrap();
        }
        for c in [PodClaim::None, PodClaim::Template, PodClaim::Shared("c")] {
            serde_json::from_value::<Pod>(pod("test", "p", c)).unwrap();
        }
    }
}
