//! Objects a plugin is no longer fed. When `on_event` traps or runs past its deadline for one
//! object, every new instance would hit the same object again while its state is replayed, so
//! the host names that object, stops delivering it to the plugin (live events and replays alike)
//! and lets the plugin serve everything else. A quarantine is lifted when the object is deleted;
//! a pod that is itself quarantined fails its scheduling cycle with the reason.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use serde::Deserialize;
use wasm_scheduler_sdk::ResourceKind;

/// One object as the host feeds it: kind, namespace/name and uid (so a re-created object with
/// the same name is a different one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// `apiVersion`.
    pub api_version: String,
    /// Kind, e.g. `Pod`.
    pub kind: String,
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: String,
}

#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    metadata: Meta,
}

impl ObjectKey {
    /// The key of an object given as JSON (only `metadata` is read).
    pub fn of(resource: &ResourceKind, object: &str) -> ObjectKey {
        Self::from_parts(&resource.api_version, &resource.kind, object)
    }

    fn from_parts(api_version: &str, kind: &str, object: &str) -> ObjectKey {
        let meta = serde_json::from_str::<Object>(object)
            .map(|o| o.metadata)
            .unwrap_or_default();
        ObjectKey {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: meta.namespace.filter(|n| !n.is_empty()),
            name: meta.name,
            uid: meta.uid,
        }
    }
}

impl std::fmt::Display for ObjectKey {
    /// `Pod default/web-1`, `Node n1`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// The quarantined objects of one plugin, shared by all its instances.
#[derive(Debug, Default)]
pub struct Quarantine {
    entries: Mutex<BTreeMap<ObjectKey, String>>,
    /// Entries, readable without the lock: the delivery path only parses an event's metadata
    /// while something is quarantined.
    len: AtomicUsize,
}

impl Quarantine {
    /// Whether nothing is quarantined (the common case; no lock taken).
    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// Number of quarantined objects.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether `key` is quarantined.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        !self.is_empty() && self.entries.lock().contains_key(key)
    }

    /// Quarantines `key` for `reason`; false if it already was.
    pub fn insert(&self, key: ObjectKey, reason: String) -> bool {
        let mut e = self.entries.lock();
        let new = e.insert(key, reason).is_none();
        self.len.store(e.len(), Ordering::Release);
        new
    }

    /// Lifts the quarantine of `key`; false if it was not quarantined.
    pub fn remove(&self, key: &ObjectKey) -> bool {
        if self.is_empty() {
            return false;
        }
        let mut e = self.entries.lock();
        let removed = e.remove(key).is_some();
        self.len.store(e.len(), Ordering::Release);
        removed
    }

    /// The reason a pod (by uid) is quarantined, if it is.
    pub fn pod(&self, uid: &str) -> Option<(ObjectKey, String)> {
        if self.is_empty() {
            return None;
        }
        self.entries
            .lock()
            .iter()
            .find(|(k, _)| k.kind == "Pod" && k.api_version == "v1" && k.uid == uid)
            .map(|(k, r)| (k.clone(), r.clone()))
    }

    /// Every quarantined object with its reason, as `Kind namespace/name: reason`.
    pub fn list(&self) -> Vec<String> {
        if self.is_empty() {
            return Vec::new();
        }
        self.entries
            .lock()
            .iter()
            .map(|(k, r)| format!("{k}: {r}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_the_kind_and_namespace_and_name() {
        let k = ObjectKey::of(
            &ResourceKind::pod(),
            r#"{"metadata":{"name":"web-1","namespace":"default","uid":"u1"},"spec":{}}"#,
        );
        assert_eq!(k.to_string(), "Pod default/web-1");
        assert_eq!(k.uid, "u1");
        let n = ObjectKey::of(&ResourceKind::node(), r#"{"metadata":{"name":"n1"}}"#);
        assert_eq!(n.to_string(), "Node n1");
    }

    #[test]
    fn a_quarantined_pod_is_found_by_uid_until_it_is_lifted() {
        let q = Quarantine::default();
        assert!(q.is_empty());
        let k = ObjectKey::of(
            &ResourceKind::pod(),
            r#"{"metadata":{"name":"evil","namespace":"ns","uid":"u"}}"#,
        );
        assert!(q.insert(k.clone(), "hung".into()));
        assert!(!q.insert(k.clone(), "hung".into()));
        assert_eq!(q.pod("u").unwrap().1, "hung");
        assert_eq!(q.list(), vec!["Pod ns/evil: hung".to_string()]);
        assert!(q.remove(&k));
        assert!(q.is_empty() && q.pod("u").is_none());
    }
}
