//! JSON Patch (RFC 6902, `application/json-patch+json`), applied by the `json-patch` crate.
//!
//! What this module adds is the API server's error mapping
//! (`k8s.io/apiserver/pkg/endpoints/handlers/patch.go`, `jsonPatcher.applyJSPatch`):
//!
//! - a body that does not decode as a list of operations is a 400 (reference 25);
//! - an operation that does not apply, an unknown `op` included, is a 422 with a generic message
//!   (references 25 and 34), because upstream decodes operations lazily and only fails when it
//!   applies them;
//! - more than 10000 operations is a 413.

use ::json_patch::PatchOperation;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

use crate::omit::{omitted_when_empty, prune_in_place, remove_field};
use crate::{PatchError, go_json_type};

/// Upstream `maxJSONPatchOperations` (apiserver handlers/patch.go).
const MAX_OPERATIONS: usize = 10_000;

/// Applies a JSON Patch to `doc`.
pub(crate) fn apply(mut doc: Value, patch: &Value) -> Result<Value, PatchError> {
    let operations = decode(patch)?;
    // `patch_unsafe` skips the undo log: on failure we drop `doc` anyway.
    ::json_patch::patch_unsafe(&mut doc, &operations).map_err(|e| PatchError::JsonPatchFailed {
        detail: e.to_string(),
    })?;
    omit_emptied(&mut doc, &operations);
    Ok(doc)
}

/// Decodes the operations with upstream's split between 400 (not a list of operation objects)
/// and 422 (an operation that upstream would only reject when applying it).
fn decode(patch: &Value) -> Result<Vec<PatchOperation>, PatchError> {
    let items = match patch {
        Value::Array(items) => items,
        // Go decodes `null` into an empty list of operations: a patch that does nothing.
        Value::Null => return Ok(Vec::new()),
        other => {
            return Err(wrong_shape(format!(
                "json: cannot unmarshal {} into Go value of type []handlers.jsonPatchOp",
                go_json_type(other)
            )));
        }
    };
    if items.len() > MAX_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            max: MAX_OPERATIONS,
            got: items.len(),
        });
    }
    items.iter().map(decode_operation).collect()
}

fn decode_operation(item: &Value) -> Result<PatchOperation, PatchError> {
    match item {
        Value::Object(fields) => {
            // Upstream decodes into `struct { Op, Path, From string; Value interface{} }`
            // first, so a non-string in one of those fields is a decode error (400).
            for name in ["op", "path", "from"] {
                if let Some(value) = fields.get(name).filter(|v| !v.is_string() && !v.is_null()) {
                    return Err(wrong_shape(format!(
                        "json: cannot unmarshal {} into Go struct field jsonPatchOp.{name} of type string",
                        go_json_type(value)
                    )));
                }
            }
        }
        // Go decodes `null` into an empty operation, which then fails to apply (422 below).
        Value::Null => {}
        other => {
            return Err(wrong_shape(format!(
                "json: cannot unmarshal {} into Go value of type handlers.jsonPatchOp",
                go_json_type(other)
            )));
        }
    }
    PatchOperation::deserialize(item).map_err(|e| PatchError::JsonPatchFailed {
        detail: e.to_string(),
    })
}

fn wrong_shape(reason: String) -> PatchError {
    PatchError::WrongShape {
        message: format!("error decoding patch: {reason}"),
    }
}

/// Leaves out what the operations emptied or set to `null`, as the server does when it stores
/// the result (see [`crate::omit`]): for example, removing the last finalizer leaves no
/// `finalizers` field, so a later `add /metadata/finalizers/-` fails as it does upstream.
fn omit_emptied(doc: &mut Value, operations: &[PatchOperation]) {
    for operation in operations {
        let path = match operation {
            PatchOperation::Test(_) => continue,
            PatchOperation::Move(op) => {
                drop_parent_if_empty(doc, op.from.as_str());
                op.path.as_str()
            }
            other => other.path().as_str(),
        };
        if let Some(target) = doc.pointer_mut(path) {
            prune_in_place(target);
        }
        drop_if_empty(doc, path);
        drop_parent_if_empty(doc, path);
    }
}

fn drop_parent_if_empty(doc: &mut Value, path: &str) {
    if let Some((parent, _)) = path.rsplit_once('/') {
        drop_if_empty(doc, parent);
    }
}

