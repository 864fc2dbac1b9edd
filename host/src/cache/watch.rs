//! The cache's writer: kube-runtime watchers for pods, nodes and the tracked generic kinds,
//! merged into one stream and applied by one task, in arrival order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::stream::{BoxStream, SelectAll};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::DynamicObject;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, Resource};
use tokio::task::JoinHandle;

use crate::framework::ResourceKind;

use super::{Cache, api_resource, object_key};

/// A watch failed (it is retried with backoff; the error is only logged).
#[derive(Debug, thiserror::Error)]
#[error("watch of {kind} failed: {source}")]
pub struct WatchError {
    /// The watched kind.
    pub kind: String,
    /// The watcher's error.
    #[source]
    pub source: watcher::Error,
}

// Each message is moved once, from its stream to the writer; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Pod(Event<Pod>),
    Node(Event<Node>),
    Object(usize, Event<DynamicObject>),
    /// A failure of the stream with this index.
    Failed(usize, WatchError),
}

/// Drops `metadata.managedFields` as an object arrives (kube-scheduler does so for pods): the
/// scheduler never reads them, and on a real cluster every object carries them: kept, they
/// would sit in the cache and in every event a Wasm plugin parses.
fn strip_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Which stream a message came from (for sync and relist bookkeeping).
fn stream_index(msg: &Msg) -> usize {
    match msg {
        Msg::Pod(_) => 0,
        Msg::Node(_) => 1,
        Msg::Object(i, _) => 2 + i,
        Msg::Failed(i, _) => *i,
    }
}

/// The server does not serve the kind at all (404 on the list): a beta API that is off, such as
/// resource.k8s.io/v1beta2 DeviceTaintRules on a default v1.36 control plane.
fn not_served(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404)
}

