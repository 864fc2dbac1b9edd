//! Strategic merge patch (`application/strategic-merge-patch+json`).
//!
//! Follows `k8s.io/apimachinery/pkg/util/strategicpatch` v0.36 as the API server calls it
//! (`StrategicMergeMapPatch`, server side: parallel lists merged, unmatched `null`s ignored):
//!
//! - maps merge recursively and `null` deletes a field;
//! - a list merges if its field is tagged (see [`merge_keys`]), else the patch's list replaces it;
//! - directives: `$patch: replace | delete` in a map or a list element, `$retainKeys`,
//!   `$deleteFromPrimitiveList/<list>` and `$setElementOrder/<list>`.
//!
//! Merged lists keep upstream's order, which the reference captures show: a new item goes before
//! the live items (reference 31: a new `reservedFor` entry comes first; reference 35: so does a
//! new finalizer), and re-sending a live item does not move it. The general rule is in
//! [`interleave`].
//!
//! Only the subtree the patch names is walked.

mod merge_keys;

use serde_json::{Map, Value};

use crate::omit::{
    DELETE_FROM_PRIMITIVE_LIST, DIRECTIVE, RETAIN_KEYS, SET_ELEMENT_ORDER, omitted_when_empty,
    remove_field, stored_copy, stored_object,
};
use crate::{PatchError, go_json_type};
use merge_keys::{Field, Schema};

type Object = Map<String, Value>;

// Upstream's texts for the malformed directives it answers 400 (`mergepatch.ErrBadPatchFormat…`).
const BAD_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const BAD_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const BAD_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";

/// Applies a strategic merge patch to `doc`, an object of the given kind.
pub(crate) fn apply(kind: &str, doc: Value, patch: &Value) -> Result<Value, PatchError> {
    let patch = match patch {
        Value::Object(patch) => patch,
        // Go decodes `null` into an empty patch map: nothing to do.
        Value::Null => return Ok(doc),
        other => {
            return Err(PatchError::WrongShape {
                message: format!(
                    "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                    go_json_type(other)
                ),
            });
        }
    };
    let mut doc = match doc {
        Value::Object(doc) => doc,
        _ => Object::new(),
    };
    merge_map(&mut doc, patch, merge_keys::schema_for(kind))?;
    Ok(Value::Object(doc))
}

/// Merges `patch` into `target` (upstream `mergeMap`).
fn merge_map(target: &mut Object, patch: &Object, schema: &Schema) -> Result<(), PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => {
                *target = stored_object(patch, true);
                return Ok(());
            }
            // Upstream leaves an empty map, which the server renders as `{}` (a struct) or
            // leaves out (`labels`, `annotations`, see `omit`).
            Some("delete") => {
                target.clear();
                return Ok(());
            }
            // Upstream rejects `$patch: merge`; it means "merge as usual", so we accept it.
            Some("merge") => {}
            _ => return Err(unknown_patch_type(directive, patch)),
        }
    }
    if let Some(keys) = patch.get(RETAIN_KEYS) {
        retain_keys(target, patch, keys)?;
    }
    let ordered = apply_element_orders(target, patch, schema)?;
    for (key, value) in patch {
        if key == DIRECTIVE || key == RETAIN_KEYS || key.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(rest) => {
                let field = rest
                    .strip_prefix('/')
                    .ok_or_else(|| PatchError::invalid_smp(BAD_PRIMITIVE_LIST))?;
                merge_field(target, field, value, true, schema)?;
            }
            // `$setElementOrder` already merged this list.
            None if ordered.contains(&key.as_str()) => {}
            None => merge_field(target, key, value, false, schema)?,
        }
    }
    Ok(())
}

/// Merges the patch's `value` for `field` into `target`. `delete_list` marks the value of a
/// `$deleteFromPrimitiveList/<field>` directive: values to remove from the list.
fn merge_field(
    target: &mut Object,
    field: &str,
    value: &Value,
    delete_list: bool,
    schema: &Schema,
) -> Result<(), PatchError> {
    if value.is_null() {
        // Also for a delete list, as upstream: `$deleteFromPrimitiveList/x: null` removes `x`.
        remove_field(target, field);
        return Ok(());
    }
    let spec = schema.field(field);
    let Some(current) = target.get_mut(field) else {
        if !delete_list {
            insert_stored(target, field, value);
        }
        return Ok(());
    };
    let mut remove = false;
    match (current, value) {
        (Value::Array(current), Value::Array(value)) => {
            if spec.strategy.merges() || delete_list {
                merge_list(current, value, spec, delete_list, field)?;
            } else {
                *current = stored_list(value);
            }
        }
        // A delete list only removes values from a list.
        _ if delete_list => {}
        (Value::Object(current), Value::Object(value)) => merge_map(current, value, spec.schema)?,
        // A primitive, or a different type: the patch's value wins.
        (current, value) => match stored_copy(value, true) {
            Some(value) => *current = value,
            None => remove = true,
        },
    }
    if remove
        || target
            .get(field)
            .is_some_and(|v| omitted_when_empty(field, v))
    {
        remove_field(target, field);
    }
    Ok(())
}

