//! The price of the Wasm boundary: the same SDK plugin (`plugins/node-label`) called through the
//! framework's `Plugin` trait as a Wasm component and compiled into the host.
//!
//! - `filter/1-node`: one host→guest call with a pod reference and one node name;
//! - `filter/500-nodes`, `score/500-nodes`: one batch call over 500 nodes;
//! - `dra/…`: the DRA plugin (`plugins/dra`), Wasm and native: PreFilter + Filter of a pod with
//!   one claim over 500 nodes with 10 devices each, and one pushed claim change.
//!
//! Build the component first (`scripts/setup`), then `cargo bench --release -p wasm-scheduler
//! --bench wasm_call`.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use wasm_scheduler::framework::{
    CycleState, EventAction, NodeInfo, ObjectEvent, Plugin, PodInfo, ResourceKind, Snapshot,
    StateReplay,
};
use wasm_scheduler::plugins::FactoryContext;
use wasm_scheduler::wasm::{NativeSdkPlugin, PluginSource, Settings, WasmPlugins};

struct Nodes(Vec<ObjectEvent>);

impl StateReplay for Nodes {
    fn replay(&self, kinds: &[ResourceKind]) -> Vec<ObjectEvent> {
        if kinds.contains(&ResourceKind::node()) {
            self.0.clone()
        } else {
            Vec::new()
        }
    }
}

/// Objects of several kinds, replayed in order (kinds the plugin subscribed to).
struct Objects(Vec<ObjectEvent>);

impl StateReplay for Objects {
    fn replay(&self, kinds: &[ResourceKind]) -> Vec<ObjectEvent> {
        self.0
            .iter()
            .filter(|e| kinds.contains(&e.resource))
            .cloned()
            .collect()
    }
}

fn nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let zone = ["a", "b", "c"][i % 3];
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": format!("node-{i}"), "labels": {"zone": zone}}}))
            .unwrap()
        })
        .collect()
}

fn wasm_path() -> PathBuf {
    component("node_label_plugin")
}

fn component(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join(format!("wasm32-wasip2/plugin/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup (it builds the plugins)",
        path.display()
    );
    path
}

fn bench(c: &mut Criterion) {
    let all = nodes(500);
    let state = Arc::new(Nodes(
        all.iter()
            .map(|n| ObjectEvent {
                action: EventAction::Added,
                resource: ResourceKind::node(),
                object: serde_json::to_string(n).unwrap(),
            })
            .collect(),
    ));
    let args = json!({"require": [{"key": "zone", "operator": "In", "values": ["a", "b"]}],
                      "prefer": [{"key": "zone", "value": "a", "weight": 1}]});
    let settings = Settings {
        plugins: vec![PluginSource {
            name: "NodeLabel".into(),
            path: wasm_path(),
            sha256: None,
        }],
        ..Settings::default()
    };
    let loaded = WasmPlugins::load(&settings).unwrap();
    let wasm = loaded.create("NodeLabel", &args, state.clone()).unwrap();
    let ctx = FactoryContext {
        client: None,
        state,
    };
    let native =
        NativeSdkPlugin::<node_label_plugin::NodeLabel>::new("NodeLabel", &args, &ctx).unwrap();

    let infos: Vec<Arc<NodeInfo>> = all
        .into_iter()
        .map(|n| Arc::new(NodeInfo::new(Arc::new(n))))
        .collect();
    let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "p-uid"}, "spec": {"containers": []}}))
    .unwrap();
    let pod = PodInfo::new(Arc::new(pod));

    let plugins: [(&str, &dyn Plugin); 2] = [("wasm", &wasm), ("native", &native)];
    for (kind, p) in plugins {
        // As in the scheduler: PreFilter pins the instance in the cycle state.
        let mut cs = CycleState::default();
        p.pre_filter(&mut cs, &pod, &Snapshot::default());
        c.bench_function(&format!("filter/1-node/{kind}"), |b| {
            b.iter(|| black_box(p.filter(&cs, &pod, &infos[..1])))
        });
        c.bench_function(&format!("filter/500-nodes/{kind}"), |b| {
            b.iter(|| black_box(p.filter(&cs, &pod, &infos)))
        });
        c.bench_function(&format!("score/500-nodes/{kind}"), |b| {
            b.iter(|| black_box(p.score(&cs, &pod, &infos)))
        });
    }

    // What a respawn after a trap (or each instance of a hot swap) costs once compiled.
    let mut g = c.benchmark_group("lifecycle");
    g.sample_size(20);
    g.bench_function("instantiate+init+replay-500-nodes+health/wasm", |b| {
        b.iter(|| {
            black_box(
                loaded
                    .create("NodeLabel", &args, ctx.state.clone())
                    .unwrap(),
            )
        })
    });
    g.finish();
}

