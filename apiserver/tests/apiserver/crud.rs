//! Create, get, list, update and delete with the real server's defaults and errors.

use super::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams};

#[tokio::test]
async fn created_pods_get_the_reference_defaults() {
    let (_s, client) = setup();
    let pods: Api<Pod> = Api::default_namespaced(client);
    let created = pods
        .create(&PostParams::default(), &pod("web"))
        .await
        .unwrap();
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
    assert_eq!(spec.priority, Some(0));
    assert_eq!(spec.tolerations.as_ref().unwrap().len(), 2);
    assert_eq!(created.metadata.generation, Some(1));
    let status = created.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(
        pods.get("web").await.unwrap().metadata.resource_version,
        created.metadata.resource_version
    );
}

#[tokio::test]
async fn claim_status_sent_on_create_is_dropped_and_defaults_apply() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    let mut c = claim("one-gpu");
    c.status = serde_json::from_value(
        json!({"reservedFor": [{"resource": "pods", "name": "x", "uid": "1"}]}),
    )
    .unwrap();
    let created = claims.create(&PostParams::default(), &c).await.unwrap();
    assert!(created.status.unwrap().reserved_for.is_none());
    let exactly = created.spec.devices.unwrap().requests.unwrap()[0]
        .exactly
        .clone()
        .unwrap();
    assert_eq!(exactly.allocation_mode.as_deref(), Some("ExactCount"));
    assert_eq!(exactly.count, Some(1));
    assert_eq!(created.metadata.generation, None);
}

#[tokio::test]
async fn creating_an_existing_name_is_409_already_exists() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    claims
        .create(&PostParams::default(), &claim("one-gpu"))
        .await
        .unwrap();
    let st = status(
        claims
            .create(&PostParams::default(), &claim("one-gpu"))
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 409);
    assert_eq!(st.reason, "AlreadyExists");
    assert_eq!(
        st.message,
        "resourceclaims.resource.k8s.io \"one-gpu\" already exists"
    );
}

