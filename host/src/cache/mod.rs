//! The cluster cache: what the scheduler knows about the cluster, fed by watches.
//!
//! - [`Cache::start`] runs kube-runtime watchers for nodes, pods and the generic kinds plugins
//!   need (resource.k8s.io objects) in **one writer task**.
//! - The scheduling loop reads a [`Snapshot`] updated incrementally with
//!   [`Cache::update_snapshot`]; it may be stale by the events the writer has not applied yet.
//! - The scheduler **assumes** pods ([`Cache::assume_pod`]) and patch intents
//!   ([`Cache::assume_intents`]) at Reserve so the next cycle sees them; the watch later confirms
//!   them, or the scheduler forgets them when the binding cycle fails.
//! - Every change of a kind a plugin subscribed to, real or assumed, is pushed to that plugin as
//!   an [`ObjectEvent`] serialized once and shared by all subscribers, in the order the changes
//!   happened.
//! - Changes are also reported to a [`CacheEvents`] handler: pending pods for the queue, and
//!   cluster events that requeue unschedulable pods.

mod kinds;
mod objects;
mod store;
mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Node, Pod};
use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::framework::{
    EventAction, NodeInfo, ObjectEvent, PatchIntent, PluginRef, PodInfo, ResourceKind, Snapshot,
    StateReplay,
};

pub use kinds::{api_resource, dra_kinds, dynamic_api, object_key};
pub use objects::{IntentId, controller_uid, patch_type};
pub use watch::WatchError;

use objects::ObjectStore;
use store::{NodeStore, PodChange};

/// Errors of cache operations.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The pod is already bound or assumed.
    #[error("pod {pod} is already assigned to node {node}")]
    AlreadyAssigned {
        /// Pod name.
        pod: String,
        /// Its node.
        node: String,
    },
    /// An intent names an object the cache does not have.
    #[error("patch intent target {kind} {key} not found")]
    IntentTargetNotFound {
        /// Kind.
        kind: String,
        /// `namespace/name`.
        key: String,
    },
    /// An intent names an object by a uid it no longer has.
    #[error("patch intent for {kind} {key} is for uid {want}, but the object has uid {have}")]
    IntentUidMismatch {
        /// Kind.
        kind: String,
        /// `namespace/name`.
        key: String,
        /// The intent's uid.
        want: String,
        /// The object's uid.
        have: String,
    },
    /// The intent body is not JSON.
    #[error("patch intent body for {key} is not JSON: {message}")]
    IntentBody {
        /// `namespace/name`.
        key: String,
        /// Parser message.
        message: String,
    },
    /// The patch does not apply to the object.
    #[error("patch intent for {key} does not apply: {message}")]
    IntentPatch {
        /// `namespace/name`.
        key: String,
        /// Patch error.
        message: String,
    },
}

/// Receives what the cache learns, in order: the scheduler forwards it to the queue.
pub trait CacheEvents: Send + Sync {
    /// A pod without a node was added or changed; `spec_changed` is false for status-only updates.
    fn pending_pod(&self, pod: Arc<PodInfo>, spec_changed: bool);
    /// A pod is no longer pending: deleted, finished, or bound.
    fn pod_gone(&self, uid: &str);
    /// A pod was deleted or finished (called just before [`CacheEvents::pod_gone`]): forget
    /// what is kept about it.
    fn pod_deleted(&self, _uid: &str) {}
    /// A cluster event that may make unschedulable pods schedulable.
    fn cluster_event(&self, resource: &ResourceKind, action: EventAction);
}

/// Outstanding assumptions (the scheduler is idle only when they are all settled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingWork {
    /// Pods assumed on a node whose binding the watch has not shown.
    pub assumed_pods: usize,
    /// Intents assumed and not yet seen back through the watch.
    pub assumed_intents: usize,
}

/// The cache. Share it as `Arc<Cache>`.
#[derive(Default)]
pub struct Cache {
    nodes: Mutex<NodeStore>,
    objects: RwLock<HashMap<ResourceKind, Mutex<ObjectStore>>>,
    /// Held while changing subscribed state and delivering its events, so plugins see changes
    /// in the order they were made.
    delivery: Mutex<()>,
    subscribers: RwLock<HashMap<ResourceKind, Vec<PluginRef>>>,
    handler: RwLock<Option<Arc<dyn CacheEvents>>>,
    next_intent: AtomicU64,
    synced: AtomicBool,
    synced_notify: Notify,
    changed: Notify,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Arc<Self> {
        Arc::new(Cache::default())
    }

