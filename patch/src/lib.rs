//! Kubernetes patch semantics, implemented once.
//!
//! The embedded API server applies every `PATCH` request with this crate, and the scheduler's
//! assume-cache applies a plugin's patch intents with it too, so an assumed object is exactly the
//! object the server will store. Three things are all a user needs:
//!
//! - [`PatchType`]: the three patch types of the Kubernetes API, named by their `Content-Type`;
//! - [`apply_patch`] (or [`apply_patch_bytes`] for a raw request body, [`apply_patch_owned`] to
//!   patch an object you own without copying it): applies a patch to an object of a given kind
//!   and returns the patched object;
//! - [`PatchError`]: why a patch failed, with the HTTP status and reason the real API server
//!   answers it with.
//!
//! ```
//! use kube_patch::{apply_patch, PatchType};
//! use serde_json::json;
//!
//! let claim = json!({
//!     "metadata": {"name": "gpu", "uid": "c1"},
//!     "status": {"reservedFor": [{"resource": "pods", "name": "a", "uid": "pa"}]}
//! });
//! // What kube-scheduler sends to reserve a shared claim for one more pod: reservedFor merges
//! // by uid, so concurrent reservations of different pods never overwrite each other.
//! let reserve = json!({
//!     "metadata": {"uid": "c1"},
//!     "status": {"reservedFor": [{"resource": "pods", "name": "b", "uid": "pb"}]}
//! });
//! let patched = apply_patch(PatchType::StrategicMerge, "ResourceClaim", &claim, &reserve)?;
//! // The entry from the patch comes first, as on a real v1.36 API server.
//! assert_eq!(
//!     patched["status"]["reservedFor"],
//!     json!([
//!         {"resource": "pods", "name": "b", "uid": "pb"},
//!         {"resource": "pods", "name": "a", "uid": "pa"}
//!     ])
//! );
//! # Ok::<(), kube_patch::PatchError>(())
//! ```
//!
//! Where the semantics come from:
//!
//! - JSON Patch (RFC 6902) is the `json-patch` crate, with the API server's error mapping
//!   (`k8s.io/apiserver/pkg/endpoints/handlers/patch.go`).
//! - JSON merge patch (RFC 7386): `null` removes a field, lists are replaced.
//! - Strategic merge patch follows `k8s.io/apimachinery/pkg/util/strategicpatch` (v0.36), with
//!   the merge keys of the Go struct tags of the kinds this project uses. See [`apply_patch`].
//!
//! The object comes back as the server would store it: a list that a patch leaves empty is left
//! out, and so are `null` fields and emptied `labels`/`annotations`, because the server
//! round-trips every object through Go types whose optional fields are `omitempty`. What the
//! server validates afterwards (for example that `metadata.uid` did not change) is not this
//! crate's job.

mod error;
mod json_patch;
mod merge;
mod omit;
mod strategic;

pub use error::PatchError;

use serde_json::Value;

/// The three patch types of the Kubernetes API, by `Content-Type`.
///
/// Server-side apply (`application/apply-patch+yaml`) is not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// JSON Patch (RFC 6902): `application/json-patch+json`.
    Json,
    /// JSON merge patch (RFC 7386): `application/merge-patch+json`.
    Merge,
    /// Kubernetes strategic merge patch: `application/strategic-merge-patch+json`.
    StrategicMerge,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value, or `None` if it is not one of the three
    /// (the API server then answers 415 Unsupported Media Type).
    ///
    /// Parameters such as `; charset=utf-8` are ignored, as upstream does.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let media_type = ct.split(';').next().unwrap_or_default().trim();
        [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge]
            .into_iter()
            .find(|t| t.content_type().eq_ignore_ascii_case(media_type))
    }

    /// The `Content-Type` a client sends for this patch type.
    pub fn content_type(&self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
        }
    }
}

/// Applies `patch` to `original`, an object of the given `kind` (for example `"ResourceClaim"`,
/// `"Pod"`, `"Node"`; the apiVersion is not needed), and returns the patched object.
/// `original` is not changed.
///
/// `kind` matters only to strategic merge patch, which merges these lists by key (every other
/// list is replaced, as upstream does for lists without a `patchStrategy` tag):
///
/// | kind | list | merged by |
/// |---|---|---|
/// | every kind | `metadata.finalizers` | value (a set) |
/// | every kind | `metadata.ownerReferences` | `uid` |
/// | Pod | `spec.containers`, `spec.initContainers`, `spec.ephemeralContainers` | `name` |
/// | Pod | `…containers[].ports` | `containerPort` |
/// | Pod | `…containers[].env` | `name` |
/// | Pod | `…containers[].volumeMounts` | `mountPath` |
/// | Pod | `…containers[].volumeDevices` | `devicePath` |
/// | Pod | `spec.volumes`, `spec.imagePullSecrets`, `spec.schedulingGates`, `spec.resourceClaims` | `name` |
/// | Pod | `spec.hostAliases` | `ip` |
/// | Pod | `spec.topologySpreadConstraints` | `topologyKey` |
/// | Pod | `status.conditions` | `type` |
/// | Pod | `status.podIPs`, `status.hostIPs` | `ip` |
/// | Pod | `status.resourceClaimStatuses` | `name` |
/// | Node | `spec.podCIDRs` | value (a set) |
/// | Node | `status.conditions`, `status.addresses` | `type` |
/// | ResourceClaim | `status.reservedFor` | `uid` |
/// | ResourceClaimTemplate | `spec.metadata.finalizers`, `spec.metadata.ownerReferences` | as in `metadata` |
///
/// Maps (including `metadata.labels` and `metadata.annotations`) always merge.
///
/// # Errors
///
/// A [`PatchError`] whose [`http_status`](PatchError::http_status) is the status the API server
/// answers: 400 for a malformed patch, 422 for a JSON Patch operation that does not apply (a
/// failed `test`, a path that does not exist), 413 for more than 10000 JSON Patch operations.
pub fn apply_patch(
    patch_type: PatchType,
    kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    apply_patch_owned(patch_type, kind, original.clone(), patch)
}