/// Adds a field the live object does not have: the patch's value, as the server stores it.
fn insert_stored(target: &mut Object, field: &str, value: &Value) {
    if let Some(value) = stored_copy(value, true)
        && !omitted_when_empty(field, &value)
    {
        target.insert(field.to_owned(), value);
    }
}

fn stored_list(items: &[Value]) -> Vec<Value> {
    items.iter().filter_map(|v| stored_copy(v, true)).collect()
}

/// Merges a patch list into a live list whose field merges (upstream `mergeSlice`).
fn merge_list(
    live: &mut Vec<Value>,
    patch: &[Value],
    spec: &Field,
    delete_list: bool,
    field: &str,
) -> Result<(), PatchError> {
    if live.is_empty() && patch.is_empty() {
        return Ok(());
    }
    if !element_type_is_object(live, patch)? {
        if delete_list {
            live.retain(|v| !patch.contains(v));
        } else {
            merge_set(live, patch);
        }
        return Ok(());
    }
    let key = spec.strategy.merge_key().ok_or_else(|| {
        PatchError::invalid_smp(format!("cannot merge lists without merge key for {field}"))
    })?;
    merge_keyed(live, patch, key, spec.schema)
}

/// Whether the elements of both lists are objects; they must all have one JSON type
/// (upstream `sliceElementType`).
fn element_type_is_object(live: &[Value], patch: &[Value]) -> Result<bool, PatchError> {
    let mut first: Option<&Value> = None;
    for item in live.iter().chain(patch) {
        if item.is_array() {
            return Err(PatchError::ListOfLists);
        }
        match first {
            None => first = Some(item),
            Some(first) if !same_json_type(first, item) => {
                return Err(PatchError::invalid_smp(format!(
                    "list element types are not identical: {} and {}",
                    go_json_type(first),
                    go_json_type(item)
                )));
            }
            Some(_) => {}
        }
    }
    Ok(first.is_some_and(Value::is_object))
}

fn same_json_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// A merged list of primitives is a set: patch values not yet live are added, nothing is
/// duplicated (upstream `deduplicateScalars`), in upstream order (see [`interleave`]).
fn merge_set(live: &mut Vec<Value>, patch: &[Value]) {
    let original = std::mem::take(live);
    let mut named: Vec<(Option<usize>, Value)> = Vec::with_capacity(patch.len());
    for value in patch {
        if !named.iter().any(|(_, v)| v == value) {
            named.push((original.iter().position(|o| o == value), value.clone()));
        }
    }
    let mut others: Vec<(usize, Value)> = Vec::with_capacity(original.len());
    for (i, value) in original.into_iter().enumerate() {
        if !patch.contains(&value) && !others.iter().any(|(_, v)| *v == value) {
            others.push((i, value));
        }
    }
    *live = interleave(others, named);
}

/// Merges a list of objects by `key` (upstream `mergeSliceWithSpecialElements`,
/// `mergeSliceWithoutSpecialElements` and `normalizeElementOrder`).
fn merge_keyed(
    live: &mut Vec<Value>,
    patch: &[Value],
    key: &str,
    schema: &Schema,
) -> Result<(), PatchError> {
    // Directive elements first: deletions apply to the live list before anything merges.
    let mut plain: Vec<&Object> = Vec::with_capacity(patch.len());
    let mut replace = false;
    for element in patch.iter().filter_map(Value::as_object) {
        let Some(directive) = element.get(DIRECTIVE) else {
            plain.push(element);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = merge_key_of(element, key)?;
                live.retain(|item| item.get(key) != Some(value));
            }
            Some("replace") => replace = true,
            // Upstream rejects it ("merging lists cannot yet be specified"); merging is what a
            // keyed list does anyway, so the element is accepted and ignored.
            Some("merge") => {}
            _ => return Err(unknown_patch_type(directive, element)),
        }
    }
    if replace {
        // `$patch: replace`: the list becomes the patch's other elements.
        let mut replaced = Vec::with_capacity(plain.len());
        for element in plain {
            merge_key_of(element, key)?;
            replaced.push(Value::Object(stored_object(element, true)));
        }
        *live = replaced;
        return Ok(());
    }
    for item in live.iter().filter_map(Value::as_object) {
        merge_key_of(item, key)?;
    }

    // Merge each patch element into the live element with its key, or append it.
    let live_len = live.len();
    for element in &plain {
        let value = merge_key_of(element, key)?;
        match live.iter().position(|item| item.get(key) == Some(value)) {
            Some(i) => {
                if let Value::Object(item) = &mut live[i] {
                    merge_map(item, element, schema)?;
                }
            }
            None => live.push(Value::Object(stored_object(element, true))),
        }
    }

    // Order: elements the patch names in patch order, interleaved with the others.
    let merged = std::mem::take(live);
    let mut named: Vec<(usize, Option<usize>, Value)> = Vec::with_capacity(plain.len());
    let mut others: Vec<(usize, Value)> = Vec::with_capacity(merged.len());
    for (i, item) in merged.into_iter().enumerate() {
        let rank = {
            let value = item.get(key);
            plain.iter().position(|p| p.get(key) == value)
        };
        match rank {
            Some(rank) => named.push((rank, (i < live_len).then_some(i), item)),
            None => others.push((i, item)),
        }
    }
    named.sort_by_key(|(rank, ..)| *rank);
    *live = interleave(
        others,
        named.into_iter().map(|(_, i, item)| (i, item)).collect(),
    );
    Ok(())
}

