//! Real Wasm components built from `plugins/` and `tests/plugins/`, run by the host runtime:
//! every extension point crosses the boundary, Filter runs over a batch, pushed state reaches
//! the guest, the Wasm and native builds of a plugin agree, and a module built for another WIT
//! version or with a wrong pin is refused. The last test schedules pods end to end with a Wasm
//! plugin loaded from the scheduler configuration.
//!
//! The `.wasm` files come from `scripts/test` (it runs `scripts/setup`, which builds them).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_tests::{TestCluster, is_bound, named, node_of};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use wasm_scheduler::config::SchedulerConfig;
use wasm_scheduler::framework::{
    Code, CycleState, EventAction, ExtensionPoint, NodeInfo, ObjectEvent, Plugin, PodInfo,
    ResourceKind, Snapshot, StateReplay, Status,
};
use wasm_scheduler::plugins::{FactoryContext, Registry};
use wasm_scheduler::wasm::{
    NativeSdkPlugin, PluginSource, Settings, Tier, WasmError, WasmPlugin, WasmPlugins,
};

/// The component built from the crate `crate_name` (underscores), e.g. `node_label_plugin`.
///
/// # Panics
/// If it was not built, telling how to build it.
pub(crate) fn wasm_file(crate_name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target
        .join("wasm32-wasip2/plugin")
        .join(format!("{crate_name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test (it builds the plugins)",
        path.display()
    );
    path
}

/// Runtime settings with one plugin per `(name, crate)`.
pub(crate) fn settings(plugins: &[(&str, PathBuf)]) -> Settings {
    Settings {
        plugins: plugins
            .iter()
            .map(|(name, path)| PluginSource {
                name: name.to_string(),
                path: path.clone(),
                sha256: None,
            })
            .collect(),
        // Never the user's ~/.cache; shared by the tests of a run (and warm across runs).
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasm-cache")),
        ..Settings::default()
    }
}

/// Cluster state kept by the test and replayed into new instances, as the cache does.
#[derive(Default)]
pub(crate) struct TestState {
    objects: Mutex<BTreeMap<(String, String), ObjectEvent>>,
}

impl TestState {
    /// Records an event; returns it for pushing to plugins.
    pub(crate) fn apply(&self, event: ObjectEvent) -> ObjectEvent {
        let name =
            serde_json::from_str::<serde_json::Value>(&event.object).unwrap()["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string();
        let key = (event.resource.kind.clone(), name);
        let mut objects = self.objects.lock().unwrap();
        match event.action {
            EventAction::Deleted => objects.remove(&key),
            _ => objects.insert(
                key,
                ObjectEvent {
                    action: EventAction::Added,
                    ..event.clone()
                },
            ),
        };
        event
    }
}

impl StateReplay for TestState {
    fn replay(&self, kinds: &[ResourceKind]) -> Vec<ObjectEvent> {
        let objects = self.objects.lock().unwrap();
        objects
            .values()
            .filter(|e| kinds.contains(&e.resource))
            .cloned()
            .collect()
    }
}

/// A Node with labels.
pub(crate) fn node(name: &str, labels: &[(&str, &str)]) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()},
    }))
    .unwrap()
}

/// An event for a Node.
pub(crate) fn node_event(action: EventAction, node: &Node) -> ObjectEvent {
    ObjectEvent {
        action,
        resource: ResourceKind::node(),
        object: serde_json::to_string(node).unwrap(),
    }
}

/// The framework's view of a Node.
pub(crate) fn node_info(node: &Node) -> Arc<NodeInfo> {
    Arc::new(NodeInfo::new(Arc::new(node.clone())))
}

/// The framework's view of a pod `default/<name>` with uid `<name>-uid`.
pub(crate) fn pod_info(name: &str) -> PodInfo {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid")},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }))
    .unwrap();
    PodInfo::new(Arc::new(pod))
}

/// Zones a..c over `n` nodes named `node-<i>`.
pub(crate) fn zoned_nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| node(&format!("node-{i}"), &[("zone", ["a", "b", "c"][i % 3])]))
        .collect()
}

