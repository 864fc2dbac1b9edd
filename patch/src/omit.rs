//! What the API server leaves out when it stores a patched object.
//!
//! The real server decodes a patched object into its Go type before storing it, and encodes it
//! back for the response. Every optional list and map field of the Kubernetes API is `omitempty`,
//! and `null` becomes the zero value, so after a patch:
//!
//! - a list left empty is absent (reference 32: removing the last `reservedFor` entry removes
//!   the field);
//! - a `null` field is absent;
//! - empty `labels` and `annotations` are absent (they are Go maps; an empty struct such as
//!   `"status": {}` stays, reference 15).
//!
//! This crate applies the same rules to the parts a patch touched, so our stored objects match.

use serde_json::{Map, Value};

/// Strategic merge patch directive keys (upstream `strategicpatch` constants).
pub(crate) const DIRECTIVE: &str = "$patch";
pub(crate) const RETAIN_KEYS: &str = "$retainKeys";
pub(crate) const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
pub(crate) const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Whether the server leaves out `value` when it is stored under `key`.
pub(crate) fn omitted_when_empty(key: &str, value: &Value) -> bool {
    match value {
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty() && matches!(key, "labels" | "annotations"),
        _ => false,
    }
}

/// Copies a value from a patch as the server would store it: `null` fields and empty lists
/// dropped (upstream `discardNullValuesFromPatch`). With `strip_directives` (strategic merge
/// patch) the copy has no directives either (upstream `removeDirectives`): a map carrying `$patch`
/// is dropped whole, which is why this returns `None`, and directive keys are dropped.
pub(crate) fn stored_copy(value: &Value, strip_directives: bool) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if strip_directives && map.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(stored_object(map, strip_directives)))
        }
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .filter_map(|item| stored_copy(item, strip_directives))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

/// Copies a map from a patch as the server would store it; see [`stored_copy`]. A `$patch` key of
/// the map itself is dropped, which is what `$patch: replace` needs.
pub(crate) fn stored_object(
    map: &Map<String, Value>,
    strip_directives: bool,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        if value.is_null() || (strip_directives && is_directive_key(key)) {
            continue;
        }
        if let Some(value) = stored_copy(value, strip_directives)
            && !omitted_when_empty(key, &value)
        {
            out.insert(key.clone(), value);
        }
    }
    out
}

/// Drops, in place, the `null` fields and empty lists that the server would leave out.
pub(crate) fn prune_in_place(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, value| {
                prune_in_place(value);
                !value.is_null() && !omitted_when_empty(key, value)
            });
        }
        Value::Array(items) => items.iter_mut().for_each(prune_in_place),
        _ => {}
    }
}

/// Removes a field, keeping the order of the others whether or not serde_json's
/// `preserve_order` feature is on (its `Map::remove` would swap the last field into the gap).
pub(crate) fn remove_field(map: &mut Map<String, Value>, key: &str) {
    if map.contains_key(key) {
        map.retain(|k, _| k != key);
    }
}

/// Whether `key` is a strategic merge patch directive rather than a field.
fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
        || key.starts_with(SET_ELEMENT_ORDER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn works_when_empty_lists_and_label_maps_are_omitted_but_empty_structs_kept() {
        assert!(omitted_when_empty("reservedFor", &json!([])));
        assert!(omitted_when_empty("labels", &json!({})));
        assert!(omitted_when_empty("annotations", &json!({})));
        assert!(!omitted_when_empty("status", &json!({})));
        assert!(!omitted_when_empty("reservedFor", &json!([1])));
        assert!(!omitted_when_empty("name", &json!("")));
    }

    #[test]
    fn works_when_stored_copy_drops_nulls_empties_and_directives() {
        let patch = json!({
            "a": null,
            "b": [],
            "c": {"d": null, "e": 1},
            "f": [{"$patch": "delete", "name": "x"}, {"name": "y", "z": null}],
            "$setElementOrder/f": [{"name": "y"}],
            "$retainKeys": ["a"],
            "g": {"$patch": "replace", "h": 1},
            "$other": 1
        });
        assert_eq!(
            stored_copy(&patch, true),
            Some(json!({"c": {"e": 1}, "f": [{"name": "y"}], "$other": 1}))
        );
        // A merge patch has no directives: only nulls and empty lists go.
        assert_eq!(
            stored_copy(&json!({"a": null, "b": [], "g": {"$patch": "x"}}), false),
            Some(json!({"g": {"$patch": "x"}}))
        );
        assert_eq!(stored_copy(&json!({"$patch": "delete"}), true), None);
    }

    #[test]
    fn works_when_pruning_in_place() {
        let mut v = json!({"a": null, "b": [], "c": [{"d": [], "e": 1}], "labels": {}, "s": {}});
        prune_in_place(&mut v);
        assert_eq!(v, json!({"c": [{"e": 1}], "s": {}}));
    }
}
