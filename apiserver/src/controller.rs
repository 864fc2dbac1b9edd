//! The work of kube-controller-manager's resourceclaim controller (and of the garbage collector for
//! the claims it generates), done synchronously right after the write that calls for it:
//!
//! - a new pod that names a `resourceClaimTemplateName` gets a ResourceClaim generated from the
//!   template (`generateName: <pod>-<claim>-`, the `resource.kubernetes.io/pod-claim-name`
//!   annotation, a controller owner reference to the pod), and the claim's name is recorded in
//!   `pod.status.resourceClaimStatuses` (reference 16);
//! - when a pod is deleted or reaches `Succeeded`/`Failed`, its `reservedFor` entries are removed
//!   from all claims of its namespace and the claims generated for it are deleted;
//! - a claim being deleted that is reserved by nobody and carries the
//!   `resource.kubernetes.io/delete-protection` finalizer is deallocated and the finalizer removed,
//!   so it disappears (reference 61).
//!
//! The real controller is asynchronous; doing the same work synchronously keeps tests deterministic:
//! when the pod create returns, its claims exist. Each step is still a separate write with its own
//! resourceVersion and watch event, in the order the real controller makes them.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::registry::{DeleteOptions, Registry, WriteOptions};
use crate::resources::Kind;
use crate::store::Stored;
use crate::typed::FieldValidation;
use crate::validation::Subresource;

/// Annotation on generated claims naming the pod's claim entry.
pub(crate) const POD_CLAIM_NAME_ANNOTATION: &str = "resource.kubernetes.io/pod-claim-name";
/// Finalizer kube-scheduler puts on claims it allocates.
pub(crate) const DELETE_PROTECTION_FINALIZER: &str = "resource.kubernetes.io/delete-protection";

const INTERNAL: WriteOptions = WriteOptions {
    field_validation: FieldValidation::Ignore,
    dry_run: false,
    skip_namespace_check: false,
};

fn is_terminal(pod: &Stored) -> bool {
    matches!(pod.field(Kind::Pod, "status.phase"), "Succeeded" | "Failed")
}

/// Called after every committed write (`old`/`new` are `None` for creates/deletes).
pub(crate) fn after_write(
    reg: &Registry,
    kind: Kind,
    old: Option<&Arc<Stored>>,
    new: Option<&Arc<Stored>>,
) {
    match kind {
        // The disruption controller: PDB status follows its pods and its spec.
        Kind::Pod | Kind::PodDisruptionBudget => {
            if let Some(ns) = new.or(old).map(|o| o.namespace().to_string()) {
                let spec_or_pods_changed = kind == Kind::Pod
                    || new.is_some_and(|n| {
                        old.is_none_or(|o| {
                            o.value().get("spec") != n.value().get("spec")
                                || o.value().pointer("/metadata/generation")
                                    != n.value().pointer("/metadata/generation")
                        })
                    });
                if spec_or_pods_changed {
                    crate::disruption::sync_namespace(reg, &ns);
                }
            }
        }
        _ => {}
    }
    match kind {
        Kind::Pod => match (old, new) {
            (None, Some(pod)) => generate_claims(reg, pod),
            (Some(pod), None) => release_pod(reg, pod),
            (Some(o), Some(n)) if is_terminal(n) && !is_terminal(o) => release_pod(reg, n),
            _ => {}
        },
        Kind::ResourceClaim => {
            if let Some(claim) = new {
                finish_deleted_claim(reg, claim);
            }
        }
        Kind::PersistentVolume | Kind::PersistentVolumeClaim => {
            crate::volumes::after_write(reg, kind, old, new)
        }
        Kind::ResourceClaimTemplate => {
            if let (None, Some(t)) = (old, new) {
                // Pods created before their template get their claims now.
                let (pods, _) = reg.store.snapshot(Kind::Pod, Some(t.namespace()));
                for pod in pods {
                    generate_claims(reg, &pod);
                }
            }
        }
        _ => {}
    }
}

/// The `generateName` the controller uses: `<pod>-<claim>-`, shortened like upstream when long.
fn generate_name(pod: &str, claim: &str) -> String {
    let name = format!("{pod}-{claim}-");
    if name.len() > 58 {
        // Keep both ends, as upstream does, so names stay recognisable.
        format!(
            "{}-{}-",
            &pod[..pod.len().min(28)],
            &claim[..claim.len().min(28)]
        )
    } else {
        name
    }
}

