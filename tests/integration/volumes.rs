//! VolumeBinding end to end through the embedded API server: a bound volume's node affinity
//! decides the node, a missing claim and an unbound claim get upstream's reasons, and a pod
//! waiting for its claim is scheduled once the claim is bound.

use integration_tests::*;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams};

/// A local volume pinned to `zone`, optionally pre-bound to a claim by `claimRef`.
fn zonal_pv(name: &str, zone: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  capacity: {{storage: 10Gi}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: local\n  local: {{path: /mnt/{name}}}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions: [{{key: topology.kubernetes.io/zone, operator: In, values: [{zone}]}}]\n---\n"
    )
}

/// A claim of class `class`; `volume` pre-binds it when not empty.
fn claim(name: &str, class: &str, volume: &str) -> String {
    let volume = if volume.is_empty() {
        String::new()
    } else {
        format!(", volumeName: {volume}")
    };
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, namespace: default}}\nspec: {{accessModes: [ReadWriteOnce], storageClassName: {class}, resources: {{requests: {{storage: 1Gi}}}}{volume}}}\n---\n"
    )
}

fn pod_using(name: &str, claim: &str) -> String {
    pod_yaml(
        name,
        "100m",
        "64Mi",
        &format!("volumes: [{{name: data, persistentVolumeClaim: {{claimName: {claim}}}}}]"),
    )
}

fn failure(p: &Pod) -> Option<String> {
    scheduled_condition(p)
        .filter(|(s, _, _)| s == "False")
        .and_then(|(_, _, m)| m)
}

fn failed_with(pods: &[Pod], name: &str, text: &str) -> bool {
    pods.iter().any(|p| {
        p.metadata.name.as_deref() == Some(name) && failure(p).is_some_and(|m| m.contains(text))
    })
}

const LOCAL_WFFC: &str = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local}\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\n---\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_goes_to_the_zone_of_its_bound_volume() {
    let cluster = TestCluster::start().await;
    cluster
        .apply(
            &(zone_node("a1", "a")
                + &zone_node("b1", "b")
                + &zone_node("b2", "b")
                + LOCAL_WFFC
                + &zonal_pv("pv-a", "a")
                + &claim("data", "local", "pv-a")),
        )
        .await;
    cluster.apply(&pod_using("db", "data")).await;
    let pods = cluster
        .wait_for_pods(|pods| pods.iter().any(is_bound))
        .await;
    assert_eq!(node_of(named(&pods, "db")), Some("a1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_node_in_the_volumes_zone_reads_as_a_node_affinity_conflict() {
    let cluster = TestCluster::start().await;
    cluster
        .apply(
            &(zone_node("b1", "b")
                + &zone_node("b2", "b")
                + &zonal_pv("pv-a", "a")
                + &claim("data", "local", "pv-a")),
        )
        .await;
    cluster.apply(&pod_using("db", "data")).await;
    let pods = cluster
        .wait_for_pods(|pods| failed_with(pods, "db", "volume node affinity conflict"))
        .await;
    let message = failure(named(&pods, "db")).unwrap();
    assert!(
        message
            .starts_with("0/2 nodes are available: 2 node(s) had volume node affinity conflict."),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_claim_is_named_in_the_reason() {
    let cluster = TestCluster::start().await;
    cluster.apply(&zone_node("a1", "a")).await;
    cluster.apply(&pod_using("db", "nope")).await;
    let pods = cluster
        .wait_for_pods(|pods| failed_with(pods, "db", "not found"))
        .await;
    let message = failure(named(&pods, "db")).unwrap();
    assert!(
        message.starts_with("0/1 nodes are available: persistentvolumeclaim \"nope\" not found."),
        "{message}"
    );
    assert!(!is_bound(named(&pods, "db")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_an_unbound_claim_waits_with_a_reason_and_binds_once_the_claim_is_bound() {
    let cluster = TestCluster::start().await;
    cluster
        .apply(
            &(zone_node("a1", "a")
                + &zone_node("b1", "b")
                + LOCAL_WFFC
                + &zonal_pv("pv-b", "b")
                + &claim("data", "local", "")
                + "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: now}\nprovisioner: example.com/csi\n---\n"
                + &claim("logs", "now", "")),
        )
        .await;
    cluster
        .apply(&(pod_using("db", "data") + &pod_using("tail", "logs")))
        .await;
    let pods = cluster
        .wait_for_pods(|pods| {
            failed_with(pods, "db", "WaitForFirstConsumer")
                && failed_with(
                    pods,
                    "tail",
                    "pod has unbound immediate PersistentVolumeClaims",
                )
        })
        .await;
    assert!(
        !pods.iter().any(is_bound),
        "nothing is bound with an unbound claim"
    );
    assert!(
        failure(named(&pods, "db"))
            .unwrap()
            .contains("this scheduler does not bind or provision volumes")
    );

    // Someone binds the claim (here: the claim is pre-bound to the zone-b volume, and the API
    // server's PV controller completes the binding); the waiting pod is retried and placed.
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(cluster.client.clone());
    claims
        .patch(
            "data",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"volumeName": "pv-b"}})),
        )
        .await
        .unwrap();
    let pods = cluster
        .wait_for_pods(|pods| is_bound(named(pods, "db")))
        .await;
    assert_eq!(node_of(named(&pods, "db")), Some("b1"));
    assert!(!is_bound(named(&pods, "tail")));
}
