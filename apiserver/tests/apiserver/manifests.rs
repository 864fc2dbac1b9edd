//! Loading manifests: order, `kind: List`, errors that name file, document and field, and nothing
//! half-loaded.

use super::*;
use embedded_apiserver::ManifestError;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::resource::v1::ResourceSlice;

const GOOD: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-a}
status:
  allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: demo}
spec:
  containers: [{name: app, image: "registry.k8s.io/pause:3.10"}]
---
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: List
items:
- apiVersion: resource.k8s.io/v1
  kind: ResourceSlice
  metadata: {name: node-a-gpu}
  spec:
    driver: gpu.example.com
    nodeName: node-a
    pool: {name: node-a, generation: 1, resourceSliceCount: 1}
    devices: [{name: gpu-0, capacity: {cores: {value: 1000m}}}]
"#;

#[tokio::test]
async fn manifests_are_created_namespaces_first_then_in_file_order() {
    let (server, client) = setup();
    let report = server
        .load_manifest_str("cluster.yaml", GOOD)
        .await
        .unwrap();
    assert_eq!(
        report.created,
        [
            "Namespace/demo",
            "Node/node-a",
            "Pod/demo/web",
            "ResourceSlice/node-a-gpu"
        ]
    );
    let nodes: Api<Node> = Api::all(client.clone());
    assert!(
        nodes
            .get("node-a")
            .await
            .unwrap()
            .spec
            .unwrap()
            .taints
            .is_none(),
        "no not-ready taint"
    );
    let slices: Api<ResourceSlice> = Api::all(client);
    let slice = slices.get("node-a-gpu").await.unwrap();
    assert_eq!(
        slice.spec.devices.unwrap()[0].capacity.as_ref().unwrap()["cores"]
            .value
            .0,
        "1"
    );
}

#[tokio::test]
async fn a_bad_field_names_file_document_and_field_and_nothing_is_created() {
    let (server, client) = setup();
    let bad = format!(
        "{GOOD}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: bad, namespace: demo}}\nspec:\n  containers: [{{name: app, image: x, bogus: 1}}]\n"
    );
    let err = server
        .load_manifest_str("cluster.yaml", &bad)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cluster.yaml: document 5: spec.containers[0].bogus: unknown field"
    );
    let namespaces: Api<Namespace> = Api::all(client);
    assert_eq!(status(namespaces.get("demo").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn a_failing_create_rolls_back_the_whole_load() {
    let (server, client) = setup();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("taken"))
        .await
        .unwrap();
    let yaml = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: taken}\nspec:\n  containers: [{name: c, image: i}]\n";
    match server.load_manifest_str("m.yaml", yaml).await.unwrap_err() {
        ManifestError::Create {
            document,
            object,
            message,
            ..
        } => {
            assert_eq!(
                (document.as_str(), object.as_str()),
                ("2", "Pod/default/taken")
            );
            assert_eq!(message, "pods \"taken\" already exists");
        }
        other => panic!("{other}"),
    }
    let nodes: Api<Node> = Api::all(client);
    assert_eq!(status(nodes.get("n1").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn invalid_values_and_unknown_kinds_are_named() {
    let (server, _client) = setup();
    let err = server
        .load_manifest_str("m.yaml", "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: c}\nspec:\n  devices:\n    requests: [{name: Bad_Name, exactly: {deviceClassName: x}}]\n")
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "m.yaml: document 1: spec.devices.requests[0].name: Invalid value: \"Bad_Name\""
        ),
        "{err}"
    );
    let err = server
        .load_manifest_str(
            "m.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 5}\n",
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("m.yaml: document 1: spec.containers: invalid type"),
        "{err}"
    );
}

#[tokio::test]
async fn files_are_loaded_as_one_unit() {
    let (server, _client) = setup();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    std::fs::write(&a, GOOD).unwrap();
    let b = dir.path().join("b.yaml");
    std::fs::write(&b, "apiVersion: v1\nkind: Node\nmetadata: {name: node-b}\n").unwrap();
    let report = server.load_manifests(&[a, b]).await.unwrap();
    assert_eq!(report.created.len(), 5);
}