    /// Registers plugins for object events (each gets its `subscriptions()` kinds) and makes the
    /// cache keep generic kinds they subscribe to.
    pub fn set_subscribers(&self, plugins: &[PluginRef]) {
        let mut subs: HashMap<ResourceKind, Vec<PluginRef>> = HashMap::new();
        for p in plugins {
            for kind in p.subscriptions() {
                let list = subs.entry(kind).or_default();
                if !list.iter().any(|q| Arc::ptr_eq(q, p)) {
                    list.push(p.clone());
                }
            }
        }
        for kind in subs.keys() {
            self.track_kind(kind);
        }
        *self.subscribers.write() = subs;
    }

    /// Makes the cache keep objects of a generic kind (not Pod or Node).
    pub fn track_kind(&self, kind: &ResourceKind) {
        if *kind == ResourceKind::pod() || *kind == ResourceKind::node() {
            return;
        }
        let mut objects = self.objects.write();
        objects
            .entry(kind.clone())
            .or_insert_with(|| Mutex::new(ObjectStore::new(&kind.kind)));
    }

    /// The generic kinds the cache keeps (and [`Cache::start`] watches).
    pub fn tracked_kinds(&self) -> Vec<ResourceKind> {
        self.objects.read().keys().cloned().collect()
    }

    /// Sets who hears about pending pods and cluster events.
    pub fn set_handler(&self, handler: Arc<dyn CacheEvents>) {
        *self.handler.write() = Some(handler);
    }

    /// Signalled when the cache becomes synced, when its assumptions all become settled
    /// (see [`Cache::pending_work`]), and when a node is added or removed after the sync.
    /// Not on every change: waking waiters per watch event would cost a context switch each.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Whether every watch has delivered its initial list.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Waits until every watch has delivered its initial list.
    pub async fn wait_synced(&self) {
        loop {
            let notified = self.synced_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_synced() {
                return;
            }
            notified.await;
        }
    }

    fn set_synced(&self) {
        self.synced.store(true, Ordering::Release);
        self.synced_notify.notify_waiters();
        self.changed.notify_waiters();
    }

    /// Signals `changed` if a change that settled an assumption left none outstanding.
    /// Changes that settle nothing never signal, so plain watch traffic wakes no one.
    fn settled_one(&self, settled_something: bool) {
        if settled_something && self.pending_work() == PendingWork::default() {
            self.changed.notify_waiters();
        }
    }

    /// Signals `changed` for a node added or removed after the sync.
    fn nodes_changed(&self) {
        if self.is_synced() {
            self.changed.notify_waiters();
        }
    }

    fn handler(&self) -> Option<Arc<dyn CacheEvents>> {
        self.handler.read().clone()
    }

    fn has_subscribers(&self, kind: &ResourceKind) -> bool {
        self.subscribers
            .read()
            .get(kind)
            .is_some_and(|v| !v.is_empty())
    }

    /// Pushes one change to the plugins subscribed to its kind. Call with `delivery` held.
    fn deliver(&self, resource: &ResourceKind, action: EventAction, object: String) {
        let subs = self.subscribers.read();
        let Some(plugins) = subs.get(resource) else {
            return;
        };
        let event = ObjectEvent {
            action,
            resource: resource.clone(),
            object,
        };
        for p in plugins {
            p.on_event(&event);
        }
    }

    /// Brings the scheduler's snapshot up to date (only changed nodes are copied). Meant for the
    /// one scheduling loop; other readers use [`Cache::snapshot`].
    pub fn update_snapshot(&self, snapshot: &mut Snapshot) {
        self.nodes.lock().update_snapshot(snapshot);
    }

    /// A full snapshot of all nodes.
    pub fn snapshot(&self) -> Snapshot {
        self.nodes.lock().snapshot()
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.lock().node_count()
    }

    /// One node.
    pub fn node(&self, name: &str) -> Option<Arc<NodeInfo>> {
        let s = self.nodes.lock();
        s.nodes().iter().find(|n| n.name == name).cloned()
    }