#[tokio::test]
async fn missing_objects_and_namespaces_are_404() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    let st = status(claims.get("does-not-exist").await.unwrap_err());
    assert_eq!((st.code, st.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        st.message,
        "resourceclaims.resource.k8s.io \"does-not-exist\" not found"
    );
    let pods: Api<Pod> = Api::namespaced(client, "no-such-ns");
    let st = status(
        pods.create(&PostParams::default(), &pod("x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(st.message, "namespaces \"no-such-ns\" not found");
}

#[tokio::test]
async fn update_with_a_stale_resource_version_is_409_conflict() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    let first = claims
        .create(&PostParams::default(), &claim("one-gpu"))
        .await
        .unwrap();
    let mut newer = first.clone();
    newer.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    claims
        .replace("one-gpu", &PostParams::default(), &newer)
        .await
        .unwrap();
    let mut stale = first.clone();
    stale.metadata.labels = Some([("mine".to_string(), "x".to_string())].into());
    let st = status(
        claims
            .replace("one-gpu", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        st.message,
        "Operation cannot be fulfilled on resourceclaims.resource.k8s.io \"one-gpu\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Without a resourceVersion the update is unconditional.
    stale.metadata.resource_version = None;
    let updated = claims
        .replace("one-gpu", &PostParams::default(), &stale)
        .await
        .unwrap();
    assert_eq!(updated.metadata.labels.unwrap()["mine"], "x");
}

#[tokio::test]
async fn lists_filter_by_label_and_field_selectors_and_paginate() {
    let (_s, client) = setup();
    let pods: Api<Pod> = Api::default_namespaced(client);
    for (name, app) in [("a", "web"), ("b", "db"), ("c", "web")] {
        let mut p = pod(name);
        p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<Pod>| {
        l.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("app=web"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("app in (db),app!=web"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().fields("spec.nodeName=,metadata.name!=a"))
                .await
                .unwrap()
        ),
        ["b", "c"]
    );
    let page = pods.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.metadata.remaining_item_count, Some(1));
    let token = page.metadata.continue_.clone().unwrap();
    assert_eq!(names(page), ["a", "b"]);
    assert_eq!(
        names(
            pods.list(&ListParams::default().limit(2).continue_token(&token))
                .await
                .unwrap()
        ),
        ["c"]
    );
    let st = status(
        pods.list(&ListParams::default().fields("spec.priority=0"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (st.code, st.message.as_str()),
        (400, "field label not supported: spec.priority")
    );
}

#[tokio::test]
async fn deleting_an_object_with_a_finalizer_only_marks_it_until_the_finalizer_is_removed() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    let mut c = claim("finalized");
    c.metadata.finalizers = Some(vec!["example.com/protect".into()]);
    claims.create(&PostParams::default(), &c).await.unwrap();
    let marked = claims
        .delete("finalized", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(0));
    // Still there; a second delete changes nothing.
    let again = claims
        .delete("finalized", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        marked.metadata.resource_version
    );
    let done = claims
        .patch(
            "finalized",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(done.metadata.finalizers.is_none());
    assert_eq!(status(claims.get("finalized").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn deleting_a_pod_without_finalizers_removes_it() {
    let (_s, client) = setup();
    let pods: Api<Pod> = Api::default_namespaced(client);
    pods.create(&PostParams::default(), &pod("gone"))
        .await
        .unwrap();
    let last = pods
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(last.metadata.deletion_timestamp.is_some());
    assert_eq!(status(pods.get("gone").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_content() {
    let (_s, client) = setup();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "demo"}})).unwrap();
    let created = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    assert_eq!(
        created.metadata.labels.unwrap()["kubernetes.io/metadata.name"],
        "demo"
    );
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Active"));
    let pods: Api<Pod> = Api::namespaced(client, "demo");
    pods.create(&PostParams::default(), &pod("p"))
        .await
        .unwrap();
    namespaces
        .delete("demo", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(status(namespaces.get("demo").await.unwrap_err()).code, 404);
    assert_eq!(status(pods.get("p").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn events_are_served_by_both_event_apis() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event;
    let (_s, client) = setup();
    let events: Api<Event> = Api::default_namespaced(client.clone());
    let e: Event = serde_json::from_value(json!({
        "metadata": {"name": "web.18eb8175f2c3fc43"},
        "eventTime": "2026-11-26T05:33:40.021357Z",
        "reportingController": "default-scheduler", "reportingInstance": "default-scheduler-host",
        "action": "Binding", "reason": "Scheduled", "type": "Normal",
        "regarding": {"kind": "Pod", "namespace": "default", "name": "web", "apiVersion": "v1"},
        "note": "Successfully assigned default/web to node-b"
    }))
    .unwrap();
    let created = events.create(&PostParams::default(), &e).await.unwrap();
    assert_eq!(
        created.note.as_deref(),
        Some("Successfully assigned default/web to node-b")
    );
    let core: Api<CoreEvent> = Api::default_namespaced(client);
    let c = core.get("web.18eb8175f2c3fc43").await.unwrap();
    assert_eq!(
        c.message.as_deref(),
        Some("Successfully assigned default/web to node-b")
    );
    assert_eq!(c.reporting_component.as_deref(), Some("default-scheduler"));
    assert_eq!(c.involved_object.name.as_deref(), Some("web"));
}

#[tokio::test]
async fn lease_times_need_microseconds() {
    use k8s_openapi::api::coordination::v1::Lease;
    let (_s, client) = setup();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease = |name: &str, t: &str| -> Lease {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15, "renewTime": t}}))
            .unwrap()
    };
    leases
        .create(
            &PostParams::default(),
            &lease("ok", "2026-11-26T05:33:10.511702Z"),
        )
        .await
        .unwrap();
    // A client writing whole seconds is refused like by the real server (kube-rs always writes 6 digits).
    let req = http::Request::post("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "bad"},
            "spec": {"renewTime": "2026-01-02T03:04:05Z"}})).unwrap())
        .unwrap();
    let st = status(client.request::<Value>(req).await.unwrap_err());
    assert_eq!(st.code, 400);
    assert!(
        st.message.ends_with("cannot parse \"Z\" as \".000000\""),
        "{}",
        st.message
    );
}

#[tokio::test]
async fn deleting_an_object_without_finalizers_answers_a_success_status() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    let c = claims
        .create(&PostParams::default(), &claim("c"))
        .await
        .unwrap();
    let st = claims
        .delete("c", &DeleteParams::default())
        .await
        .unwrap()
        .right()
        .unwrap();
    let details = st.details.unwrap();
    assert_eq!(
        (
            details.name.as_str(),
            details.group.as_str(),
            details.kind.as_str()
        ),
        ("c", "resource.k8s.io", "resourceclaims")
    );
    assert_eq!(Some(details.uid), c.metadata.uid);
    // A uid precondition that does not match is a conflict.
    claims
        .create(&PostParams::default(), &claim("d"))
        .await
        .unwrap();
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("00000000-0000-0000-0000-00000000dead".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let st = status(claims.delete("d", &dp).await.unwrap_err());
    assert_eq!(st.code, 409);
    assert!(st.message.starts_with("Operation cannot be fulfilled on ResourceClaim.resource.k8s.io \"d\": the UID in the precondition (00000000-0000-0000-0000-00000000dead) does not match"), "{}", st.message);
}
