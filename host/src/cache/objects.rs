//! The assume cache for generic (JSON) objects such as ResourceClaims.
//!
//! Each object is kept as last watched (`base`) plus the patch intents the scheduler assumed on
//! it and that the watch has not shown yet (`pending`). What plugins see (`effective`) is the
//! base with the pending intents applied in order, with the same patch code the API server
//! uses, so an assumed object is what the server will store.
//!
//! A create intent ([`PatchKind::Create`]) makes an entry with no watched base: the object exists
//! only as assumed until the watch shows it, and the entry goes away if the create is dropped.
//!
//! A pending intent is dropped when its pod fails before applying it, or once it was applied and
//! the watch reached the resourceVersion the server returned for it (upstream `AssumeCache`
//! drops an assumed object when the informer shows a newer version; keeping the intent until the
//! watch caught up with *its own* write avoids losing it to an unrelated, earlier update).

use std::collections::HashMap;
use std::sync::Arc;

use kube_patch::PatchType;
use serde_json::Value;

use crate::framework::{PatchIntent, PatchKind};

use super::CacheError;

/// Identifies one assumed intent.
pub type IntentId = u64;

#[derive(Debug, Clone)]
struct Pending {
    id: IntentId,
    /// Uid of the pod whose cycle produced the intent (or a compensation marker).
    owner: String,
    /// `None` for a create: the body is the whole object, used while nothing was watched.
    patch_type: Option<PatchType>,
    body: Arc<Value>,
    /// Set once the API server accepted the patch: the resourceVersion it returned
    /// (`Some(None)` when that version is not a number: drop on the next watch event).
    applied: Option<Option<u64>>,
}

/// One object: as watched, plus assumptions.
#[derive(Debug, Clone)]
pub(crate) struct ObjectEntry {
    base: Arc<Value>,
    base_rv: Option<u64>,
    pending: Vec<Pending>,
    effective: Arc<Value>,
}

impl ObjectEntry {
    /// What plugins see.
    pub(crate) fn effective(&self) -> &Arc<Value> {
        &self.effective
    }
}

/// The patch type of an intent, for `kube_patch`; `None` for a create, which is no patch.
pub fn patch_type(kind: PatchKind) -> Option<PatchType> {
    match kind {
        PatchKind::Json => Some(PatchType::Json),
        PatchKind::Merge => Some(PatchType::Merge),
        PatchKind::StrategicMerge => Some(PatchType::StrategicMerge),
        PatchKind::Create => None,
    }
}

/// The uid of the controller in `metadata.ownerReferences`, if any.
pub fn controller_uid(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("uid")?
        .as_str()
}

/// The numeric resourceVersion of an object, if it has one.
pub(crate) fn resource_version(obj: &Value) -> Option<u64> {
    obj.pointer("/metadata/resourceVersion")?
        .as_str()?
        .parse()
        .ok()
}

fn uid_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/uid")?.as_str()
}

/// Generic objects of one kind, by `namespace/name`.
#[derive(Debug, Default)]
pub(crate) struct ObjectStore {
    kind: String,
    entries: HashMap<String, ObjectEntry>,
    pending_count: usize,
}