/// Like [`apply_patch`], patching `object` itself instead of a copy.
///
/// Copying the object is most of the cost of a small patch to a big object (copying a claim with
/// 255 reservations takes about four times as long as the reserve patch itself), so a caller
/// that owns the object, or must copy it anyway, should use this.
///
/// # Errors
///
/// As [`apply_patch`]; `object` is dropped then.
pub fn apply_patch_owned(
    patch_type: PatchType,
    kind: &str,
    object: Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => json_patch::apply(object, patch),
        PatchType::Merge => merge::apply(object, patch),
        PatchType::StrategicMerge => strategic::apply(kind, object, patch),
    }
}

/// Like [`apply_patch`], parsing the patch from a request body first.
///
/// # Errors
///
/// [`PatchError::InvalidJson`] (400) if the body is not JSON, else as [`apply_patch`].
pub fn apply_patch_bytes(
    patch_type: PatchType,
    kind: &str,
    original: &Value,
    patch: &[u8],
) -> Result<Value, PatchError> {
    let patch: Value = serde_json::from_slice(patch).map_err(|e| {
        // Upstream's message for a body that ends early, so clients see the same text.
        let reason = match e.classify() {
            serde_json::error::Category::Eof => "unexpected end of JSON input".to_owned(),
            _ => e.to_string(),
        };
        PatchError::InvalidJson {
            message: match patch_type {
                // The JSON and merge patch handlers prefix their decode errors; the strategic
                // one does not (apiserver handlers/patch.go).
                PatchType::Json | PatchType::Merge => format!("error decoding patch: {reason}"),
                PatchType::StrategicMerge => reason,
            },
        }
    })?;
    apply_patch(patch_type, kind, original, &patch)
}

/// The name Go's `encoding/json` gives a JSON value's type in "cannot unmarshal X" errors, so our
/// 400 messages read like the real server's (reference 25).
fn go_json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn works_when_content_type_names_a_patch_type() {
        for t in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
    }

    #[test]
    fn errors_when_content_type_is_not_a_patch_type() {
        // Reference 26: these get 415 from the server; apply patch is not supported either.
        for ct in [
            "application/json",
            "text/plain",
            "",
            "application/apply-patch+yaml",
        ] {
            assert_eq!(PatchType::from_content_type(ct), None, "{ct}");
        }
    }

    #[test]
    fn errors_with_400_when_body_is_not_json() {
        // Reference 26: `{"metadata": ` as a merge patch.
        let err = apply_patch_bytes(
            PatchType::Merge,
            "ResourceClaim",
            &json!({}),
            b"{\"metadata\": ",
        )
        .unwrap_err();
        assert_eq!(err.http_status(), 400);
        assert_eq!(
            err.to_string(),
            "error decoding patch: unexpected end of JSON input"
        );
        for t in [PatchType::Json, PatchType::StrategicMerge] {
            let err = apply_patch_bytes(t, "Pod", &json!({}), b"{nope").unwrap_err();
            assert_eq!(err.http_status(), 400, "{t:?}");
        }
    }

    #[test]
    fn works_when_body_is_parsed_from_bytes() {
        let patched = apply_patch_bytes(
            PatchType::StrategicMerge,
            "Pod",
            &json!({"metadata": {"name": "p"}}),
            br#"{"metadata": {"labels": {"a": "b"}}}"#,
        )
        .unwrap();
        assert_eq!(
            patched,
            json!({"metadata": {"name": "p", "labels": {"a": "b"}}})
        );
    }

    #[test]
    fn works_without_changing_the_original() {
        let original = json!({"metadata": {"finalizers": ["a"]}});
        let before = original.clone();
        for t in [PatchType::Merge, PatchType::StrategicMerge] {
            apply_patch(
                t,
                "Pod",
                &original,
                &json!({"metadata": {"finalizers": ["b"]}}),
            )
            .unwrap();
        }
        apply_patch(
            PatchType::Json,
            "Pod",
            &original,
            &json!([{"op": "remove", "path": "/metadata/finalizers/0"}]),
        )
        .unwrap();
        assert_eq!(original, before);
    }
}
