//! The resourceclaim controller's work (references 16 and 61).

use super::*;
use k8s_openapi::api::resource::v1::ResourceClaimTemplate;
use kube::api::{DeleteParams, ListParams};

async fn template_and_pod(client: &kube::Client) -> Pod {
    let templates: Api<ResourceClaimTemplate> = Api::default_namespaced(client.clone());
    let t: ResourceClaimTemplate = serde_json::from_value(json!({
        "metadata": {"name": "gpu-template"},
        "spec": {"metadata": {"labels": {"from-template": "yes"}, "annotations": {"note": "copied into the claim"}},
                 "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com"}}]}}}
    }))
    .unwrap();
    templates.create(&PostParams::default(), &t).await.unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "tmpl-pod"},
        "spec": {"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "gpu-template"}],
                 "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10", "resources": {"claims": [{"name": "gpu"}]}}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap()
}

#[tokio::test]
async fn a_pod_with_a_template_gets_a_generated_claim_and_a_claim_status() {
    let (_s, client) = setup();
    let pod = template_and_pod(&client).await;
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    let list = claims
        .list(&ListParams::default().labels("from-template=yes"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let c = &list.items[0];
    let name = c.metadata.name.clone().unwrap();
    assert!(
        name.starts_with("tmpl-pod-gpu-") && name.len() == "tmpl-pod-gpu-".len() + 5,
        "{name}"
    );
    assert_eq!(c.metadata.generate_name.as_deref(), Some("tmpl-pod-gpu-"));
    let ann = c.metadata.annotations.clone().unwrap();
    assert_eq!(ann["resource.kubernetes.io/pod-claim-name"], "gpu");
    assert_eq!(ann["note"], "copied into the claim");
    let owner = &c.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Pod", "tmpl-pod", Some(true))
    );
    assert_eq!(Some(&owner.uid), pod.metadata.uid.as_ref());

    let pods: Api<Pod> = Api::default_namespaced(client);
    let now = pods.get("tmpl-pod").await.unwrap();
    let statuses = now.status.unwrap().resource_claim_statuses.unwrap();
    assert_eq!(statuses[0].name, "gpu");
    assert_eq!(
        statuses[0].resource_claim_name.as_deref(),
        Some(name.as_str())
    );
}

#[tokio::test]
async fn deleting_the_pod_releases_and_deletes_its_generated_claim() {
    let (_s, client) = setup();
    let pod = template_and_pod(&client).await;
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    let name = claims.list(&ListParams::default()).await.unwrap().items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    // Allocate and reserve it like the scheduler would, with the delete-protection finalizer.
    let pp = PatchParams::default();
    claims
        .patch(
            &name,
            &pp,
            &Patch::Strategic(
                json!({"metadata": {"finalizers": ["resource.kubernetes.io/delete-protection"]}}),
            ),
        )
        .await
        .unwrap();
    let reserve = json!({"status": {"allocation": allocation(),
        "reservedFor": [{"resource": "pods", "name": "tmpl-pod", "uid": pod.metadata.uid.clone().unwrap()}]}});
    claims
        .patch_status(&name, &pp, &Patch::Merge(reserve))
        .await
        .unwrap();

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.delete("tmpl-pod", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(status(claims.get(&name).await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn a_deleted_protected_claim_is_deallocated_once_unreserved() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    let mut c = claim("protected");
    c.metadata.finalizers = Some(vec!["resource.kubernetes.io/delete-protection".into()]);
    claims.create(&PostParams::default(), &c).await.unwrap();
    let pp = PatchParams::default();
    let reserve = json!({"status": {"allocation": allocation(), "reservedFor": [{"resource": "pods", "name": "web", "uid": "u-web"}]}});
    claims
        .patch_status("protected", &pp, &Patch::Merge(reserve))
        .await
        .unwrap();
    claims
        .delete("protected", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        claims
            .get("protected")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    claims
        .patch_status(
            "protected",
            &pp,
            &Patch::Strategic(
                json!({"status": {"reservedFor": [{"$patch": "delete", "uid": "u-web"}]}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(status(claims.get("protected").await.unwrap_err()).code, 404);
}
