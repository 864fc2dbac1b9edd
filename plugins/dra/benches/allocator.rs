//! The DRA allocator for one pod over 500 nodes, through the plugin's public API: the plugin is
//! fed the cluster as events (500 nodes, each with a ResourceSlice of 10 devices, a DeviceClass
//! with a CEL selector), then PreFilter and Filter run for a pod whose claim asks for one device.
//!
//! - `pre_filter+filter/500-nodes-empty`: every device free;
//! - `pre_filter+filter/500-nodes-half-full`: 5 of each node's 10 devices allocated to other
//!   claims, as in the steady-state workload. Repeated for the same claims on an unchanged
//!   cluster, these reuse the plugin's cached per-node verdicts (as pods from one template do);
//! - `…/cold`: the same with the verdicts invalidated before each iteration (a DeviceClass
//!   event, parsed too), i.e. the allocator search on every node;
//! - `pre_filter+filter+reserve/500-nodes-half-full`: the whole scheduling cycle's DRA work;
//! - `on_event/pod`, `on_event/claim`: one pushed change of a pod or of an allocated claim (the
//!   plugin parses every change of its subscribed kinds, about ten per scheduled DRA pod).
//!
//! `cargo bench -p dra-plugin --bench allocator`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dra_plugin::DraPlugin;
use serde_json::{Value, json};
use wasm_scheduler_sdk::{EventAction, ObjectEvent, Plugin, PodRef, ResourceKind};

const NODES: usize = 500;
const DEVICES: usize = 10;
const DRIVER: &str = "test-driver.cdi.k8s.io";

fn node_name(i: usize) -> String {
    format!("node-{i}")
}

fn added(resource: ResourceKind, object: Value) -> ObjectEvent {
    ObjectEvent {
        action: EventAction::Added,
        resource,
        object: object.to_string(),
    }
}

/// A claim for one device of the class; allocated to `device` on `node` if given.
fn claim(name: &str, uid: &str, allocated: Option<(usize, usize)>) -> Value {
    let mut c = json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "test", "uid": uid, "resourceVersion": "1"},
        "spec": {"devices": {"requests": [{"name": "req-0", "exactly": {"deviceClassName": "test-class"}}]}},
    });
    if let Some((node, device)) = allocated {
        c["status"] = json!({"allocation": {
            "devices": {"results": [{"request": "req-0", "driver": DRIVER, "pool": node_name(node), "device": format!("device-{device}")}]},
            "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name(node)]}]}]},
        }});
    }
    c
}

/// A plugin fed the cluster; `allocated_per_node` devices of each node are taken.
fn class_event() -> ObjectEvent {
    added(
        ResourceKind::device_class(),
        json!({"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "test-class"},
               "spec": {"selectors": [{"cel": {"expression": format!("device.driver == \"{DRIVER}\"")}}]}}),
    )
}

fn plugin(allocated_per_node: usize) -> (DraPlugin, PodRef, Vec<String>) {
    let mut p = DraPlugin::new("{}").expect("the plugin takes empty args");
    p.on_event(&class_event());
    for i in 0..NODES {
        let name = node_name(i);
        p.on_event(&added(
            ResourceKind::node(),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}),
        ));
        let devices: Vec<Value> = (0..DEVICES)
            .map(|d| json!({"name": format!("device-{d}"), "attributes": {"model": {"string": "bench"}, "index": {"int": d}},
                            "capacity": {"memory": {"value": "1Gi"}}}))
            .collect();
        p.on_event(&added(
            ResourceKind::resource_slice(),
            json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": format!("{name}-slice")},
                   "spec": {"driver": DRIVER, "nodeName": name, "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
                            "devices": devices}}),
        ));
        for d in 0..allocated_per_node {
            let n = format!("taken-{i}-{d}");
            p.on_event(&added(
                ResourceKind::resource_claim(),
                claim(&n, &format!("uid-{n}"), Some((i, d))),
            ));
        }
    }
    p.on_event(&added(
        ResourceKind::resource_claim(),
        claim("claim-0", "uid-claim-0", None),
    ));
    let pod = PodRef {
        namespace: "test".into(),
        name: "pod-0".into(),
        uid: "uid-pod-0".into(),
    };
    p.on_event(&added(
        ResourceKind::pod(),
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid, "resourceVersion": "1"},
               "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10", "resources": {"claims": [{"name": "resource"}]}}],
                        "resourceClaims": [{"name": "resource", "resourceClaimName": "claim-0"}]}}),
    ));
    (p, pod, (0..NODES).map(node_name).collect())
}

