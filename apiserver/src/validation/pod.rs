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

/// A status update (pods/status): `status.extendedResourceClaimStatus`, which kube-scheduler
/// writes for extended resources backed by DRA (KEP-5004), as upstream
/// `validatePodExtendedResourceClaimStatus` checks it.
pub(crate) fn validate_status_update(new: &Value) -> Vec<Cause> {
    let Some(status) = new
        .pointer("/status/extendedResourceClaimStatus")
        .filter(|s| !s.is_null())
    else {
        return Vec::new();
    };
    let base = "status.extendedResourceClaimStatus";
    let spec = &new["spec"];
    let containers: Vec<&Value> = arr(spec.get("initContainers"))
        .iter()
        .chain(arr(spec.get("containers")))
        .collect();
    let mut causes = Vec::new();
    let mappings = arr(status.get("requestMappings"));
    if mappings.is_empty() {
        causes.push(Cause::required(
            format!("{base}.requestMappings"),
            "at least one request mapping is required",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, m) in mappings.iter().enumerate() {
        let p = format!("{base}.requestMappings[{i}]");
        let field = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default();
        let (container, resource, request) = (
            field("containerName"),
            field("resourceName"),
            field("requestName"),
        );
        match containers
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(container))
        {
            Some(c) => {
                if c.pointer("/resources/requests")
                    .and_then(|r| r.get(resource))
                    .is_none()
                {
                    causes.push(Cause::invalid(
                        format!("{p}.resourceName"),
                        &Value::from(resource),
                        "must match the extended resource name of an entry in spec.initContainers.resources.requests or spec.containers.resources.requests",
                    ));
                }
            }
            None => causes.push(Cause::invalid(
                format!("{p}.containerName"),
                &Value::from(container),
                "must match the name of an entry in spec.initContainers.name or spec.containers.name",
            )),
        }
        if !is_dns_label(request) {
            causes.push(Cause::invalid(
                format!("{p}.requestName"),
                &Value::from(request),
                DNS_LABEL_MSG,
            ));
        }
        if !seen.insert((container, resource, request)) {
            causes.push(Cause::duplicate(
                format!("{p}.containerName"),
                &Value::from(container),
            ));
            causes.push(Cause::duplicate(
                format!("{p}.resourceName"),
                &Value::from(resource),
            ));
            causes.push(Cause::duplicate(
                format!("{p}.requestName"),
                &Value::from(request),
            ));
        }
    }
    let name = status
        .get("resourceClaimName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required(format!("{base}.resourceClaimName"), ""));
    } else if !is_dns_subdomain(name) {
        causes.push(Cause::invalid(
            format!("{base}.resourceClaimName"),
            &Value::from(name),
            DNS_SUBDOMAIN_MSG,
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: Value) -> Value {
        json!({"spec": {
            "initContainers": [{"name": "init", "resources": {"requests": {"example.com/gpu": "1"}}}],
            "containers": [{"name": "c", "resources": {"requests": {"example.com/gpu": "2", "cpu": "1"}}}]},
            "status": {"extendedResourceClaimStatus": status}})
    }

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn extended_resource_claim_status_is_validated_as_upstream() {
        let ok = json!({"resourceClaimName": "p-extended-resources-abcde", "requestMappings": [
            {"containerName": "c", "resourceName": "example.com/gpu", "requestName": "container-1-request-1"},
            {"containerName": "init", "resourceName": "example.com/gpu", "requestName": "container-0-request-0"}]});
        assert!(validate_status_update(&pod(ok)).is_empty());
        assert!(validate_status_update(&json!({"status": {}})).is_empty());
        let bad = json!({"resourceClaimName": "", "requestMappings": [
            {"containerName": "x", "resourceName": "example.com/gpu", "requestName": "r"},
            {"containerName": "c", "resourceName": "example.com/tpu", "requestName": "Bad_Name"}]});
        let m = messages(&validate_status_update(&pod(bad)));
        assert_eq!(
            m,
            vec![
                "status.extendedResourceClaimStatus.requestMappings[0].containerName: Invalid value: \"x\": must match the name of an entry in spec.initContainers.name or spec.containers.name".to_string(),
                "status.extendedResourceClaimStatus.requestMappings[1].resourceName: Invalid value: \"example.com/tpu\": must match the extended resource name of an entry in spec.initContainers.resources.requests or spec.containers.resources.requests".to_string(),
                format!("status.extendedResourceClaimStatus.requestMappings[1].requestName: Invalid value: \"Bad_Name\": {DNS_LABEL_MSG}"),
                "status.extendedResourceClaimStatus.resourceClaimName: Required value".to_string(),
            ]
        );
        let empty = messages(&validate_status_update(&pod(
            json!({"resourceClaimName": "x"}),
        )));
        assert_eq!(
            empty,
            vec![
                "status.extendedResourceClaimStatus.requestMappings: Required value: at least one request mapping is required"
            ]
        );
    }
}