/// NodeLabel args used across the tests: zones a or b pass; zone a is preferred.
pub(crate) fn node_label_args() -> serde_json::Value {
    json!({
        "require": [{"key": "zone", "operator": "In", "values": ["a", "b"]}],
        "prefer": [{"key": "zone", "value": "a", "weight": 1}],
    })
}

fn codes(statuses: &[Status]) -> Vec<Code> {
    statuses.iter().map(|s| s.code).collect()
}

fn probe() -> (WasmPlugin, Arc<TestState>, Vec<Arc<NodeInfo>>) {
    let plugins = WasmPlugins::load(&settings(&[("Probe", wasm_file("probe_plugin"))])).unwrap();
    let state = Arc::new(TestState::default());
    let nodes = vec![
        node("n1", &[("probe", "yes")]),
        node("n2", &[]),
        node("n3", &[("probe", "yes")]),
    ];
    for n in &nodes {
        state.apply(node_event(EventAction::Added, n));
    }
    let plugin = plugins.create("Probe", &json!({}), state.clone()).unwrap();
    (plugin, state, nodes.iter().map(node_info).collect())
}

#[test]
fn every_extension_point_crosses_the_wasm_boundary() {
    let (p, _state, nodes) = probe();
    let pod = pod_info("p");

    assert_eq!(p.name(), "Probe");
    let points = p.extension_points();
    for point in [
        ExtensionPoint::PreEnqueue,
        ExtensionPoint::Permit,
        ExtensionPoint::PreBind,
        ExtensionPoint::PostBind,
    ] {
        assert!(points.contains(&point), "{point:?} in {points:?}");
    }
    assert_eq!(p.subscriptions(), vec![ResourceKind::node()]);
    assert_eq!(p.patchable_kinds(), vec![ResourceKind::resource_claim()]);
    assert_eq!(p.requeue_on()[0].resource, ResourceKind::node());

    assert_eq!(
        p.pre_enqueue(&pod_info("gated-1")),
        Status::pending("gated by probe")
    );
    assert!(p.pre_enqueue(&pod).is_success());

    let mut cs = CycleState::default();
    let pre = p.pre_filter(&mut cs, &pod, &Snapshot::default());
    assert!(pre.status.is_success());
    assert_eq!(
        pre.node_names,
        Some(vec!["n1".to_string(), "n3".to_string()])
    );

    let filtered = p.filter(&cs, &pod, &nodes);
    assert_eq!(
        codes(&filtered),
        vec![Code::Success, Code::Unschedulable, Code::Success]
    );
    assert_eq!(filtered[1].reasons, vec!["not a probe node".to_string()]);

    let post = p.post_filter(&mut cs, &pod, &[("n2".into(), filtered[1].clone())]);
    assert_eq!(post.nominated_node.as_deref(), Some("n2"));
    assert_eq!(
        post.status,
        Status::unschedulable("probe saw 1 rejected nodes")
    );

    assert_eq!(
        p.pre_score(&mut CycleState::default(), &pod_info("noscore-1"), &nodes)
            .code,
        Code::Skip
    );
    assert!(p.pre_score(&mut cs, &pod, &nodes).is_success());
    assert_eq!(
        p.score(&cs, &pod, &[nodes[0].clone(), nodes[2].clone()])
            .unwrap(),
        vec![100, 90]
    );

    let reserved = p.reserve(&mut cs, &pod, "n1").unwrap();
    assert_eq!(reserved.len(), 1);
    assert_eq!(reserved[0].target.resource, ResourceKind::resource_claim());
    assert_eq!(reserved[0].target.name, "p-claim");
    assert_eq!(reserved[0].subresource.as_deref(), Some("status"));
    assert_eq!(
        reserved[0].body,
        r#"{"metadata":{"annotations":{"probe/reserve":"n1"}}}"#
    );

    let waiting = p.permit(&mut CycleState::default(), &pod_info("wait-1"), "n1");
    assert_eq!(
        (waiting.status.code, waiting.timeout_ms),
        (Code::Wait, 1234)
    );
    let permitted = p.permit(&mut cs, &pod, "n1");
    assert!(permitted.status.is_success());
    assert_eq!(permitted.allow, vec!["friend".to_string()]);

    let pre_bind = p.pre_bind(&mut cs, &pod, "n1").unwrap();
    assert!(pre_bind[0].body.contains("probe/pre-bind"));
    let unreserved = p.unreserve(&mut cs, &pod, "n1");
    assert!(unreserved[0].body.contains("probe/unreserve"));

    p.post_bind(&pod, "n1");
    p.post_bind(&pod_info("q"), "n3");
    let stats = p.pre_enqueue(&pod_info("stats"));
    assert_eq!(
        stats.reasons,
        vec!["default/p@n1".to_string(), "default/q@n3".to_string()]
    );
}

