//! PersistentVolume, PersistentVolumeClaim (core/v1) and StorageClass (storage.k8s.io/v1) rules,
//! worded as upstream `ValidatePersistentVolumeSpec`, `ValidatePersistentVolumeClaimSpec`,
//! `ValidateStorageClass` and their update checks. Volume sources are counted and the few
//! fields a scheduler cares about are checked; the per-driver rules of each source are not.

use serde_json::Value;

use super::names::{DNS_SUBDOMAIN_MSG, is_dns_subdomain, qualified_name_errors};
use crate::status::Cause;

const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const RECLAIM_POLICIES: [&str; 3] = ["Delete", "Recycle", "Retain"];
const CLASS_RECLAIM_POLICIES: [&str; 2] = ["Delete", "Retain"];
const VOLUME_MODES: [&str; 2] = ["Block", "Filesystem"];
const BINDING_MODES: [&str; 2] = ["Immediate", "WaitForFirstConsumer"];
const OPERATORS: [&str; 6] = ["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"];

/// The volume source fields of a PersistentVolumeSpec, in upstream's checking order.
const PV_SOURCES: [&str; 22] = [
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn access_modes(spec: &Value, path: &str, required_detail: &str, causes: &mut Vec<Cause>) {
    let modes: Vec<&str> = spec
        .get("accessModes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let field = format!("{path}.accessModes");
    if modes.is_empty() {
        causes.push(Cause::required(field.clone(), required_detail));
    }
    let (mut once_pod, mut other) = (false, false);
    for m in &modes {
        if !ACCESS_MODES.contains(m) {
            causes.push(Cause::not_supported(
                field.clone(),
                &Value::from(*m),
                &ACCESS_MODES,
            ));
        } else if *m == "ReadWriteOncePod" {
            once_pod = true;
        } else {
            other = true;
        }
    }
    if once_pod && other {
        causes.push(Cause::forbidden(
            field,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

/// `ValidatePositiveQuantityValue`.
fn positive_quantity(q: &Value, field: String, causes: &mut Vec<Cause>) {
    let s = q.as_str().unwrap_or_default();
    match kube_quantity::Quantity::parse_json(s) {
        Ok(v) if v.sign() <= 0 => {
            causes.push(Cause::invalid(field, q, "must be greater than zero"))
        }
        Ok(_) => {}
        Err(_) => causes.push(Cause::invalid(
            field,
            q,
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        )),
    }
}

fn class_name(spec: &Value, field: &str, causes: &mut Vec<Cause>) {
    let name = str_at(spec, "/storageClassName");
    if !name.is_empty() && !is_dns_subdomain(name) {
        causes.push(Cause::invalid(field, &Value::from(name), DNS_SUBDOMAIN_MSG));
    }
}

fn volume_mode(spec: &Value, field: &str, causes: &mut Vec<Cause>) {
    if let Some(m) = spec.get("volumeMode").and_then(Value::as_str)
        && !VOLUME_MODES.contains(&m)
    {
        causes.push(Cause::not_supported(field, &Value::from(m), &VOLUME_MODES));
    }
}

/// `validateVolumeNodeAffinity`: a required selector with at least one valid term.
fn node_affinity(affinity: &Value, causes: &mut Vec<Cause>) {
    let path = "spec.nodeAffinity.required";
    let Some(required) = affinity.get("required").filter(|r| !r.is_null()) else {
        causes.push(Cause::required(
            path,
            "must specify required node constraints",
        ));
        return;
    };
    let terms = required
        .get("nodeSelectorTerms")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if terms.is_empty() {
        causes.push(Cause::required(
            format!("{path}.nodeSelectorTerms"),
            "must have at least one node selector term",
        ));
    }
    for (i, term) in terms.iter().enumerate() {
        let exprs = term
            .get("matchExpressions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (j, e) in exprs.iter().enumerate() {
            let at = format!("{path}.nodeSelectorTerms[{i}].matchExpressions[{j}]");
            let op = str_at(e, "/operator");
            let values = e
                .get("values")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            match op {
                "In" | "NotIn" if values == 0 => causes.push(Cause::required(
                    format!("{at}.values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                )),
                "Exists" | "DoesNotExist" if values > 0 => causes.push(Cause::forbidden(
                    format!("{at}.values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )),
                "Gt" | "Lt" if values != 1 => causes.push(Cause::required(
                    format!("{at}.values"),
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                )),
                o if !OPERATORS.contains(&o) => causes.push(Cause::not_supported(
                    format!("{at}.operator"),
                    &Value::from(o),
                    &OPERATORS,
                )),
                _ => {}
            }
            for msg in qualified_name_errors(str_at(e, "/key")) {
                causes.push(Cause::invalid(format!("{at}.key"), &e["key"], &msg));
            }
        }
    }
}

/// How Go prints a `core.ResourceList` in an "Unsupported value" error (quantities shortened).
fn render_resource_list(capacity: Option<&Value>) -> String {
    match capacity
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
    {
        None => "core.ResourceList(nil)".into(),
        Some(m) => {
            let items: Vec<String> = m.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
            format!("core.ResourceList{{{}}}", items.join(", "))
        }
    }
}

/// A complete PersistentVolume.
pub(super) fn validate_pv(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    access_modes(&spec, "spec", "", &mut causes);
    let capacity = spec.get("capacity");
    let cap_map = capacity.and_then(Value::as_object);
    if cap_map.is_none_or(|m| m.is_empty()) {
        causes.push(Cause::required("spec.capacity", ""));
    }
    if cap_map.is_none_or(|m| !m.contains_key("storage") || m.len() > 1) {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: \"storage\"",
                render_resource_list(capacity)
            ),
            field: "spec.capacity".into(),
        });
    }
    for (k, q) in cap_map.into_iter().flatten() {
        positive_quantity(q, format!("spec.capacity[{k}]"), &mut causes);
    }
    if let Some(p) = spec
        .get("persistentVolumeReclaimPolicy")
        .and_then(Value::as_str)
        && !p.is_empty()
        && !RECLAIM_POLICIES.contains(&p)
    {
        causes.push(Cause::not_supported(
            "spec.persistentVolumeReclaimPolicy",
            &Value::from(p),
            &RECLAIM_POLICIES,
        ));
    }
    let affinity = spec.get("nodeAffinity").filter(|a| !a.is_null());
    if let Some(a) = affinity {
        node_affinity(a, &mut causes);
    }
    let mut sources = 0;
    for source in PV_SOURCES {
        let Some(s) = spec.get(source).filter(|s| !s.is_null()) else {
            continue;
        };
        if sources > 0 {
            causes.push(Cause::forbidden(
                format!("spec.{source}"),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        sources += 1;
        match source {
            "hostPath" | "local" if str_at(s, "/path").is_empty() => {
                causes.push(Cause::required(format!("spec.{source}.path"), ""))
            }
            "csi" => {
                for f in ["driver", "volumeHandle"] {
                    if str_at(s, &format!("/{f}")).is_empty() {
                        causes.push(Cause::required(format!("spec.csi.{f}"), ""));
                    }
                }
            }
            _ => {}
        }
        if source == "local" && affinity.is_none() {
            causes.push(Cause::required(
                "spec.nodeAffinity",
                "Local volume requires node affinity",
            ));
        }
    }
    if sources == 0 {
        causes.push(Cause::required("spec", "must specify a volume type"));
    }
    class_name(&spec, "spec.storageClassName", &mut causes);
    volume_mode(&spec, "spec.volumeMode", &mut causes);
    causes
}

/// A PersistentVolume update: the volume source, `volumeMode` and a set node affinity stay.
pub(super) fn validate_pv_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let (ns, os) = (&new["spec"], &old["spec"]);
    if PV_SOURCES.iter().any(|s| ns.get(s) != os.get(s)) {
        causes.push(Cause::forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        ));
    }
    if ns.get("volumeMode") != os.get("volumeMode") {
        causes.push(Cause::invalid(
            "volumeMode",
            ns.get("volumeMode").unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
    if os.get("nodeAffinity").is_some_and(|a| !a.is_null())
        && ns.get("nodeAffinity") != os.get("nodeAffinity")
    {
        causes.push(Cause::invalid(
            "nodeAffinity",
            ns.get("nodeAffinity").unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
    causes
}

/// A complete PersistentVolumeClaim.
pub(super) fn validate_pvc(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    access_modes(
        &spec,
        "spec",
        "at least 1 access mode is required",
        &mut causes,
    );
    match spec.pointer("/resources/requests/storage") {
        None => causes.push(Cause::required("spec.resources[storage]", "")),
        Some(q) => positive_quantity(q, "spec.resources[storage]".into(), &mut causes),
    }
    class_name(&spec, "spec.storageClassName", &mut causes);
    volume_mode(&spec, "spec.volumeMode", &mut causes);
    causes
}

/// A PersistentVolumeClaim update: the spec is immutable, except that `volumeName` may be set
/// once, `storageClassName` may be set when it was unset, and a bound claim may change its
/// requests.
pub(super) fn validate_pvc_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let (mut ns, os) = (new["spec"].clone(), &old["spec"]);
    let mut os = os.clone();
    if str_at(&os, "/volumeName").is_empty()
        && let Some(v) = ns.get("volumeName")
    {
        os["volumeName"] = v.clone();
    }
    if os.get("storageClassName").is_none_or(Value::is_null)
        && let Some(c) = ns.get("storageClassName")
    {
        os["storageClassName"] = c.clone();
    }
    if str_at(new, "/status/phase") == "Bound"
        && let Some(req) = os.pointer("/resources/requests/storage").cloned()
        && ns.pointer("/resources/requests").is_some()
    {
        ns["resources"]["requests"]["storage"] = req;
    }
    if ns != os {
        causes.push(Cause::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    if new["spec"].get("volumeMode") != old["spec"].get("volumeMode") {
        causes.push(Cause::invalid(
            "volumeMode",
            new["spec"].get("volumeMode").unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
    causes
}

/// A complete StorageClass.
pub(super) fn validate_class(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let provisioner = str_at(obj, "/provisioner");
    if provisioner.is_empty() {
        causes.push(Cause::required("provisioner", ""));
    } else {
        for msg in qualified_name_errors(&provisioner.to_lowercase()) {
            causes.push(Cause::invalid(
                "provisioner",
                &Value::from(provisioner),
                &msg,
            ));
        }
    }
    if let Some(p) = obj.get("reclaimPolicy").and_then(Value::as_str)
        && !CLASS_RECLAIM_POLICIES.contains(&p)
    {
        causes.push(Cause::not_supported(
            "reclaimPolicy",
            &Value::from(p),
            &CLASS_RECLAIM_POLICIES,
        ));
    }
    match obj.get("volumeBindingMode").and_then(Value::as_str) {
        None => causes.push(Cause::required("volumeBindingMode", "")),
        Some(m) if !BINDING_MODES.contains(&m) => causes.push(Cause::not_supported(
            "volumeBindingMode",
            &Value::from(m),
            &BINDING_MODES,
        )),
        Some(_) => {}
    }
    causes
}

/// A StorageClass update: parameters, provisioner, reclaim policy and binding mode stay.
pub(super) fn validate_class_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let empty = |v: Option<&Value>| v.is_none_or(|p| p.as_object().is_some_and(|m| m.is_empty()));
    let (np, op) = (new.get("parameters"), old.get("parameters"));
    if np != op && !(empty(np) && empty(op)) {
        causes.push(Cause::forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
    for (field, what) in [
        ("provisioner", "updates to provisioner are forbidden."),
        ("reclaimPolicy", "updates to reclaimPolicy are forbidden."),
    ] {
        if new.get(field) != old.get(field) {
            causes.push(Cause::forbidden(field, what));
        }
    }
    if new.get("volumeBindingMode") != old.get("volumeBindingMode") {
        causes.push(Cause::invalid(
            "volumeBindingMode",
            new.get("volumeBindingMode").unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn an_empty_volume_reads_like_the_real_server() {
        let causes = validate_pv(&json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"}}));
        assert_eq!(
            messages(&causes),
            [
                "spec.accessModes: Required value",
                "spec.capacity: Required value",
                "spec.capacity: Unsupported value: core.ResourceList(nil): supported values: \"storage\"",
                "spec: Required value: must specify a volume type",
            ]
        );
    }

    #[test]
    fn a_local_volume_needs_node_affinity() {
        let pv = json!({"spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
            "local": {"path": "/mnt/disk"}}});
        assert_eq!(
            messages(&validate_pv(&pv)),
            ["spec.nodeAffinity: Required value: Local volume requires node affinity"]
        );
    }

    #[test]
    fn claims_need_access_modes_and_a_storage_request() {
        let causes = validate_pvc(&json!({"spec": {"accessModes": ["ReadWriteSometimes"]}}));
        assert_eq!(
            messages(&causes),
            [
                "spec.accessModes: Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
                "spec.resources[storage]: Required value",
            ]
        );
    }

    #[test]
    fn a_claim_may_get_its_volume_name_once() {
        let old = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        let mut new = old.clone();
        new["spec"]["volumeName"] = "pv-1".into();
        assert!(validate_pvc_update(&new, &old).is_empty());
        let mut again = new.clone();
        again["spec"]["volumeName"] = "pv-2".into();
        assert_eq!(
            messages(&validate_pvc_update(&again, &new)),
            [
                "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
            ]
        );
    }

    #[test]
    fn class_parameters_and_binding_mode_cannot_change() {
        let old = json!({"provisioner": "x.example.com", "parameters": {"a": "1"},
            "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"});
        let mut new = old.clone();
        new["parameters"]["a"] = "2".into();
        new["volumeBindingMode"] = "WaitForFirstConsumer".into();
        assert_eq!(
            messages(&validate_class_update(&new, &old)),
            [
                "parameters: Forbidden: updates to parameters are forbidden.",
                "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable",
            ]
        );
        assert_eq!(
            messages(&validate_class(&json!({"volumeBindingMode": "Later"}))),
            [
                "provisioner: Required value",
                "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
            ]
        );
    }
}
