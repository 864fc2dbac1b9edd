//! The part of kube-controller-manager's PersistentVolume controller a scheduler test needs, done
//! synchronously after every write of a PersistentVolume or a PersistentVolumeClaim, plus the
//! DefaultStorageClass admission plugin.
//!
//! - A new volume without a `claimRef` (or pre-bound by name to a claim that does not exist
//!   yet) becomes `Available`.
//! - A **pre-bound pair** is bound: a claim naming an existing volume in `spec.volumeName`, or a
//!   volume whose `spec.claimRef` names an existing claim. The volume must satisfy the claim
//!   (same class and volume mode, every requested access mode, enough capacity), as upstream's
//!   `checkVolumeSatisfyClaim`. Binding takes the real controller's four writes in its order:
//!   the volume's `claimRef` (with the claim's uid), the volume's phase `Bound`, the claim's
//!   `volumeName` and `pv.kubernetes.io/bind-completed` annotation, the claim's phase `Bound`
//!   with the volume's capacity and access modes.
//! - A bound claim whose volume is deleted becomes `Lost`; a bound volume whose claim is deleted
//!   becomes `Released` (whatever its reclaim policy: no volume plugin runs here to delete or
//!   recycle it).
//!
//! Not done (no provisioner and no matching of unbound claims to volumes): a claim that names no
//! volume and that no volume is pre-bound to stays `Pending`.

use std::cell::Cell;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::registry::{Registry, WriteOptions};
use crate::resources::Kind;
use crate::store::Stored;
use crate::typed::FieldValidation;
use crate::validation::Subresource;

/// Annotation the controller puts on a claim once it is bound.
pub(crate) const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Annotation on objects whose binding the controller (not the user) chose.
pub(crate) const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Annotation that makes a StorageClass the default.
pub(crate) const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The deprecated annotation form of `spec.storageClassName`.
const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

const INTERNAL: WriteOptions = WriteOptions {
    field_validation: FieldValidation::Ignore,
    dry_run: false,
    skip_namespace_check: false,
};

thread_local! {
    /// Set while the binder writes: the writes' own `after_write` calls return at once, the
    /// outer sync finishes the sequence.
    static SYNCING: Cell<bool> = const { Cell::new(false) };
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// The claim's class: `spec.storageClassName`, else the beta annotation, else `""`
/// (upstream `GetPersistentVolumeClaimClass`).
pub(crate) fn claim_class(pvc: &Value) -> &str {
    match pvc
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
    {
        Some(c) => c,
        None => s(
            pvc,
            &format!("/metadata/annotations/{}", BETA_CLASS.replace('/', "~1")),
        ),
    }
}

/// DefaultStorageClass admission: a claim created without a class gets the default class (the
/// newest, then the first by name, when several are marked default).
pub(crate) fn admit_claim(reg: &Registry, pvc: &mut Value) {
    let unset = pvc
        .pointer("/spec/storageClassName")
        .is_none_or(Value::is_null)
        && pvc
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(BETA_CLASS))
            .is_none();
    if !unset {
        return;
    }
    let (classes, _) = reg.store.snapshot(Kind::StorageClass, None);
    let default = classes
        .iter()
        .map(|c| c.value())
        .filter(|c| {
            let ann = |k: &str| {
                c.pointer("/metadata/annotations").and_then(|a| a.get(k)) == Some(&json!("true"))
            };
            ann(DEFAULT_CLASS) || ann(BETA_DEFAULT_CLASS)
        })
        .max_by(|a, b| {
            s(a, "/metadata/creationTimestamp")
                .cmp(s(b, "/metadata/creationTimestamp"))
                .then_with(|| s(b, "/metadata/name").cmp(s(a, "/metadata/name")))
        });
    if let Some(class) = default
        && let Some(spec) = pvc.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.insert("storageClassName".into(), class["metadata"]["name"].clone());
    }
}

/// Called after every committed write of a PV or PVC (`old`/`new` are `None` for
/// creates/deletes).
pub(crate) fn after_write(
    reg: &Registry,
    kind: Kind,
    old: Option<&Arc<Stored>>,
    new: Option<&Arc<Stored>>,
) {
    if SYNCING.with(Cell::get) {
        return;
    }
    SYNCING.with(|f| f.set(true));
    match (kind, new) {
        (Kind::PersistentVolumeClaim, Some(pvc)) => sync_claim(reg, &pvc.value()),
        (Kind::PersistentVolumeClaim, None) => {
            if let Some(pvc) = old {
                claim_deleted(reg, pvc);
            }
        }
        (Kind::PersistentVolume, Some(pv)) => sync_volume(reg, &pv.value()),
        (Kind::PersistentVolume, None) => {
            if let Some(pv) = old {
                volume_deleted(reg, pv.name());
            }
        }
        _ => {}
    }
    SYNCING.with(|f| f.set(false));
}

