//! Service, ReplicationController, ReplicaSet and StatefulSet rules: the ones a scheduler's user
//! meets (selectors, ports, types, the pod template), worded as upstream `ValidateService`,
//! `ValidateReplicationController`, `ValidateReplicaSet` and `ValidateStatefulSet`.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::names::*;
use super::pod;
use crate::resources::Kind;
use crate::status::Cause;

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const AFFINITIES: [&str; 2] = ["ClientIP", "None"];

/// A complete object of one of the four kinds.
pub(super) fn validate(kind: Kind, obj: &Value) -> Vec<Cause> {
    match kind {
        Kind::Service => service(obj),
        Kind::ReplicationController => replication_controller(obj),
        Kind::ReplicaSet | Kind::StatefulSet => apps_workload(kind, obj),
        _ => Vec::new(),
    }
}

/// An update: a Service keeps its cluster IP; apps selectors are immutable; a StatefulSet may
/// change only some of its spec.
pub(super) fn validate_update(kind: Kind, new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match kind {
        Kind::Service => {
            let old_ip = old.pointer("/spec/clusterIP").and_then(Value::as_str);
            let new_ip = new.pointer("/spec/clusterIP").and_then(Value::as_str);
            let external =
                new.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName");
            if let Some(o) = old_ip.filter(|o| !o.is_empty())
                && !external
                && new_ip != Some(o)
            {
                let n = new_ip.unwrap_or_default();
                causes.push(Cause {
                    reason: "FieldValueInvalid",
                    message: format!("Invalid value: []string{{\"{n}\"}}: may not change once set"),
                    field: "spec.clusterIPs[0]".into(),
                });
            }
        }
        Kind::ReplicaSet | Kind::StatefulSet => {
            let sel = new.pointer("/spec/selector");
            if sel != old.pointer("/spec/selector") {
                causes.push(Cause::invalid(
                    "spec.selector",
                    sel.unwrap_or(&Value::Null),
                    "field is immutable",
                ));
            }
            if kind == Kind::StatefulSet {
                let strip = |v: &Value| {
                    let mut spec = v.get("spec").cloned().unwrap_or_default();
                    if let Some(m) = spec.as_object_mut() {
                        for f in [
                            "replicas",
                            "ordinals",
                            "template",
                            "updateStrategy",
                            "revisionHistoryLimit",
                            "persistentVolumeClaimRetentionPolicy",
                            "minReadySeconds",
                            "selector",
                        ] {
                            m.remove(f);
                        }
                    }
                    spec
                };
                if strip(new) != strip(old) {
                    causes.push(Cause::forbidden(
                        "spec",
                        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                    ));
                }
            }
        }
        _ => {}
    }
    causes
}

/// Label keys and values of a `map[string]string` selector.
fn label_map(map: &Map<String, Value>, field: &str, causes: &mut Vec<Cause>) {
    for (k, v) in map {
        for msg in qualified_name_errors(k) {
            causes.push(Cause::invalid(field, &Value::from(k.as_str()), &msg));
        }
        if !v.as_str().is_some_and(is_label_value) {
            causes.push(Cause::invalid(field, v, LABEL_VALUE_MSG));
        }
    }
}