/// Upstream `mergeSortedSlice`: merges the live items the patch does not name (`others`, with
/// their live index) with the items it names (`named`, in patch order, with their live index if
/// they were live). Both keep their own order; where they meet, a live item goes first only if
/// the next named item was live too and comes after it. So a new item goes before the live items
/// not yet placed, and a re-sent live item keeps its place among the other live items.
fn interleave(others: Vec<(usize, Value)>, named: Vec<(Option<usize>, Value)>) -> Vec<Value> {
    let mut out = Vec::with_capacity(others.len() + named.len());
    let mut others = others.into_iter().peekable();
    let mut named = named.into_iter().peekable();
    loop {
        let take_other = match (others.peek(), named.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((live, _)), Some((named_live, _))) => named_live.is_some_and(|n| *live < n),
        };
        if take_other {
            out.extend(others.next().map(|(_, v)| v));
        } else {
            out.extend(named.next().map(|(_, v)| v));
        }
    }
    out
}

/// `$retainKeys` (upstream `applyRetainKeysDirective`): clears the live fields not listed; every
/// field the patch sets must be listed.
fn retain_keys(target: &mut Object, patch: &Object, keys: &Value) -> Result<(), PatchError> {
    let Value::Array(keys) = keys else {
        return Err(PatchError::invalid_smp(BAD_RETAIN_KEYS));
    };
    let retained = |field: &str| keys.iter().any(|k| k.as_str() == Some(field));
    for (key, value) in patch {
        let directive = key == DIRECTIVE
            || key == RETAIN_KEYS
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER);
        if !directive && !value.is_null() && !retained(key) {
            return Err(PatchError::invalid_smp(BAD_RETAIN_KEYS));
        }
    }
    target.retain(|field, _| retained(field));
    Ok(())
}

/// Applies every `$setElementOrder/<list>` directive of `patch` (upstream
/// `mergePatchIntoOriginal`): merges the patch's list, if any, then orders the result as the
/// directive says, live items it does not name keeping their place. Returns the lists it merged,
/// which the caller must not merge again.
fn apply_element_orders<'p>(
    target: &mut Object,
    patch: &'p Object,
    schema: &Schema,
) -> Result<Vec<&'p str>, PatchError> {
    let mut merged_fields = Vec::new();
    for (key, order) in patch {
        let Some(rest) = key.strip_prefix(SET_ELEMENT_ORDER) else {
            continue;
        };
        let bad = || PatchError::invalid_smp(BAD_SET_ELEMENT_ORDER);
        let field = rest.strip_prefix('/').ok_or_else(bad)?;
        let Value::Array(order) = order else {
            return Err(bad());
        };
        let patch_list = match patch.get(field) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(_) => return Err(bad()),
        };
        let live = match target.get_mut(field) {
            None => None,
            Some(Value::Array(list)) => Some(std::mem::take(list)),
            Some(_) => return Err(bad()),
        };
        let spec = schema.field(field);
        let key = spec.strategy.merge_key();
        if let Some(patch_list) = patch_list {
            check_order(patch_list, order, key)?;
        }
        let live_ids: Vec<Value> = live
            .iter()
            .flatten()
            .filter_map(|item| identity(item, key))
            .cloned()
            .collect();
        let mut list = match (live, patch_list) {
            (None, None) => continue,
            (Some(live), None) => live,
            (Some(mut live), Some(patch_list)) if spec.strategy.merges() => {
                merge_list(&mut live, patch_list, spec, false, field)?;
                live
            }
            (_, Some(patch_list)) => stored_list(patch_list),
        };
        reorder(&mut list, order, &live_ids, key);
        if list.is_empty() {
            remove_field(target, field);
        } else {
            target.insert(field.to_owned(), Value::Array(list));
        }
        merged_fields.push(field);
    }
    Ok(merged_fields)
}

/// What identifies a list item: its merge key value, or itself for a primitive.
fn identity<'v>(item: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(key) => item.get(key),
        None => Some(item),
    }
}

