//! pods/binding (reference 40).

use super::*;
use k8s_openapi::api::core::v1::Binding;

fn binding(pod: &str, uid: Option<&str>, node: &str) -> Binding {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod, "uid": uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}
    }))
    .unwrap()
}

async fn bind(pods: &Api<Pod>, url_name: &str, b: &Binding) -> Result<Value, kube::Error> {
    pods.create_subresource::<_, Value>("binding", url_name, &PostParams::default(), b)
        .await
}

#[tokio::test]
async fn binding_sets_the_node_once_and_a_second_binding_is_409() {
    let (_s, client) = setup();
    let pods: Api<Pod> = Api::default_namespaced(client);
    let p = pods
        .create(&PostParams::default(), &pod("web"))
        .await
        .unwrap();
    let uid = p.metadata.uid.clone().unwrap();
    let answer = bind(&pods, "web", &binding("web", Some(&uid), "node-a"))
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    );
    let bound = pods.get("web").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("node-a"));
    let cond = &bound.status.unwrap().conditions.unwrap()[0];
    assert_eq!(
        (cond.type_.as_str(), cond.status.as_str()),
        ("PodScheduled", "True")
    );

    let st = status(
        bind(&pods, "web", &binding("web", Some(&uid), "node-b"))
            .await
            .unwrap_err(),
    );
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        st.message,
        "Operation cannot be fulfilled on pods/binding \"web\": pod web is already assigned to node \"node-a\""
    );
}

#[tokio::test]
async fn binding_with_a_wrong_uid_is_409_and_changes_nothing() {
    let (_s, client) = setup();
    let pods: Api<Pod> = Api::default_namespaced(client);
    let p = pods
        .create(&PostParams::default(), &pod("besteffort"))
        .await
        .unwrap();
    let st = status(
        bind(
            &pods,
            "besteffort",
            &binding(
                "besteffort",
                Some("00000000-0000-0000-0000-00000000beef"),
                "node-a",
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(st.code, 409);
    assert!(
        st.message.contains(
            "Precondition failed: UID in precondition: 00000000-0000-0000-0000-00000000beef"
        ),
        "{}",
        st.message
    );
    assert_eq!(
        pods.get("besteffort")
            .await
            .unwrap()
            .metadata
            .resource_version,
        p.metadata.resource_version
    );
}

#[tokio::test]
async fn binding_name_mismatch_is_400_and_missing_pod_is_404() {
    let (_s, client) = setup();
    let pods: Api<Pod> = Api::default_namespaced(client);
    pods.create(&PostParams::default(), &pod("web"))
        .await
        .unwrap();
    let st = status(
        bind(&pods, "web", &binding("other", None, "node-a"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (st.code, st.message.as_str()),
        (400, "name in URL does not match name in Binding object")
    );
    let st = status(
        bind(&pods, "ghost", &binding("ghost", None, "node-a"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (st.code, st.message.as_str()),
        (404, "pods \"ghost\" not found")
    );
}
