//! PodTopologySpread and InterPodAffinity end to end through the embedded API server, with
//! upstream's cases: spread skew with and without `minDomains`, system default constraints for
//! pods a Service or a ReplicaSet selects (and none for a pod nothing selects), anti-affinity
//! between replicas, affinity to existing pods, and `namespaceSelector`.

use std::collections::BTreeMap;

use embedded_apiserver::ApiServer;
use integration_tests::*;
use k8s_openapi::api::core::v1::Pod;
use wasm_scheduler::config::SchedulerConfig;
use wasm_scheduler::plugins::Registry;

/// Loads `yaml` first, then starts the scheduler with the default profile.
async fn cluster_with(yaml: &str) -> TestCluster {
    let server = ApiServer::new();
    server
        .load_manifest_str("cluster.yaml", yaml)
        .await
        .expect("the cluster loads");
    TestCluster::start_on(
        server,
        SchedulerConfig::default(),
        Registry::with_builtins(),
    )
    .await
}

/// A pod in `namespace` with labels and extra spec entries (YAML flow).
fn labelled_pod(name: &str, namespace: &str, labels: &str, extra_spec: &str) -> String {
    let extra = if extra_spec.is_empty() {
        String::new()
    } else {
        format!(", {extra_spec}")
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{{labels}}}}}\nspec: {{containers: [{{name: c, image: busybox, resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}}}]{extra}}}\n---\n"
    )
}

fn bound_count(pods: &[Pod], prefix: &str) -> usize {
    pods.iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(prefix))
                && is_bound(p)
        })
        .count()
}

fn failure(p: &Pod) -> Option<String> {
    scheduled_condition(p)
        .filter(|(s, _, _)| s == "False")
        .and_then(|(_, _, m)| m)
}

/// Bound pods with this name prefix per zone of their node.
fn per_zone(pods: &[Pod], prefix: &str, zone_of: &BTreeMap<&str, &str>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in pods {
        if p.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with(prefix))
            && let Some(node) = node_of(p)
        {
            *out.entry(zone_of[node].to_string()).or_default() += 1;
        }
    }
    out
}