/// The patch list must name its items in the order `$setElementOrder` does (upstream
/// `validatePatchWithSetOrderList`); deletions and other directive elements are skipped.
fn check_order(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<(), PatchError> {
    let items: Vec<&Value> = patch
        .iter()
        .filter(|v| v.get(DIRECTIVE).is_none())
        .collect();
    let (mut p, mut o) = (0, 0);
    while p < items.len() && o < order.len() {
        let same = match key {
            Some(key) => {
                let (Some(a), Some(b)) = (items[p].as_object(), order[o].as_object()) else {
                    return Err(PatchError::invalid_smp(BAD_SET_ELEMENT_ORDER));
                };
                merge_key_of(a, key)? == merge_key_of(b, key)?
            }
            None => items[p] == &order[o],
        };
        if same {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() {
        return Err(PatchError::invalid_smp(format!(
            "the order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}",
            Value::Array(patch.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

/// Orders `list` by a `$setElementOrder` list: the items it names in its order, interleaved
/// with the others in live order (upstream `normalizeElementOrder`).
fn reorder(list: &mut Vec<Value>, order: &[Value], live_ids: &[Value], key: Option<&str>) {
    let order_ids: Vec<Option<&Value>> = order.iter().map(|o| identity(o, key)).collect();
    let mut named = Vec::new();
    let mut others = Vec::new();
    for item in std::mem::take(list) {
        let (rank, live_index) = {
            let id = identity(&item, key);
            (
                id.and_then(|id| order_ids.iter().position(|o| *o == Some(id))),
                id.and_then(|id| live_ids.iter().position(|l| l == id)),
            )
        };
        match rank {
            Some(rank) => named.push((rank, live_index, item)),
            None => others.push((live_index.unwrap_or(usize::MAX), item)),
        }
    }
    named.sort_by_key(|(rank, ..)| *rank);
    others.sort_by_key(|(live_index, _)| *live_index);
    *list = interleave(
        others,
        named.into_iter().map(|(_, i, item)| (i, item)).collect(),
    );
}

fn merge_key_of<'v>(element: &'v Object, key: &str) -> Result<&'v Value, PatchError> {
    element.get(key).ok_or_else(|| {
        PatchError::invalid_smp(format!(
            "map: {} does not contain declared merge key: {key}",
            Value::Object(element.clone())
        ))
    })
}

fn unknown_patch_type(directive: &Value, map: &Object) -> PatchError {
    PatchError::invalid_smp(format!(
        "unknown patch type: {directive} in map: {}",
        Value::Object(map.clone())
    ))
}

#[cfg(test)]
mod tests {
    use crate::{PatchType, apply_patch};
    use serde_json::{Value, json};

    const CLAIM_UID: &str = "1df9aa70-fa5b-42ed-81ba-41c7c9a4e919";

    fn smp(kind: &str, original: &Value, patch: Value) -> Value {
        apply_patch(PatchType::StrategicMerge, kind, original, &patch)
            .unwrap_or_else(|e| panic!("{patch}: {e}"))
    }

    fn smp_err(kind: &str, original: &Value, patch: Value) -> crate::PatchError {
        apply_patch(PatchType::StrategicMerge, kind, original, &patch).unwrap_err()
    }

    /// The claim of references 31-35 as stored before the patches (server-managed
    /// `resourceVersion` and `managedFields` left out: the patches do not touch them).
    fn claim() -> Value {
        json!({
            "kind": "ResourceClaim",
            "apiVersion": "resource.k8s.io/v1",
            "metadata": {
                "name": "patch-demo",
                "namespace": "demo",
                "uid": CLAIM_UID,
                "creationTimestamp": "2026-11-26T05:17:06Z"
            },
            "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com", "allocationMode": "ExactCount", "count": 1}}]}},
            "status": {
                "allocation": {
                    "devices": {"results": [{"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu-0"}]},
                    "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]}
                }
            }
        })
    }

    fn claim_reserved_for(entries: &[Value]) -> Value {
        let mut claim = claim();
        claim["status"]["reservedFor"] = Value::Array(entries.to_vec());
        claim
    }

    fn web() -> Value {
        json!({"resource": "pods", "name": "web", "uid": "21775349-1a1b-422d-9062-23f26d21e30f"})
    }

    fn guaranteed() -> Value {
        json!({"resource": "pods", "name": "guaranteed", "uid": "2d740080-4ff5-4a56-b3ab-43ac34f4ae9e"})
    }

    fn pod_ref(i: usize) -> Value {
        json!({"resource": "pods", "name": format!("pod-{i}"), "uid": format!("uid-{i}")})
    }

    /// kube-scheduler's reserve patch: the claim uid guard plus one entry.
    fn reserve(entry: Value) -> Value {
        json!({"metadata": {"uid": CLAIM_UID}, "status": {"reservedFor": [entry]}})
    }

    /// kube-scheduler's unreserve patch.
    fn unreserve(uid: &Value) -> Value {
        json!({"metadata": {"uid": CLAIM_UID}, "status": {"reservedFor": [{"$patch": "delete", "uid": uid}]}})
    }

    // --- reference 31: adding reservedFor entries ---------------------------------------------

    #[test]
    fn works_when_reserving_a_claim_as_in_reference_31() {
        let first = smp("ResourceClaim", &claim(), reserve(web()));
        assert_eq!(first, claim_reserved_for(&[web()]));

        // The entry from the patch comes FIRST.
        let second = smp("ResourceClaim", &first, reserve(guaranteed()));
        assert_eq!(second, claim_reserved_for(&[guaranteed(), web()]));

        // Re-sending a uid that is present changes nothing.
        let third = smp("ResourceClaim", &second, reserve(web()));
        assert_eq!(third, second);
    }

    #[test]
    fn works_when_three_reservations_are_listed_newest_first() {
        let mut claim = claim();
        for i in 1..=3 {
            claim = smp("ResourceClaim", &claim, reserve(pod_ref(i)));
        }
        assert_eq!(
            claim["status"]["reservedFor"],
            json!([pod_ref(3), pod_ref(2), pod_ref(1)])
        );
    }

    #[test]
    fn works_when_allocating_and_reserving_in_one_patch() {
        let mut unallocated = claim();
        unallocated["status"] = json!({});
        let allocation = claim()["status"]["allocation"].clone();
        let patched = smp(
            "ResourceClaim",
            &unallocated,
            json!({"metadata": {"uid": CLAIM_UID}, "status": {"allocation": allocation, "reservedFor": [web()]}}),
        );
        assert_eq!(patched, claim_reserved_for(&[web()]));
    }

    // --- reference 32: removing reservedFor entries -------------------------------------------

    #[test]
    fn works_when_unreserving_a_claim_as_in_reference_32() {
        let both = claim_reserved_for(&[guaranteed(), web()]);
        let one = smp("ResourceClaim", &both, unreserve(&web()["uid"]));
        assert_eq!(one, claim_reserved_for(&[guaranteed()]));

        // Deleting a uid that is not in the list is a no-op.
        let same = smp(
            "ResourceClaim",
            &one,
            unreserve(&json!("11111111-2222-3333-4444-555555555555")),
        );
        assert_eq!(same, one);

        // Removing the last entry leaves the field absent, not an empty list.
        let none = smp("ResourceClaim", &one, unreserve(&guaranteed()["uid"]));
        assert_eq!(none, claim());
    }

    #[test]
    fn works_when_unreserving_a_claim_without_reservations() {
        assert_eq!(
            smp("ResourceClaim", &claim(), unreserve(&web()["uid"])),
            claim()
        );
    }

    // --- reference 35: finalizers as a set ----------------------------------------------------

    #[test]
    fn works_when_finalizers_merge_as_a_set_as_in_reference_35() {
        let protection = "resource.kubernetes.io/delete-protection";
        let other = smp(
            "ResourceClaim",
            &claim(),
            json!({"metadata": {"uid": CLAIM_UID, "finalizers": ["example.com/other"]}}),
        );
        assert_eq!(
            other["metadata"]["finalizers"],
            json!(["example.com/other"])
        );

        // The finalizer from the patch comes first.
        let both = smp(
            "ResourceClaim",
            &other,
            json!({"metadata": {"uid": CLAIM_UID, "finalizers": [protection]}}),
        );
        assert_eq!(
            both["metadata"]["finalizers"],
            json!([protection, "example.com/other"])
        );
        let mut expected = claim();
        expected["metadata"]["finalizers"] = json!([protection, "example.com/other"]);
        assert_eq!(both, expected);

        // Same patch again: no duplicate.
        let again = smp(
            "ResourceClaim",
            &both,
            json!({"metadata": {"uid": CLAIM_UID, "finalizers": [protection]}}),
        );
        assert_eq!(again, both);

        // $deleteFromPrimitiveList removes one.
        let removed = smp(
            "ResourceClaim",
            &again,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/other"]}}),
        );
        assert_eq!(removed["metadata"]["finalizers"], json!([protection]));
    }

    #[test]
    fn works_when_a_resent_live_item_keeps_its_place() {
        let live = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patched = smp(
            "Pod",
            &live,
            json!({"metadata": {"finalizers": ["c", "d"]}}),
        );
        assert_eq!(
            patched["metadata"]["finalizers"],
            json!(["a", "b", "c", "d"])
        );
        // Patch order wins among the named items, so the new "d" goes before "b", and thus
        // before the live items "b" follows.
        let patched = smp(
            "Pod",
            &live,
            json!({"metadata": {"finalizers": ["d", "b"]}}),
        );
        assert_eq!(
            patched["metadata"]["finalizers"],
            json!(["d", "a", "b", "c"])
        );
    }

    #[test]
    fn works_when_deleting_the_last_finalizer_leaves_the_field_absent() {
        let live = json!({"metadata": {"name": "x", "finalizers": ["a"]}});
        let patched = smp(
            "Pod",
            &live,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}}),
        );
        assert_eq!(patched, json!({"metadata": {"name": "x"}}));
        // ...and is a no-op when the list is absent.
        assert_eq!(
            smp(
                "Pod",
                &patched,
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
            ),
            patched
        );
    }

    // --- property: concurrent reservations never lose each other -------------------------------

    /// A small deterministic PRNG (xorshift64*), so the test needs no dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }

        fn shuffled(&mut self, n: usize) -> Vec<usize> {
            let mut v: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                v.swap(i, self.below(i + 1));
            }
            v
        }
    }

    #[test]
    fn works_when_n_reservations_arrive_in_any_order() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for n in [1, 2, 3, 7, 32, 256] {
            for _ in 0..5 {
                let order = rng.shuffled(n);
                let mut claim = claim();
                for &i in &order {
                    claim = smp("ResourceClaim", &claim, reserve(pod_ref(i)));
                    // A duplicate reservation in between changes nothing.
                    let again = smp("ResourceClaim", &claim, reserve(pod_ref(i)));
                    assert_eq!(again, claim);
                }
                // All N are there, newest first.
                let expected: Vec<Value> = order.iter().rev().map(|&i| pod_ref(i)).collect();
                assert_eq!(claim["status"]["reservedFor"], Value::Array(expected));

                // Unreserving them in another order removes exactly one each time.
                for (removed, i) in rng.shuffled(n).into_iter().enumerate() {
                    claim = smp("ResourceClaim", &claim, unreserve(&pod_ref(i)["uid"]));
                    let left = claim["status"]["reservedFor"]
                        .as_array()
                        .map_or(0, Vec::len);
                    assert_eq!(left, n - removed - 1);
                }
                assert_eq!(claim, self::claim());
            }
        }
    }

    // --- merge keys ----------------------------------------------------------------------------

    /// `{"a": {"b": value}}` for the path "a.b".
    fn nest(path: &str, value: Value) -> Value {
        path.rsplit('.')
            .fold(value, |inner, name| json!({ name: inner }))
    }

    /// A list at `path` merges by `key`: an existing element merges, a new one is added.
    fn assert_merges_by(kind: &str, path: &str, key: &str, ids: [Value; 3]) {
        let [a, b, c] = ids;
        let live = nest(
            path,
            json!([{key: a, "x": "live-a"}, {key: b, "x": "live-b"}]),
        );
        let patch = nest(path, json!([{key: b, "y": "patched"}, {key: c}]));
        let expected = nest(
            path,
            json!([{key: a, "x": "live-a"}, {key: b, "x": "live-b", "y": "patched"}, {key: c}]),
        );
        assert_eq!(smp(kind, &live, patch), expected, "{kind} {path}");
    }

    /// A list at `path` is replaced by the patch's list.
    fn assert_replaces(kind: &str, path: &str) {
        let live = nest(path, json!([{"name": "a", "x": 1}]));
        let patch = nest(path, json!([{"name": "a", "y": 2}]));
        assert_eq!(smp(kind, &live, patch.clone()), patch, "{kind} {path}");
    }

    #[test]
    fn works_when_lists_merge_by_their_upstream_keys() {
        let names = || [json!("a"), json!("b"), json!("c")];
        let cases = [
            ("Pod", "metadata.ownerReferences", "uid"),
            ("Node", "metadata.ownerReferences", "uid"),
            ("ResourceClaim", "metadata.ownerReferences", "uid"),
            ("Pod", "spec.containers", "name"),
            ("Pod", "spec.initContainers", "name"),
            ("Pod", "spec.ephemeralContainers", "name"),
            ("Pod", "spec.volumes", "name"),
            ("Pod", "spec.imagePullSecrets", "name"),
            ("Pod", "spec.hostAliases", "ip"),
            ("Pod", "spec.topologySpreadConstraints", "topologyKey"),
            ("Pod", "spec.schedulingGates", "name"),
            ("Pod", "spec.resourceClaims", "name"),
            ("Pod", "status.conditions", "type"),
            ("Pod", "status.podIPs", "ip"),
            ("Pod", "status.hostIPs", "ip"),
            ("Pod", "status.resourceClaimStatuses", "name"),
            ("Node", "status.conditions", "type"),
            ("Node", "status.addresses", "type"),
            ("ResourceClaim", "status.reservedFor", "uid"),
            (
                "ResourceClaimTemplate",
                "spec.metadata.ownerReferences",
                "uid",
            ),
        ];
        for (kind, path, key) in cases {
            assert_merges_by(kind, path, key, names());
        }
    }

    #[test]
    fn works_when_container_lists_merge_by_their_upstream_keys() {
        let cases = [
            (
                "ports",
                "containerPort",
                [json!(80), json!(443), json!(8080)],
            ),
            ("env", "name", [json!("A"), json!("B"), json!("C")]),
            (
                "volumeMounts",
                "mountPath",
                [json!("/a"), json!("/b"), json!("/c")],
            ),
            (
                "volumeDevices",
                "devicePath",
                [json!("/dev/a"), json!("/dev/b"), json!("/dev/c")],
            ),
        ];
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            for (field, key, [a, b, c]) in cases.clone() {
                let container = |items: Value| json!({"spec": {list: [{"name": "main", "image": "x", field: items}]}});
                let live = container(json!([{key: a, "x": 1}, {key: b, "x": 2}]));
                let patch = container(json!([{key: b, "y": 3}, {key: c}]));
                let expected =
                    container(json!([{key: a, "x": 1}, {key: b, "x": 2, "y": 3}, {key: c}]));
                assert_eq!(smp("Pod", &live, patch), expected, "{list} {field}");
            }
        }
    }

    #[test]
    fn works_when_untagged_lists_are_replaced() {
        for (kind, path) in [
            ("Pod", "spec.tolerations"),
            ("Pod", "status.containerStatuses"),
            ("Pod", "status.initContainerStatuses"),
            ("Pod", "spec.containers.resizePolicy"),
            ("Node", "spec.taints"),
            ("ResourceClaim", "status.devices"),
            ("ResourceClaim", "spec.devices.requests"),
            ("Pod", "metadata.managedFields"),
            ("Lease", "spec.unknownList"),
        ] {
            assert_replaces(kind, path);
        }
    }

    #[test]
    fn works_when_primitive_sets_merge() {
        let node = json!({"spec": {"podCIDRs": ["10.0.0.0/24"]}});
        let patched = smp(
            "Node",
            &node,
            json!({"spec": {"podCIDRs": ["10.0.0.0/24", "fd00::/64"]}}),
        );
        assert_eq!(
            patched,
            json!({"spec": {"podCIDRs": ["10.0.0.0/24", "fd00::/64"]}})
        );
        // Every kind merges finalizers, even one we have no table for.
        let lease = json!({"metadata": {"finalizers": ["a"]}});
        let patched = smp(
            "Lease",
            &lease,
            json!({"metadata": {"finalizers": ["b", "b"]}}),
        );
        assert_eq!(patched, json!({"metadata": {"finalizers": ["b", "a"]}}));
    }

    #[test]
    fn works_when_an_empty_patch_list_changes_nothing_in_a_merged_list() {
        let live = claim_reserved_for(&[web()]);
        assert_eq!(
            smp(
                "ResourceClaim",
                &live,
                json!({"status": {"reservedFor": []}})
            ),
            live
        );
    }

    // --- maps and null -------------------------------------------------------------------------

    #[test]
    fn works_when_maps_merge_and_null_deletes() {
        let pod = json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "annotations": {"x": "y"}}});
        let patched = smp(
            "Pod",
            &pod,
            json!({"metadata": {"labels": {"a": null, "c": "3"}, "annotations": {"x": null}, "nope": null}}),
        );
        // Emptied annotations are left out, as the server does.
        assert_eq!(
            patched,
            json!({"metadata": {"name": "p", "labels": {"b": "2", "c": "3"}}})
        );
    }

    #[test]
    fn works_when_new_fields_are_stored_without_nulls_or_directives() {
        let patched = smp(
            "Pod",
            &json!({"spec": {}}),
            json!({"spec": {
                "nodeSelector": {"a": "b", "c": null},
                "containers": [
                    {"name": "a", "env": [{"name": "X", "value": null}]},
                    {"$patch": "delete", "name": "b"}
                ],
                "affinity": {"$patch": "replace", "nodeAffinity": {}}
            }}),
        );
        // A map with `$patch` under a new field is dropped whole, as upstream `removeDirectives`.
        assert_eq!(
            patched,
            json!({"spec": {"nodeSelector": {"a": "b"}, "containers": [{"name": "a", "env": [{"name": "X"}]}]}})
        );
    }

    #[test]
    fn works_when_a_field_changes_type() {
        let patched = smp(
            "Pod",
            &json!({"spec": {"x": [1]}}),
            json!({"spec": {"x": {"a": null, "b": 1}}}),
        );
        assert_eq!(patched, json!({"spec": {"x": {"b": 1}}}));
        let patched = smp(
            "Pod",
            &json!({"spec": {"x": "s"}}),
            json!({"spec": {"x": 2}}),
        );
        assert_eq!(patched, json!({"spec": {"x": 2}}));
    }

    // --- directives ----------------------------------------------------------------------------

    #[test]
    fn works_when_patch_delete_empties_a_map() {
        let pod = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"affinity": {"nodeAffinity": {"x": 1}}}});
        let patched = smp(
            "Pod",
            &pod,
            json!({"metadata": {"labels": {"$patch": "delete"}}, "spec": {"affinity": {"$patch": "delete"}}}),
        );
        // Upstream leaves an empty map: a struct renders as {}, labels are left out.
        assert_eq!(patched, json!({"metadata": {}, "spec": {"affinity": {}}}));
    }

    #[test]
    fn works_when_patch_replace_replaces_a_map() {
        let pod = json!({"spec": {"nodeSelector": {"a": "1", "b": "2"}}});
        let patched = smp(
            "Pod",
            &pod,
            json!({"spec": {"nodeSelector": {"$patch": "replace", "c": "3", "d": null}}}),
        );
        assert_eq!(patched, json!({"spec": {"nodeSelector": {"c": "3"}}}));
    }

    #[test]
    fn works_when_patch_replace_replaces_a_merged_list() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}});
        let patched = smp(
            "Pod",
            &pod,
            json!({"spec": {"containers": [{"name": "c", "image": "3"}, {"$patch": "replace"}]}}),
        );
        assert_eq!(
            patched,
            json!({"spec": {"containers": [{"name": "c", "image": "3"}]}})
        );
    }

    #[test]
    fn works_when_patch_merge_is_accepted_in_maps_and_lists() {
        let pod =
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "a"}]}});
        let patched = smp(
            "Pod",
            &pod,
            json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}, "spec": {"containers": [{"$patch": "merge"}, {"name": "b"}]}}),
        );
        assert_eq!(
            patched,
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "b"}, {"name": "a"}]}})
        );
    }

    #[test]
    fn works_when_patch_delete_removes_a_keyed_element_and_re_adding_it_appends() {
        let pod = json!({"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]}});
        let patched = smp(
            "Pod",
            &pod,
            json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"$patch": "delete", "type": "A"}]}}),
        );
        assert_eq!(
            patched,
            json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "B", "status": "True"}]}})
        );
    }

    #[test]
    fn works_when_retain_keys_clears_unlisted_fields() {
        let pod = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}});
        let patched = smp(
            "Pod",
            &pod,
            json!({"spec": {"volumes": [{"$retainKeys": ["hostPath", "name"], "name": "v", "hostPath": {"path": "/x"}}]}}),
        );
        assert_eq!(
            patched,
            json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"}}, {"name": "w", "emptyDir": {}}]}})
        );
    }

    #[test]
    fn works_when_set_element_order_orders_a_keyed_list() {
        let pod = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"}
        ]}});
        let patched = smp(
            "Pod",
            &pod,
            json!({"status": {
                "$setElementOrder/conditions": [{"type": "Initialized"}, {"type": "Ready"}, {"type": "PodScheduled"}],
                "conditions": [{"type": "Ready", "status": "True"}]
            }}),
        );
        assert_eq!(
            patched,
            json!({"status": {"conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"},
                {"type": "PodScheduled", "status": "True"}
            ]}})
        );
    }

    #[test]
    fn works_when_set_element_order_orders_a_primitive_list() {
        let pod = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patched = smp(
            "Pod",
            &pod,
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "a", "b"]}}),
        );
        assert_eq!(patched["metadata"]["finalizers"], json!(["c", "a", "b"]));

        let pod = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patched = smp(
            "Pod",
            &pod,
            json!({"metadata": {"$setElementOrder/finalizers": ["a", "x", "b"], "finalizers": ["x"]}}),
        );
        assert_eq!(patched["metadata"]["finalizers"], json!(["a", "x", "b"]));
    }

    #[test]
    fn works_when_set_element_order_names_a_list_only_the_patch_has() {
        let patched = smp(
            "Pod",
            &json!({"spec": {}}),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}], "containers": [{"name": "b"}, {"name": "a"}]}}),
        );
        assert_eq!(
            patched,
            json!({"spec": {"containers": [{"name": "b"}, {"name": "a"}]}})
        );
    }

    // --- errors --------------------------------------------------------------------------------

    #[test]
    fn errors_with_400_when_a_directive_is_malformed() {
        let pod = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "y"}}, "spec": {"containers": [{"name": "a"}]}});
        let bad = [
            json!({"metadata": {"labels": {"$patch": "frobnicate"}}}),
            json!({"spec": {"containers": [{"$patch": "frobnicate", "name": "a"}]}}),
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
            json!({"spec": {"containers": [{"image": "no-name"}]}}),
            json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
            json!({"metadata": {"$setElementOrder": ["a"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": "a"}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["a", "b"], "finalizers": ["b", "a"]}}),
            json!({"metadata": {"$retainKeys": "name"}}),
            json!({"metadata": {"$retainKeys": ["name"], "labels": {"a": "b"}}}),
            json!({"metadata": {"finalizers": [1]}}),
        ];
        for patch in bad {
            let err = smp_err("Pod", &pod, patch.clone());
            assert_eq!(err.http_status(), 400, "{patch}: {err}");
            assert_eq!(err.reason(), "BadRequest");
        }
    }

    #[test]
    fn errors_with_400_when_a_live_element_has_no_merge_key() {
        let claim = claim_reserved_for(&[json!({"name": "no-uid"})]);
        let err = smp_err("ResourceClaim", &claim, reserve(web()));
        assert_eq!(err.http_status(), 400);
        assert!(
            err.to_string()
                .contains("does not contain declared merge key: uid"),
            "{err}"
        );
    }

    #[test]
    fn errors_with_422_when_merging_a_list_of_lists() {
        let err = smp_err(
            "Pod",
            &json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": [["b"]]}}),
        );
        assert_eq!(err.http_status(), 422);
    }

    #[test]
    fn errors_with_400_when_patch_is_not_an_object() {
        let err = smp_err("Pod", &json!({}), json!([1]));
        assert_eq!(err.http_status(), 400);
        assert_eq!(
            err.to_string(),
            "json: cannot unmarshal array into Go value of type map[string]interface {}"
        );
        assert_eq!(smp("Pod", &json!({"a": 1}), json!(null)), json!({"a": 1}));
    }
}
