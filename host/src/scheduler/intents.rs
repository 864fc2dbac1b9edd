//! The PreBind executor's unit of work: checking a plugin's patch intents against the kinds it
//! declared, and applying one intent to the API server as a PATCH (or, for a create, a POST).

use kube::Client;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::Value;

use crate::cache::{controller_uid, dynamic_api};
use crate::framework::{PatchIntent, PatchKind, Plugin, Status};
use crate::retry::RetryPolicy;

/// Field manager of the scheduler's writes.
pub const FIELD_MANAGER: &str = "wasm-scheduler";

/// Errors applying an intent.
#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    /// The body is not valid for its patch kind.
    #[error("patch intent for {target} has an invalid body: {message}")]
    Body {
        /// `kind namespace/name`.
        target: String,
        /// Why.
        message: String,
    },
    /// The API server refused the patch.
    #[error("patching {target} failed: {source}")]
    Api {
        /// `kind namespace/name`.
        target: String,
        /// The client error (a 422 names the invalid field).
        #[source]
        source: kube::Error,
    },
    /// The API server refused a create (a 409 means an object of another controller has the
    /// name).
    #[error("creating {target} failed: {source}")]
    Create {
        /// `kind namespace/name`.
        target: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// `Kind namespace/name[/subresource]`, for messages.
pub fn describe(intent: &PatchIntent) -> String {
    let t = &intent.target;
    let mut s = match &t.namespace {
        Some(ns) => format!("{} {ns}/{}", t.resource.kind, t.name),
        None => format!("{} {}", t.resource.kind, t.name),
    };
    if let Some(sub) = &intent.subresource {
        s.push('/');
        s.push_str(sub);
    }
    s
}

/// Refuses intents for kinds the plugin did not declare in `patchable_kinds()`.
///
/// # Errors
/// An `Error` status naming the plugin, the kind, and what it may patch.
pub fn check_kinds(plugin: &dyn Plugin, intents: &[PatchIntent]) -> Result<(), Status> {
    let mut allowed = None;
    for intent in intents {
        let allowed = allowed.get_or_insert_with(|| plugin.patchable_kinds());
        if !allowed.contains(&intent.target.resource) {
            let may: Vec<String> = allowed
                .iter()
                .map(|k| format!("{}/{}", k.api_version, k.kind))
                .collect();
            return Err(Status::error(format!(
                "plugin {} returned a patch intent for {} ({}/{}), but it may only patch [{}]",
                plugin.name(),
                describe(intent),
                intent.target.resource.api_version,
                intent.target.resource.kind,
                may.join(", ")
            )));
        }
    }
    Ok(())
}

/// Applies one intent with its patch type. Returns the resourceVersion the server answered with.
///
/// # Errors
/// A bad body, or the API server's refusal.
pub async fn apply_intent(
    client: &Client,
    intent: &PatchIntent,
) -> Result<Option<String>, IntentError> {
    let target = || describe(intent);
    let body: Value = serde_json::from_str(&intent.body).map_err(|e| IntentError::Body {
        target: target(),
        message: e.to_string(),
    })?;
    if intent.patch_kind == PatchKind::Create {
        return create(client, intent, body).await;
    }
    let patch: Patch<Value> = match intent.patch_kind {
        PatchKind::Json => {
            Patch::Json(serde_json::from_value(body).map_err(|e| IntentError::Body {
                target: target(),
                message: e.to_string(),
            })?)
        }
        PatchKind::Merge => Patch::Merge(body),
        PatchKind::StrategicMerge => Patch::Strategic(body),
        PatchKind::Create => unreachable!("handled above"),
    };
    let api = dynamic_api(
        client.clone(),
        &intent.target.resource,
        intent.target.namespace.as_deref(),
    );
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    // Patches merge by key and carry the uid precondition, so repeating one after a transient
    // error is safe.
    let result = RetryPolicy::default()
        .run(
            || async {
                match intent.subresource.as_deref() {
                    Some(sub) => {
                        api.patch_subresource(sub, &intent.target.name, &params, &patch)
                            .await
                    }
                    None => api.patch(&intent.target.name, &params, &patch).await,
                }
            },
            |n, e| tracing::debug!("patching {} (try {n}) failed, retrying: {e}", target()),
        )
        .await;
    result
        .map(|obj| obj.metadata.resource_version)
        .map_err(|source| IntentError::Api {
            target: target(),
            source,
        })
}

/// Applies a create intent with POST. A 409 AlreadyExists for an object with the same controller
/// (ownerReference uid) as the body counts as done: it is this write from an earlier try (a
/// retried binding cycle, or a response lost after the server stored it), so creates retry
/// idempotently. An object with another controller, or a body without one, is a conflict.
async fn create(
    client: &Client,
    intent: &PatchIntent,
    body: Value,
) -> Result<Option<String>, IntentError> {
    let target = || describe(intent);
    let want = controller_uid(&body).map(str::to_owned);
    let obj: DynamicObject = serde_json::from_value(body).map_err(|e| IntentError::Body {
        target: target(),
        message: e.to_string(),
    })?;
    let api = dynamic_api(
        client.clone(),
        &intent.target.resource,
        intent.target.namespace.as_deref(),
    );
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    let policy = RetryPolicy::default();
    let result = policy
        .run(
            || api.create(&params, &obj),
            |n, e| tracing::debug!("creating {} (try {n}) failed, retrying: {e}", target()),
        )
        .await;
    let err = match result {
        Ok(created) => return Ok(created.metadata.resource_version),
        Err(e) => e,
    };
    let exists =
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists");
    if exists && want.is_some() {
        let existing = policy
            .run(|| api.get(&intent.target.name), |_, _| {})
            .await
            .map_err(|source| IntentError::Create {
                target: target(),
                source,
            })?;
        let owner = existing
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| r.uid.as_str());
        if owner == want.as_deref() {
            return Ok(existing.metadata.resource_version);
        }
    }
    Err(IntentError::Create {
        target: target(),
        source: err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{ExtensionPoint, ObjectRef, ResourceKind};

    struct ClaimPatcher;
    impl Plugin for ClaimPatcher {
        fn name(&self) -> &str {
            "ClaimPatcher"
        }
        fn extension_points(&self) -> Vec<ExtensionPoint> {
            vec![ExtensionPoint::Reserve]
        }
        fn patchable_kinds(&self) -> Vec<ResourceKind> {
            vec![ResourceKind::resource_claim()]
        }
    }

    fn intent(kind: ResourceKind) -> PatchIntent {
        PatchIntent {
            target: ObjectRef {
                resource: kind,
                namespace: Some("d".into()),
                name: "x".into(),
                uid: "u".into(),
            },
            subresource: Some("status".into()),
            patch_kind: PatchKind::StrategicMerge,
            body: "{}".into(),
        }
    }

    #[test]
    fn errors_when_a_plugin_patches_a_kind_it_did_not_declare() {
        assert!(check_kinds(&ClaimPatcher, &[intent(ResourceKind::resource_claim())]).is_ok());
        let err = check_kinds(&ClaimPatcher, &[intent(ResourceKind::node())]).unwrap_err();
        assert_eq!(err.code, crate::framework::Code::Error);
        assert_eq!(
            err.message(),
            "plugin ClaimPatcher returned a patch intent for Node d/x/status (v1/Node), but it may only patch [resource.k8s.io/v1/ResourceClaim]"
        );
    }

    fn create_claim(owner_uid: &str) -> PatchIntent {
        PatchIntent {
            target: ObjectRef {
                resource: ResourceKind::resource_claim(),
                namespace: Some("d".into()),
                name: "c".into(),
                uid: String::new(),
            },
            subresource: None,
            patch_kind: PatchKind::Create,
            body: serde_json::json!({
                "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": {"name": "c", "namespace": "d", "ownerReferences": [{
                    "apiVersion": "v1", "kind": "Pod", "name": "p", "uid": owner_uid,
                    "controller": true}]},
                "spec": {"devices": {"requests": [
                    {"name": "r", "exactly": {"deviceClassName": "gpu"}}]}}})
            .to_string(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_create_retried_by_the_same_controller_is_done_and_another_is_refused() {
        let server = embedded_apiserver::ApiServer::new();
        server
            .load_manifest_str("ns", "apiVersion: v1\nkind: Namespace\nmetadata: {name: d}")
            .await
            .unwrap();
        let client = server.client();
        let first = apply_intent(&client, &create_claim("pod-1")).await.unwrap();
        assert!(first.is_some());
        // The same write again (a retried binding cycle): 409, same controller, done.
        let again = apply_intent(&client, &create_claim("pod-1")).await.unwrap();
        assert_eq!(again, first);
        // Someone else's object of that name is a conflict.
        let err = apply_intent(&client, &create_claim("pod-2"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, IntentError::Create { source: kube::Error::Api(s), .. } if s.code == 409),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("creating ResourceClaim d/c failed"),
            "{err}"
        );
    }
}