const ZONE_SPREAD: &str = "topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_spread_evenly_over_zones() {
    let cluster =
        cluster_with(&(zone_node("a1", "z1") + &zone_node("a2", "z1") + &zone_node("b1", "z2")))
            .await;
    let mut yaml = String::new();
    for i in 0..6 {
        yaml += &labelled_pod(&format!("web-{i}"), "default", "app: web", ZONE_SPREAD);
    }
    cluster.apply(&yaml).await;
    let pods = cluster
        .wait_for_pods(|pods| bound_count(pods, "web-") == 6)
        .await;
    let zones = BTreeMap::from([("a1", "z1"), ("a2", "z1"), ("b1", "z2")]);
    // z1 has two nodes, z2 one: the skew limit still splits the replicas 3/3.
    assert_eq!(
        per_zone(&pods, "web-", &zones),
        BTreeMap::from([("z1".to_string(), 3), ("z2".to_string(), 3)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_domains_above_the_zones_that_exist_caps_each_zone_at_max_skew() {
    let cluster = cluster_with(&(zone_node("a", "z1") + &zone_node("b", "z2"))).await;
    let spread = "topologySpreadConstraints: [{maxSkew: 1, minDomains: 3, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}]";
    let mut yaml = String::new();
    for i in 0..3 {
        yaml += &labelled_pod(&format!("web-{i}"), "default", "app: web", spread);
    }
    cluster.apply(&yaml).await;
    // Two zones < minDomains 3: the global minimum counts as 0, so a zone holds at most one.
    let pods = cluster
        .wait_for_pods(|pods| {
            bound_count(pods, "web-") == 2
                && pods.iter().any(|p| !is_bound(p) && failure(p).is_some())
        })
        .await;
    let pending = pods.iter().find(|p| !is_bound(p)).unwrap();
    let message = failure(pending).unwrap();
    assert!(
        message.contains("node(s) didn't match pod topology spread constraints"),
        "{message}"
    );
    let nodes: Vec<_> = pods.iter().filter_map(node_of).collect();
    assert!(nodes.contains(&"a") && nodes.contains(&"b"), "{nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_anti_affinity_take_a_node_each_and_the_extra_one_waits() {
    let cluster =
        cluster_with(&(zone_node("a", "z1") + &zone_node("b", "z1") + &zone_node("c", "z2"))).await;
    let anti = "affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}]}}";
    let mut yaml = String::new();
    for i in 0..4 {
        yaml += &labelled_pod(&format!("web-{i}"), "default", "app: web", anti);
    }
    cluster.apply(&yaml).await;
    let pods = cluster
        .wait_for_pods(|pods| {
            bound_count(pods, "web-") == 3
                && pods.iter().any(|p| !is_bound(p) && failure(p).is_some())
        })
        .await;
    let mut nodes: Vec<_> = pods.iter().filter_map(node_of).collect();
    nodes.sort();
    assert_eq!(nodes, ["a", "b", "c"]);
    let message = failure(pods.iter().find(|p| !is_bound(p)).unwrap()).unwrap();
    assert!(
        message.contains("node(s) didn't match pod anti-affinity rules"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_affinity_joins_the_zone_of_an_existing_pod() {
    let cluster = cluster_with(
        &(zone_node("a", "z1")
            + &zone_node("b", "z2")
            + &zone_node("c", "z2")
            + &labelled_pod("db", "default", "app: db", "nodeName: b")),
    )
    .await;
    let affinity = "affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: db}}, topologyKey: topology.kubernetes.io/zone}]}}";
    let mut yaml = String::new();
    for i in 0..4 {
        yaml += &labelled_pod(&format!("web-{i}"), "default", "app: web", affinity);
    }
    cluster.apply(&yaml).await;
    let pods = cluster
        .wait_for_pods(|pods| bound_count(pods, "web-") == 4)
        .await;
    for p in pods
        .iter()
        .filter(|p| p.metadata.name.as_deref() != Some("db"))
    {
        let node = node_of(p).unwrap();
        assert!(
            node == "b" || node == "c",
            "{:?} on {node}",
            p.metadata.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_selector_selects_pods_of_labelled_namespaces() {
    let namespaces = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {team: a}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: team-b, labels: {team: b}}\n---\n";
    let cluster = cluster_with(
        &(namespaces.to_string()
            + &zone_node("a", "z1")
            + &zone_node("b", "z2")
            + &labelled_pod("cache-a", "team-a", "app: cache", "nodeName: b")
            + &labelled_pod("cache-b", "team-b", "app: cache", "nodeName: a")),
    )
    .await;
    let affinity = "affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: cache}}, namespaceSelector: {matchLabels: {team: a}}, topologyKey: topology.kubernetes.io/zone}]}}";
    cluster
        .apply(&labelled_pod("web", "default", "app: web", affinity))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| {
            pods.iter()
                .any(|p| p.metadata.name.as_deref() == Some("web") && is_bound(p))
        })
        .await;
    // Only team-a's cache counts: web joins zone z2 (node b).
    assert_eq!(node_of(named(&pods, "web")), Some("b"));
}

/// A pod with `labels` whose controller is the ReplicaSet `owner` (as its controller would
/// create it), with extra spec entries.
fn owned_pod(name: &str, labels: &str, owner: &str, extra_spec: &str) -> String {
    let meta = format!(
        "{{name: {name}, namespace: default, labels: {{{labels}}}, ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: {owner}, uid: 6c1b2bd6-0d8e-4bb0-9f5c-000000000001, controller: true}}]}}"
    );
    let extra = if extra_spec.is_empty() {
        String::new()
    } else {
        format!(", {extra_spec}")
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {meta}\nspec: {{containers: [{{name: c, image: busybox, resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}}}]{extra}}}\n---\n"
    )
}

/// Two nodes in two zones where resources favour `a`: it already runs three small `app: web`
/// pods (`web_pod` builds them), while `b` runs one large unrelated pod. Only spreading can send
/// a new web pod to `b`: the system defaults (hostname maxSkew 3, zone maxSkew 5, both
/// ScheduleAnyway, weight 2) outweigh the resource scores when the new pod is selected.
fn crowded_zone(web_pod: impl Fn(&str, &str) -> String) -> String {
    let filler = "apiVersion: v1\nkind: Pod\nmetadata: {name: filler, namespace: default, labels: {app: batch}}\nspec: {nodeName: b, containers: [{name: c, image: busybox, resources: {requests: {cpu: \"2\", memory: 4Gi}}}]}\n---\n";
    let mut yaml = zone_node("a", "z1") + &zone_node("b", "z2") + filler;
    for i in 0..3 {
        yaml += &web_pod(&format!("old-{i}"), "nodeName: a");
    }
    yaml
}

const WEB_SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n---\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_a_service_selects_is_spread_by_the_system_default_constraints() {
    let cluster = cluster_with(
        &(crowded_zone(|name, spec| labelled_pod(name, "default", "app: web", spec)) + WEB_SERVICE),
    )
    .await;
    cluster
        .apply(
            &(labelled_pod("web-new", "default", "app: web", "")
                + &labelled_pod("other-new", "default", "app: other", "")),
        )
        .await;
    let pods = cluster
        .wait_for_pods(|pods| bound_count(pods, "web-new") + bound_count(pods, "other-new") == 2)
        .await;
    // The Service's pods crowd a (and z1): the new one goes to b. A pod nothing selects gets no
    // default constraints and follows the resources to a.
    assert_eq!(node_of(named(&pods, "web-new")), Some("b"));
    assert_eq!(node_of(named(&pods, "other-new")), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_a_replica_set_are_spread_by_default_and_unowned_pods_are_not() {
    let replica_set = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 4\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: busybox}]}\n---\n";
    let cluster = cluster_with(
        &(crowded_zone(|name, spec| owned_pod(name, "app: web", "web", spec)) + replica_set),
    )
    .await;
    // No Service selects app=web here: only the owner makes the difference.
    cluster
        .apply(
            &(owned_pod("web-new", "app: web", "web", "")
                + &labelled_pod("stray-new", "default", "app: web", "")),
        )
        .await;
    let pods = cluster
        .wait_for_pods(|pods| bound_count(pods, "web-new") + bound_count(pods, "stray-new") == 2)
        .await;
    assert_eq!(node_of(named(&pods, "web-new")), Some("b"));
    assert_eq!(node_of(named(&pods, "stray-new")), Some("a"));
}
