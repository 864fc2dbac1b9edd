//! The three patch types, preconditions, and status/main isolation (references 22, 25, 26, 31-36).

use super::*;

fn reserve(claim_uid: &str, pod: &str, pod_uid: &str) -> Patch<Value> {
    Patch::Strategic(
        json!({"metadata": {"uid": claim_uid}, "status": {"reservedFor": [{"resource": "pods", "name": pod, "uid": pod_uid}]}}),
    )
}

fn reserved_names(c: &ResourceClaim) -> Vec<String> {
    c.status
        .as_ref()
        .and_then(|s| s.reserved_for.as_ref())
        .map(|r| r.iter().map(|e| e.name.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn strategic_merge_adds_reservations_by_uid_newest_first_and_deletes_with_directive() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    let c = allocated_claim(&client, "patch-demo").await;
    let uid = c.metadata.uid.clone().unwrap();
    let pp = PatchParams::default();
    claims
        .patch_status("patch-demo", &pp, &reserve(&uid, "web", "u-web"))
        .await
        .unwrap();
    let after = claims
        .patch_status("patch-demo", &pp, &reserve(&uid, "guaranteed", "u-g"))
        .await
        .unwrap();
    assert_eq!(reserved_names(&after), ["guaranteed", "web"]);
    // Re-sending an entry is a no-op: no new resourceVersion.
    let same = claims
        .patch_status("patch-demo", &pp, &reserve(&uid, "web", "u-web"))
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        after.metadata.resource_version
    );
    let deleted = claims
        .patch_status(
            "patch-demo",
            &pp,
            &Patch::Strategic(json!({"metadata": {"uid": uid}, "status": {"reservedFor": [{"$patch": "delete", "uid": "u-web"}]}})),
        )
        .await
        .unwrap();
    assert_eq!(reserved_names(&deleted), ["guaranteed"]);
}

#[tokio::test]
async fn merge_patch_replaces_lists_and_null_removes() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    allocated_claim(&client, "m").await;
    let pp = PatchParams::default();
    let two = json!({"status": {"reservedFor": [{"resource": "pods", "name": "a", "uid": "1"}, {"resource": "pods", "name": "b", "uid": "2"}]}});
    claims
        .patch_status("m", &pp, &Patch::Merge(two))
        .await
        .unwrap();
    let one = json!({"status": {"reservedFor": [{"resource": "pods", "name": "c", "uid": "3"}]}});
    assert_eq!(
        reserved_names(
            &claims
                .patch_status("m", &pp, &Patch::Merge(one))
                .await
                .unwrap()
        ),
        ["c"]
    );
    let cleared = claims
        .patch_status(
            "m",
            &pp,
            &Patch::Merge(json!({"status": {"reservedFor": null}})),
        )
        .await
        .unwrap();
    assert!(reserved_names(&cleared).is_empty());
}

#[tokio::test]
async fn json_patch_applies_tests_and_fails_with_422_when_a_test_fails() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    let c = allocated_claim(&client, "j").await;
    let uid = c.metadata.uid.unwrap();
    let pp = PatchParams::default();
    let ok: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/uid", "value": uid},
        {"op": "add", "path": "/status/reservedFor", "value": [{"resource": "pods", "name": "web", "uid": "1"}]}
    ]))
    .unwrap();
    assert_eq!(
        reserved_names(
            &claims
                .patch_status("j", &pp, &Patch::<()>::Json(ok))
                .await
                .unwrap()
        ),
        ["web"]
    );
    let bad: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/uid", "value": "00000000-0000-0000-0000-00000000dead"},
        {"op": "add", "path": "/status/reservedFor/-", "value": {"resource": "pods", "name": "x", "uid": "2"}}
    ]))
    .unwrap();
    let st = status(
        claims
            .patch_status("j", &pp, &Patch::<()>::Json(bad))
            .await
            .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        st.message,
        "the server rejected our request due to an error in our request"
    );
    assert_eq!(reserved_names(&claims.get("j").await.unwrap()), ["web"]);
}

#[tokio::test]
async fn a_resource_version_in_a_patch_is_a_precondition() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    let c = claims
        .create(&PostParams::default(), &claim("one-gpu"))
        .await
        .unwrap();
    let rv = c.metadata.resource_version.unwrap();
    let pp = PatchParams::default();
    claims
        .patch(
            "one-gpu",
            &pp,
            &Patch::Merge(json!({"metadata": {"resourceVersion": rv, "labels": {"a": "1"}}})),
        )
        .await
        .unwrap();
    let st = status(
        claims
            .patch(
                "one-gpu",
                &pp,
                &Patch::Merge(json!({"metadata": {"resourceVersion": rv, "labels": {"a": "2"}}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    // Without one the patch applies to the latest version.
    claims
        .patch(
            "one-gpu",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": "3"}}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn status_writes_ignore_spec_and_main_writes_ignore_status() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    allocated_claim(&client, "iso").await;
    let pp = PatchParams::default();
    let via_status = claims
        .patch_status(
            "iso",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"via": "status"}}, "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com", "count": 5}}]}}})),
        )
        .await
        .unwrap();
    assert!(via_status.metadata.labels.is_none());
    assert_eq!(
        via_status.spec.devices.unwrap().requests.unwrap()[0]
            .exactly
            .as_ref()
            .unwrap()
            .count,
        Some(1)
    );
    let via_main = claims
        .patch(
            "iso",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"via": "main"}}, "status": {"reservedFor": [{"resource": "pods", "name": "web", "uid": "1"}]}})),
        )
        .await
        .unwrap();
    assert_eq!(via_main.metadata.labels.as_ref().unwrap()["via"], "main");
    assert!(reserved_names(&via_main).is_empty());
}

#[tokio::test]
async fn unsupported_patch_content_types_are_415() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    claims
        .create(&PostParams::default(), &claim("c"))
        .await
        .unwrap();
    let req = http::Request::patch("/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/c")
        .header("content-type", "application/json")
        .body(br#"{"metadata":{"labels":{"a":"b"}}}"#.to_vec())
        .unwrap();
    let st = status(client.request::<Value>(req).await.unwrap_err());
    assert_eq!(
        (st.code, st.reason.as_str(), st.message.as_str()),
        (415, "UnsupportedMediaType", "415: Unsupported Media Type")
    );
}

#[tokio::test]
async fn strategic_merge_treats_finalizers_as_a_set() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    claims
        .create(&PostParams::default(), &claim("f"))
        .await
        .unwrap();
    let pp = PatchParams::default();
    let add = |f: &str| Patch::Strategic(json!({"metadata": {"finalizers": [f]}}));
    claims
        .patch("f", &pp, &add("example.com/other"))
        .await
        .unwrap();
    let c = claims
        .patch("f", &pp, &add("resource.kubernetes.io/delete-protection"))
        .await
        .unwrap();
    assert_eq!(
        c.metadata.finalizers.unwrap(),
        [
            "resource.kubernetes.io/delete-protection",
            "example.com/other"
        ]
    );
    let again = claims
        .patch("f", &pp, &add("resource.kubernetes.io/delete-protection"))
        .await
        .unwrap();
    assert_eq!(again.metadata.finalizers.as_ref().unwrap().len(), 2);
}