impl ObjectStore {
    pub(crate) fn new(kind: &str) -> Self {
        ObjectStore {
            kind: kind.to_string(),
            entries: HashMap::new(),
            pending_count: 0,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&ObjectEntry> {
        self.entries.get(key)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &ObjectEntry> {
        self.entries.values()
    }

    /// Intents assumed and not yet seen back through the watch.
    pub(crate) fn pending_count(&self) -> usize {
        self.pending_count
    }

    fn recount(&mut self) {
        self.pending_count = self.entries.values().map(|e| e.pending.len()).sum();
    }

    /// Base with pending intents re-applied; intents that no longer apply are dropped.
    fn rebuild(kind: &str, entry: &mut ObjectEntry) {
        let mut current = (*entry.base).clone();
        entry.pending.retain(|p| {
            let Some(pt) = p.patch_type else {
                // A create stands for the object until the watch shows it; once it does, the
                // create is done (the object was created, by this write or an earlier try).
                if current.is_null() {
                    current = (*p.body).clone();
                }
                return true;
            };
            if current.is_null() {
                return false; // its object's create was dropped
            }
            match kube_patch::apply_patch(pt, kind, &current, &p.body) {
                Ok(next) => {
                    current = next;
                    true
                }
                // It no longer applies (e.g. the object was recreated): nothing left to assume.
                Err(_) => false,
            }
        });
        entry.effective = Arc::new(current);
    }

    /// True for an object that exists only as assumed (created by an intent, not watched yet).
    pub(crate) fn assumed_only(&self, key: &str) -> bool {
        self.entries.get(key).is_some_and(|e| e.base.is_null())
    }

    /// Drops an assumed-only entry that has nothing left to assume. Returns true if it did.
    fn drop_if_empty(&mut self, key: &str) -> bool {
        let empty = self
            .entries
            .get(key)
            .is_some_and(|e| e.base.is_null() && e.pending.is_empty());
        if empty {
            self.entries.remove(key);
        }
        empty
    }

    /// A watched object arrived (added or modified). Returns the new effective object.
    pub(crate) fn watched(&mut self, key: String, obj: Value) -> Arc<Value> {
        let rv = resource_version(&obj);
        let base = Arc::new(obj);
        let effective = match self.entries.get_mut(&key) {
            Some(entry) => {
                entry.base = base;
                entry.base_rv = rv;
                entry.pending.retain(|p| match p.applied {
                    None => true,
                    Some(None) => false,
                    Some(Some(applied_rv)) => rv.is_none_or(|rv| rv < applied_rv),
                });
                if entry.pending.is_empty() {
                    entry.effective = entry.base.clone();
                } else {
                    Self::rebuild(&self.kind, entry);
                }
                entry.effective.clone()
            }
            None => {
                self.entries.insert(
                    key,
                    ObjectEntry {
                        base: base.clone(),
                        base_rv: rv,
                        pending: Vec::new(),
                        effective: base.clone(),
                    },
                );
                base
            }
        };
        self.recount();
        effective
    }

    /// A watched object was deleted. Returns its last effective state.
    pub(crate) fn deleted(&mut self, key: &str) -> Option<Arc<Value>> {
        let e = self.entries.remove(key)?;
        self.recount();
        Some(e.effective)
    }

    /// Applies intents to their objects' effective state, all or none. Returns the changed
    /// objects, each with `true` if it is new (created by an intent).
    ///
    /// # Errors
    /// An intent whose object is unknown, whose uid differs, or whose patch does not apply.
    pub(crate) fn assume(
        &mut self,
        owner: &str,
        intents: &[(&str, &PatchIntent, IntentId)],
    ) -> Result<Vec<(String, Arc<Value>, bool)>, CacheError> {
        // Work on copies so a failure leaves the store untouched.
        let mut staged: HashMap<&str, ObjectEntry> = HashMap::new();
        for (key, intent, id) in intents {
            if intent.patch_kind == PatchKind::Create {
                self.stage_create(&mut staged, key, intent, *id, owner)?;
                continue;
            }
            let entry = match staged.get_mut(key) {
                Some(e) => e,
                None => {
                    let e =
                        self.entries
                            .get(*key)
                            .ok_or_else(|| CacheError::IntentTargetNotFound {
                                kind: self.kind.clone(),
                                key: key.to_string(),
                            })?;
                    staged.entry(key).or_insert_with(|| e.clone())
                }
            };
            let uid = uid_of(&entry.effective).unwrap_or_default();
            if !intent.target.uid.is_empty() && uid != intent.target.uid {
                return Err(CacheError::IntentUidMismatch {
                    kind: self.kind.clone(),
                    key: key.to_string(),
                    want: intent.target.uid.clone(),
                    have: uid.to_string(),
                });
            }
            let body: Value =
                serde_json::from_str(&intent.body).map_err(|e| CacheError::IntentBody {
                    key: key.to_string(),
                    message: e.to_string(),
                })?;
            let pt = patch_type(intent.patch_kind);
            let next = pt
                .ok_or_else(|| "not a patch".to_string())
                .and_then(|pt| {
                    kube_patch::apply_patch(pt, &self.kind, &entry.effective, &body)
                        .map_err(|e| e.to_string())
                })
                .map_err(|message| CacheError::IntentPatch {
                    key: key.to_string(),
                    message,
                })?;
            entry.effective = Arc::new(next);
            entry.pending.push(Pending {
                id: *id,
                owner: owner.to_string(),
                patch_type: pt,
                body: Arc::new(body),
                applied: None,
            });
        }
        let changed = staged
            .iter()
            .map(|(k, e)| {
                let new = !self.entries.contains_key(*k);
                (k.to_string(), e.effective.clone(), new)
            })
            .collect();
        for (k, e) in staged {
            self.entries.insert(k.to_string(), e);
        }
        self.recount();
        Ok(changed)
    }

    /// Stages a create: a new entry with no watched base whose effective state is the body. An
    /// object that exists already (watched or assumed) must have the same controller: then the
    /// create is an earlier try of the same write and changes nothing, as the server answers it.
    fn stage_create<'k>(
        &self,
        staged: &mut HashMap<&'k str, ObjectEntry>,
        key: &'k str,
        intent: &PatchIntent,
        id: IntentId,
        owner: &str,
    ) -> Result<(), CacheError> {
        let body: Value =
            serde_json::from_str(&intent.body).map_err(|e| CacheError::IntentBody {
                key: key.to_string(),
                message: e.to_string(),
            })?;
        let entry = match staged.get_mut(key) {
            Some(e) => e,
            None => {
                let e = self.entries.get(key).cloned().unwrap_or(ObjectEntry {
                    base: Arc::new(Value::Null),
                    base_rv: None,
                    pending: Vec::new(),
                    effective: Arc::new(Value::Null),
                });
                staged.entry(key).or_insert(e)
            }
        };
        if !entry.effective.is_null() {
            let want = controller_uid(&body);
            if want.is_none() || controller_uid(&entry.effective) != want {
                return Err(CacheError::IntentPatch {
                    key: key.to_string(),
                    message: "object to create already exists".into(),
                });
            }
        } else {
            entry.effective = Arc::new(body.clone());
        }
        entry.pending.push(Pending {
            id,
            owner: owner.to_string(),
            patch_type: None,
            body: Arc::new(body),
            applied: None,
        });
        Ok(())
    }

    /// The API server accepted an intent and returned this resourceVersion. The intent stays
    /// assumed until the watch shows that version.
    pub(crate) fn applied(&mut self, key: &str, id: IntentId, rv: Option<u64>) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let base_rv = entry.base_rv;
        entry.pending.retain_mut(|p| {
            if p.id != id {
                return true;
            }
            p.applied = Some(rv);
            // The watch may already be past this write.
            !matches!((rv, base_rv), (Some(rv), Some(base)) if base >= rv)
        });
        self.recount();
    }

    /// Drops the not-yet-applied intents of `owner` (its cycle failed). Returns the objects
    /// whose effective state changed, each with `true` if it is gone (an assumed create that
    /// was dropped: its last assumed state is returned).
    pub(crate) fn forget(&mut self, owner: &str) -> Vec<(String, Arc<Value>, bool)> {
        let mut changed = Vec::new();
        for (key, entry) in self.entries.iter_mut() {
            let before = entry.pending.len();
            let last = entry.effective.clone();
            entry
                .pending
                .retain(|p| p.owner != owner || p.applied.is_some());
            if entry.pending.len() != before {
                Self::rebuild(&self.kind, entry);
                let gone = entry.effective.is_null();
                let shown = if gone { last } else { entry.effective.clone() };
                changed.push((key.clone(), shown, gone));
            }
        }
        for (key, _, gone) in &changed {
            if *gone {
                self.drop_if_empty(key);
            }
        }
        if !changed.is_empty() {
            self.recount();
        }
        changed
    }

    /// Drops one intent that the API server refused. Returns the new effective object, with
    /// `true` if the object is gone (a refused create: its last assumed state is returned).
    pub(crate) fn failed(&mut self, key: &str, id: IntentId) -> Option<(Arc<Value>, bool)> {
        let entry = self.entries.get_mut(key)?;
        let before = entry.pending.len();
        let last = entry.effective.clone();
        entry.pending.retain(|p| p.id != id);
        if entry.pending.len() == before {
            return None;
        }
        Self::rebuild(&self.kind, entry);
        let eff = entry.effective.clone();
        let gone = eff.is_null();
        if gone {
            // Patches assumed on top of a refused create have nothing to apply to.
            entry.pending.clear();
            self.drop_if_empty(key);
        }
        self.recount();
        Some(if gone { (last, true) } else { (eff, false) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{ObjectRef, ResourceKind};
    use serde_json::json;

    fn claim(rv: u64, reserved: Value) -> Value {
        json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "c", "namespace": "d", "uid": "claim-uid", "resourceVersion": rv.to_string()},
            "status": {"reservedFor": reserved}
        })
    }

    fn reserve(pod_uid: &str) -> PatchIntent {
        PatchIntent {
            target: ObjectRef {
                resource: ResourceKind::resource_claim(),
                namespace: Some("d".into()),
                name: "c".into(),
                uid: "claim-uid".into(),
            },
            subresource: Some("status".into()),
            patch_kind: PatchKind::Merge,
            body: json!({"status": {"reservedFor": [{"resource": "pods", "name": pod_uid, "uid": pod_uid}]}}).to_string(),
        }
    }

    fn reserved(v: &Value) -> usize {
        v.pointer("/status/reservedFor")
            .and_then(|r| r.as_array())
            .map_or(0, |a| a.len())
    }

    #[test]
    fn an_assumed_intent_is_visible_at_once_and_survives_older_watch_events() {
        let mut s = ObjectStore::new("ResourceClaim");
        s.watched("d/c".into(), claim(5, json!([])));
        let intent = reserve("p1");
        let changed = s.assume("p1", &[("d/c", &intent, 1)]).unwrap();
        assert_eq!(reserved(&changed[0].1), 1);
        // An unrelated update (rv 6) arrives before our write is applied: still assumed.
        let eff = s.watched("d/c".into(), claim(6, json!([])));
        assert_eq!(reserved(&eff), 1);
        // Applied at rv 8; the watch at rv 7 has not seen it yet.
        s.applied("d/c", 1, Some(8));
        let eff = s.watched("d/c".into(), claim(7, json!([])));
        assert_eq!(reserved(&eff), 1);
        assert_eq!(s.pending_count(), 1);
        // The watch shows rv 8: the assumption is dropped, the server's object is used.
        let eff = s.watched(
            "d/c".into(),
            claim(8, json!([{"resource": "pods", "name": "p1", "uid": "p1"}])),
        );
        assert_eq!(reserved(&eff), 1);
        assert_eq!(s.pending_count(), 0);
    }

    #[test]
    fn forgetting_a_pod_drops_its_unapplied_intents() {
        let mut s = ObjectStore::new("ResourceClaim");
        s.watched("d/c".into(), claim(5, json!([])));
        let intent = reserve("p1");
        s.assume("p1", &[("d/c", &intent, 1)]).unwrap();
        let changed = s.forget("p1");
        assert_eq!(reserved(&changed[0].1), 0);
        assert_eq!(s.pending_count(), 0);
    }

    #[test]
    fn an_intent_for_another_uid_is_refused_and_changes_nothing() {
        let mut s = ObjectStore::new("ResourceClaim");
        s.watched("d/c".into(), claim(5, json!([])));
        let mut intent = reserve("p1");
        intent.target.uid = "other".into();
        let err = s.assume("p1", &[("d/c", &intent, 1)]).unwrap_err();
        assert!(matches!(err, CacheError::IntentUidMismatch { .. }), "{err}");
        assert_eq!(s.pending_count(), 0);
        assert_eq!(reserved(s.get("d/c").unwrap().effective()), 0);
    }

    #[test]
    fn an_unknown_target_is_refused() {
        let mut s = ObjectStore::new("ResourceClaim");
        let intent = reserve("p1");
        assert!(matches!(
            s.assume("p1", &[("d/c", &intent, 1)]),
            Err(CacheError::IntentTargetNotFound { .. })
        ));
    }

    fn create(owner_uid: &str) -> PatchIntent {
        PatchIntent {
            target: ObjectRef {
                resource: ResourceKind::resource_claim(),
                namespace: Some("d".into()),
                name: "c".into(),
                uid: String::new(),
            },
            subresource: None,
            patch_kind: PatchKind::Create,
            body: json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": {"name": "c", "namespace": "d",
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": owner_uid, "controller": true}]},
                "spec": {}})
            .to_string(),
        }
    }

    #[test]
    fn an_assumed_create_is_visible_until_the_watch_shows_the_object() {
        let mut s = ObjectStore::new("ResourceClaim");
        let mut status = reserve("p1");
        status.target.uid = String::new();
        let changed = s
            .assume("p1", &[("d/c", &create("p1"), 1), ("d/c", &status, 2)])
            .unwrap();
        assert!(changed[0].2, "the object is new");
        assert_eq!(reserved(&changed[0].1), 1);
        assert!(s.assumed_only("d/c"));
        s.applied("d/c", 1, Some(5));
        // The watch shows the created object: the create is done, the status patch still assumed.
        let mut watched = claim(5, json!([]));
        watched["metadata"]["ownerReferences"] = json!([{"uid": "p1", "controller": true}]);
        let eff = s.watched("d/c".into(), watched);
        assert_eq!(reserved(&eff), 1);
        assert_eq!(s.pending_count(), 1);
        assert!(!s.assumed_only("d/c"));
    }

    #[test]
    fn a_dropped_create_removes_the_object_and_what_was_assumed_on_it() {
        let mut s = ObjectStore::new("ResourceClaim");
        let mut status = reserve("p1");
        status.target.uid = String::new();
        s.assume("p1", &[("d/c", &create("p1"), 1), ("d/c", &status, 2)])
            .unwrap();
        let changed = s.forget("p1");
        assert_eq!(changed.len(), 1);
        assert!(changed[0].2, "gone");
        assert!(s.get("d/c").is_none());
        assert_eq!(s.pending_count(), 0);
        // A refused create likewise.
        s.assume("p1", &[("d/c", &create("p1"), 3), ("d/c", &status, 4)])
            .unwrap();
        let (_, gone) = s.failed("d/c", 3).unwrap();
        assert!(gone);
        assert!(s.get("d/c").is_none());
    }

    #[test]
    fn a_create_over_an_object_of_another_controller_is_refused() {
        let mut s = ObjectStore::new("ResourceClaim");
        let mut existing = claim(5, json!([]));
        existing["metadata"]["ownerReferences"] = json!([{"uid": "p1", "controller": true}]);
        s.watched("d/c".into(), existing);
        assert!(s.assume("p2", &[("d/c", &create("p2"), 1)]).is_err());
        // The same controller: an earlier try of this create, nothing changes.
        let changed = s.assume("p1", &[("d/c", &create("p1"), 2)]).unwrap();
        assert!(!changed[0].2);
        assert_eq!(uid_of(&changed[0].1), Some("claim-uid"));
    }
}
