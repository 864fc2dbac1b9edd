//! Services, ReplicationControllers, ReplicaSets and StatefulSets: the defaults a real v1.36
//! server gives them (a Service's cluster IP from 10.96.0.0/12, node ports), their validation,
//! and their discovery (core/v1 and the apps/v1 group).

use super::*;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ReplicationController, Service};
use kube::api::ListParams;

fn service(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn template(labels: Value) -> Value {
    json!({"metadata": {"labels": labels},
           "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}})
}

#[tokio::test]
async fn a_service_gets_a_cluster_ip_and_the_real_servers_defaults() {
    let (_s, client) = setup();
    let services: Api<Service> = Api::default_namespaced(client);
    let web = services
        .create(
            &PostParams::default(),
            &service(
                "web",
                json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}),
            ),
        )
        .await
        .unwrap();
    let v = serde_json::to_value(&web).unwrap();
    assert_eq!(
        v["spec"],
        json!({
            "clusterIP": "10.96.0.2", "clusterIPs": ["10.96.0.2"],
            "internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
            "selector": {"app": "web"}, "sessionAffinity": "None", "type": "ClusterIP"
        })
    );
    assert_eq!(v["status"], json!({"loadBalancer": {}}));
    assert!(v["metadata"].get("generation").is_none());

    // The next one gets the next address; a taken or foreign address is refused.
    let api = services
        .create(
            &PostParams::default(),
            &service("api", json!({"ports": [{"port": 8080, "name": "http"}]})),
        )
        .await
        .unwrap();
    assert_eq!(api.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.3"));
    let st = status(
        services
            .create(
                &PostParams::default(),
                &service(
                    "dup",
                    json!({"clusterIP": "10.96.0.2", "ports": [{"port": 80}]}),
                ),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 422);
    assert_eq!(
        st.message,
        "Service \"dup\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.2\"}: failed to allocate IP 10.96.0.2: provided IP is already allocated"
    );
    let st = status(
        services
            .create(
                &PostParams::default(),
                &service(
                    "far",
                    json!({"clusterIP": "10.0.0.5", "ports": [{"port": 80}]}),
                ),
            )
            .await
            .unwrap_err(),
    );
    assert!(
        st.message
            .ends_with("the provided IP (10.0.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
        "{}",
        st.message
    );

    // A PUT without the cluster IP keeps it; changing it is refused.
    let mut put = services.get("web").await.unwrap();
    let spec = put.spec.as_mut().unwrap();
    spec.cluster_ip = None;
    spec.cluster_ips = None;
    let kept = services
        .replace("web", &PostParams::default(), &put)
        .await
        .unwrap();
    assert_eq!(kept.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.2"));
    let st = status(
        services
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"]}}),
                ),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(st.code, 422);
    assert!(
        st.message.contains(
            "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.9\"}: may not change once set"
        ),
        "{}",
        st.message
    );
}

#[tokio::test]
async fn node_port_headless_and_external_name_services_get_what_their_type_needs() {
    let (_s, client) = setup();
    let services: Api<Service> = Api::default_namespaced(client);
    let np = services
        .create(
            &PostParams::default(),
            &service(
                "np",
                json!({"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80}]}),
            ),
        )
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(np.ports.unwrap()[0].node_port, Some(30000));
    assert_eq!(np.external_traffic_policy.as_deref(), Some("Cluster"));
    let st = status(
        services
            .create(
                &PostParams::default(),
                &service(
                    "np2",
                    json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30000}]}),
                ),
            )
            .await
            .unwrap_err(),
    );
    assert!(
        st.message.contains(
            "spec.ports[0].nodePort: Invalid value: 30000: provided port is already allocated"
        ),
        "{}",
        st.message
    );
    let headless = services
        .create(
            &PostParams::default(),
            &service(
                "db",
                json!({"clusterIP": "None", "selector": {"app": "db"}}),
            ),
        )
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(headless.cluster_ips, Some(vec!["None".to_string()]));
    let external = services
        .create(
            &PostParams::default(),
            &service(
                "ext",
                json!({"type": "ExternalName", "externalName": "db.example.com"}),
            ),
        )
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(external.cluster_ip, None);
    assert_eq!(external.internal_traffic_policy, None);
    let st = status(
        services
            .create(&PostParams::default(), &service("bad", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        st.message,
        "Service \"bad\" is invalid: spec.ports: Required value"
    );
    // Field selectors the real server registers for Services.
    let node_ports = services
        .list(&ListParams::default().fields("spec.type=NodePort"))
        .await
        .unwrap();
    assert_eq!(node_ports.items.len(), 1);
}

#[tokio::test]
async fn replica_sets_and_stateful_sets_get_defaults_and_their_template_must_match_the_selector() {
    let (_s, client) = setup();
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template(json!({"app": "web"}))}
    }))
    .unwrap();
    let created =
        serde_json::to_value(sets.create(&PostParams::default(), &rs).await.unwrap()).unwrap();
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["spec"]["replicas"], 1);
    assert_eq!(created["status"], json!({"replicas": 0}));
    assert_eq!(
        created["spec"]["template"]["spec"],
        json!({
            "containers": [{"image": "nginx:1.27", "imagePullPolicy": "IfNotPresent", "name": "web", "resources": {},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "securityContext": {}, "terminationGracePeriodSeconds": 30
        })
    );
    // The selector of an apps/v1 workload is immutable.
    let st = status(
        sets.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}}}})),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        st.message.contains("spec.selector: Invalid value"),
        "{}",
        st.message
    );
    assert!(st.message.contains("field is immutable"), "{}", st.message);
    let mut bad = rs.clone();
    bad.metadata.name = Some("bad".into());
    bad.spec.as_mut().unwrap().template =
        serde_json::from_value(template(json!({"app": "db"}))).unwrap();
    let st = status(sets.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(
        st.message,
        "ReplicaSet.apps \"bad\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`"
    );

    let statefulsets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let ss: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template(json!({"app": "db"}))}
    }))
    .unwrap();
    let created = serde_json::to_value(
        statefulsets
            .create(&PostParams::default(), &ss)
            .await
            .unwrap(),
    )
    .unwrap();
    let spec = &created["spec"];
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(
        spec["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(
        created["status"],
        json!({"replicas": 0, "availableReplicas": 0})
    );
    let st = status(
        statefulsets
            .patch(
                "db",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"serviceName": "other"}})),
            )
            .await
            .unwrap_err(),
    );
    assert!(
        st.message
            .contains("spec: Forbidden: updates to statefulset spec for fields other than"),
        "{}",
        st.message
    );

    // A ReplicationController selects its template's labels when it names no selector.
    let rcs: Api<ReplicationController> = Api::default_namespaced(client);
    let rc: ReplicationController = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "legacy"},
        "spec": {"template": template(json!({"app": "legacy"}))}
    }))
    .unwrap();
    let created = rcs.create(&PostParams::default(), &rc).await.unwrap();
    assert_eq!(
        created.spec.unwrap().selector,
        Some([("app".to_string(), "legacy".to_string())].into())
    );
    assert_eq!(
        created.metadata.labels,
        Some([("app".to_string(), "legacy".to_string())].into())
    );
}