/// Removes the object field at `path` if it is `null` or an empty value the server leaves out.
/// Array elements are never removed: that would shift their neighbours.
fn drop_if_empty(doc: &mut Value, path: &str) {
    let Some((parent, last)) = path.rsplit_once('/') else {
        return;
    };
    let key = unescape(last);
    if let Some(Value::Object(fields)) = doc.pointer_mut(parent)
        && fields
            .get(key.as_ref())
            .is_some_and(|v| v.is_null() || omitted_when_empty(&key, v))
    {
        remove_field(fields, key.as_ref());
    }
}

/// Decodes a JSON Pointer reference token (RFC 6901: `~1` is `/`, `~0` is `~`).
fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

#[cfg(test)]
mod tests {
    use crate::{PatchType, apply_patch};
    use serde_json::{Value, json};

    const CLAIM_UID: &str = "1df9aa70-fa5b-42ed-81ba-41c7c9a4e919";

    fn claim() -> Value {
        json!({
            "kind": "ResourceClaim",
            "apiVersion": "resource.k8s.io/v1",
            "metadata": {"name": "patch-demo", "namespace": "demo", "uid": CLAIM_UID},
            "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com", "allocationMode": "ExactCount", "count": 1}}]}},
            "status": {
                "allocation": {
                    "devices": {"results": [{"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu-0"}]},
                    "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]}
                }
            }
        })
    }

    fn web() -> Value {
        json!({"resource": "pods", "name": "web", "uid": "21775349-1a1b-422d-9062-23f26d21e30f"})
    }

    fn guaranteed() -> Value {
        json!({"resource": "pods", "name": "guaranteed", "uid": "2d740080-4ff5-4a56-b3ab-43ac34f4ae9e"})
    }

    fn json_patch(original: &Value, patch: Value) -> Result<Value, crate::PatchError> {
        apply_patch(PatchType::Json, "ResourceClaim", original, &patch)
    }

    #[test]
    fn errors_with_422_when_adding_to_an_absent_list_as_in_reference_34() {
        let err = json_patch(
            &claim(),
            json!([{"op": "add", "path": "/status/reservedFor/-", "value": web()}]),
        )
        .unwrap_err();
        assert_eq!(err.http_status(), 422);
        assert_eq!(err.reason(), "Invalid");
        assert_eq!(
            err.to_string(),
            "the server rejected our request due to an error in our request"
        );
    }

    #[test]
    fn works_when_test_add_append_and_remove_run_as_in_reference_34() {
        let created = json_patch(
            &claim(),
            json!([
                {"op": "test", "path": "/metadata/uid", "value": CLAIM_UID},
                {"op": "add", "path": "/status/reservedFor", "value": [web()]}
            ]),
        )
        .unwrap();
        let mut expected = claim();
        expected["status"]["reservedFor"] = json!([web()]);
        assert_eq!(created, expected);

        let appended = json_patch(
            &created,
            json!([{"op": "add", "path": "/status/reservedFor/-", "value": guaranteed()}]),
        )
        .unwrap();
        expected["status"]["reservedFor"] = json!([web(), guaranteed()]);
        assert_eq!(appended, expected);

        let removed = json_patch(
            &appended,
            json!([{"op": "remove", "path": "/status/reservedFor/0"}]),
        )
        .unwrap();
        expected["status"]["reservedFor"] = json!([guaranteed()]);
        assert_eq!(removed, expected);
    }

    #[test]
    fn works_when_finalizers_are_appended_and_removed_as_in_reference_35() {
        let claim = json!({"metadata": {"finalizers": ["example.com/other"]}});
        let appended = json_patch(
            &claim,
            json!([{"op": "add", "path": "/metadata/finalizers/-", "value": "resource.kubernetes.io/delete-protection"}]),
        )
        .unwrap();
        assert_eq!(
            appended["metadata"]["finalizers"],
            json!([
                "example.com/other",
                "resource.kubernetes.io/delete-protection"
            ])
        );
        let removed = json_patch(
            &appended,
            json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": "example.com/other"},
                {"op": "remove", "path": "/metadata/finalizers/0"}
            ]),
        )
        .unwrap();
        assert_eq!(
            removed["metadata"]["finalizers"],
            json!(["resource.kubernetes.io/delete-protection"])
        );
    }

    #[test]
    fn errors_with_422_when_test_fails_as_in_reference_25() {
        for patch in [
            json!([
                {"op": "test", "path": "/metadata/uid", "value": "00000000-0000-0000-0000-00000000dead"},
                {"op": "add", "path": "/status/reservedFor", "value": [web()]}
            ]),
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
                {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}
            ]),
        ] {
            let err = json_patch(&claim(), patch).unwrap_err();
            assert_eq!(err.http_status(), 422);
            assert_eq!(
                err.to_string(),
                "the server rejected our request due to an error in our request"
            );
        }
    }

    #[test]
    fn errors_with_422_when_removing_a_path_that_does_not_exist_as_in_reference_25() {
        let err = json_patch(
            &claim(),
            json!([{"op": "remove", "path": "/metadata/labels/nope"}]),
        )
        .unwrap_err();
        assert_eq!(err.http_status(), 422);
    }

    #[test]
    fn errors_with_422_when_op_is_unknown_as_in_reference_25() {
        let err = json_patch(
            &claim(),
            json!([{"op": "frobnicate", "path": "/metadata/labels"}]),
        )
        .unwrap_err();
        assert_eq!(err.http_status(), 422);
        let err = json_patch(&claim(), json!([{"op": "add", "path": "/x"}])).unwrap_err();
        assert_eq!(err.http_status(), 422, "add without a value");
    }

    #[test]
    fn errors_with_400_when_patch_is_not_an_array_as_in_reference_25() {
        let err = json_patch(
            &claim(),
            json!({"op": "add", "path": "/metadata/labels", "value": {}}),
        )
        .unwrap_err();
        assert_eq!(err.http_status(), 400);
        assert_eq!(err.reason(), "BadRequest");
        assert_eq!(
            err.to_string(),
            "error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp"
        );
    }

    #[test]
    fn errors_with_400_when_an_operation_is_not_an_object_or_has_a_non_string_path() {
        let err = json_patch(&claim(), json!([1])).unwrap_err();
        assert_eq!(err.http_status(), 400);
        let err = json_patch(&claim(), json!([{"op": "remove", "path": 5}])).unwrap_err();
        assert_eq!(err.http_status(), 400);
    }

    #[test]
    fn errors_with_413_when_there_are_too_many_operations() {
        let ops: Vec<Value> = (0..10_001)
            .map(|_| json!({"op": "test", "path": "/kind", "value": "ResourceClaim"}))
            .collect();
        let err = json_patch(&claim(), Value::Array(ops)).unwrap_err();
        assert_eq!(err.http_status(), 413);
    }

    #[test]
    fn works_when_patch_is_null_or_empty() {
        assert_eq!(json_patch(&claim(), json!(null)).unwrap(), claim());
        assert_eq!(json_patch(&claim(), json!([])).unwrap(), claim());
    }

    #[test]
    fn works_when_the_last_entry_is_removed_and_the_list_disappears() {
        let claim = json!({"metadata": {"finalizers": ["a"], "labels": {"k/x": "v"}}});
        let patched = json_patch(
            &claim,
            json!([
                {"op": "remove", "path": "/metadata/finalizers/0"},
                {"op": "remove", "path": "/metadata/labels/k~1x"}
            ]),
        )
        .unwrap();
        assert_eq!(patched, json!({"metadata": {}}));
        // ...so appending to it afterwards fails, as on the real server.
        let err = json_patch(
            &patched,
            json!([{"op": "add", "path": "/metadata/finalizers/-", "value": "b"}]),
        )
        .unwrap_err();
        assert_eq!(err.http_status(), 422);
    }

    #[test]
    fn works_when_move_copy_and_replace_apply() {
        let doc = json!({"a": {"b": 1}, "c": [1, 2]});
        let patched = json_patch(
            &doc,
            json!([
                {"op": "copy", "from": "/a", "path": "/d"},
                {"op": "move", "from": "/c", "path": "/e"},
                {"op": "replace", "path": "/a/b", "value": null}
            ]),
        )
        .unwrap();
        assert_eq!(patched, json!({"a": {}, "d": {"b": 1}, "e": [1, 2]}));
    }
}