#[test]
fn a_plugin_gets_only_the_fields_it_reads_and_no_event_when_they_did_not_change() {
    // The probe (WIT 0.3.0) reads only node labels.
    let (p, _state, _nodes) = probe();
    let with_status: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "labels": {"probe": "yes"}, "resourceVersion": "9"},
        "status": {"allocatable": {"cpu": "4"}, "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap();
    p.on_event(&node_event(EventAction::Modified, &with_status));
    p.on_event(&node_event(
        EventAction::Modified,
        &node("n2", &[("probe", "yes")]),
    ));
    p.on_event(&node_event(
        EventAction::Deleted,
        &node("n3", &[("probe", "yes")]),
    ));

    let events = p.pre_enqueue(&pod_info("events")).reasons;
    let replayed = &events[..3];
    assert!(
        replayed.iter().all(|e| e.starts_with("Added ")),
        "{events:?}"
    );
    assert_eq!(
        &events[3..],
        [
            r#"Modified {"metadata":{"labels":{"probe":"yes"},"name":"n2"}}"#,
            r#"Deleted {"metadata":{"labels":{"probe":"yes"},"name":"n3"}}"#,
        ],
        "n1's status-only change is no event"
    );
    assert!(
        events.iter().all(|e| !e.contains("apiVersion")),
        "{events:?}"
    );
    let pre = p.pre_filter(
        &mut CycleState::default(),
        &pod_info("p"),
        &Snapshot::default(),
    );
    assert_eq!(
        pre.node_names,
        Some(vec!["n1".to_string(), "n2".to_string()])
    );
}

#[test]
fn filter_and_score_run_over_a_batch_of_500_nodes_in_one_call() {
    let plugins =
        WasmPlugins::load(&settings(&[("NodeLabel", wasm_file("node_label_plugin"))])).unwrap();
    let state = Arc::new(TestState::default());
    let nodes = zoned_nodes(500);
    for n in &nodes {
        state.apply(node_event(EventAction::Added, n));
    }
    let p = plugins
        .create("NodeLabel", &node_label_args(), state)
        .unwrap();
    let infos: Vec<_> = nodes.iter().map(node_info).collect();
    let mut cs = CycleState::default();
    let pod = pod_info("p");
    p.pre_filter(&mut cs, &pod, &Snapshot::default());
    let statuses = p.filter(&cs, &pod, &infos);
    assert_eq!(statuses.len(), 500);
    for (i, s) in statuses.iter().enumerate() {
        let expected = if i % 3 == 2 {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Success
        };
        assert_eq!(s.code, expected, "node-{i}");
    }
    let scores = p.score(&cs, &pod, &infos).unwrap();
    assert_eq!(scores.len(), 500);
    assert!(
        scores
            .iter()
            .enumerate()
            .all(|(i, s)| *s == if i % 3 == 0 { 100 } else { 0 })
    );
}

