//! Pod validation: the fields users get wrong on create, and spec immutability on update.

use serde_json::Value;

use super::names::*;
use crate::status::Cause;

const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn arr(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(crate) fn validate_pod(pod: &Value) -> Vec<Cause> {
    let spec = &pod["spec"];
    let mut causes = Vec::new();
    let containers = arr(spec.get("containers"));
    if containers.is_empty() {
        causes.push(Cause::required("spec.containers", ""));
    }
    let mut names = std::collections::HashSet::new();
    for (list, field) in [
        (containers, "containers"),
        (arr(spec.get("initContainers")), "initContainers"),
    ] {
        for (i, c) in list.iter().enumerate() {
            let p = format!("spec.{field}[{i}]");
            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() {
                causes.push(Cause::required(format!("{p}.name"), ""));
            } else if !is_dns_label(name) {
                causes.push(Cause::invalid(
                    format!("{p}.name"),
                    &Value::from(name),
                    DNS_LABEL_MSG,
                ));
            } else if !names.insert(name.to_string()) {
                causes.push(Cause::duplicate(format!("{p}.name"), &Value::from(name)));
            }
            if c.get("image")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .is_empty()
            {
                causes.push(Cause::required(format!("{p}.image"), ""));
            }
        }
    }
    let mut claim_names = std::collections::HashSet::new();
    for (i, rc) in arr(spec.get("resourceClaims")).iter().enumerate() {
        let p = format!("spec.resourceClaims[{i}]");
        let name = rc.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(format!("{p}.name"), ""));
        } else if !is_dns_label(name) {
            causes.push(Cause::invalid(
                format!("{p}.name"),
                &Value::from(name),
                DNS_LABEL_MSG,
            ));
        } else if !claim_names.insert(name.to_string()) {
            causes.push(Cause::duplicate(format!("{p}.name"), &Value::from(name)));
        }
        let direct = rc.get("resourceClaimName").is_some_and(|v| !v.is_null());
        let template = rc
            .get("resourceClaimTemplateName")
            .is_some_and(|v| !v.is_null());
        if direct == template {
            causes.push(Cause::invalid(
                p,
                rc,
                "at most one of `resourceClaimName` or `resourceClaimTemplateName` may be specified",
            ));
        }
    }
    causes
}

/// Pod spec is immutable except for a few fields; compare the specs with those fields neutralised.
pub(crate) fn validate_spec_update(new: &Value, old: &Value) -> Vec<Cause> {
    if new.get("spec") == old.get("spec") {
        return Vec::new();
    }
    let mut n = new.get("spec").cloned().unwrap_or(Value::Null);
    let mut o = old.get("spec").cloned().unwrap_or(Value::Null);
    for field in ["containers", "initContainers"] {
        if let (Some(na), Some(oa)) = (
            n.get_mut(field).and_then(Value::as_array_mut),
            o.get_mut(field).and_then(Value::as_array_mut),
        ) {
            for (nc, oc) in na.iter_mut().zip(oa.iter_mut()) {
                if let (Some(nm), Some(om)) = (nc.as_object_mut(), oc.as_object_mut()) {
                    nm.remove("image");
                    om.remove("image");
                }
            }
        }
    }
    for field in ["activeDeadlineSeconds", "terminationGracePeriodSeconds"] {
        if let (Some(nm), Some(om)) = (n.as_object_mut(), o.as_object_mut()) {
            nm.remove(field);
            om.remove(field);
        }
    }
    // Tolerations may only grow; scheduling gates may only shrink.
    let old_tol = arr(o.get("tolerations")).to_vec();
    let new_tol = arr(n.get("tolerations")).to_vec();
    if old_tol.iter().all(|t| new_tol.contains(t)) {
        n["tolerations"] = Value::Null;
        o["tolerations"] = Value::Null;
    }
    let old_gates = arr(o.get("schedulingGates")).to_vec();
    let new_gates = arr(n.get("schedulingGates")).to_vec();
    if new_gates.iter().all(|g| old_gates.contains(g)) {
        n["schedulingGates"] = Value::Null;
        o["schedulingGates"] = Value::Null;
    }
    if n != o {
        vec![Cause::forbidden("spec", POD_UPDATE_FORBIDDEN)]
    } else {
        Vec::new()
    }
}
