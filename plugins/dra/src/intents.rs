//! The patch intents DRA writes, all on ResourceClaims and all guarded by the claim's uid, as
//! in Kubernetes PR #121876:
//!
//! 1. [`add_finalizer`]: strategic-merge patch of the main resource adding
//!    `resource.kubernetes.io/delete-protection` (finalizers merge as a set);
//! 2. [`reserve`]: one strategic-merge patch of `status` writing `allocation` (if new) and adding
//!    the pod to `reservedFor` (merged by `uid`, so concurrent pods never overwrite each other);
//! 3. [`unreserve`]: strategic-merge patch of `status` removing the pod with `$patch: delete`;
//! 4. [`deallocate`]: JSON merge patch of `status` setting `allocation` to null.
//!
//! Unreserve and deallocate are two patches, in that order, on purpose: the API server only
//! accepts a claim without allocation if `reservedFor` is empty, so if another pod joined the
//! claim in between, the deallocation is refused (422) and that pod keeps its devices, while the
//! first patch has still removed this pod. One combined patch would fail as a whole in that case
//! and leave this pod's entry behind.

use serde_json::{Value, json};
use wasm_scheduler_sdk::{ObjectRef, PatchIntent, PatchKind, ResourceKind};

use crate::state::FINALIZER;

/// The claim a patch is for.
#[derive(Debug, Clone, Copy)]
pub struct ClaimTarget<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Name.
    pub name: &'a str,
    /// UID the patch is guarded by.
    pub uid: &'a str,
}

fn intent(
    target: ClaimTarget<'_>,
    subresource: Option<&str>,
    kind: PatchKind,
    mut body: Value,
) -> PatchIntent {
    // A claim created in the same binding cycle has no uid yet: no precondition then.
    if target.uid.is_empty()
        && let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut)
    {
        m.remove("uid");
    }
    PatchIntent {
        target: ObjectRef {
            resource: ResourceKind::resource_claim(),
            namespace: Some(target.namespace.to_owned()),
            name: target.name.to_owned(),
            uid: target.uid.to_owned(),
        },
        subresource: subresource.map(str::to_owned),
        patch_kind: kind,
        body: body.to_string(),
    }
}

/// Creates a claim (POST of the whole object; the uid is the server's).
pub fn create(target: ClaimTarget<'_>, object: Value) -> PatchIntent {
    intent(target, None, PatchKind::Create, object)
}

/// Sets `status.extendedResourceClaimStatus` of a pod (pods/status, strategic merge, guarded by
/// the pod's uid).
pub fn pod_extended_status(namespace: &str, name: &str, uid: &str, status: Value) -> PatchIntent {
    PatchIntent {
        target: ObjectRef {
            resource: ResourceKind::pod(),
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
            uid: uid.to_owned(),
        },
        subresource: Some("status".to_owned()),
        patch_kind: PatchKind::StrategicMerge,
        body: json!({"metadata": {"uid": uid}, "status": {"extendedResourceClaimStatus": status}})
            .to_string(),
    }
}

/// Adds the delete-protection finalizer (main resource, strategic merge).
pub fn add_finalizer(target: ClaimTarget<'_>) -> PatchIntent {
    intent(
        target,
        None,
        PatchKind::StrategicMerge,
        json!({"metadata": {"uid": target.uid, "finalizers": [FINALIZER]}}),
    )
}

/// Adds the pod to `reservedFor`, and writes `allocation` if given (status, strategic merge).
pub fn reserve(
    target: ClaimTarget<'_>,
    allocation: Option<Value>,
    pod_name: &str,
    pod_uid: &str,
) -> PatchIntent {
    let mut status =
        json!({"reservedFor": [{"resource": "pods", "name": pod_name, "uid": pod_uid}]});
    if let Some(a) = allocation {
        status["allocation"] = a;
    }
    intent(
        target,
        Some("status"),
        PatchKind::StrategicMerge,
        json!({"metadata": {"uid": target.uid}, "status": status}),
    )
}

/// Removes the pod from `reservedFor` (status, strategic merge with `$patch: delete`).
pub fn unreserve(target: ClaimTarget<'_>, pod_uid: &str) -> PatchIntent {
    intent(
        target,
        Some("status"),
        PatchKind::StrategicMerge,
        json!({"metadata": {"uid": target.uid}, "status": {"reservedFor": [{"$patch": "delete", "uid": pod_uid}]}}),
    )
}

/// Removes the allocation and the drivers' device status (status, JSON merge patch), as
/// upstream clears both. The server refuses it while `reservedFor` is not empty.
pub fn deallocate(target: ClaimTarget<'_>) -> PatchIntent {
    intent(
        target,
        Some("status"),
        PatchKind::Merge,
        json!({"metadata": {"uid": target.uid}, "status": {"allocation": null, "devices": null}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: ClaimTarget<'static> = ClaimTarget {
        namespace: "demo",
        name: "c",
        uid: "cu",
    };

    fn body(i: &PatchIntent) -> Value {
        serde_json::from_str(&i.body).unwrap()
    }

    #[test]
    fn reserve_writes_the_pr_121876_shape() {
        let i = reserve(T, Some(json!({"devices": {"results": []}})), "p", "pu");
        assert_eq!(i.subresource.as_deref(), Some("status"));
        assert_eq!(i.patch_kind, PatchKind::StrategicMerge);
        assert_eq!(i.target.uid, "cu");
        assert_eq!(
            body(&i),
            json!({"metadata": {"uid": "cu"}, "status": {
                "allocation": {"devices": {"results": []}},
                "reservedFor": [{"resource": "pods", "name": "p", "uid": "pu"}]}})
        );
        let i = reserve(T, None, "p", "pu");
        assert!(body(&i)["status"].get("allocation").is_none());
    }

    #[test]
    fn finalizer_and_unreserve_and_deallocate_bodies() {
        assert_eq!(
            body(&add_finalizer(T)),
            json!({"metadata": {"uid": "cu", "finalizers": ["resource.kubernetes.io/delete-protection"]}})
        );
        assert_eq!(add_finalizer(T).subresource, None);
        assert_eq!(
            body(&unreserve(T, "pu")),
            json!({"metadata": {"uid": "cu"}, "status": {"reservedFor": [{"$patch": "delete", "uid": "pu"}]}})
        );
        let d = deallocate(T);
        assert_eq!(d.patch_kind, PatchKind::Merge);
        assert_eq!(
            body(&d),
            json!({"metadata": {"uid": "cu"}, "status": {"allocation": null, "devices": null}})
        );
    }
}