#[test]
fn state_pushed_to_the_guest_changes_its_decisions() {
    let plugins =
        WasmPlugins::load(&settings(&[("NodeLabel", wasm_file("node_label_plugin"))])).unwrap();
    let state = Arc::new(TestState::default());
    let n1 = node("n1", &[("zone", "c")]);
    state.apply(node_event(EventAction::Added, &n1));
    let p = plugins
        .create("NodeLabel", &node_label_args(), state.clone())
        .unwrap();
    let pod = pod_info("p");
    let filter = |n: &Node| p.filter(&CycleState::default(), &pod, &[node_info(n)])[0].clone();

    // Replayed at creation: known, wrong zone.
    assert_eq!(filter(&n1).code, Code::UnschedulableAndUnresolvable);
    // A label change reaches the guest.
    let relabelled = node("n1", &[("zone", "b")]);
    p.on_event(&state.apply(node_event(EventAction::Modified, &relabelled)));
    assert!(filter(&relabelled).is_success());
    // A new node too, and a deleted one is forgotten.
    let n2 = node("n2", &[("zone", "a")]);
    assert_eq!(
        filter(&n2).reasons,
        vec![node_label_plugin::REASON_UNKNOWN_NODE.to_string()]
    );
    p.on_event(&state.apply(node_event(EventAction::Added, &n2)));
    assert!(filter(&n2).is_success());
    p.on_event(&state.apply(node_event(EventAction::Deleted, &n2)));
    assert_eq!(filter(&n2).code, Code::Unschedulable);
}

#[test]
fn wasm_and_native_builds_of_a_plugin_decide_alike() {
    let plugins =
        WasmPlugins::load(&settings(&[("NodeLabel", wasm_file("node_label_plugin"))])).unwrap();
    let state = Arc::new(TestState::default());
    let nodes = zoned_nodes(60);
    for n in &nodes {
        state.apply(node_event(EventAction::Added, n));
    }
    let wasm = plugins
        .create("NodeLabel", &node_label_args(), state.clone())
        .unwrap();
    let ctx = FactoryContext {
        client: None,
        state,
    };
    let native =
        NativeSdkPlugin::<node_label_plugin::NodeLabel>::new("NodeLabel", &node_label_args(), &ctx)
            .unwrap();
    let infos: Vec<_> = nodes.iter().map(node_info).collect();
    let pod = pod_info("p");
    let cs = CycleState::default();
    assert_eq!(
        wasm.filter(&cs, &pod, &infos),
        native.filter(&cs, &pod, &infos)
    );
    assert_eq!(
        wasm.score(&cs, &pod, &infos),
        native.score(&cs, &pod, &infos)
    );
    let mut points = wasm.extension_points();
    points.retain(|p| *p != ExtensionPoint::PreFilter); // the Wasm adapter adds it to pin instances
    assert_eq!(points, native.extension_points());
}

#[test]
fn gang_permit_holds_pods_until_the_gang_is_complete() {
    let plugins = WasmPlugins::load(&settings(&[(
        "GangPermit",
        wasm_file("gang_permit_plugin"),
    )]))
    .unwrap();
    let state = Arc::new(TestState::default());
    let p = plugins
        .create(
            "GangPermit",
            &json!({"minMember": 3, "timeoutSeconds": 7}),
            state.clone(),
        )
        .unwrap();
    for name in ["g1", "g2", "g3"] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"), "labels": {"pod-group": "train"}}});
        p.on_event(&state.apply(ObjectEvent {
            action: EventAction::Added,
            resource: ResourceKind::pod(),
            object: pod.to_string(),
        }));
    }
    let permit = |name: &str| p.permit(&mut CycleState::default(), &pod_info(name), "n1");
    let first = permit("g1");
    assert_eq!((first.status.code, first.timeout_ms), (Code::Wait, 7000));
    assert_eq!(permit("g2").status.code, Code::Wait);
    let last = permit("g3");
    assert!(last.status.is_success());
    assert_eq!(last.allow, vec!["g1-uid".to_string(), "g2-uid".to_string()]);
    assert!(
        permit("solo").status.is_success(),
        "a pod without a group passes"
    );
}

