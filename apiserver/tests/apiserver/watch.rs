//! Watches: consistency with lists under concurrent writers, history expiry (410), initial events
//! and streaming lists (references 50, 51, 54, 55).

use super::*;
use std::collections::BTreeMap;
use std::time::Duration;

use embedded_apiserver::Config;
use futures::{StreamExt, TryStreamExt};
use kube::api::{DeleteParams, ListParams, WatchEvent, WatchParams};
use kube::runtime::watcher;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_list_version_replays_exactly_the_concurrent_writes() {
    let (_s, client) = setup();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for i in 0..5 {
        pods.create(&PostParams::default(), &pod(&format!("seed-{i}")))
            .await
            .unwrap();
    }
    let list = pods.list(&ListParams::default()).await.unwrap();
    let mut state: BTreeMap<String, String> = list
        .items
        .iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap(),
                p.metadata.resource_version.clone().unwrap(),
            )
        })
        .collect();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = pods
        .watch(&WatchParams::default().timeout(60), &rv)
        .await
        .unwrap()
        .boxed();

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let pods = pods.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let name = format!("w{w}-{i}");
                    pods.create(&PostParams::default(), &pod(&name))
                        .await
                        .unwrap();
                    let label =
                        Patch::Merge(json!({"metadata": {"labels": {"step": i.to_string()}}}));
                    pods.patch(&name, &PatchParams::default(), &label)
                        .await
                        .unwrap();
                    if i % 3 == 0 {
                        pods.delete(&name, &DeleteParams::default()).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    pods.create(&PostParams::default(), &pod("sentinel"))
        .await
        .unwrap();

    let mut last_rv = 0u64;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let (p, deleted) = match ev {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => (p, false),
            WatchEvent::Deleted(p) => (p, true),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        };
        let name = p.metadata.name.clone().unwrap();
        let prv: u64 = p
            .metadata
            .resource_version
            .clone()
            .unwrap()
            .parse()
            .unwrap();
        assert!(prv > last_rv, "events are ordered by resourceVersion");
        last_rv = prv;
        if deleted {
            state.remove(&name);
        } else {
            state.insert(name.clone(), prv.to_string());
        }
        if name == "sentinel" {
            break;
        }
    }
    let now: BTreeMap<String, String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| {
            (
                p.metadata.name.unwrap(),
                p.metadata.resource_version.unwrap(),
            )
        })
        .collect();
    assert_eq!(state, now);
}

#[tokio::test]
async fn a_watch_from_a_version_older_than_the_history_gets_410_expired() {
    let server = ApiServer::with_config(Config { watch_history: 5 });
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    for i in 0..20 {
        pods.create(&PostParams::default(), &pod(&format!("p{i}")))
            .await
            .unwrap();
    }
    let mut stream = pods
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .unwrap()
        .boxed();
    match stream.next().await.unwrap().unwrap() {
        WatchEvent::Error(st) => {
            assert_eq!((st.code, st.reason.as_str()), (410, "Expired"));
            assert!(
                st.message.starts_with("too old resource version: 1 ("),
                "{}",
                st.message
            );
        }
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn a_watch_without_a_version_starts_with_the_current_objects() {
    let (_s, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client);
    claims
        .create(&PostParams::default(), &claim("two-gpus"))
        .await
        .unwrap();
    let mut stream = claims
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    match stream.next().await.unwrap().unwrap() {
        WatchEvent::Added(c) => assert_eq!(c.metadata.name.as_deref(), Some("two-gpus")),
        other => panic!("expected ADDED, got {other:?}"),
    }
}

async fn watcher_sees_initial_objects_and_changes(config: watcher::Config) {
    let (_s, client) = setup();
    let pods: Api<Pod> = Api::default_namespaced(client);
    pods.create(&PostParams::default(), &pod("before"))
        .await
        .unwrap();
    let mut events = watcher(pods.clone(), config).boxed();
    let mut initial = Vec::new();
    loop {
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::InitApply(p) => initial.push(p.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(initial, ["before"]);
    pods.create(&PostParams::default(), &pod("after"))
        .await
        .unwrap();
    loop {
        if let watcher::Event::Apply(p) = events.try_next().await.unwrap().unwrap() {
            assert_eq!(p.metadata.name.as_deref(), Some("after"));
            break;
        }
    }
}

#[tokio::test]
async fn kube_watcher_works_with_list_then_watch() {
    watcher_sees_initial_objects_and_changes(watcher::Config::default()).await;
}

#[tokio::test]
async fn kube_watcher_works_with_streaming_lists() {
    watcher_sees_initial_objects_and_changes(watcher::Config::default().streaming_lists()).await;
}

#[tokio::test]
async fn a_streaming_list_ends_its_initial_events_with_an_annotated_bookmark() {
    let (server, client) = setup();
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    claims
        .create(&PostParams::default(), &claim("two-gpus"))
        .await
        .unwrap();
    let rv = server.resource_version();
    let req = http::Request::get(
        "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
    )
    .body(Vec::new())
    .unwrap();
    let text = client.request_text(req).await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["metadata"]["name"], "two-gpus");
    assert_eq!(
        lines[1],
        json!({"type": "BOOKMARK", "object": {"kind": "ResourceClaim", "apiVersion": "resource.k8s.io/v1",
            "metadata": {"resourceVersion": rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}},
            "spec": {"devices": {"requests": null}}, "status": {}}})
    );
    // Without resourceVersionMatch the request is refused.
    let req = http::Request::get(
        "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims?watch=1&sendInitialEvents=true",
    )
    .body(Vec::new())
    .unwrap();
    let st = status(client.request_text(req).await.unwrap_err());
    assert_eq!(st.code, 422);
    assert!(
        st.message
            .ends_with("sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
    );
}

#[tokio::test]
async fn a_filtered_watch_sees_objects_leave_and_enter_its_selection() {
    let (_s, client) = setup();
    let pods: Api<Pod> = Api::default_namespaced(client);
    pods.create(&PostParams::default(), &pod("p"))
        .await
        .unwrap();
    let mut stream = pods
        .watch(
            &WatchParams::default().fields("spec.nodeName=").timeout(10),
            "0",
        )
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        stream.next().await.unwrap().unwrap(),
        WatchEvent::Added(_)
    ));
    let b: k8s_openapi::api::core::v1::Binding = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n"}}),
    )
    .unwrap();
    pods.create_subresource::<_, Value>("binding", "p", &PostParams::default(), &b)
        .await
        .unwrap();
    // Bound, so it no longer matches spec.nodeName= : the watcher sees it deleted.
    assert!(matches!(
        stream.next().await.unwrap().unwrap(),
        WatchEvent::Deleted(_)
    ));
}