impl Cache {
    /// Starts watching pods, nodes and every tracked generic kind through `client`, in one
    /// writer task. Await [`Cache::wait_synced`] before scheduling.
    pub fn start(self: &Arc<Self>, client: Client) -> JoinHandle<()> {
        let kinds = self.tracked_kinds();
        let config = watcher::Config::default();
        let mut streams: SelectAll<BoxStream<'static, Msg>> = SelectAll::new();
        let failed = |idx: usize, kind: &str| {
            let kind = kind.to_string();
            move |source| {
                Msg::Failed(
                    idx,
                    WatchError {
                        kind: kind.clone(),
                        source,
                    },
                )
            }
        };
        let on_err = failed(0, "Pod");
        streams.push(
            watcher(Api::<Pod>::all(client.clone()), config.clone())
                .modify(strip_managed_fields)
                .default_backoff()
                .map_ok(Msg::Pod)
                .map(move |r| r.unwrap_or_else(&on_err))
                .boxed(),
        );
        let on_err = failed(1, "Node");
        streams.push(
            watcher(Api::<Node>::all(client.clone()), config.clone())
                .modify(strip_managed_fields)
                .default_backoff()
                .map_ok(Msg::Node)
                .map(move |r| r.unwrap_or_else(&on_err))
                .boxed(),
        );
        for (i, kind) in kinds.iter().enumerate() {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource(kind));
            let on_err = failed(2 + i, &kind.kind);
            streams.push(
                watcher(api, config.clone())
                    .modify(strip_managed_fields)
                    .default_backoff()
                    .map_ok(move |e| Msg::Object(i, e))
                    .map(move |r| r.unwrap_or_else(&on_err))
                    .boxed(),
            );
        }
        let cache = self.clone();
        let total = 2 + kinds.len();
        tokio::spawn(async move { cache.write_loop(streams, kinds, total).await })
    }

    async fn write_loop(
        &self,
        mut streams: SelectAll<BoxStream<'static, Msg>>,
        kinds: Vec<ResourceKind>,
        total: usize,
    ) {
        let mut synced: HashSet<usize> = HashSet::new();
        let mut relists: HashMap<usize, HashSet<String>> = HashMap::new();
        while let Some(msg) = streams.next().await {
            let idx = stream_index(&msg);
            let kind = match idx {
                0 => ResourceKind::pod(),
                1 => ResourceKind::node(),
                i => kinds[i - 2].clone(),
            };
            match msg {
                Msg::Failed(_, e) if idx >= 2 && not_served(&e.source) => {
                    // Like an informer for a disabled API: nothing to wait for. The watcher
                    // keeps retrying with backoff, so objects appear once the API is enabled.
                    if !synced.contains(&idx) {
                        tracing::warn!(kind = %kind.kind, api_version = %kind.api_version,
                            "the API server does not serve this kind; treating it as empty");
                        self.finish_relist(idx, &kind, &mut relists, &mut synced, total);
                    }
                    continue;
                }
                Msg::Failed(_, e) => {
                    tracing::warn!(error = %e, "watch failed; retrying");
                    continue;
                }
                Msg::Pod(ev) => match ev {
                    Event::Init => {
                        relists.insert(idx, HashSet::new());
                    }
                    Event::InitApply(pod) | Event::Apply(pod) => {
                        if let Some(seen) = relists.get_mut(&idx) {
                            seen.insert(pod.metadata.uid.clone().unwrap_or_default());
                        }
                        self.apply_pod(Arc::new(pod));
                    }
                    Event::Delete(pod) => self.delete_pod(&pod),
                    Event::InitDone => {
                        self.finish_relist(idx, &kind, &mut relists, &mut synced, total)
                    }
                },
                Msg::Node(ev) => match ev {
                    Event::Init => {
                        relists.insert(idx, HashSet::new());
                    }
                    Event::InitApply(node) | Event::Apply(node) => {
                        if let Some(seen) = relists.get_mut(&idx) {
                            seen.insert(node.metadata.name.clone().unwrap_or_default());
                        }
                        self.apply_node(Arc::new(node));
                    }
                    Event::Delete(node) => {
                        self.delete_node(node.metadata.name.as_deref().unwrap_or_default())
                    }
                    Event::InitDone => {
                        self.finish_relist(idx, &kind, &mut relists, &mut synced, total)
                    }
                },
                Msg::Object(_, ev) => match ev {
                    Event::Init => {
                        relists.insert(idx, HashSet::new());
                    }
                    Event::InitApply(obj) | Event::Apply(obj) => {
                        let key = object_key(
                            obj.metadata.namespace.as_deref(),
                            obj.metadata.name.as_deref().unwrap_or(""),
                        );
                        if let Some(seen) = relists.get_mut(&idx) {
                            seen.insert(key.clone());
                        }
                        let mut value = serde_json::to_value(&obj).unwrap_or_default();
                        // List items may come without their type; plugins expect it.
                        if let Some(map) = value.as_object_mut() {
                            map.entry("apiVersion")
                                .or_insert_with(|| kind.api_version.clone().into());
                            map.entry("kind")
                                .or_insert_with(|| kind.kind.clone().into());
                        }
                        self.apply_object(&kind, key, value);
                    }
                    Event::Delete(obj) => {
                        let key = object_key(
                            obj.metadata.namespace.as_deref(),
                            obj.metadata.name.as_deref().unwrap_or(""),
                        );
                        self.delete_object(&kind, &key);
                    }
                    Event::InitDone => {
                        self.finish_relist(idx, &kind, &mut relists, &mut synced, total)
                    }
                },
            }
        }
    }

    fn finish_relist(
        &self,
        idx: usize,
        kind: &ResourceKind,
        relists: &mut HashMap<usize, HashSet<String>>,
        synced: &mut HashSet<usize>,
        total: usize,
    ) {
        if let Some(seen) = relists.remove(&idx) {
            self.retain_seen(kind, &seen);
        }
        synced.insert(idx);
        if synced.len() == total && !self.is_synced() {
            tracing::debug!("cache synced");
            self.set_synced();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the watch streams in `start` do to each arriving object.
    #[tokio::test]
    async fn arriving_objects_lose_their_managed_fields_and_nothing_else() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "d", "labels": {"a": "b"}, "managedFields": [
                {"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]},
            "spec": {"containers": [{"name": "c"}]}
        }))
        .unwrap();
        let events: Vec<Result<Event<Pod>, watcher::Error>> =
            vec![Ok(Event::Apply(pod.clone())), Ok(Event::InitApply(pod))];
        let out: Vec<Event<Pod>> = futures::stream::iter(events)
            .modify(strip_managed_fields)
            .try_collect()
            .await
            .unwrap();
        for e in out {
            let (Event::Apply(p) | Event::InitApply(p)) = e else {
                panic!("unexpected event");
            };
            let json = serde_json::to_value(&p).unwrap();
            assert!(json["metadata"].get("managedFields").is_none(), "{json}");
            assert_eq!(json["metadata"]["labels"]["a"], "b");
            assert_eq!(json["spec"]["containers"][0]["name"], "c");
        }
    }
}