fn added(resource: ResourceKind, object: serde_json::Value) -> ObjectEvent {
    ObjectEvent {
        action: EventAction::Added,
        resource,
        object: object.to_string(),
    }
}

/// The DRA plugin as Wasm and native over the same cluster: 500 nodes with 10 devices each and
/// a DeviceClass with a CEL selector; a pod with one unallocated claim.
fn bench_dra(c: &mut Criterion) {
    const DRIVER: &str = "test-driver.cdi.k8s.io";
    let mut events = vec![added(
        ResourceKind::device_class(),
        json!({"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "test-class"},
               "spec": {"selectors": [{"cel": {"expression": format!("device.driver == \"{DRIVER}\"")}}]}}),
    )];
    let all = nodes(500);
    for (i, n) in all.iter().enumerate() {
        events.push(added(
            ResourceKind::node(),
            serde_json::to_value(n).unwrap(),
        ));
        let name = n.metadata.name.clone().unwrap();
        let devices: Vec<_> = (0..10)
            .map(|d| json!({"name": format!("device-{d}"), "attributes": {"index": {"int": d}}}))
            .collect();
        events.push(added(
            ResourceKind::resource_slice(),
            json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": format!("slice-{i}")},
                   "spec": {"driver": DRIVER, "nodeName": name, "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
                            "devices": devices}}),
        ));
    }
    let claim = json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": "claim-0", "namespace": "default", "uid": "claim-uid", "resourceVersion": "1"},
        "spec": {"devices": {"requests": [{"name": "req-0", "exactly": {"deviceClassName": "test-class"}}]}}});
    events.push(added(ResourceKind::resource_claim(), claim.clone()));
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "p-uid"},
        "spec": {"containers": [{"name": "c", "image": "pause", "resources": {"claims": [{"name": "r"}]}}],
                 "resourceClaims": [{"name": "r", "resourceClaimName": "claim-0"}]}});
    events.push(added(ResourceKind::pod(), pod.clone()));
    let state = Arc::new(Objects(events));
    let settings = Settings {
        plugins: vec![PluginSource {
            name: dra_plugin::NAME.into(),
            path: component("dra_plugin"),
            sha256: None,
        }],
        ..Settings::default()
    };
    let loaded = WasmPlugins::load(&settings).unwrap();
    let wasm = loaded
        .create(dra_plugin::NAME, &json!({}), state.clone())
        .unwrap();
    let ctx = FactoryContext {
        client: None,
        state,
    };
    let native =
        NativeSdkPlugin::<dra_plugin::DraPlugin>::new(dra_plugin::NAME, &json!({}), &ctx).unwrap();
    let infos: Vec<Arc<NodeInfo>> = all
        .into_iter()
        .map(|n| Arc::new(NodeInfo::new(Arc::new(n))))
        .collect();
    let pod = PodInfo::new(Arc::new(serde_json::from_value::<Pod>(pod).unwrap()));
    let changed = ObjectEvent {
        action: EventAction::Modified,
        resource: ResourceKind::resource_claim(),
        object: claim.to_string(),
    };
    let plugins: [(&str, &dyn Plugin); 2] = [("wasm", &wasm), ("native", &native)];
    for (kind, p) in plugins {
        c.bench_function(&format!("dra/pre_filter+filter/500-nodes/{kind}"), |b| {
            b.iter(|| {
                let mut cs = CycleState::default();
                p.pre_filter(&mut cs, &pod, &Snapshot::default());
                let st = p.filter(&cs, &pod, &infos);
                assert!(st.iter().all(|s| s.is_success()));
                black_box(st)
            })
        });
        c.bench_function(&format!("dra/on_event-claim+pre_filter/{kind}"), |b| {
            b.iter(|| {
                p.on_event(&changed);
                black_box(p.pre_filter(&mut CycleState::default(), &pod, &Snapshot::default()))
            })
        });
    }
}

criterion_group!(benches, bench, bench_dra);
criterion_main!(benches);