    /// All pods the cache knows (pending, bound and assumed), as last watched.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.nodes
            .lock()
            .pods
            .values()
            .map(|e| e.info.pod.clone())
            .collect()
    }

    /// The uids of all pods the cache knows (pending, bound and assumed).
    pub fn pod_uids(&self) -> HashSet<String> {
        self.nodes.lock().pods.keys().cloned().collect()
    }

    /// Whether the pod is bound or assumed on a node, as far as the cache knows.
    pub fn is_assigned(&self, uid: &str) -> bool {
        self.nodes
            .lock()
            .pods
            .get(uid)
            .is_some_and(|e| e.node.is_some())
    }

    /// Outstanding assumptions.
    pub fn pending_work(&self) -> PendingWork {
        let assumed_pods = self.nodes.lock().assumed;
        let assumed_intents = self
            .objects
            .read()
            .values()
            .map(|s| s.lock().pending_count())
            .sum();
        PendingWork {
            assumed_pods,
            assumed_intents,
        }
    }

    /// The current (possibly assumed) state of a generic object.
    pub fn object(
        &self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Arc<Value>> {
        let objects = self.objects.read();
        let store = objects.get(kind)?.lock();
        store
            .get(&object_key(namespace, name))
            .map(|e| e.effective().clone())
    }

    /// All objects of a generic kind (assumed state).
    pub fn objects(&self, kind: &ResourceKind) -> Vec<Arc<Value>> {
        let objects = self.objects.read();
        objects
            .get(kind)
            .map(|s| s.lock().values().map(|e| e.effective().clone()).collect())
            .unwrap_or_default()
    }

    /// The JSON plugins get for a pod; an assumed pod shows its node in `spec.nodeName`.
    fn pod_event_json(pod: &Pod, assumed_node: Option<&str>) -> String {
        match assumed_node {
            Some(node) if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) => {
                serde_json::to_string(&AssumedPod { pod, node }).unwrap_or_default()
            }
            _ => serde_json::to_string(pod).unwrap_or_default(),
        }
    }

    // ---- scheduler side: assumptions ----

    /// Places a pod on a node before it is bound (upstream `AssumePod`).
    ///
    /// # Errors
    /// The pod is already bound or assumed.
    pub fn assume_pod(&self, pod: &Arc<PodInfo>, node: &str) -> Result<(), CacheError> {
        let kind = ResourceKind::pod();
        if !self.has_subscribers(&kind) {
            self.nodes.lock().assume_pod(pod, node)?;
            return Ok(());
        }
        // Serialized before taking `delivery`: only the order of deliveries needs the lock, and
        // the watch writer waits on it.
        let json = Self::pod_event_json(&pod.pod, Some(node));
        let _order = self.delivery.lock();
        self.nodes.lock().assume_pod(pod, node)?;
        self.deliver(&kind, EventAction::Modified, json);
        drop(_order);
        Ok(())
    }

    /// Undoes [`Cache::assume_pod`] after a failure (upstream `ForgetPod`).
    pub fn forget_pod(&self, uid: &str) {
        let kind = ResourceKind::pod();
        let _order = self.delivery.lock();
        let pod = {
            let mut s = self.nodes.lock();
            if !s.forget_pod(uid) {
                return;
            }
            s.pods.get(uid).map(|e| e.info.pod.clone())
        };
        if let Some(pod) = pod.filter(|_| self.has_subscribers(&kind)) {
            self.deliver(
                &kind,
                EventAction::Modified,
                Self::pod_event_json(&pod, None),
            );
        }
        drop(_order);
        self.settled_one(true);
    }

    /// Assumes patch intents of a pod's cycle: each targeted object the cache keeps is patched
    /// in place at once and pushed to subscribers. Returns, per intent, the id to report its
    /// outcome with (`None` for kinds the cache does not keep: they are only applied).
    ///
    /// # Errors
    /// A target is missing, has another uid, or the patch does not apply; nothing is assumed.
    pub fn assume_intents(
        &self,
        owner: &str,
        intents: &[PatchIntent],
    ) -> Result<Vec<Option<IntentId>>, CacheError> {
        let objects = self.objects.read();
        let mut ids = Vec::with_capacity(intents.len());
        let mut by_kind: HashMap<&ResourceKind, Vec<(String, &PatchIntent, IntentId)>> =
            HashMap::new();
        for intent in intents {
            let kind = &intent.target.resource;
            if objects.contains_key(kind) {
                let id = self.next_intent.fetch_add(1, Ordering::Relaxed) + 1;
                let key = object_key(intent.target.namespace.as_deref(), &intent.target.name);
                by_kind.entry(kind).or_default().push((key, intent, id));
                ids.push(Some(id));
            } else {
                ids.push(None);
            }
        }
        if by_kind.is_empty() {
            return Ok(ids);
        }
        let _order = self.delivery.lock();
        // Lock every involved store first so a failure in one kind leaves all unchanged.
        let mut stores: Vec<(&ResourceKind, parking_lot::MutexGuard<'_, ObjectStore>)> =
            by_kind.keys().map(|k| (*k, objects[*k].lock())).collect();
        stores.sort_by(|a, b| a.0.cmp(b.0));
        let mut changes = Vec::new();
        for i in 0..stores.len() {
            let kind = stores[i].0;
            let list = &by_kind[kind];
            let refs: Vec<(&str, &PatchIntent, IntentId)> = list
                .iter()
                .map(|(k, i, id)| (k.as_str(), *i, *id))
                .collect();
            match stores[i].1.assume(owner, &refs) {
                Ok(changed) => changes.extend(changed.into_iter().map(|(_, v, new)| {
                    let action = if new {
                        EventAction::Added
                    } else {
                        EventAction::Modified
                    };
                    (kind.clone(), v, action)
                })),
                Err(e) => {
                    // The pod's cycle fails: drop what this pod assumed so far.
                    for (_, store) in stores.iter_mut().take(i) {
                        store.forget(owner);
                    }
                    return Err(e);
                }
            }
        }
        drop(stores);
        for (kind, obj, action) in changes {
            if self.has_subscribers(&kind) {
                self.deliver(&kind, action, obj.to_string());
            }
        }
        drop(_order);
        Ok(ids)
    }

    /// The API server accepted an assumed intent and answered with `resource_version`.
    pub fn intent_applied(
        &self,
        intent: &PatchIntent,
        id: IntentId,
        resource_version: Option<&str>,
    ) {
        let objects = self.objects.read();
        if let Some(store) = objects.get(&intent.target.resource) {
            let key = object_key(intent.target.namespace.as_deref(), &intent.target.name);
            store
                .lock()
                .applied(&key, id, resource_version.and_then(|rv| rv.parse().ok()));
        }
        drop(objects);
        self.settled_one(true);
    }

    /// The API server refused an assumed intent: drop it from the object.
    pub fn intent_failed(&self, intent: &PatchIntent, id: IntentId) {
        let kind = &intent.target.resource;
        let _order = self.delivery.lock();
        let objects = self.objects.read();
        let Some(store) = objects.get(kind) else {
            return;
        };
        let key = object_key(intent.target.namespace.as_deref(), &intent.target.name);
        let changed = store.lock().failed(&key, id);
        drop(objects);
        if let Some((obj, gone)) = changed.filter(|_| self.has_subscribers(kind)) {
            self.deliver(kind, gone_or_modified(gone), obj.to_string());
        }
        drop(_order);
        self.settled_one(true);
    }

    /// Drops the not-yet-applied intents of a pod whose cycle failed.
    pub fn forget_intents(&self, owner: &str) {
        let _order = self.delivery.lock();
        let objects = self.objects.read();
        let mut changes = Vec::new();
        for (kind, store) in objects.iter() {
            for (_, obj, gone) in store.lock().forget(owner) {
                changes.push((kind.clone(), obj, gone));
            }
        }
        drop(objects);
        for (kind, obj, gone) in changes {
            if self.has_subscribers(&kind) {
                self.deliver(&kind, gone_or_modified(gone), obj.to_string());
            }
        }
        drop(_order);
        self.settled_one(true);
    }

    // ---- watch side (the writer task) ----

    pub(crate) fn apply_pod(&self, pod: Arc<Pod>) {
        let kind = ResourceKind::pod();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        // Serialized before taking `delivery` (the scheduling loop waits on it to assume pods).
        let json = self
            .has_subscribers(&kind)
            .then(|| serde_json::to_string(&*pod).unwrap_or_default());
        let _order = self.delivery.lock();
        let (known, change, settled) = {
            let mut s = self.nodes.lock();
            let (known, before) = (s.pods.contains_key(&uid), s.assumed);
            let change = s.apply_pod(pod.clone());
            (known, change, s.assumed < before)
        };
        if let Some(mut json) = json {
            if let PodChange::StillAssumed { node } = &change {
                // Plugins keep seeing an assumed pod on its node until the binding shows (as
                // `assume_pod` and `replay` show it).
                json = Self::pod_event_json(&pod, Some(node));
            }
            let action = match &change {
                PodChange::Gone { .. } => EventAction::Deleted,
                _ if !known => EventAction::Added,
                _ => EventAction::Modified,
            };
            self.deliver(&kind, action, json);
        }
        drop(_order);
        self.pod_change(&uid, change, settled);
    }

    pub(crate) fn delete_pod(&self, pod: &Pod) {
        let kind = ResourceKind::pod();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let json = self
            .has_subscribers(&kind)
            .then(|| serde_json::to_string(pod).unwrap_or_default());
        let _order = self.delivery.lock();
        let (change, settled) = {
            let mut s = self.nodes.lock();
            let before = s.assumed;
            let change = s.delete_pod(&uid);
            (change, s.assumed < before)
        };
        if let Some(json) = json {
            self.deliver(&kind, EventAction::Deleted, json);
        }
        drop(_order);
        self.pod_change(&uid, change, settled);
    }

    /// Tells the handler; `settled` says whether an assumed pod was confirmed or dropped.
    fn pod_change(&self, uid: &str, change: PodChange, settled: bool) {
        if let Some(h) = self.handler() {
            match change {
                PodChange::Pending { info, spec_changed } => h.pending_pod(info, spec_changed),
                PodChange::Assigned { action } => {
                    h.pod_gone(uid);
                    h.cluster_event(&ResourceKind::pod(), action);
                }
                PodChange::StillAssumed { .. } => {}
                PodChange::Gone { was_assigned } => {
                    h.pod_deleted(uid);
                    h.pod_gone(uid);
                    if was_assigned {
                        h.cluster_event(&ResourceKind::pod(), EventAction::Deleted);
                    }
                }
            }
        }
        self.settled_one(settled);
    }

    pub(crate) fn apply_node(&self, node: Arc<Node>) {
        let kind = ResourceKind::node();
        let _order = self.delivery.lock();
        let json = self
            .has_subscribers(&kind)
            .then(|| serde_json::to_string(&*node).unwrap_or_default());
        let action = self.nodes.lock().upsert_node(node);
        if let Some(json) = json {
            self.deliver(&kind, action, json);
        }
        drop(_order);
        if let Some(h) = self.handler() {
            h.cluster_event(&kind, action);
        }
        if action == EventAction::Added {
            self.nodes_changed();
        }
    }

    pub(crate) fn delete_node(&self, name: &str) {
        let kind = ResourceKind::node();
        let _order = self.delivery.lock();
        let Some(node) = self.nodes.lock().delete_node(name) else {
            return;
        };
        if self.has_subscribers(&kind) {
            self.deliver(
                &kind,
                EventAction::Deleted,
                serde_json::to_string(&*node).unwrap_or_default(),
            );
        }
        drop(_order);
        if let Some(h) = self.handler() {
            h.cluster_event(&kind, EventAction::Deleted);
        }
        self.nodes_changed();
    }

    pub(crate) fn apply_object(&self, kind: &ResourceKind, key: String, obj: Value) {
        let _order = self.delivery.lock();
        let objects = self.objects.read();
        let Some(store) = objects.get(kind) else {
            return;
        };
        let mut store = store.lock();
        let action = if store.get(&key).is_some() {
            EventAction::Modified
        } else {
            EventAction::Added
        };
        let before = store.pending_count();
        let seen = store.get(&key).map(|e| e.effective().clone());
        let effective = store.watched(key, obj);
        let settled = store.pending_count() < before;
        drop(store);
        drop(objects);
        // The watch confirming what plugins already saw assumed (the same object, only a newer
        // resourceVersion) is not repeated: each write of a claim would cost them two events.
        let repeat = seen.is_some_and(|s| same_but_version(&s, &effective));
        if !repeat && self.has_subscribers(kind) {
            self.deliver(kind, action, effective.to_string());
        }
        drop(_order);
        if let Some(h) = self.handler() {
            h.cluster_event(kind, action);
        }
        self.settled_one(settled);
    }

    pub(crate) fn delete_object(&self, kind: &ResourceKind, key: &str) {
        let _order = self.delivery.lock();
        let objects = self.objects.read();
        let Some(store) = objects.get(kind) else {
            return;
        };
        let mut store = store.lock();
        let before = store.pending_count();
        let Some(last) = store.deleted(key) else {
            return;
        };
        let settled = store.pending_count() < before;
        drop(store);
        drop(objects);
        if self.has_subscribers(kind) {
            self.deliver(kind, EventAction::Deleted, last.to_string());
        }
        drop(_order);
        if let Some(h) = self.handler() {
            h.cluster_event(kind, EventAction::Deleted);
        }
        self.settled_one(settled);
    }

    /// After a relist: everything of `kind` not seen in it is gone.
    pub(crate) fn retain_seen(&self, kind: &ResourceKind, seen: &HashSet<String>) {
        if *kind == ResourceKind::pod() {
            let gone: Vec<String> = self
                .nodes
                .lock()
                .pods
                .keys()
                .filter(|k| !seen.contains(*k))
                .cloned()
                .collect();
            for uid in gone {
                let pod = self.nodes.lock().pods.get(&uid).map(|e| e.info.pod.clone());
                if let Some(pod) = pod {
                    self.delete_pod(&pod);
                }
            }
        } else if *kind == ResourceKind::node() {
            let names = self.nodes.lock().node_names();
            for name in names.into_iter().filter(|n| !seen.contains(n)) {
                self.delete_node(&name);
            }
        } else {
            let keys: Vec<String> = {
                let objects = self.objects.read();
                match objects.get(kind) {
                    Some(s) => {
                        let s = s.lock();
                        // Objects only assumed (created by an intent) are not on the server yet.
                        s.keys()
                            .filter(|k| !seen.contains(*k) && !s.assumed_only(k))
                            .cloned()
                            .collect()
                    }
                    None => return,
                }
            };
            for key in keys {
                self.delete_object(kind, &key);
            }
        }
    }
}

