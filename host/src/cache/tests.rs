use super::*;
use crate::framework::{ExtensionPoint, ObjectRef, PatchKind, Plugin};
use serde_json::json;

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<ObjectEvent>>,
}

impl Plugin for Recorder {
    fn name(&self) -> &str {
        "Recorder"
    }
    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![]
    }
    fn subscriptions(&self) -> Vec<ResourceKind> {
        vec![ResourceKind::resource_claim(), ResourceKind::pod()]
    }
    fn on_event(&self, event: &ObjectEvent) {
        self.events.lock().push(event.clone());
    }
}

#[derive(Default)]
struct Handler {
    log: Mutex<Vec<String>>,
}

impl CacheEvents for Handler {
    fn pending_pod(&self, pod: Arc<PodInfo>, spec_changed: bool) {
        self.log
            .lock()
            .push(format!("pending {} {spec_changed}", pod.key.name));
    }
    fn pod_gone(&self, uid: &str) {
        self.log.lock().push(format!("gone {uid}"));
    }
    fn cluster_event(&self, resource: &ResourceKind, action: EventAction) {
        self.log
            .lock()
            .push(format!("{} {action:?}", resource.kind));
    }
}

fn claim(rv: u64) -> Value {
    json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": "c", "namespace": "d", "uid": "cu", "resourceVersion": rv.to_string()},
        "spec": {}
    })
}

fn pod(name: &str, node: Option<&str>) -> Arc<Pod> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": name},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]}
        }))
        .unwrap(),
    )
}

fn setup() -> (Arc<Cache>, Arc<Recorder>, Arc<Handler>) {
    let cache = Cache::new();
    let rec = Arc::new(Recorder::default());
    let handler = Arc::new(Handler::default());
    cache.set_subscribers(&[rec.clone() as PluginRef]);
    cache.set_handler(handler.clone());
    (cache, rec, handler)
}

#[test]
fn subscribed_plugins_get_real_and_assumed_changes_in_order() {
    let (cache, rec, _) = setup();
    assert_eq!(cache.tracked_kinds(), vec![ResourceKind::resource_claim()]);
    cache.apply_object(&ResourceKind::resource_claim(), "d/c".into(), claim(1));
    let intent = PatchIntent {
        target: ObjectRef {
            resource: ResourceKind::resource_claim(),
            namespace: Some("d".into()),
            name: "c".into(),
            uid: "cu".into(),
        },
        subresource: Some("status".into()),
        patch_kind: PatchKind::Merge,
        body: r#"{"status":{"allocation":{"devices":{"results":[]}}}}"#.into(),
    };
    let ids = cache
        .assume_intents("pod-1", std::slice::from_ref(&intent))
        .unwrap();
    assert!(ids[0].is_some());
    cache.forget_intents("pod-1");
    let events = rec.events.lock();
    let actions: Vec<(EventAction, bool)> = events
        .iter()
        .map(|e| (e.action, e.object.contains("allocation")))
        .collect();
    assert_eq!(
        actions,
        [
            (EventAction::Added, false),
            (EventAction::Modified, true),
            (EventAction::Modified, false)
        ]
    );
    assert_eq!(cache.pending_work(), PendingWork::default());
}