fn get(reg: &Registry, kind: Kind, ns: &str, name: &str) -> Option<Value> {
    reg.store
        .get(kind, &(ns.to_string(), name.to_string()))
        .map(|o| o.value())
}

fn merge(reg: &Registry, kind: Kind, ns: Option<&str>, name: &str, body: Value, sub: Subresource) {
    if let Err(e) = reg.patch(
        kind.canonical(),
        ns,
        name,
        kube_patch::PatchType::Merge,
        body.to_string().as_bytes(),
        sub,
        INTERNAL,
    ) {
        tracing::warn!(kind = ?kind, name, error = %e.message, "volume binder write failed");
    }
}

/// Sets a volume's phase (with the transition time the PV strategy keeps).
fn set_volume_phase(reg: &Registry, pv: &Value, phase: &str) {
    if s(pv, "/status/phase") == phase {
        return;
    }
    let body =
        json!({"status": {"phase": phase, "lastPhaseTransitionTime": crate::registry::now()}});
    merge(
        reg,
        Kind::PersistentVolume,
        None,
        s(pv, "/metadata/name"),
        body,
        Subresource::Status,
    );
}

fn set_claim_phase(reg: &Registry, pvc: &Value, phase: &str) {
    if s(pvc, "/status/phase") == phase {
        return;
    }
    let body = json!({"status": {"phase": phase}});
    let (ns, name) = (s(pvc, "/metadata/namespace"), s(pvc, "/metadata/name"));
    merge(
        reg,
        Kind::PersistentVolumeClaim,
        Some(ns),
        name,
        body,
        Subresource::Status,
    );
}

/// Whether the volume's `claimRef` names this claim (and, if it has a uid, this claim's uid).
fn claim_ref_matches(pv: &Value, pvc: &Value) -> bool {
    let uid = s(pv, "/spec/claimRef/uid");
    s(pv, "/spec/claimRef/name") == s(pvc, "/metadata/name")
        && s(pv, "/spec/claimRef/namespace") == s(pvc, "/metadata/namespace")
        && (uid.is_empty() || uid == s(pvc, "/metadata/uid"))
}

fn has_claim_ref(pv: &Value) -> bool {
    !s(pv, "/spec/claimRef/name").is_empty()
}

/// Upstream `checkVolumeSatisfyClaim`: capacity, class, volume mode and access modes.
fn satisfies(pv: &Value, pvc: &Value) -> bool {
    let quantity = |v: &Value, p: &str| kube_quantity::Quantity::parse_json(s(v, p)).ok();
    let enough = match (
        quantity(pvc, "/spec/resources/requests/storage"),
        quantity(pv, "/spec/capacity/storage"),
    ) {
        (Some(want), Some(have)) => want.nanos() <= have.nanos(),
        _ => false,
    };
    let modes = |v: &Value| -> Vec<String> {
        v.pointer("/spec/accessModes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let pv_modes = modes(pv);
    enough
        && s(pv, "/spec/storageClassName") == claim_class(pvc)
        && s(pv, "/spec/volumeMode") == s(pvc, "/spec/volumeMode")
        && modes(pvc).iter().all(|m| pv_modes.contains(m))
}

fn is_bound_claim(pvc: &Value) -> bool {
    !s(pvc, "/spec/volumeName").is_empty()
        && pvc
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(BIND_COMPLETED))
            .is_some()
}

/// Binds a claim that names a volume, or that a volume names.
fn sync_claim(reg: &Registry, pvc: &Value) {
    if pvc
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return;
    }
    let volume_name = s(pvc, "/spec/volumeName");
    if is_bound_claim(pvc) {
        match get(reg, Kind::PersistentVolume, "", volume_name) {
            None => set_claim_phase(reg, pvc, "Lost"),
            Some(pv) if !has_claim_ref(&pv) || claim_ref_matches(&pv, pvc) => {
                // A claim bound in a manifest (annotation included) still needs its volume's half.
                bind(reg, &pv, pvc);
            }
            Some(_) => {}
        }
        return;
    }
    let pv = if volume_name.is_empty() {
        // A volume pre-bound to this claim by its claimRef.
        let (pvs, _) = reg.store.snapshot(Kind::PersistentVolume, None);
        pvs.iter()
            .filter(|p| p.mentions(s(pvc, "/metadata/name")))
            .map(|p| p.value())
            .find(|p| claim_ref_matches(p, pvc))
    } else {
        get(reg, Kind::PersistentVolume, "", volume_name)
            .filter(|p| !has_claim_ref(p) || claim_ref_matches(p, pvc))
    };
    if let Some(pv) = pv.filter(|pv| satisfies(pv, pvc)) {
        bind(reg, &pv, pvc);
    }
}

