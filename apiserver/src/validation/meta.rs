//! `metadata` validation shared by all kinds.

use serde_json::Value;

use super::names::*;
use crate::resources::{Kind, ResourceDef};
use crate::status::Cause;

/// Finalizer names that need no domain prefix.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

fn str_list(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn validate_finalizers(meta: &Value, causes: &mut Vec<Cause>) {
    for (i, f) in str_list(meta.get("finalizers")).into_iter().enumerate() {
        for msg in qualified_name_errors(f) {
            causes.push(Cause::invalid("metadata.finalizers", &Value::from(f), &msg));
        }
        if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f) {
            causes.push(Cause::invalid(
                format!("metadata.finalizers[{i}]"),
                &Value::from(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

fn validate_map_keys(meta: &Value, field: &str, values_are_labels: bool, causes: &mut Vec<Cause>) {
    let Some(map) = meta.get(field).and_then(Value::as_object) else {
        return;
    };
    for (k, v) in map {
        for msg in qualified_name_errors(k) {
            causes.push(Cause::invalid(
                format!("metadata.{field}"),
                &Value::from(k.as_str()),
                &msg,
            ));
        }
        if values_are_labels {
            let s = v.as_str().unwrap_or_default();
            if !is_label_value(s) {
                causes.push(Cause::invalid(
                    format!("metadata.{field}"),
                    v,
                    LABEL_VALUE_MSG,
                ));
            }
        }
    }
}

/// Validation of `metadata` on create.
pub(crate) fn validate_create(res: &ResourceDef, obj: &Value) -> Vec<Cause> {
    let meta = &obj["metadata"];
    let mut causes = Vec::new();
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if res.kind_enum == Kind::Namespace {
        if !is_dns_label(name) {
            causes.push(Cause::invalid(
                "metadata.name",
                &Value::from(name),
                DNS_LABEL_MSG,
            ));
        }
    } else if !is_dns_subdomain(name) {
        causes.push(Cause::invalid(
            "metadata.name",
            &Value::from(name),
            DNS_SUBDOMAIN_MSG,
        ));
    }
    validate_map_keys(meta, "labels", true, &mut causes);
    validate_map_keys(meta, "annotations", false, &mut causes);
    validate_finalizers(meta, &mut causes);
    causes
}

/// Validation of `metadata` on update. The real server runs this check twice (once generically and
/// once in the kind's strategy), so every cause appears twice in the Status; we reproduce that.
pub(crate) fn validate_update(new: &Value, old: &Value) -> Vec<Cause> {
    let (nm, om) = (&new["metadata"], &old["metadata"]);
    let mut causes = Vec::new();
    for field in ["name", "namespace", "uid"] {
        let n = nm.get(field).and_then(Value::as_str).unwrap_or_default();
        let o = om.get(field).and_then(Value::as_str).unwrap_or_default();
        if n != o {
            causes.push(Cause::invalid(
                format!("metadata.{field}"),
                &Value::from(n),
                "field is immutable",
            ));
        }
    }
    validate_map_keys(nm, "labels", true, &mut causes);
    validate_map_keys(nm, "annotations", false, &mut causes);
    validate_finalizers(nm, &mut causes);
    if om.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        let old_f = str_list(om.get("finalizers"));
        let added: Vec<&str> = str_list(nm.get("finalizers"))
            .into_iter()
            .filter(|f| !old_f.contains(f))
            .collect();
        if !added.is_empty() {
            let list: Vec<String> = added.iter().map(|f| format!("\"{f}\"")).collect();
            causes.push(Cause::forbidden(
                "metadata.finalizers",
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    list.join(", ")
                ),
            ));
        }
    }
    causes.into_iter().flat_map(|c| [c.clone(), c]).collect()
}
