//! The request log: `client_as`, `record_requests`, `requests`.

use super::*;
use embedded_apiserver::RequestRecord;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Event};
use kube::api::{DeleteParams, ListParams, WatchEvent, WatchParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SCHEDULER: &str = "system:serviceaccount:kube-system:wasm-scheduler";

#[allow(clippy::too_many_arguments)]
fn rec(
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    sub: Option<&str>,
    ns: Option<&str>,
    name: Option<&str>,
    code: u16,
) -> RequestRecord {
    RequestRecord {
        user: user.into(),
        verb: verb.into(),
        api_group: group.into(),
        api_version: if resource.is_empty() { "" } else { "v1" }.into(),
        resource: resource.into(),
        subresource: sub.map(Into::into),
        namespace: ns.map(Into::into),
        name: name.map(Into::into),
        code,
    }
}

#[tokio::test]
async fn records_what_each_client_sent_in_order() {
    let (server, admin) = setup();
    let sched = server.client_as(SCHEDULER);
    let pods: Api<Pod> = Api::default_namespaced(sched.clone());
    // Off by default.
    pods.create(&PostParams::default(), &pod("before"))
        .await
        .unwrap();
    assert_eq!(server.requests(), vec![]);

    server.record_requests(true);
    pods.create(&PostParams::default(), &pod("web"))
        .await
        .unwrap();
    pods.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(json!({"status": {"nominatedNodeName": "node-a"}})),
    )
    .await
    .unwrap();
    let binding: Binding = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "target": {"kind": "Node", "name": "node-a"}
    }))
    .unwrap();
    pods.create_subresource::<_, Value>("binding", "web", &PostParams::default(), &binding)
        .await
        .unwrap();
    let all_pods: Api<Pod> = Api::all(sched.clone());
    let mut stream = all_pods
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        stream.next().await,
        Some(Ok(WatchEvent::Added(_)))
    ));
    drop(stream);
    all_pods.list(&ListParams::default()).await.unwrap();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(sched.clone());
    nodes
        .list(&ListParams::default().fields("metadata.name=node-a"))
        .await
        .unwrap();
    let events: Api<Event> = Api::default_namespaced(sched.clone());
    let event: Event = serde_json::from_value(json!({
        "metadata": {"name": "web.1"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web"},
        "reason": "Scheduled", "message": "bound", "type": "Normal"
    }))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    // A denied-looking request is recorded with its error code.
    assert_eq!(status(pods.get("missing").await.unwrap_err()).code, 404);
    sched.apiserver_version().await.unwrap();
    // The admin client's requests are attributed to system:admin.
    let admin_pods: Api<Pod> = Api::default_namespaced(admin);
    admin_pods
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    admin_pods
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();

    let ns = Some("default");
    let pod = Some("web");
    assert_eq!(
        server.requests(),
        vec![
            rec(SCHEDULER, "create", "", "pods", None, ns, None, 201),
            rec(SCHEDULER, "patch", "", "pods", Some("status"), ns, pod, 200),
            rec(
                SCHEDULER,
                "create",
                "",
                "pods",
                Some("binding"),
                ns,
                pod,
                201
            ),
            rec(SCHEDULER, "watch", "", "pods", None, None, None, 200),
            rec(SCHEDULER, "list", "", "pods", None, None, None, 200),
            rec(
                SCHEDULER,
                "list",
                "",
                "nodes",
                None,
                None,
                Some("node-a"),
                200
            ),
            rec(SCHEDULER, "create", "", "events", None, ns, None, 201),
            rec(SCHEDULER, "get", "", "pods", None, ns, Some("missing"), 404),
            rec(SCHEDULER, "get", "", "", None, None, Some("/version"), 200),
            rec("system:admin", "delete", "", "pods", None, ns, pod, 200),
            rec(
                "system:admin",
                "deletecollection",
                "",
                "pods",
                None,
                ns,
                None,
                200
            ),
        ]
    );

    server.record_requests(false);
    all_pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(server.requests().len(), 11);
}

#[tokio::test]
async fn group_resources_and_subresources_are_recorded() {
    let (server, _) = setup();
    server.record_requests(true);
    let sched = server.client_as(SCHEDULER);
    allocated_claim(&sched, "gpu").await;
    let ns = Some("default");
    assert_eq!(
        server.requests(),
        vec![
            rec(
                SCHEDULER,
                "create",
                "resource.k8s.io",
                "resourceclaims",
                None,
                ns,
                None,
                201
            ),
            rec(
                SCHEDULER,
                "patch",
                "resource.k8s.io",
                "resourceclaims",
                Some("status"),
                ns,
                Some("gpu"),
                200
            ),
        ]
    );
}

/// One HTTP/1.1 request over the loopback listener; returns the status line.
async fn raw_get(addr: std::net::SocketAddr, path: &str, extra_header: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra_header}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn network_requests_are_admin_or_the_impersonated_user() {
    let (server, _) = setup();
    let handle = server.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    server.record_requests(true);
    let path = "/api/v1/namespaces/kube-system/pods";
    assert!(raw_get(handle.addr, path, "").await.contains(" 200 "));
    let as_sched = format!("Impersonate-User: {SCHEDULER}\r\n");
    assert!(
        raw_get(handle.addr, path, &as_sched)
            .await
            .contains(" 200 ")
    );
    let ns = Some("kube-system");
    assert_eq!(
        server.requests(),
        vec![
            rec("system:admin", "list", "", "pods", None, ns, None, 200),
            rec(SCHEDULER, "list", "", "pods", None, ns, None, 200),
        ]
    );
}