fn service(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut causes = Vec::new();
    let kind = spec["type"].as_str().unwrap_or_default();
    if !SERVICE_TYPES.contains(&kind) {
        causes.push(Cause::not_supported(
            "spec.type",
            &spec["type"],
            &SERVICE_TYPES,
        ));
    }
    let affinity = &spec["sessionAffinity"];
    if !affinity.as_str().is_some_and(|a| AFFINITIES.contains(&a)) {
        causes.push(Cause::not_supported(
            "spec.sessionAffinity",
            affinity,
            &AFFINITIES,
        ));
    }
    let headless = spec["clusterIP"] == "None";
    if kind == "ExternalName" {
        let name = spec["externalName"].as_str().unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required("spec.externalName", ""));
        } else if !is_dns_subdomain(name.trim_end_matches('.')) {
            causes.push(Cause::invalid(
                "spec.externalName",
                &Value::from(name),
                DNS_SUBDOMAIN_MSG,
            ));
        }
    } else if let Some(ip) = spec["clusterIP"].as_str()
        && ip != "None"
        && !ip.is_empty()
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        causes.push(Cause::invalid(
            "spec.clusterIPs[0]",
            &Value::from(ip),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    let ports = spec["ports"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if ports.is_empty() && kind != "ExternalName" && !headless {
        causes.push(Cause::required("spec.ports", ""));
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let name = p["name"].as_str().unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            causes.push(Cause::required(format!("{field}.name"), ""));
        } else if !name.is_empty() {
            if !is_dns_label(name) {
                causes.push(Cause::invalid(
                    format!("{field}.name"),
                    &Value::from(name),
                    DNS_LABEL_MSG,
                ));
            } else if !names.insert(name) {
                causes.push(Cause::duplicate(
                    format!("{field}.name"),
                    &Value::from(name),
                ));
            }
        }
        let port = p["port"].as_i64().unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                format!("{field}.port"),
                &Value::from(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if !p["protocol"]
            .as_str()
            .is_some_and(|x| PROTOCOLS.contains(&x))
        {
            causes.push(Cause::not_supported(
                format!("{field}.protocol"),
                &p["protocol"],
                &PROTOCOLS,
            ));
        }
        if p.get("nodePort").is_some() && kind == "ClusterIP" {
            causes.push(Cause::forbidden(
                format!("{field}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
    if let Some(sel) = spec["selector"].as_object() {
        label_map(sel, "spec.selector", &mut causes);
    }
    causes
}

/// `map[string]string{"k":"v"}`: how Go prints a label map in a field error.
fn go_map(labels: &Value) -> String {
    let pairs: Vec<String> = labels
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if labels.as_object().is_none() {
        "map[string]string(nil)".into()
    } else {
        format!("map[string]string{{{}}}", pairs.join(", "))
    }
}

fn template_labels_mismatch(labels: &Value) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        message: format!(
            "Invalid value: {}: `selector` does not match template `labels`",
            go_map(labels)
        ),
        field: "spec.template.metadata.labels".into(),
    }
}

/// The pod template: its labels, and its spec validated as a pod's (fields renamed).
fn pod_template(template: &Value, restart_always: bool, causes: &mut Vec<Cause>) {
    if let Some(labels) = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
    {
        label_map(labels, "spec.template.labels", causes);
    }
    let as_pod = serde_json::json!({"spec": template.get("spec").cloned().unwrap_or_default()});
    for mut c in pod::validate_pod(&as_pod) {
        if let Some(rest) = c.field.strip_prefix("spec") {
            c.field = format!("spec.template.spec{rest}");
        }
        causes.push(c);
    }
    let restart = template
        .pointer("/spec/restartPolicy")
        .unwrap_or(&Value::Null);
    if restart_always && restart != "Always" {
        causes.push(Cause::not_supported(
            "spec.template.spec.restartPolicy",
            restart,
            &["Always"],
        ));
    }
}

fn replicas(spec: &Value, causes: &mut Vec<Cause>) {
    if let Some(n) = spec["replicas"].as_i64()
        && n < 0
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            &Value::from(n),
            "must be greater than or equal to 0",
        ));
    }
}

fn replication_controller(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut causes = Vec::new();
    replicas(spec, &mut causes);
    let selector = spec["selector"].as_object().filter(|m| !m.is_empty());
    match selector {
        None => causes.push(Cause::required("spec.selector", "")),
        Some(sel) => label_map(sel, "spec.selector", &mut causes),
    }
    let Some(template) = spec.get("template").filter(|t| t.is_object()) else {
        causes.push(Cause::required("spec.template", ""));
        return causes;
    };
    let labels = template.pointer("/metadata/labels").unwrap_or(&Value::Null);
    if let Some(sel) = selector
        && !sel
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
    {
        causes.push(template_labels_mismatch(labels));
    }
    pod_template(template, true, &mut causes);
    causes
}

/// Whether `labels` satisfy a metav1 LabelSelector (`None` for an invalid operator).
fn selector_matches(sel: &Value, labels: &Value) -> Option<bool> {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(m) = sel["matchLabels"].as_object()
        && !m.iter().all(|(k, v)| get(k) == v.as_str())
    {
        return Some(false);
    }
    for e in sel["matchExpressions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let ok = match e["operator"].as_str()? {
            "In" => get(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => get(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => get(key).is_some(),
            "DoesNotExist" => get(key).is_none(),
            _ => return None,
        };
        if !ok {
            return Some(false);
        }
    }
    Some(true)
}

fn apps_workload(kind: Kind, obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut causes = Vec::new();
    replicas(spec, &mut causes);
    let selector = spec.get("selector").filter(|s| s.is_object());
    match selector {
        None => causes.push(Cause::required("spec.selector", "")),
        Some(sel) => {
            let empty = sel["matchLabels"].as_object().is_none_or(Map::is_empty)
                && sel["matchExpressions"].as_array().is_none_or(Vec::is_empty);
            if empty {
                causes.push(Cause::invalid(
                    "spec.selector",
                    sel,
                    "empty selector is invalid for deployment",
                ));
            }
            if let Some(m) = sel["matchLabels"].as_object() {
                label_map(m, "spec.selector.matchLabels", &mut causes);
            }
        }
    }
    if kind == Kind::StatefulSet {
        let policy = &spec["podManagementPolicy"];
        if !policy
            .as_str()
            .is_some_and(|p| p == "OrderedReady" || p == "Parallel")
        {
            causes.push(Cause::not_supported(
                "spec.podManagementPolicy",
                policy,
                &["OrderedReady", "Parallel"],
            ));
        }
        let strategy = spec.pointer("/updateStrategy/type").unwrap_or(&Value::Null);
        if !strategy
            .as_str()
            .is_some_and(|s| s == "OnDelete" || s == "RollingUpdate")
        {
            causes.push(Cause::not_supported(
                "spec.updateStrategy.type",
                strategy,
                &["OnDelete", "RollingUpdate"],
            ));
        }
    }
    let Some(template) = spec.get("template").filter(|t| t.is_object()) else {
        causes.push(Cause::required("spec.template", ""));
        return causes;
    };
    let labels = template.pointer("/metadata/labels").unwrap_or(&Value::Null);
    if let Some(sel) = selector
        && selector_matches(sel, labels) == Some(false)
    {
        causes.push(template_labels_mismatch(labels));
    }
    pod_template(template, true, &mut causes);
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_when_the_template_does_not_match_the_selector() {
        let rs = json!({"spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                "spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "nginx"}]}}}});
        let causes = validate(Kind::ReplicaSet, &rs);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
        assert_eq!(
            causes[0].message,
            "Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`"
        );
    }

    #[test]
    fn errors_when_a_service_has_no_ports() {
        let svc = json!({"spec": {"type": "ClusterIP", "sessionAffinity": "None"}});
        let causes = validate(Kind::Service, &svc);
        assert_eq!(causes, vec![Cause::required("spec.ports", "")]);
    }
}
