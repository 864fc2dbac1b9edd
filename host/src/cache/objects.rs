//! The assume cache for generic (JSON) objects such as ResourceClaims.
//!
//! Each object is kept as last watched (`base`) plus the patch intents the scheduler assumed on
//! it and that the watch has not shown yet (`pending`). What plugins see (`effective`) is the
//! base with the pending intents applied in order, with the same patch code the API server
//! uses, so an assumed object is what the server will store.
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
    patch_type: PatchType,
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

/// The patch type of an intent, for `kube_patch`; `None` for a create.
pub fn patch_type(kind: PatchKind) -> Option<PatchType> {
    match kind {
        PatchKind::Json => Some(PatchType::Json),
        PatchKind::Merge => Some(PatchType::Merge),
        PatchKind::StrategicMerge => Some(PatchType::StrategicMerge),
        PatchKind::Create => None,
    }
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
            match kube_patch::apply_patch(p.patch_type, kind, &current, &p.body) {
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

    /// Applies intents to their objects' effective state, all or none.
    ///
    /// # Errors
    /// An intent whose object is unknown, whose uid differs, or whose patch does not apply.
    pub(crate) fn assume(
        &mut self,
        owner: &str,
        intents: &[(&str, &PatchIntent, IntentId)],
    ) -> Result<Vec<(String, Arc<Value>)>, CacheError> {
        // Work on copies so a failure leaves the store untouched.
        let mut staged: HashMap<&str, ObjectEntry> = HashMap::new();
        for (key, intent, id) in intents {
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
            let Some(pt) = patch_type(intent.patch_kind) else {
                return Err(CacheError::IntentPatch {
                    key: key.to_string(),
                    message: "create intents are not supported by this host".into(),
                });
            };
            let next =
                kube_patch::apply_patch(pt, &self.kind, &entry.effective, &body).map_err(|e| {
                    CacheError::IntentPatch {
                        key: key.to_string(),
                        message: e.to_string(),
                    }
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
            .map(|(k, e)| (k.to_string(), e.effective.clone()))
            .collect();
        for (k, e) in staged {
            self.entries.insert(k.to_string(), e);
        }
        self.recount();
        Ok(changed)
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
    /// whose effective state changed.
    pub(crate) fn forget(&mut self, owner: &str) -> Vec<(String, Arc<Value>)> {
        let mut changed = Vec::new();
        for (key, entry) in self.entries.iter_mut() {
            let before = entry.pending.len();
            entry
                .pending
                .retain(|p| p.owner != owner || p.applied.is_some());
            if entry.pending.len() != before {
                Self::rebuild(&self.kind, entry);
                changed.push((key.clone(), entry.effective.clone()));
            }
        }
        if !changed.is_empty() {
            self.recount();
        }
        changed
    }

    /// Drops one intent that the API server refused. Returns the new effective object.
    pub(crate) fn failed(&mut self, key: &str, id: IntentId) -> Option<Arc<Value>> {
        let entry = self.entries.get_mut(key)?;
        let before = entry.pending.len();
        entry.pending.retain(|p| p.id != id);
        if entry.pending.len() == before {
            return None;
        }
        Self::rebuild(&self.kind, entry);
        let eff = entry.effective.clone();
        self.recount();
        Some(eff)
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
}
