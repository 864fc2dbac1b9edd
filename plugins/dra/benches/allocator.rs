//! The DRA allocator for one pod over 500 nodes, through the plugin's public API: the plugin is
//! fed the cluster as events (500 nodes, each with a ResourceSlice of 10 devices, a DeviceClass
//! with a CEL selector), then PreFilter and Filter run for a pod whose claim asks for one device.
//!
//! - `pre_filter+filter/500-nodes-empty`: every device free;
//! - `pre_filter+filter/500-nodes-half-full`: 5 of each node's 10 devices allocated to other
//!   claims, as in the steady-state workload;
//! - `pre_filter+filter+reserve/500-nodes-half-full`: the whole scheduling cycle's DRA work.
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
fn plugin(allocated_per_node: usize) -> (DraPlugin, PodRef, Vec<String>) {
    let mut p = DraPlugin::new("{}").expect("the plugin takes empty args");
    p.on_event(&added(
        ResourceKind::device_class(),
        json!({"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "test-class"},
               "spec": {"selectors": [{"cel": {"expression": format!("device.driver == \"{DRIVER}\"")}}]}}),
    ));
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

criterion_group!(benches, bench);
criterion_main!(benches);