#[test]
fn errors_when_a_component_targets_another_wit_version() {
    let err =
        WasmPlugins::load(&settings(&[("Future", wasm_file("wrong_wit_plugin"))])).unwrap_err();
    assert!(matches!(err, WasmError::WitVersion { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "plugin Future: component exports kube-scheduler:plugin/plugin-api@0.4.0, host supports 0.3.0, 0.2.0, 0.1.0"
    );
}

#[test]
fn errors_when_the_file_does_not_match_its_pinned_sha256() {
    let path = wasm_file("node_label_plugin");
    let actual = wasm_scheduler::wasm::sha256_hex(&std::fs::read(&path).unwrap());
    let mut s = settings(&[("NodeLabel", path.clone())]);
    s.plugins[0].sha256 = Some(actual.to_uppercase());
    WasmPlugins::load(&s).expect("a matching pin (any case) loads");
    s.plugins[0].sha256 = Some("0".repeat(64));
    let err = WasmPlugins::load(&s).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "sha256 of {} is {actual}, but the configuration pins {}",
            path.display(),
            "0".repeat(64)
        )),
        "{err}"
    );
}

#[test]
fn errors_when_a_plugin_refuses_its_args() {
    let plugins =
        WasmPlugins::load(&settings(&[("NodeLabel", wasm_file("node_label_plugin"))])).unwrap();
    let mut registry = Registry::new();
    plugins.register_all(&mut registry);
    let err = registry
        .create(
            "NodeLabel",
            &json!({"require": [{"key": "zone", "operator": "In"}]}),
            &FactoryContext::empty(),
        )
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "plugin \"NodeLabel\": invalid args: NodeLabel args: require[0]: operator In needs values"
    );
}

/// The compiled-component cache counters of `plugins` (what
/// `scheduler_wasm_compile_cache_total{result}` exports), by result.
fn cache_metric(plugins: &WasmPlugins) -> BTreeMap<String, u64> {
    let c = plugins.cache_stats();
    counts(&[
        ("memory_hit", c.memory_hits),
        ("disk_hit", c.disk_hits),
        ("miss", c.misses),
        ("corrupt", c.corrupt),
        ("baseline", c.baseline_compiles),
    ])
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    let mut m: BTreeMap<String, u64> = ["memory_hit", "disk_hit", "miss", "corrupt", "baseline"]
        .iter()
        .map(|r| (r.to_string(), 0))
        .collect();
    for (r, n) in pairs {
        m.insert(r.to_string(), *n);
    }
    m
}

#[test]
fn a_warm_cache_restart_does_not_recompile() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&[("NodeLabel", wasm_file("node_label_plugin"))]);
    s.cache_dir = Some(dir.path().join("cache"));
    let cold = WasmPlugins::load(&s).unwrap();
    // Unknown to the cache: baseline code at once, optimized code (cached) in the background.
    assert!(cold.wait_optimized(Duration::from_secs(300)));
    assert_eq!(cache_metric(&cold), counts(&[("baseline", 1), ("miss", 1)]));
    assert_eq!(cold.status("NodeLabel").unwrap().tier, Tier::Optimized);
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .collect();
    assert_eq!(entries.len(), 1);
    // A restart: a new runtime over the same directory compiles nothing.
    let warm = WasmPlugins::load(&s).unwrap();
    assert_eq!(cache_metric(&warm), counts(&[("disk_hit", 1)]));
    assert_eq!(warm.status("NodeLabel").unwrap().tier, Tier::Optimized);
    let p = warm
        .create(
            "NodeLabel",
            &node_label_args(),
            Arc::new(TestState::default()),
        )
        .unwrap();
    assert_eq!(p.name(), "NodeLabel");
}