fn generate_claims(reg: &Registry, pod: &Arc<Stored>) {
    // Only pods that name a template have work here; most pods are skipped without parsing.
    if pod.deleting() || is_terminal(pod) || !pod.mentions("resourceClaimTemplateName") {
        return;
    }
    let pod_value = pod.value();
    let ns = pod.namespace().to_string();
    let claims_res = Kind::ResourceClaim.canonical();
    let pod_claims = pod_value
        .pointer("/spec/resourceClaims")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut statuses: Vec<Value> = pod_value
        .pointer("/status/resourceClaimStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut changed = false;
    for pc in &pod_claims {
        let (Some(claim_name), Some(template)) = (
            pc.get("name").and_then(Value::as_str),
            pc.get("resourceClaimTemplateName").and_then(Value::as_str),
        ) else {
            continue;
        };
        if statuses
            .iter()
            .any(|s| s.get("name").and_then(Value::as_str) == Some(claim_name))
        {
            continue;
        }
        let Some(tmpl) = reg.store.get(
            Kind::ResourceClaimTemplate,
            &(ns.clone(), template.to_string()),
        ) else {
            // Like the real controller: nothing to do until the template exists.
            continue;
        };
        let tmpl = tmpl.value();
        let mut annotations = tmpl
            .pointer("/spec/metadata/annotations")
            .cloned()
            .unwrap_or_else(|| json!({}));
        annotations[POD_CLAIM_NAME_ANNOTATION] = claim_name.into();
        let mut meta = json!({
            "generateName": generate_name(pod.name(), claim_name),
            "namespace": ns,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": pod.name(), "uid": pod.uid(), "controller": true
            }],
        });
        if let Some(labels) = tmpl.pointer("/spec/metadata/labels") {
            meta["labels"] = labels.clone();
        }
        let claim = json!({
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": meta,
            "spec": tmpl.pointer("/spec/spec").cloned().unwrap_or_else(|| json!({})),
        });
        match reg.create(claims_res, Some(&ns), claim, INTERNAL) {
            Ok(created) => {
                statuses.push(json!({"name": claim_name, "resourceClaimName": created.obj.name()}));
                changed = true;
            }
            Err(e) => {
                tracing::warn!(pod = pod.name(), claim = claim_name, error = %e.message, "cannot generate ResourceClaim")
            }
        }
    }
    if changed {
        let patch = json!({"status": {"resourceClaimStatuses": statuses}});
        let res = Kind::Pod.canonical();
        if let Err(e) = reg.patch(
            res,
            Some(&ns),
            pod.name(),
            kube_patch::PatchType::Merge,
            patch.to_string().as_bytes(),
            Subresource::Status,
            INTERNAL,
        ) {
            tracing::warn!(pod = pod.name(), error = %e.message, "cannot record resourceClaimStatuses");
        }
    }
}

/// Removes a gone (or finished) pod from claims' `reservedFor` and deletes the claims generated for it.
fn release_pod(reg: &Registry, pod: &Arc<Stored>) {
    let ns = pod.namespace().to_string();
    let uid = pod.uid().to_string();
    let res = Kind::ResourceClaim.canonical();
    let (claims, _) = reg.store.snapshot(Kind::ResourceClaim, Some(&ns));
    for claim in claims {
        // A claim that neither reserves nor is owned by the pod does not contain its uid.
        if !claim.mentions(&uid) {
            continue;
        }
        let claim_value = claim.value();
        let reserved = claim_value
            .pointer("/status/reservedFor")
            .and_then(Value::as_array)
            .is_some_and(|r| {
                r.iter()
                    .any(|e| e.get("uid").and_then(Value::as_str) == Some(uid.as_str()))
            });
        if reserved {
            let patch = json!({"status": {"reservedFor": [{"$patch": "delete", "uid": uid}]}});
            if let Err(e) = reg.patch(
                res,
                Some(&ns),
                claim.name(),
                kube_patch::PatchType::StrategicMerge,
                patch.to_string().as_bytes(),
                Subresource::Status,
                INTERNAL,
            ) {
                tracing::warn!(claim = claim.name(), error = %e.message, "cannot remove stale reservation");
            }
        }
        let owned = claim_value
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| {
                refs.iter().any(|r| {
                    r.get("uid").and_then(Value::as_str) == Some(uid.as_str())
                        && r.get("controller").and_then(Value::as_bool) == Some(true)
                })
            });
        if owned {
            let _ = reg.delete(res, Some(&ns), claim.name(), &DeleteOptions::default());
        }
    }
}

/// Deallocates and unprotects a claim that is being deleted and is no longer reserved.
fn finish_deleted_claim(reg: &Registry, claim: &Arc<Stored>) {
    if !claim.deleting() {
        return;
    }
    let v = &claim.value();
    let reserved = v
        .pointer("/status/reservedFor")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    let protected = v
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| {
            f.iter()
                .any(|x| x.as_str() == Some(DELETE_PROTECTION_FINALIZER))
        });
    if reserved || !protected {
        return;
    }
    let res = Kind::ResourceClaim.canonical();
    let ns = claim.namespace().to_string();
    let allocated = v
        .pointer("/status/allocation")
        .is_some_and(|a| !a.is_null());
    let result = if allocated {
        // The next write of this claim calls us again and removes the finalizer.
        reg.patch(
            res,
            Some(&ns),
            claim.name(),
            kube_patch::PatchType::Merge,
            br#"{"status":{"allocation":null,"devices":null}}"#,
            Subresource::Status,
            INTERNAL,
        )
    } else {
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [DELETE_PROTECTION_FINALIZER]}});
        reg.patch(
            res,
            Some(&ns),
            claim.name(),
            kube_patch::PatchType::StrategicMerge,
            patch.to_string().as_bytes(),
            Subresource::Main,
            INTERNAL,
        )
    };
    if let Err(e) = result {
        tracing::warn!(claim = claim.name(), error = %e.message, "cannot finish deletion of ResourceClaim");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_follow_pod_and_claim() {
        assert_eq!(generate_name("tmpl-pod", "gpu"), "tmpl-pod-gpu-");
        assert!(generate_name(&"p".repeat(60), &"c".repeat(60)).len() <= 58);
    }
}