/// The event for an object an assumption was dropped from: `Deleted` if it existed only as
/// assumed.
fn gone_or_modified(gone: bool) -> EventAction {
    if gone {
        EventAction::Deleted
    } else {
        EventAction::Modified
    }
}

impl StateReplay for Cache {
    /// Current objects of each kind as `Added` events, assumed state included (assumed pods show
    /// their node in `spec.nodeName`).
    fn replay(&self, kinds: &[ResourceKind]) -> Vec<ObjectEvent> {
        let _order = self.delivery.lock();
        let mut out = Vec::new();
        for kind in kinds {
            let added = |object: String| ObjectEvent {
                action: EventAction::Added,
                resource: kind.clone(),
                object,
            };
            if *kind == ResourceKind::pod() {
                let s = self.nodes.lock();
                out.extend(s.pods.values().map(|e| {
                    added(Self::pod_event_json(
                        &e.info.pod,
                        if e.assumed { e.node.as_deref() } else { None },
                    ))
                }));
            } else if *kind == ResourceKind::node() {
                let s = self.nodes.lock();
                out.extend(
                    s.nodes()
                        .iter()
                        .map(|n| added(serde_json::to_string(&*n.node).unwrap_or_default())),
                );
            } else if let Some(store) = self.objects.read().get(kind) {
                out.extend(
                    store
                        .lock()
                        .values()
                        .map(|e| added(e.effective().to_string())),
                );
            }
        }
        out
    }
}