#[test]
fn a_module_no_cache_knows_serves_baseline_code_until_its_optimized_code_is_swapped_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&[("NodeLabel", wasm_file("node_label_plugin"))]);
    s.cache_dir = Some(dir.path().to_path_buf());
    let plugins = WasmPlugins::load(&s).unwrap();
    assert_eq!(plugins.cache_stats().baseline_compiles, 1);
    let state = Arc::new(TestState::default());
    let nodes = zoned_nodes(3);
    for n in &nodes {
        state.apply(node_event(EventAction::Added, n));
    }
    let infos: Vec<_> = nodes.iter().map(node_info).collect();
    let p = plugins
        .create("NodeLabel", &node_label_args(), state)
        .unwrap();
    let filter = || codes(&p.filter(&CycleState::default(), &pod_info("p"), &infos));
    let expected = vec![
        Code::Success,
        Code::Success,
        Code::UnschedulableAndUnresolvable,
    ];
    assert_eq!(filter(), expected);
    assert!(plugins.wait_optimized(Duration::from_secs(300)));
    let status = plugins.status("NodeLabel").unwrap();
    assert_eq!(status.tier, Tier::Optimized);
    assert_eq!(plugins.cache_stats().misses, 1);
    // The instance made before now runs the optimized code, with the same answers; the tier
    // change is not counted as a reload.
    assert_eq!(filter(), expected);
    assert_eq!((status.reloads_ok, status.reloads_failed), (0, 0));
    // The optimized code was cached: a restart serves it at once.
    let restarted = WasmPlugins::load(&s).unwrap();
    assert_eq!(cache_metric(&restarted), counts(&[("disk_hit", 1)]));
    // Without tiering the optimized code is compiled before the load returns.
    let untiered = Settings {
        tiering: false,
        cache_dir: Some(dir.path().join("untiered")),
        ..s
    };
    let plugins = WasmPlugins::load(&untiered).unwrap();
    assert_eq!(cache_metric(&plugins), counts(&[("miss", 1)]));
    assert_eq!(plugins.status("NodeLabel").unwrap().tier, Tier::Optimized);
}

#[test]
fn a_corrupted_cache_file_is_rejected_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&[("DynamicResources", wasm_file("dra_plugin"))]);
    s.cache_dir = Some(dir.path().to_path_buf());
    assert!(
        WasmPlugins::load(&s)
            .unwrap()
            .wait_optimized(Duration::from_secs(300))
    );
    let entry = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    // Flip bytes in the middle of the machine code, where wasmtime's own header check would not
    // look.
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&entry, &bytes).unwrap();
    let rebuilt = WasmPlugins::load(&s).unwrap();
    assert_eq!(
        cache_metric(&rebuilt),
        counts(&[("corrupt", 1), ("miss", 1)])
    );
    rebuilt
        .create(
            "DynamicResources",
            &json!({}),
            Arc::new(TestState::default()),
        )
        .unwrap();
    // The entry was rewritten: the next start takes it.
    let next = WasmPlugins::load(&s).unwrap();
    assert_eq!(cache_metric(&next), counts(&[("disk_hit", 1)]));
}

/// A scheduler configuration that loads `wasm` as `NodeLabel` and enables it in the default
/// profile with [`node_label_args`].
pub(crate) fn node_label_config(wasm: &std::path::Path, extra_runtime: &str) -> SchedulerConfig {
    let yaml = format!(
        r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
  - schedulerName: default-scheduler
    plugins:
      multiPoint:
        enabled: [{{name: NodeLabel}}]
    pluginConfig:
      - name: NodeLabel
        args: {}
wasmPlugins:
  - name: NodeLabel
    path: {}
wasmRuntime: {{callTimeoutMs: 1000{extra_runtime}}}
"#,
        node_label_args(),
        wasm.display()
    );
    SchedulerConfig::from_yaml_str("test-config.yaml", &yaml).unwrap()
}

