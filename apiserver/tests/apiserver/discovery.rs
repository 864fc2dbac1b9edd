//! Discovery through kube's discovery client and raw requests (references 01-06).

use super::*;
use kube::discovery::Discovery;

#[tokio::test]
async fn kube_discovery_finds_every_served_resource() {
    let (_s, client) = setup();
    let discovery = Discovery::new(client).run().await.unwrap();
    let mut found = Vec::new();
    for group in discovery.groups() {
        // Every version: devicetaintrules are only in resource.k8s.io/v1beta2.
        for version in group.versions() {
            for (ar, _caps) in group.versioned_resources(version) {
                found.push(format!("{}/{}", ar.group, ar.plural));
            }
        }
    }
    for want in [
        "/pods",
        "/nodes",
        "/namespaces",
        "/events",
        "events.k8s.io/events",
        "coordination.k8s.io/leases",
        "resource.k8s.io/resourceclaims",
        "resource.k8s.io/resourceslices",
        "resource.k8s.io/deviceclasses",
        "resource.k8s.io/resourceclaimtemplates",
        "/persistentvolumes",
        "/persistentvolumeclaims",
        "storage.k8s.io/storageclasses",
        "/services",
        "/replicationcontrollers",
        "apps/replicasets",
        "apps/statefulsets",
        "resource.k8s.io/devicetaintrules",
    ] {
        assert!(
            found.iter().any(|f| f == want),
            "{want} missing from {found:?}"
        );
    }
}

#[tokio::test]
async fn aggregated_discovery_is_served_when_asked_for_and_v2beta1_only_is_406() {
    let (_s, client) = setup();
    let req = |accept: &str| {
        http::Request::get("/apis")
            .header("accept", accept)
            .body(Vec::new())
            .unwrap()
    };
    let v2: Value = client
        .request(req(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        ))
        .await
        .unwrap();
    assert_eq!(v2["kind"], "APIGroupDiscoveryList");
    let groups: Vec<&str> = v2["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["metadata"]["name"].as_str())
        .collect();
    // The real server's order: by group priority, not by name.
    assert_eq!(
        groups,
        [
            "apps",
            "events.k8s.io",
            "policy",
            "storage.k8s.io",
            "scheduling.k8s.io",
            "coordination.k8s.io",
            "resource.k8s.io"
        ]
    );
    let legacy: Value = client.request(req("application/json")).await.unwrap();
    assert_eq!(legacy["kind"], "APIGroupList");
    let st = status(
        client
            .request::<Value>(req(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
            ))
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 406);
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "36")
    );
}
