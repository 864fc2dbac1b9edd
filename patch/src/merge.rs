//! JSON merge patch (RFC 7386, `application/merge-patch+json`).
//!
//! Objects merge recursively, `null` removes a field, and everything else (lists included)
//! replaces: unlike strategic merge patch, a list in a merge patch is the whole new list
//! (reference 33, 35).

use serde_json::{Map, Value};

use crate::PatchError;
use crate::omit::{omitted_when_empty, remove_field, stored_copy};

/// Applies a JSON merge patch to `doc`.
pub(crate) fn apply(mut doc: Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        // A patch that is not an object would replace the whole object, which can never decode
        // as a Kubernetes object; upstream's json-patch library rejects `null` and scalars with
        // this text, answered as 400.
        return Err(PatchError::WrongShape {
            message: "Invalid JSON Patch".to_owned(),
        });
    };
    merge_object(&mut doc, patch);
    Ok(doc)
}

/// Merges `patch` into `target`, walking only the fields the patch names.
fn merge_object(target: &mut Value, patch: &Map<String, Value>) {
    if !target.is_object() {
        // RFC 7386: a patch object applied to a non-object merges into an empty object.
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        match value {
            Value::Null => {
                remove_field(target, key);
            }
            Value::Object(nested) if target.get(key).is_some_and(Value::is_object) => {
                if let Some(field) = target.get_mut(key) {
                    merge_object(field, nested);
                }
                if target.get(key).is_some_and(|v| omitted_when_empty(key, v)) {
                    remove_field(target, key);
                }
            }
            value => match stored_copy(value, false) {
                Some(value) if !omitted_when_empty(key, &value) => {
                    target.insert(key.clone(), value);
                }
                _ => {
                    remove_field(target, key);
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PatchType, apply_patch};
    use serde_json::json;

    fn claim_with_allocation() -> Value {
        json!({
            "kind": "ResourceClaim",
            "apiVersion": "resource.k8s.io/v1",
            "metadata": {"name": "patch-demo", "namespace": "demo", "uid": "1df9aa70-fa5b-42ed-81ba-41c7c9a4e919"},
            "status": {
                "allocation": {
                    "devices": {"results": [{"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu-0"}]},
                    "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]}
                }
            }
        })
    }

    fn merge(original: &Value, patch: Value) -> Value {
        apply_patch(PatchType::Merge, "ResourceClaim", original, &patch).unwrap()
    }

    #[test]
    fn works_when_merge_patch_replaces_lists_as_in_reference_33() {
        let web = json!({"resource": "pods", "name": "web", "uid": "21775349-1a1b-422d-9062-23f26d21e30f"});
        let guaranteed = json!({"resource": "pods", "name": "guaranteed", "uid": "2d740080-4ff5-4a56-b3ab-43ac34f4ae9e"});
        let besteffort = json!({"resource": "pods", "name": "besteffort", "uid": "f8907869-ee8a-4b33-b664-105aebbf01ed"});
        let claim = claim_with_allocation();

        let two = merge(
            &claim,
            json!({"status": {"reservedFor": [web.clone(), guaranteed.clone()]}}),
        );
        let mut expected = claim.clone();
        expected["status"]["reservedFor"] = json!([web, guaranteed]);
        assert_eq!(two, expected);

        // A one-element list replaces the list: no merging by uid.
        let one = merge(
            &two,
            json!({"status": {"reservedFor": [besteffort.clone()]}}),
        );
        expected["status"]["reservedFor"] = json!([besteffort]);
        assert_eq!(one, expected);

        // null removes the field; the uid guard is a no-op when it matches.
        let none = merge(
            &one,
            json!({"metadata": {"uid": "1df9aa70-fa5b-42ed-81ba-41c7c9a4e919"}, "status": {"reservedFor": null}}),
        );
        assert_eq!(none, claim);
    }

    #[test]
    fn works_when_merge_patch_replaces_finalizers_as_in_reference_35() {
        let claim =
            json!({"metadata": {"finalizers": ["resource.kubernetes.io/delete-protection"]}});
        let patched = merge(
            &claim,
            json!({"metadata": {"finalizers": ["example.com/other"]}}),
        );
        assert_eq!(
            patched,
            json!({"metadata": {"finalizers": ["example.com/other"]}})
        );
    }

    #[test]
    fn works_when_merge_patch_removes_a_node_taint_as_in_reference_11() {
        let node = json!({"spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}});
        assert_eq!(
            merge(&node, json!({"spec": {"taints": null}})),
            json!({"spec": {}})
        );
    }

    #[test]
    fn works_when_merge_patch_adds_nested_objects_without_nulls() {
        let patched = merge(
            &json!({"metadata": {"name": "x"}}),
            json!({"metadata": {"labels": {"a": "b", "c": null}}, "spec": {"x": {"y": null, "z": 1}}}),
        );
        assert_eq!(
            patched,
            json!({"metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {"x": {"z": 1}}})
        );
    }

    #[test]
    fn works_when_merge_patch_replaces_a_scalar_with_an_object() {
        let patched = merge(
            &json!({"spec": "old"}),
            json!({"spec": {"a": 1, "b": null}}),
        );
        assert_eq!(patched, json!({"spec": {"a": 1}}));
    }

    #[test]
    fn works_when_an_emptied_list_or_label_map_is_left_out() {
        let patched = merge(
            &json!({"metadata": {"labels": {"a": "b"}, "finalizers": ["f"]}, "status": {"x": 1}}),
            json!({"metadata": {"labels": {"a": null}, "finalizers": []}, "status": {"x": null}}),
        );
        // An emptied struct stays, as the server renders `"status": {}`.
        assert_eq!(patched, json!({"metadata": {}, "status": {}}));
    }

    #[test]
    fn errors_with_400_when_merge_patch_is_not_an_object() {
        for patch in [json!([1]), json!(null), json!("x"), json!(3)] {
            let err = apply_patch(PatchType::Merge, "Pod", &json!({}), &patch).unwrap_err();
            assert_eq!(err.http_status(), 400, "{patch}");
            assert_eq!(err.reason(), "BadRequest");
        }
    }
}