/// Nodes in zones a, b, c with room for many pods.
pub(crate) fn zoned_nodes_yaml() -> String {
    ["a", "b", "c"]
        .iter()
        .map(|z| {
            integration_tests::node_yaml(
                &format!("node-{z}"),
                "64",
                "256Gi",
                &format!("{{zone: {z}}}"),
                "[]",
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_plugin_from_the_configuration_places_pods_end_to_end() {
    let config = node_label_config(&wasm_file("node_label_plugin"), "");
    let cluster = TestCluster::start_with(config, Registry::with_builtins()).await;
    cluster.apply(&zoned_nodes_yaml()).await;
    let pods: Vec<String> = (0..10)
        .map(|i| integration_tests::pod_yaml(&format!("p{i}"), "100m", "64Mi", ""))
        .collect();
    cluster.apply(&pods.concat()).await;
    let pods = cluster
        .wait_for_pods(|pods| pods.len() == 10 && pods.iter().all(is_bound))
        .await;
    for i in 0..10 {
        // NodeLabel's score prefers zone a; its filter forbids zone c.
        assert_eq!(
            node_of(named(&pods, &format!("p{i}"))),
            Some("node-a"),
            "p{i}"
        );
    }
    let status = cluster
        .scheduler
        .wasm()
        .expect("Wasm plugins loaded")
        .status("NodeLabel")
        .unwrap();
    assert_eq!(status.traps, 0);
}

#[test]
fn components_of_every_served_wit_version_load_side_by_side_and_decide() {
    use wasm_scheduler::wasm::bindings::WitVersion;
    let plugins = WasmPlugins::load(&settings(&[
        ("LegacyZone", wasm_file("legacy_v0_1_plugin")),
        ("LegacyAvoid", wasm_file("legacy_v0_2_plugin")),
        ("NodeLabel", wasm_file("node_label_plugin")),
    ]))
    .unwrap();
    let wit = |name: &str| plugins.status(name).unwrap().wit;
    assert_eq!(wit("LegacyZone"), WitVersion::V0_1);
    assert_eq!(wit("LegacyAvoid"), WitVersion::V0_2);
    assert_eq!(wit("NodeLabel"), WitVersion::V0_3);

    let state = Arc::new(TestState::default());
    let nodes = zoned_nodes(90);
    for n in &nodes {
        state.apply(node_event(EventAction::Added, n));
    }
    let legacy = plugins
        .create(
            "LegacyZone",
            &json!({"avoid": "c", "prefer": "a"}),
            state.clone(),
        )
        .unwrap();
    let current = plugins
        .create("NodeLabel", &node_label_args(), state)
        .unwrap();
    let mut infos: Vec<_> = nodes.iter().map(node_info).collect();
    // A node neither was told about: the 0.1.0 plugin names it unknown by its name.
    infos.push(node_info(&node("node-unknown", &[("zone", "a")])));
    let pod = pod_info("p");
    let mut cs = CycleState::default();
    legacy.pre_filter(&mut cs, &pod, &Snapshot::default());
    current.pre_filter(&mut cs, &pod, &Snapshot::default());

    let old = legacy.filter(&cs, &pod, &infos);
    let new = current.filter(&cs, &pod, &infos);
    assert_eq!(old.len(), infos.len());
    assert_eq!(codes(&old[..90]), codes(&new[..90]));
    assert_eq!(
        old[2].reasons,
        [legacy_v0_1_plugin::REASON_AVOIDED.to_string()]
    );
    assert_eq!(
        old[90].reasons,
        [legacy_v0_1_plugin::REASON_UNKNOWN.to_string()]
    );
    assert_eq!(
        legacy.score(&cs, &pod, &infos[..90]).unwrap(),
        current.score(&cs, &pod, &infos[..90]).unwrap()
    );

    // 0.2.0: nodes by index, only the failing ones returned.
    let avoid = infos[7].name.clone();
    let v0_2 = plugins
        .create("LegacyAvoid", &json!(avoid), Arc::new(TestState::default()))
        .unwrap();
    let st = v0_2.filter(&cs, &pod, &infos);
    assert_eq!(st.len(), infos.len());
    let failed: Vec<usize> = (0..st.len()).filter(|&i| !st[i].is_success()).collect();
    assert_eq!(failed, [7]);
    assert_eq!(
        st[7].reasons,
        [legacy_v0_2_plugin::REASON_AVOIDED.to_string()]
    );
}
