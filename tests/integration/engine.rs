//! The engine end to end through the embedded API server: placement by resources, taints,
//! affinity and node name; priority order; backoff and requeue; Permit; failing PreBind
//! intents; concurrent binding without overcommit.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use embedded_apiserver::ApiServer;
use integration_tests::*;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams};
use wasm_scheduler::config::SchedulerConfig;
use wasm_scheduler::framework::{
    CycleState, ExtensionPoint, ObjectRef, PatchIntent, PatchKind, PermitResult, Plugin, PluginRef,
    PodInfo, ResourceKind, Status,
};
use wasm_scheduler::plugins::{PluginFactory, Registry};

fn two_nodes() -> String {
    node_yaml("n1", "2", "4Gi", "{}", "[]") + &node_yaml("n2", "2", "4Gi", "{}", "[]")
}

fn failure_message(p: &Pod) -> Option<String> {
    scheduled_condition(p)
        .filter(|(s, _, _)| s == "False")
        .and_then(|(_, _, m)| m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_fit_are_bound_and_one_too_big_is_reported_unschedulable() {
    let cluster = TestCluster::start().await;
    cluster
        .apply(
            &(two_nodes()
                + &pod_yaml("small", "500m", "1Gi", "")
                + &pod_yaml("huge", "8", "1Gi", "")),
        )
        .await;
    let pods = cluster
        .wait_for_pods(|pods| {
            is_bound(named(pods, "small"))
                // The pod may be tried before the scheduler has seen both nodes ("0/1 nodes");
                // a node add retries it, so wait for the attempt that saw both.
                && failure_message(named(pods, "huge")).is_some_and(|m| m.starts_with("0/2"))
        })
        .await;
    let (status, reason, msg) = scheduled_condition(named(&pods, "huge")).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("False", Some("Unschedulable"))
    );
    // Node reasons first; PostFilter plugins of the profile may add their message after them.
    let msg = msg.unwrap();
    assert!(
        msg.starts_with("0/2 nodes are available: 2 Insufficient cpu."),
        "{msg}"
    );
    assert!(node_of(named(&pods, "huge")).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_keep_pods_off_unless_tolerated() {
    let cluster = TestCluster::start().await;
    let taint = "[{key: dedicated, value: gpu, effect: NoSchedule}]";
    let mut yaml =
        node_yaml("plain", "1", "4Gi", "{}", "[]") + &node_yaml("tainted", "8", "4Gi", "{}", taint);
    // Too big for `plain`: only the tainted node has room, and only the tolerating pod may go.
    yaml += &pod_yaml(
        "tolerates",
        "2",
        "1Gi",
        "tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]",
    );
    yaml += &pod_yaml("intolerant", "2", "1Gi", "");
    cluster.apply(&yaml).await;
    let pods = cluster
        .wait_for_pods(|pods| {
            is_bound(named(pods, "tolerates"))
                && failure_message(named(pods, "intolerant")).is_some_and(|m| m.starts_with("0/2"))
        })
        .await;
    assert_eq!(node_of(named(&pods, "tolerates")), Some("tainted"));
    let msg = failure_message(named(&pods, "intolerant")).unwrap();
    assert!(msg.starts_with("0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_node_affinity_and_node_selector_pick_the_labelled_node() {
    let cluster = TestCluster::start().await;
    let mut yaml = node_yaml("a", "4", "4Gi", "{zone: a}", "[]")
        + &node_yaml("b", "4", "4Gi", "{zone: b}", "[]");
    yaml += &pod_yaml(
        "affine",
        "100m",
        "64Mi",
        "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [b]}]}]}}}",
    );
    yaml += &pod_yaml("selected", "100m", "64Mi", "nodeSelector: {zone: a}");
    cluster.apply(&yaml).await;
    let pods = cluster
        .wait_for_pods(|pods| pods.iter().all(is_bound))
        .await;
    assert_eq!(node_of(named(&pods, "affine")), Some("b"));
    assert_eq!(node_of(named(&pods, "selected")), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_a_node_name_counts_on_that_node() {
    let cluster = TestCluster::start().await;
    let mut yaml =
        node_yaml("n1", "2", "4Gi", "{}", "[]") + &node_yaml("n2", "2", "4Gi", "{}", "[]");
    // `pinned` is already on n1 (spec.nodeName) and uses most of it.
    yaml += &pod_yaml("pinned", "1500m", "1Gi", "nodeName: n1");
    cluster.apply(&yaml).await;
    for i in 0..3 {
        cluster
            .apply(&pod_yaml(&format!("p{i}"), "600m", "64Mi", ""))
            .await;
    }
    let pods = cluster
        .wait_for_pods(|pods| pods.iter().all(is_bound))
        .await;
    for i in 0..3 {
        assert_eq!(
            node_of(named(&pods, &format!("p{i}"))),
            Some("n2"),
            "n1 has only 500m left"
        );
    }
    assert_eq!(
        cluster.outcome("default", "pinned"),
        None,
        "the scheduler never touches a bound pod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_higher_priority_pod_is_scheduled_first() {
    let server = ApiServer::new();
    // Room for one pod only; `low` is older but `high` has the higher priority.
    // Priorities come from PriorityClasses (the API server's Priority admission); `high` may
    // not preempt, so `low` stays pending instead of being evicted.
    let yaml = "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\npreemptionPolicy: Never\n---\n".to_string()
        + &node_yaml("only", "1", "4Gi", "{}", "[]")
        + &pod_yaml("low", "1", "64Mi", "")
        + &pod_yaml("high", "1", "64Mi", "priorityClassName: high");
    server.load_manifest_str("pods.yaml", &yaml).await.unwrap();
    let cluster = TestCluster::start_on(
        server,
        SchedulerConfig::default(),
        Registry::with_builtins(),
    )
    .await;
    let pods = cluster
        .wait_for_pods(|pods| {
            is_bound(named(pods, "high")) && failure_message(named(pods, "low")).is_some()
        })
        .await;
    assert_eq!(node_of(named(&pods, "high")), Some("only"));
    assert!(node_of(named(&pods, "low")).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_is_retried_when_a_node_is_added() {
    let cluster = TestCluster::start().await;
    cluster
        .apply(&(node_yaml("small", "1", "4Gi", "{}", "[]") + &pod_yaml("big", "3", "1Gi", "")))
        .await;
    cluster
        .wait_for_pods(|pods| {
            failure_message(named(pods, "big")).is_some_and(|m| m.contains("Insufficient cpu"))
        })
        .await;
    cluster
        .apply(&node_yaml("large", "4", "8Gi", "{}", "[]"))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| is_bound(named(pods, "big")))
        .await;
    assert_eq!(node_of(named(&pods, "big")), Some("large"));
    let outcome = cluster.outcome("default", "big").unwrap();
    assert!(
        outcome.attempts >= 2,
        "retried after the node was added: {outcome:?}"
    );
    cluster.wait_idle().await;
    let text = cluster.scheduler.metrics().encode();
    assert!(text.contains("scheduler_schedule_attempts_total{result=\"unschedulable\",profile=\"default-scheduler\"}"), "{text}");
    assert!(text.contains(
        "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 1"
    ));
}

/// Test plugin: Permit by label. `gang: NAME` + `gang-size: N` waits until N pods of the gang
/// arrived, then allows them all; `permit: timeout` waits 300ms and times out; `permit: reject`
/// rejects.
#[derive(Default)]
struct TestPermit {
    gangs: Mutex<HashMap<String, Vec<String>>>,
}

impl Plugin for TestPermit {
    fn name(&self) -> &str {
        "TestPermit"
    }
    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![ExtensionPoint::Permit]
    }
    fn permit(&self, _state: &mut CycleState, pod: &PodInfo, _node: &str) -> PermitResult {
        let labels = pod.pod.metadata.labels.clone().unwrap_or_default();
        match labels.get("permit").map(String::as_str) {
            Some("timeout") => {
                return PermitResult {
                    status: Status::wait(),
                    timeout_ms: 300,
                    ..Default::default()
                };
            }
            Some("reject") => {
                return PermitResult {
                    status: Status::unschedulable("rejected by TestPermit"),
                    ..Default::default()
                };
            }
            _ => {}
        }
        let (Some(gang), Some(size)) = (
            labels.get("gang"),
            labels
                .get("gang-size")
                .and_then(|s| s.parse::<usize>().ok()),
        ) else {
            return PermitResult::default();
        };
        let mut gangs = self.gangs.lock().unwrap();
        let members = gangs.entry(gang.clone()).or_default();
        if !members.contains(&pod.key.uid) {
            members.push(pod.key.uid.clone());
        }
        if members.len() < size {
            PermitResult {
                status: Status::wait(),
                timeout_ms: 30_000,
                ..Default::default()
            }
        } else {
            let allow = members
                .iter()
                .filter(|u| **u != pod.key.uid)
                .cloned()
                .collect();
            PermitResult {
                allow,
                ..Default::default()
            }
        }
    }
}

fn config_enabling(plugins: &[&str]) -> SchedulerConfig {
    let enabled: Vec<String> = plugins.iter().map(|p| format!("{{name: {p}}}")).collect();
    let yaml = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: default-scheduler\n  plugins:\n    multiPoint:\n      enabled: [{}]\n",
        enabled.join(", ")
    );
    SchedulerConfig::from_yaml_str("test-config.yaml", &yaml).expect("test config is valid")
}

fn registry_with(name: &str, plugin: PluginRef) -> Registry {
    let mut r = Registry::with_builtins();
    let factory: PluginFactory = Arc::new(move |_, _| Ok(plugin.clone()));
    r.register(name, factory).unwrap();
    r
}

fn labelled_pod(name: &str, cpu: &str, labels: &str) -> String {
    pod_yaml(name, cpu, "64Mi", "").replace(
        &format!("name: {name}, namespace: default"),
        &format!("name: {name}, namespace: default, labels: {labels}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_holds_a_gang_until_all_members_arrive() {
    let cluster = TestCluster::start_with(
        config_enabling(&["TestPermit"]),
        registry_with("TestPermit", Arc::new(TestPermit::default())),
    )
    .await;
    cluster.apply(&two_nodes()).await;
    cluster
        .apply(&labelled_pod("g1", "100m", "{gang: a, gang-size: '2'}"))
        .await;
    // The first member waits at Permit: it stays unbound while alone.
    tokio::time::timeout(
        TIMEOUT,
        cluster.scheduler.wait_until(|s| s.waiting_pods() == 1),
    )
    .await
    .unwrap();
    assert!(node_of(&cluster.pod("default", "g1").await).is_none());
    cluster
        .apply(&labelled_pod("g2", "100m", "{gang: a, gang-size: '2'}"))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| pods.len() == 2 && pods.iter().all(is_bound))
        .await;
    assert_eq!(pods.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_wait_times_out_and_the_pod_is_not_bound() {
    let cluster = TestCluster::start_with(
        config_enabling(&["TestPermit"]),
        registry_with("TestPermit", Arc::new(TestPermit::default())),
    )
    .await;
    cluster.apply(&two_nodes()).await;
    cluster
        .apply(&labelled_pod("slow", "100m", "{permit: timeout}"))
        .await;
    cluster
        .apply(&labelled_pod("rejected", "100m", "{permit: reject}"))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| {
            failure_message(named(pods, "slow")).is_some()
                && failure_message(named(pods, "rejected")).is_some()
        })
        .await;
    assert_eq!(
        failure_message(named(&pods, "slow")).as_deref(),
        Some("rejected due to timeout after waiting 300ms at plugin TestPermit")
    );
    assert_eq!(
        failure_message(named(&pods, "rejected")).as_deref(),
        Some("rejected by TestPermit")
    );
    assert!(pods.iter().all(|p| !is_bound(p)));
    // Unreserve forgot the assumed pods: the nodes have their full room again.
    let n1 = cluster.scheduler.cache().node("n1").unwrap();
    let n2 = cluster.scheduler.cache().node("n2").unwrap();
    assert_eq!(n1.requested.milli_cpu + n2.requested.milli_cpu, 0);
}

/// Test plugin: at Reserve, returns a JSON patch of the pod that only applies once the pod has
/// the annotation `ready: "yes"` (a `test` op), so PreBind fails until then; counts Unreserve.
/// Pods labelled `bad-kind` get an intent for a Node instead, which it did not declare.
#[derive(Default)]
struct GuardedPatch {
    unreserved: AtomicUsize,
}

impl Plugin for GuardedPatch {
    fn name(&self) -> &str {
        "GuardedPatch"
    }
    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![ExtensionPoint::Reserve]
    }
    fn patchable_kinds(&self) -> Vec<ResourceKind> {
        vec![ResourceKind::pod()]
    }
    fn reserve(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> Result<Vec<PatchIntent>, Status> {
        let bad_kind = pod
            .pod
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key("bad-kind"));
        let target = if bad_kind {
            ObjectRef {
                resource: ResourceKind::node(),
                namespace: None,
                name: node.into(),
                uid: String::new(),
            }
        } else {
            ObjectRef {
                resource: ResourceKind::pod(),
                namespace: Some(pod.key.namespace.clone()),
                name: pod.key.name.clone(),
                uid: pod.key.uid.clone(),
            }
        };
        let body = serde_json::json!([
            {"op": "test", "path": "/metadata/annotations/ready", "value": "yes"},
            {"op": "add", "path": "/metadata/labels/reserved-on", "value": node},
        ]);
        Ok(vec![PatchIntent {
            target,
            subresource: None,
            patch_kind: PatchKind::Json,
            body: body.to_string(),
        }])
    }
    fn unreserve(&self, _state: &mut CycleState, _pod: &PodInfo, _node: &str) -> Vec<PatchIntent> {
        self.unreserved.fetch_add(1, Ordering::SeqCst);
        Vec::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_prebind_intent_runs_unreserve_and_the_pod_is_retried() {
    let plugin = Arc::new(GuardedPatch::default());
    let cluster = TestCluster::start_with(
        config_enabling(&["GuardedPatch"]),
        registry_with("GuardedPatch", plugin.clone()),
    )
    .await;
    cluster
        .apply(&node_yaml("n1", "2", "4Gi", "{}", "[]"))
        .await;
    cluster
        .apply(&labelled_pod("guarded", "1", "{app: x}"))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| {
            scheduled_condition(named(pods, "guarded"))
                .is_some_and(|(_, r, _)| r.as_deref() == Some("SchedulerError"))
        })
        .await;
    let msg = failure_message(named(&pods, "guarded")).unwrap();
    assert!(
        msg.contains("running PreBind for plugin \"GuardedPatch\"")
            && msg.contains("Pod default/guarded"),
        "{msg}"
    );
    assert!(plugin.unreserved.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        cluster
            .scheduler
            .cache()
            .node("n1")
            .unwrap()
            .requested
            .milli_cpu,
        0,
        "the assumed pod was forgotten"
    );

    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let ready = serde_json::json!({"metadata": {"annotations": {"ready": "yes"}}});
    api.patch("guarded", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();
    let pods = cluster
        .wait_for_pods(|pods| is_bound(named(pods, "guarded")))
        .await;
    let p = named(&pods, "guarded");
    assert_eq!(node_of(p), Some("n1"));
    assert_eq!(
        p.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("reserved-on")
            .map(String::as_str),
        Some("n1")
    );
    assert!(cluster.outcome("default", "guarded").unwrap().attempts >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_for_an_undeclared_kind_fails_the_cycle_with_a_clear_error() {
    let plugin = Arc::new(GuardedPatch::default());
    let cluster = TestCluster::start_with(
        config_enabling(&["GuardedPatch"]),
        registry_with("GuardedPatch", plugin.clone()),
    )
    .await;
    cluster
        .apply(&node_yaml("n1", "2", "4Gi", "{}", "[]"))
        .await;
    cluster
        .apply(&labelled_pod("sneaky", "1", "{bad-kind: 'yes'}"))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| failure_message(named(pods, "sneaky")).is_some())
        .await;
    assert_eq!(
        failure_message(named(&pods, "sneaky")).as_deref(),
        Some(
            "running Reserve plugin \"GuardedPatch\": plugin GuardedPatch returned a patch intent for Node n1 (v1/Node), but it may only patch [v1/Pod]"
        )
    );
    assert!(
        plugin.unreserved.load(Ordering::SeqCst) >= 1,
        "a failed Reserve runs Unreserve"
    );
    let node = Api::<Node>::all(cluster.client.clone())
        .get("n1")
        .await
        .unwrap();
    assert!(
        !node
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("reserved-on")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_pods_bind_concurrently_without_overcommitting_a_node() {
    let cluster = TestCluster::start().await;
    let mut yaml = String::new();
    for n in 0..10 {
        yaml += &node_yaml(&format!("node-{n}"), "2", "8Gi", "{}", "[]");
    }
    cluster.apply(&yaml).await;
    // 100 × 200m = exactly the 20 CPUs of the cluster.
    let mut pods_yaml = String::new();
    for i in 0..100 {
        pods_yaml += &pod_yaml(&format!("p{i:03}"), "200m", "100Mi", "");
    }
    cluster.apply(&pods_yaml).await;
    let pods = cluster
        .wait_for_pods(|pods| pods.len() == 100 && pods.iter().all(is_bound))
        .await;
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &pods {
        *per_node.entry(node_of(p).unwrap()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 10);
    assert!(
        per_node.values().all(|&n| n == 10),
        "each 2-CPU node holds exactly ten 200m pods: {per_node:?}"
    );
    cluster
        .apply(&pod_yaml("one-more", "200m", "100Mi", ""))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| failure_message(named(pods, "one-more")).is_some())
        .await;
    let msg = failure_message(named(&pods, "one-more")).unwrap();
    assert!(
        msg.starts_with("0/10 nodes are available: 10 Insufficient cpu."),
        "{msg}"
    );
}

/// The outcome of a failed attempt is recorded before the pod leaves in-flight, so whoever
/// waits for idle (as `simulate` does) finds it; a deleted pod's outcome is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_there_when_idle_and_leave_with_deleted_pods() {
    let cluster = TestCluster::start().await;
    cluster.apply(&two_nodes()).await;
    for round in 0..5 {
        let name = format!("huge-{round}");
        cluster.apply(&pod_yaml(&name, "8", "1Gi", "")).await;
        let uid = cluster.pod("default", &name).await.metadata.uid.unwrap();
        // Idle once the queue has the pod: it was attempted and parked.
        tokio::time::timeout(
            TIMEOUT,
            cluster
                .scheduler
                .wait_until(|s| s.queue().contains(&uid) && s.is_idle()),
        )
        .await
        .expect("the scheduler queued the pod and became idle");
        let outcome = cluster.outcome("default", &name);
        assert!(
            outcome
                .as_ref()
                .and_then(|o| o.message.as_deref())
                .is_some_and(|m| m.contains("Insufficient cpu")),
            "round {round}: {outcome:?}"
        );
        Api::<Pod>::namespaced(cluster.client.clone(), "default")
            .delete(&name, &Default::default())
            .await
            .unwrap();
        tokio::time::timeout(
            TIMEOUT,
            cluster
                .scheduler
                .wait_until(|s| !s.outcomes().iter().any(|o| o.name == name)),
        )
        .await
        .expect("the deleted pod's outcome is dropped");
    }
}