/// The watch showing an assumed write back (only the resourceVersion is new) is no event for
/// plugins; a real change after it is.
#[test]
fn the_watch_confirming_an_assumed_write_is_not_delivered_twice() {
    let (cache, rec, _) = setup();
    let kind = ResourceKind::resource_claim();
    cache.apply_object(&kind, "d/c".into(), claim(1));
    let intent = PatchIntent {
        target: ObjectRef {
            resource: kind.clone(),
            namespace: Some("d".into()),
            name: "c".into(),
            uid: "cu".into(),
        },
        subresource: Some("status".into()),
        patch_kind: PatchKind::Merge,
        body: r#"{"status":{"allocation":{"devices":{"results":[{"request":"r","driver":"d","pool":"p","device":"x"}]}}}}"#.into(),
    };
    let ids = cache
        .assume_intents("pod-1", std::slice::from_ref(&intent))
        .unwrap();
    cache.intent_applied(&intent, ids[0].unwrap(), Some("2"));
    let mut written = claim(2);
    written["status"] = json!({"allocation": {"devices": {"results": [
        {"request": "r", "driver": "d", "pool": "p", "device": "x"}
    ]}}});
    cache.apply_object(&kind, "d/c".into(), written.clone());
    assert_eq!(cache.pending_work(), PendingWork::default());
    assert_eq!(rec.events.lock().len(), 2, "added, then the assumed write");
    written["metadata"]["resourceVersion"] = json!("3");
    written["metadata"]["labels"] = json!({"a": "b"});
    cache.apply_object(&kind, "d/c".into(), written);
    let events = rec.events.lock();
    assert_eq!(events.len(), 3, "a real change is delivered");
    assert!(events[2].object.contains(r#""resourceVersion":"3""#));
}

#[test]
fn same_but_version_ignores_only_the_version_and_managed_fields() {
    let a = claim(1);
    let mut b = claim(2);
    b["metadata"]["managedFields"] = json!([{"manager": "m"}]);
    assert!(same_but_version(&a, &b));
    b["metadata"]["labels"] = json!({"x": "y"});
    assert!(!same_but_version(&a, &b));
    let mut c = claim(1);
    c["status"] = json!({});
    assert!(!same_but_version(&a, &c));
    assert!(!same_but_version(&c, &a));
}

#[test]
fn an_intent_for_an_untracked_kind_is_only_applied_later() {
    let (cache, _, _) = setup();
    let intent = PatchIntent {
        target: ObjectRef {
            resource: ResourceKind::node(),
            namespace: None,
            name: "n".into(),
            uid: "x".into(),
        },
        subresource: None,
        patch_kind: PatchKind::Merge,
        body: "{}".into(),
    };
    assert_eq!(cache.assume_intents("p", &[intent]).unwrap(), vec![None]);
}

#[test]
fn pod_changes_reach_the_handler_as_pending_pods_and_cluster_events() {
    let (cache, rec, handler) = setup();
    cache.apply_pod(pod("a", None));
    cache.apply_pod(pod("a", Some("n1")));
    cache.delete_pod(&pod("a", Some("n1")));
    assert_eq!(
        *handler.log.lock(),
        [
            "pending a false",
            "gone a",
            "Pod Added",
            "gone a",
            "Pod Deleted"
        ]
    );
    assert_eq!(rec.events.lock().len(), 3);
}

#[test]
fn replay_includes_assumed_pods_on_their_node() {
    let (cache, _, _) = setup();
    cache.apply_pod(pod("a", None));
    let info = Arc::new(PodInfo::new(pod("a", None)));
    cache.assume_pod(&info, "n1").unwrap();
    let events = cache.replay(&[ResourceKind::pod()]);
    assert_eq!(events.len(), 1);
    assert!(events[0].object.contains("\"nodeName\":\"n1\""));
    assert_eq!(cache.pending_work().assumed_pods, 1);
    cache.forget_pod("a");
    assert_eq!(cache.pending_work().assumed_pods, 0);
}

/// A pod update arriving after the scheduler assumed the pod (e.g. a status patch posted
/// before the binding, delivered after the binding cycle ended) must not make the pod pending
/// again: the queue would schedule it a second time and fail with "already assigned".
#[test]
fn an_update_of_an_assumed_pod_does_not_make_it_pending_again() {
    let (cache, rec, handler) = setup();
    cache.apply_pod(pod("a", None));
    let info = Arc::new(PodInfo::new(pod("a", None)));
    cache.assume_pod(&info, "n1").unwrap();
    handler.log.lock().clear();
    cache.apply_pod(pod("a", None));
    assert_eq!(*handler.log.lock(), Vec::<String>::new());
    // Plugins keep seeing the pod on its node until the binding shows.
    let last = rec.events.lock().last().cloned().unwrap();
    assert_eq!(last.action, EventAction::Modified);
    assert!(
        last.object.contains("\"nodeName\":\"n1\""),
        "{}",
        last.object
    );
    assert_eq!(cache.pending_work().assumed_pods, 1);
    // The binding confirms it.
    cache.apply_pod(pod("a", Some("n1")));
    assert_eq!(*handler.log.lock(), ["gone a", "Pod Added"]);
    assert_eq!(cache.pending_work().assumed_pods, 0);
}

#[test]
fn an_assumed_pod_serializes_as_the_pod_with_its_node_set() {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "a", "namespace": "d", "uid": "a", "labels": {"x": "y"}},
        "spec": {"containers": [{"name": "c", "image": "i"}], "schedulerName": "s"},
        "status": {"phase": "Pending"}
    }))
    .unwrap();
    let mut with_node = p.clone();
    with_node.spec.as_mut().unwrap().node_name = Some("n1".into());
    assert_eq!(
        Cache::pod_event_json(&p, Some("n1")),
        serde_json::to_string(&with_node).unwrap()
    );
    let no_spec = Pod {
        metadata: p.metadata.clone(),
        ..Default::default()
    };
    let mut expected = no_spec.clone();
    expected.spec = Some(k8s_openapi::api::core::v1::PodSpec {
        node_name: Some("n1".into()),
        ..Default::default()
    });
    assert_eq!(
        Cache::pod_event_json(&no_spec, Some("n1")),
        serde_json::to_string(&expected).unwrap()
    );
}

#[test]
fn deleted_pods_are_reported_as_deleted_not_bound() {
    #[derive(Default)]
    struct Deletions(Mutex<Vec<String>>);
    impl CacheEvents for Deletions {
        fn pending_pod(&self, _: Arc<PodInfo>, _: bool) {}
        fn pod_gone(&self, _: &str) {}
        fn pod_deleted(&self, uid: &str) {
            self.0.lock().push(uid.to_string());
        }
        fn cluster_event(&self, _: &ResourceKind, _: EventAction) {}
    }
    let cache = Cache::new();
    let d = Arc::new(Deletions::default());
    cache.set_handler(d.clone());
    cache.apply_pod(pod("a", None));
    cache.apply_pod(pod("a", Some("n1")));
    assert!(d.0.lock().is_empty(), "binding is not deletion");
    cache.delete_pod(&pod("a", Some("n1")));
    assert_eq!(*d.0.lock(), ["a"]);
}

/// A kind the API server does not serve (a beta API left off, like resource.k8s.io/v1beta2 on
/// a default v1.36 control plane) is treated as empty: the cache still syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_the_server_does_not_serve_does_not_block_the_sync() {
    let server = embedded_apiserver::ApiServer::new();
    let cache = Cache::new();
    cache.track_kind(&ResourceKind::device_taint_rule());
    cache.track_kind(&ResourceKind::new("example.com/v1", "Widget"));
    let task = cache.start(server.client());
    tokio::time::timeout(std::time::Duration::from_secs(30), cache.wait_synced())
        .await
        .expect("the cache syncs without the unserved kind");
    task.abort();
}
