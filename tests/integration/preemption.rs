//! DefaultPreemption end to end through the embedded API server, with upstream's cases: the
//! cheapest victims go, a PDB-protected pod is spared when another victim works,
//! `preemptionPolicy: Never`, a pod preemption cannot help (nothing is deleted), and a
//! nominated node held across cycles while its victim terminates.

use embedded_apiserver::ApiServer;
use integration_tests::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use wasm_scheduler::config::SchedulerConfig;
use wasm_scheduler::plugins::Registry;

/// PriorityClasses `low` (10), `mid` (100), `high` (1000), `vip` (2000) and `polite` (1000,
/// `preemptionPolicy: Never`).
const CLASSES: &str = r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: low}
value: 10
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: mid}
value: 100
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: vip}
value: 2000
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: polite}
value: 1000
preemptionPolicy: Never
---
"#;

/// A pod already running on `node` (bound by its manifest), with a class, labels and a grace
/// period.
fn running(name: &str, node: &str, cpu: &str, class: &str, labels: &str, grace: u32) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{{labels}}}}}\nspec: {{nodeName: {node}, priorityClassName: {class}, terminationGracePeriodSeconds: {grace}, containers: [{{name: c, image: busybox, resources: {{requests: {{cpu: \"{cpu}\"}}}}}}]}}\n---\n"
    )
}

/// Loads `yaml` first, then starts the scheduler (its caches list everything at once).
async fn cluster_with(yaml: &str) -> TestCluster {
    let server = ApiServer::new();
    server
        .load_manifest_str("cluster.yaml", &format!("{CLASSES}{yaml}"))
        .await
        .expect("the cluster loads");
    TestCluster::start_on(
        server,
        SchedulerConfig::default(),
        Registry::with_builtins(),
    )
    .await
}

fn exists(pods: &[Pod], name: &str) -> bool {
    pods.iter()
        .any(|p| p.metadata.name.as_deref() == Some(name))
}

fn failure(p: &Pod) -> Option<String> {
    scheduled_condition(p)
        .filter(|(s, _, _)| s == "False")
        .and_then(|(_, _, m)| m)
}

fn nominated(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.nominated_node_name.as_deref()
}

fn disruption_target(p: &Pod) -> Option<(String, Option<String>, Option<String>)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_evicts_the_fewest_cheapest_victims_and_the_preemptor_takes_their_node() {
    let cluster = cluster_with(
        &(node_yaml("a", "2", "4Gi", "{}", "[]")
            + &node_yaml("b", "2", "4Gi", "{}", "[]")
            + &running("low-1", "a", "1", "low", "", 0)
            + &running("low-2", "a", "1", "low", "", 0)
            + &running("mid", "b", "2", "mid", "", 0)),
    )
    .await;
    cluster
        .apply(&pod_yaml("urgent", "1", "64Mi", "priorityClassName: high"))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| exists(pods, "urgent") && is_bound(named(pods, "urgent")))
        .await;
    assert_eq!(node_of(named(&pods, "urgent")), Some("a"));
    // One low pod is enough room: the other is reprieved; the pricier node is untouched.
    let lows = ["low-1", "low-2"]
        .iter()
        .filter(|n| exists(&pods, n))
        .count();
    assert_eq!(lows, 1, "exactly one victim");
    assert!(named(&pods, "mid").metadata.deletion_timestamp.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_protected_by_a_disruption_budget_is_spared_when_another_victim_works() {
    let pdb = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: db, namespace: default}\nspec: {minAvailable: 1, selector: {matchLabels: {app: db}}}\n---\n";
    // Same priority on both nodes: without the budget, either would do.
    let cluster = cluster_with(
        &(node_yaml("a", "2", "4Gi", "{}", "[]")
            + &node_yaml("b", "2", "4Gi", "{}", "[]")
            + &running("db", "a", "2", "low", "app: db", 0)
            + &running("batch", "b", "2", "low", "app: batch", 0)
            + pdb),
    )
    .await;
    cluster
        .apply(&pod_yaml("urgent", "2", "64Mi", "priorityClassName: high"))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| exists(pods, "urgent") && is_bound(named(pods, "urgent")))
        .await;
    assert_eq!(node_of(named(&pods, "urgent")), Some("b"));
    assert!(!exists(&pods, "batch"));
    assert!(named(&pods, "db").metadata.deletion_timestamp.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_preemption_policy_never_waits_instead_of_preempting() {
    let cluster = cluster_with(
        &(node_yaml("a", "2", "4Gi", "{}", "[]") + &running("low", "a", "2", "low", "", 0)),
    )
    .await;
    cluster
        .apply(&pod_yaml(
            "polite",
            "2",
            "64Mi",
            "priorityClassName: polite",
        ))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| exists(pods, "polite") && failure(named(pods, "polite")).is_some())
        .await;
    // Other PostFilter plugins of the profile (DynamicResources) may add their reason before
    // preemption's, joined with ", " as upstream joins PostFilter reasons.
    let msg = failure(named(&pods, "polite")).unwrap();
    assert!(
        msg.starts_with("0/1 nodes are available: 1 Insufficient cpu. ")
            && msg.ends_with("preemption: not eligible due to preemptionPolicy=Never."),
        "{msg}"
    );
    cluster.wait_idle().await;
    let low = cluster.pod("default", "low").await;
    assert!(low.metadata.deletion_timestamp.is_none());
    assert!(disruption_target(&low).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_preemption_cannot_help_deletes_no_victim() {
    let cluster = cluster_with(
        &(node_yaml("a", "2", "4Gi", "{}", "[]")
            + &node_yaml("b", "2", "4Gi", "{}", "[]")
            + &running("low", "a", "1", "low", "", 0)
            + &running("boss", "b", "2", "vip", "", 0)),
    )
    .await;
    cluster
        .apply(&pod_yaml("huge", "4", "64Mi", "priorityClassName: high"))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| exists(pods, "huge") && failure(named(pods, "huge")).is_some())
        .await;
    let msg = failure(named(&pods, "huge")).unwrap();
    assert!(
        msg.starts_with("0/2 nodes are available: 2 Insufficient cpu. ")
            && msg.ends_with("preemption: 0/2 nodes are available: 1 Insufficient cpu, 1 No preemption victims found for incoming pod."),
        "{msg}"
    );
    cluster.wait_idle().await;
    for name in ["low", "boss"] {
        let p = cluster.pod("default", name).await;
        assert!(
            p.metadata.deletion_timestamp.is_none(),
            "{name} is not deleted"
        );
    }
    assert!(nominated(&cluster.pod("default", "huge").await).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nominated_node_is_held_across_cycles_while_its_victim_terminates() {
    // The victim takes an hour to stop: it keeps its room until it is gone.
    let cluster = cluster_with(
        &(node_yaml("a", "2", "4Gi", "{}", "[]") + &running("slow", "a", "2", "low", "", 3600)),
    )
    .await;
    cluster
        .apply(&pod_yaml("urgent", "2", "64Mi", "priorityClassName: high"))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| {
            exists(pods, "urgent")
                && nominated(named(pods, "urgent")) == Some("a")
                && named(pods, "slow").metadata.deletion_timestamp.is_some()
        })
        .await;
    let (status, reason, message) = disruption_target(named(&pods, "slow")).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_deref(), message.as_deref()),
        (
            "True",
            Some("PreemptionByScheduler"),
            Some("default-scheduler: preempting to accommodate a higher priority pod")
        )
    );
    assert!(!is_bound(named(&pods, "urgent")));
    // A pod of lower priority than the nominated one cannot take the room it holds, and there
    // is nothing it could preempt to get it.
    cluster
        .apply(&pod_yaml("later", "2", "64Mi", "priorityClassName: mid"))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| {
            exists(pods, "later")
                && failure(named(pods, "later")).is_some_and(|m| m.contains("preemption:"))
        })
        .await;
    assert!(!is_bound(named(&pods, "urgent")) && !is_bound(named(&pods, "later")));
    // The victim's kubelet finishes: the nominated pod gets its node, the other still waits.
    Api::<Pod>::namespaced(cluster.client.clone(), "default")
        .delete("slow", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let pods = cluster
        .wait_for_pods(|pods| is_bound(named(pods, "urgent")))
        .await;
    assert_eq!(node_of(named(&pods, "urgent")), Some("a"));
    assert!(!is_bound(named(&pods, "later")));
}