/// Serializes a pod as if `spec.nodeName` were `node`, exactly as the pod with that field set
/// would serialize (same fields, same order), without cloning its metadata and status.
struct AssumedPod<'a> {
    pod: &'a Pod,
    node: &'a str,
}

impl serde::Serialize for AssumedPod<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use k8s_openapi::Resource;
        use serde::ser::SerializeStruct;
        let pod = self.pod;
        let mut spec = pod.spec.clone().unwrap_or_default();
        spec.node_name = Some(self.node.to_string());
        let mut state =
            serializer.serialize_struct(Pod::KIND, 4 + usize::from(pod.status.is_some()))?;
        state.serialize_field("apiVersion", Pod::API_VERSION)?;
        state.serialize_field("kind", Pod::KIND)?;
        state.serialize_field("metadata", &pod.metadata)?;
        state.serialize_field("spec", &spec)?;
        if let Some(status) = &pod.status {
            state.serialize_field("status", status)?;
        }
        state.end()
    }
}

#[cfg(test)]
mod tests;

/// Whether two states of an object differ in nothing but `metadata.resourceVersion` (and
/// `metadata.managedFields`, which plugins never see change anything).
fn same_but_version(a: &Value, b: &Value) -> bool {
    fn same_except(x: &Map<String, Value>, y: &Map<String, Value>, skip: &[&str]) -> bool {
        let kept = |m: &'_ Map<String, Value>| {
            m.iter()
                .filter(|(k, _)| !skip.contains(&k.as_str()))
                .count()
        };
        kept(x) == kept(y)
            && x.iter()
                .all(|(k, v)| skip.contains(&k.as_str()) || y.get(k) == Some(v))
    }
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let (ma, mb) = (a.get("metadata"), b.get("metadata"));
    same_except(a, b, &["metadata"])
        && match (ma.and_then(Value::as_object), mb.and_then(Value::as_object)) {
            (Some(x), Some(y)) => same_except(x, y, &["resourceVersion", "managedFields"]),
            _ => ma == mb,
        }
}