#[tokio::test]
async fn the_apps_group_and_the_new_core_resources_are_discovered_as_the_real_server_shows_them() {
    let (_s, client) = setup();
    let get = |path: &str| {
        http::Request::get(path)
            .header("accept", "application/json")
            .body(Vec::new())
            .unwrap()
    };
    let apps: Value = client.request(get("/apis/apps/v1")).await.unwrap();
    let entries: Vec<(String, Value)> = apps["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "replicasets",
            "replicasets/status",
            "statefulsets",
            "statefulsets/status"
        ]
    );
    let rs = &entries[0].1;
    assert_eq!(rs["storageVersionHash"], "P1RzHs8/mWQ=");
    assert_eq!(rs["shortNames"], json!(["rs"]));
    assert_eq!(rs["categories"], json!(["all"]));
    assert_eq!(
        rs["verbs"],
        json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ])
    );
    assert_eq!(entries[2].1["storageVersionHash"], "H+vl74LkKdo=");
    assert_eq!(entries[2].1["shortNames"], json!(["sts"]));

    let core: Value = client.request(get("/api/v1")).await.unwrap();
    let find = |name: &str| {
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is served"))
    };
    let svc = find("services");
    assert_eq!(
        (
            svc["storageVersionHash"].clone(),
            svc["shortNames"].clone(),
            svc["categories"].clone()
        ),
        (json!("0/CO1lhkEBI="), json!(["svc"]), json!(["all"]))
    );
    let rc = find("replicationcontrollers");
    assert_eq!(
        (rc["storageVersionHash"].clone(), rc["shortNames"].clone()),
        (json!("Jond2If31h0="), json!(["rc"]))
    );
    find("services/status");

    let group: Value = client.request(get("/apis/apps")).await.unwrap();
    assert_eq!(group["preferredVersion"]["groupVersion"], "apps/v1");
    let all: Value = client.request(get("/apis")).await.unwrap();
    // As on the real server, apps comes right after apiregistration.k8s.io (not served here).
    assert_eq!(all["groups"][0]["name"], "apps");
}