/// The four writes of a binding, each skipped when already done.
fn bind(reg: &Registry, pv: &Value, pvc: &Value) {
    let (ns, claim, pv_name) = (
        s(pvc, "/metadata/namespace"),
        s(pvc, "/metadata/name"),
        s(pv, "/metadata/name"),
    );
    if s(pv, "/spec/claimRef/uid") != s(pvc, "/metadata/uid") {
        let mut body = json!({"spec": {"claimRef": {
            "kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns, "name": claim,
            "uid": s(pvc, "/metadata/uid"), "resourceVersion": s(pvc, "/metadata/resourceVersion"),
        }}});
        if !has_claim_ref(pv) {
            body["metadata"] = json!({"annotations": {BOUND_BY_CONTROLLER: "yes"}});
        }
        merge(
            reg,
            Kind::PersistentVolume,
            None,
            pv_name,
            body,
            Subresource::Main,
        );
    }
    if let Some(pv) = get(reg, Kind::PersistentVolume, "", pv_name) {
        set_volume_phase(reg, &pv, "Bound");
    }
    if !is_bound_claim(pvc) {
        let mut body = json!({"metadata": {"annotations": {BIND_COMPLETED: "yes"}}});
        if s(pvc, "/spec/volumeName").is_empty() {
            body["spec"] = json!({"volumeName": pv_name});
            body["metadata"]["annotations"][BOUND_BY_CONTROLLER] = "yes".into();
        }
        merge(
            reg,
            Kind::PersistentVolumeClaim,
            Some(ns),
            claim,
            body,
            Subresource::Main,
        );
    }
    if let Some(pvc) = get(reg, Kind::PersistentVolumeClaim, ns, claim) {
        let status = json!({
            "phase": "Bound",
            "accessModes": pv.pointer("/spec/accessModes").cloned().unwrap_or(json!([])),
            "capacity": pv.pointer("/spec/capacity").cloned().unwrap_or(json!({})),
        });
        let current = pvc.get("status").cloned().unwrap_or(Value::Null);
        if ["phase", "accessModes", "capacity"]
            .iter()
            .any(|f| current.get(f) != status.get(f))
        {
            merge(
                reg,
                Kind::PersistentVolumeClaim,
                Some(ns),
                claim,
                json!({"status": status}),
                Subresource::Status,
            );
        }
    }
}

/// A volume was created or changed: its phase, and a binding it may complete.
fn sync_volume(reg: &Registry, pv: &Value) {
    if pv
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return;
    }
    let name = s(pv, "/metadata/name");
    if has_claim_ref(pv) {
        let claim = get(
            reg,
            Kind::PersistentVolumeClaim,
            s(pv, "/spec/claimRef/namespace"),
            s(pv, "/spec/claimRef/name"),
        );
        match claim {
            Some(pvc) if claim_ref_matches(pv, &pvc) => sync_claim(reg, &pvc),
            // Bound to a claim that is gone (another claim now has its name, or none).
            _ if !s(pv, "/spec/claimRef/uid").is_empty() => set_volume_phase(reg, pv, "Released"),
            _ => set_volume_phase(reg, pv, "Available"),
        }
        return;
    }
    set_volume_phase(reg, pv, "Available");
    // Claims created before the volume they name.
    let (claims, _) = reg.store.snapshot(Kind::PersistentVolumeClaim, None);
    for pvc in claims.iter().filter(|c| c.mentions(name)) {
        let v = pvc.value();
        if s(&v, "/spec/volumeName") == name {
            sync_claim(reg, &v);
            return;
        }
    }
}

fn claim_deleted(reg: &Registry, pvc: &Stored) {
    let (pvs, _) = reg.store.snapshot(Kind::PersistentVolume, None);
    for pv in pvs.iter().filter(|p| p.mentions(pvc.uid())) {
        let v = pv.value();
        if s(&v, "/spec/claimRef/uid") == pvc.uid() && s(&v, "/status/phase") == "Bound" {
            set_volume_phase(reg, &v, "Released");
        }
    }
}

fn volume_deleted(reg: &Registry, name: &str) {
    let (claims, _) = reg.store.snapshot(Kind::PersistentVolumeClaim, None);
    for pvc in claims.iter().filter(|c| c.mentions(name)) {
        let v = pvc.value();
        if s(&v, "/spec/volumeName") == name && is_bound_claim(&v) {
            set_claim_phase(reg, &v, "Lost");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_satisfies_a_claim_of_its_class_size_mode_and_access() {
        let pv = json!({"spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
            "storageClassName": "local", "volumeMode": "Filesystem"}});
        let pvc = json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local", "volumeMode": "Filesystem"}});
        assert!(satisfies(&pv, &pvc));
        let mut big = pvc.clone();
        big["spec"]["resources"]["requests"]["storage"] = "20Gi".into();
        assert!(!satisfies(&pv, &big));
        let mut other = pvc.clone();
        other["spec"]["storageClassName"] = "fast".into();
        assert!(!satisfies(&pv, &other));
        let mut rwx = pvc;
        rwx["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert!(!satisfies(&pv, &rwx));
    }
}
