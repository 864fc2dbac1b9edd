//! PriorityClasses with the Priority admission plugin, PodDisruptionBudget status as the
//! disruption controller keeps it, and pod deletion with grace periods.

use super::*;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::DeleteParams;

fn class(name: &str, value: i32, extra: Value) -> PriorityClass {
    let mut v = json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": name}, "value": value,
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn pod_with(name: &str, spec: Value) -> Pod {
    let mut p = serde_json::to_value(pod(name)).unwrap();
    for (k, x) in spec.as_object().unwrap() {
        p["spec"][k] = x.clone();
    }
    serde_json::from_value(p).unwrap()
}

#[tokio::test]
async fn the_two_system_priority_classes_exist_from_the_start() {
    let (_s, client) = setup();
    let classes: Api<PriorityClass> = Api::all(client);
    let node = classes.get("system-node-critical").await.unwrap();
    assert_eq!(node.value, Some(2_000_001_000));
    assert_eq!(
        node.preemption_policy.as_deref(),
        Some("PreemptLowerPriority")
    );
    assert_eq!(
        classes.get("system-cluster-critical").await.unwrap().value,
        Some(2_000_000_000)
    );
}

#[tokio::test]
async fn a_pods_priority_class_sets_its_priority_and_preemption_policy() {
    let (_s, client) = setup();
    let classes: Api<PriorityClass> = Api::all(client.clone());
    classes
        .create(
            &PostParams::default(),
            &class("batch", 100, json!({"preemptionPolicy": "Never"})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client);
    let p = pods
        .create(
            &PostParams::default(),
            &pod_with("job", json!({"priorityClassName": "batch"})),
        )
        .await
        .unwrap();
    let spec = p.spec.unwrap();
    assert_eq!(spec.priority, Some(100));
    assert_eq!(spec.preemption_policy.as_deref(), Some("Never"));
    let critical = pods
        .create(
            &PostParams::default(),
            &pod_with(
                "dns",
                json!({"priorityClassName": "system-cluster-critical"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(critical.spec.unwrap().priority, Some(2_000_000_000));
}

#[tokio::test]
async fn the_global_default_class_applies_to_pods_without_a_class_and_only_one_may_exist() {
    let (_s, client) = setup();
    let classes: Api<PriorityClass> = Api::all(client.clone());
    classes
        .create(
            &PostParams::default(),
            &class("standard", 50, json!({"globalDefault": true})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client);
    let p = pods
        .create(&PostParams::default(), &pod("plain"))
        .await
        .unwrap();
    let spec = p.spec.unwrap();
    assert_eq!(spec.priority, Some(50));
    assert_eq!(spec.priority_class_name.as_deref(), Some("standard"));
    let err = classes
        .create(
            &PostParams::default(),
            &class("other", 60, json!({"globalDefault": true})),
        )
        .await
        .unwrap_err();
    let st = status(err);
    assert_eq!((st.code, st.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        st.message,
        "priorityclasses.scheduling.k8s.io \"other\" is forbidden: PriorityClass standard is marked as default. Only one default can exist"
    );
}

#[tokio::test]
async fn errors_when_a_pod_names_an_unknown_class_or_sets_another_priority() {
    let (_s, client) = setup();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let err = pods
        .create(
            &PostParams::default(),
            &pod_with("lost", json!({"priorityClassName": "nope"})),
        )
        .await
        .unwrap_err();
    let st = status(err);
    assert_eq!(st.code, 403);
    assert_eq!(
        st.message,
        "pods \"lost\" is forbidden: no PriorityClass with name nope was found"
    );
    let err = pods
        .create(
            &PostParams::default(),
            &pod_with("sneaky", json!({"priority": 7})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        status(err).message,
        "pods \"sneaky\" is forbidden: the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name"
    );
}

#[tokio::test]
async fn errors_when_a_user_class_is_too_high_or_uses_the_system_prefix() {
    let (_s, client) = setup();
    let classes: Api<PriorityClass> = Api::all(client);
    let err = classes
        .create(
            &PostParams::default(),
            &class("huge", 1_000_000_001, json!({})),
        )
        .await
        .unwrap_err();
    assert!(status(err).message.ends_with(
        "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
    ),);
    let err = classes
        .create(&PostParams::default(), &class("system-mine", 5, json!({})))
        .await
        .unwrap_err();
    assert!(
        status(err)
            .message
            .contains("metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only"),
    );
}

fn pdb(min_available: i32) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "db"},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "db"}}}
    }))
    .unwrap()
}

async fn bound_db_pod(client: &kube::Client, name: &str) {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut p = pod(name);
    p.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    p.spec.as_mut().unwrap().node_name = Some("n1".into());
    pods.create(&PostParams::default(), &p).await.unwrap();
}

#[tokio::test]
async fn pdb_status_follows_its_pods_as_the_disruption_controller_keeps_it() {
    let (_s, client) = setup();
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(client.clone());
    let created = pdbs.create(&PostParams::default(), &pdb(2)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let st = pdbs.get("db").await.unwrap().status.unwrap();
    assert_eq!(
        (
            st.expected_pods,
            st.current_healthy,
            st.desired_healthy,
            st.disruptions_allowed
        ),
        (Some(0), Some(0), Some(2), Some(0))
    );
    for name in ["db-0", "db-1", "db-2"] {
        bound_db_pod(&client, name).await;
    }
    let st = pdbs.get("db").await.unwrap().status.unwrap();
    assert_eq!(
        (
            st.expected_pods,
            st.current_healthy,
            st.desired_healthy,
            st.disruptions_allowed
        ),
        (Some(3), Some(3), Some(2), Some(1))
    );
    let cond = &st.conditions.unwrap()[0];
    assert_eq!(
        (
            cond.type_.as_str(),
            cond.status.as_str(),
            cond.reason.as_str()
        ),
        ("DisruptionAllowed", "True", "SufficientPods")
    );
    // A terminating pod is no longer healthy: no disruption is allowed any more.
    Api::<Pod>::default_namespaced(client.clone())
        .delete("db-0", &DeleteParams::default())
        .await
        .unwrap();
    let st = pdbs.get("db").await.unwrap().status.unwrap();
    assert_eq!(
        (st.current_healthy, st.disruptions_allowed),
        (Some(2), Some(0))
    );
    assert_eq!(st.conditions.unwrap()[0].reason, "InsufficientPods");
}

#[tokio::test]
async fn errors_when_a_pdb_sets_both_min_available_and_max_unavailable() {
    let (_s, client) = setup();
    let pdbs: Api<PodDisruptionBudget> = Api::default_namespaced(client);
    let mut b = serde_json::to_value(pdb(1)).unwrap();
    b["spec"]["maxUnavailable"] = json!(1);
    let err = pdbs
        .create(&PostParams::default(), &serde_json::from_value(b).unwrap())
        .await
        .unwrap_err();
    let st = status(err);
    assert_eq!(st.code, 422);
    assert!(
        st.message
            .contains("minAvailable and maxUnavailable cannot be both set"),
        "{}",
        st.message
    );
}

#[tokio::test]
async fn a_bound_pod_terminates_for_its_grace_period_and_grace_zero_removes_it_at_once() {
    let (_s, client) = setup();
    let pods: Api<Pod> = Api::default_namespaced(client);
    let mut p = pod("slow");
    let spec = p.spec.as_mut().unwrap();
    spec.node_name = Some("n1".into());
    spec.termination_grace_period_seconds = Some(3600);
    pods.create(&PostParams::default(), &p).await.unwrap();
    pods.delete("slow", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("slow").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(
        terminating.metadata.deletion_grace_period_seconds,
        Some(3600)
    );
    // Its status can still be written while it terminates.
    pods.patch_status(
        "slow",
        &PatchParams::default(),
        &Patch::Strategic(json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}]}})),
    )
    .await
    .unwrap();
    assert!(pods.get("slow").await.is_ok());
    pods.delete("slow", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert_eq!(status(pods.get("slow").await.unwrap_err()).code, 404);
    // Unbound pods go at once, whatever their grace period.
    let mut q = pod("pending");
    q.spec.as_mut().unwrap().termination_grace_period_seconds = Some(3600);
    pods.create(&PostParams::default(), &q).await.unwrap();
    pods.delete("pending", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(status(pods.get("pending").await.unwrap_err()).code, 404);
}