fn bench(c: &mut Criterion) {
    for (label, taken) in [("500-nodes-empty", 0), ("500-nodes-half-full", DEVICES / 2)] {
        let (mut p, pod, nodes) = plugin(taken);
        // The allocator finds a device on every node.
        let pre = p.pre_filter(&pod);
        assert!(pre.status.is_success(), "{:?}", pre.status);
        assert!(p.filter(&pod, &nodes).iter().all(|s| s.is_success()));
        c.bench_function(&format!("pre_filter+filter/{label}"), |b| {
            b.iter(|| {
                black_box(p.pre_filter(black_box(&pod)));
                black_box(p.filter(black_box(&pod), black_box(&nodes)))
            })
        });
        let class = class_event();
        c.bench_function(&format!("pre_filter+filter/{label}/cold"), |b| {
            b.iter(|| {
                p.on_event(&class);
                black_box(p.pre_filter(black_box(&pod)));
                black_box(p.filter(black_box(&pod), black_box(&nodes)))
            })
        });
    }
    let (mut p, pod, nodes) = plugin(DEVICES / 2);
    c.bench_function("pre_filter+filter+reserve/500-nodes-half-full", |b| {
        b.iter(|| {
            black_box(p.pre_filter(&pod));
            black_box(p.filter(&pod, &nodes));
            let intents = p
                .reserve(&pod, &nodes[0])
                .expect("a device is free on node-0");
            // Undo, so every iteration allocates from the same state.
            p.unreserve(&pod, &nodes[0]);
            black_box(intents)
        })
    });
}

/// A pod as the API server returns it (defaults and status filled in), with a claim from a
/// template, and its generated claim allocated and reserved: the objects most events carry.
fn event_objects() -> (Value, Value) {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pod-7", "namespace": "test", "uid": "6f1c2f3e-9c39-4f43-9b43-6a3c1ad2e001",
                     "resourceVersion": "18231", "creationTimestamp": "2026-11-26T05:14:19Z"},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                                 "resources": {"claims": [{"name": "resource"}]},
                                 "terminationMessagePath": "/dev/termination-log",
                                 "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
                 "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                 "securityContext": {}, "schedulerName": "default-scheduler", "enableServiceLinks": true,
                 "preemptionPolicy": "PreemptLowerPriority", "priority": 0,
                 "tolerations": [
                     {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                     {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                 "resourceClaims": [{"name": "resource", "resourceClaimTemplateName": "test-claim-template"}],
                 "nodeName": "node-3"},
        "status": {"phase": "Pending", "qosClass": "BestEffort",
                   "resourceClaimStatuses": [{"name": "resource", "resourceClaimName": "pod-7-resource-x7k2p"}]}});
    let claim = json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": "pod-7-resource-x7k2p", "generateName": "pod-7-resource-", "namespace": "test",
                     "uid": "0b7e3f0c-3f51-4f7e-8a7e-5c2d0e9a1002", "resourceVersion": "18240",
                     "creationTimestamp": "2026-11-26T05:14:19Z",
                     "annotations": {"resource.kubernetes.io/pod-claim-name": "resource"},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "pod-7",
                                          "uid": "6f1c2f3e-9c39-4f43-9b43-6a3c1ad2e001", "controller": true, "blockOwnerDeletion": true}],
                     "finalizers": ["resource.kubernetes.io/delete-protection"]},
        "spec": {"devices": {"requests": [{"name": "req-0", "exactly": {"deviceClassName": "test-class", "allocationMode": "ExactCount", "count": 1}}]}},
        "status": {"allocation": {"devices": {"results": [{"request": "req-0", "driver": DRIVER, "pool": "node-3", "device": "device-4"}]},
                                  "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-3"]}]}]}},
                   "reservedFor": [{"resource": "pods", "name": "pod-7", "uid": "6f1c2f3e-9c39-4f43-9b43-6a3c1ad2e001"}]}});
    (pod, claim)
}

/// What one pushed object event costs the plugin (parsing and bookkeeping), per kind.
fn bench_events(c: &mut Criterion) {
    let (mut p, _, _) = plugin(0);
    let (pod, claim) = event_objects();
    for (label, kind, object) in [
        ("pod", ResourceKind::pod(), pod),
        ("claim", ResourceKind::resource_claim(), claim),
    ] {
        let event = ObjectEvent {
            action: EventAction::Modified,
            resource: kind,
            object: object.to_string(),
        };
        p.on_event(&event);
        c.bench_function(&format!("on_event/{label}"), |b| {
            b.iter(|| p.on_event(black_box(&event)))
        });
    }
}

criterion_group!(benches, bench, bench_events);
criterion_main!(benches);
