//! The disruption controller's status work (kube-controller-manager `disruption` controller),
//! done synchronously after every write of a pod or a PodDisruptionBudget in the namespace, so
//! `status.disruptionsAllowed` is current when the write that changed it returns.
//!
//! - `expectedPods`: the pods the selector matches (upstream takes the scale of their
//!   controllers for `maxUnavailable` and percentages; with no controllers here, the pods
//!   themselves are the scale);
//! - `currentHealthy`: matched pods that are bound, not terminating, not finished, and not
//!   reported unready (no kubelet runs here, so a bound pod counts as ready unless its `Ready`
//!   condition is `False`);
//! - `desiredHealthy` from `minAvailable` or `maxUnavailable` (percentages round up, as
//!   upstream), `disruptionsAllowed = max(0, currentHealthy - desiredHealthy)`, and the
//!   `DisruptionAllowed` condition (`SufficientPods` / `InsufficientPods`).
//!
//! A `null` selector matches no pod and an empty one every pod of the namespace (policy/v1).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};

use crate::registry::{Registry, WriteOptions};
use crate::resources::Kind;
use crate::store::Stored;
use crate::typed::FieldValidation;
use crate::validation::Subresource;

const INTERNAL: WriteOptions = WriteOptions {
    field_validation: FieldValidation::Ignore,
    dry_run: false,
    skip_namespace_check: false,
};

/// Whether `labels` satisfy a metav1 LabelSelector (`matchLabels` and `matchExpressions`).
pub(crate) fn selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    if let Some(m) = &selector.match_labels
        && m.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    for e in selector.match_expressions.iter().flatten() {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        let ok = match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn is_healthy(pod: &Value) -> bool {
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    let unready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "False")
        });
    bound && !deleting && !finished && !unready
}

/// `intstr` scaled to `total`, rounding percentages up (`GetScaledValueFromIntOrPercent`).
fn scaled(v: &Value, total: i64) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let p: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((p * total + 99) / 100)
        }
        _ => None,
    }
}

/// The status fields the controller computes, without the condition's timestamp.
fn compute(pdb: &Value, pods: &[Arc<Stored>]) -> Value {
    let selector: Option<LabelSelector> = pdb
        .pointer("/spec/selector")
        .filter(|s| !s.is_null())
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let (mut expected, mut healthy) = (0i64, 0i64);
    if let Some(selector) = &selector {
        for pod in pods {
            let v = pod.value();
            let finished = matches!(
                v.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            );
            if finished || !selector_matches(selector, &labels_of(&v)) {
                continue;
            }
            expected += 1;
            if is_healthy(&v) {
                healthy += 1;
            }
        }
    }
    let spec = &pdb["spec"];
    let desired = if let Some(min) = spec.get("minAvailable").filter(|v| !v.is_null()) {
        scaled(min, expected).unwrap_or(0)
    } else if let Some(max) = spec.get("maxUnavailable").filter(|v| !v.is_null()) {
        (expected - scaled(max, expected).unwrap_or(0)).max(0)
    } else {
        0
    };
    let allowed = (healthy - desired).max(0);
    json!({
        "observedGeneration": pdb.pointer("/metadata/generation").cloned().unwrap_or(Value::from(1)),
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
    })
}

/// Brings the status of every PodDisruptionBudget of `namespace` up to date.
pub(crate) fn sync_namespace(reg: &Registry, namespace: &str) {
    let (pdbs, _) = reg
        .store
        .snapshot(Kind::PodDisruptionBudget, Some(namespace));
    if pdbs.is_empty() {
        return;
    }
    let (pods, _) = reg.store.snapshot(Kind::Pod, Some(namespace));
    for pdb in pdbs {
        if pdb.deleting() {
            continue;
        }
        let v = pdb.value();
        let mut status = compute(&v, &pods);
        let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0) > 0;
        let (cond_status, reason) = if allowed {
            ("True", "SufficientPods")
        } else {
            ("False", "InsufficientPods")
        };
        let old = v.get("status").cloned().unwrap_or(Value::Null);
        let old_cond = old
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionAllowed"))
            .cloned();
        // The transition time moves only when the condition's status does.
        let transition = match &old_cond {
            Some(c) if c["status"] == cond_status => c["lastTransitionTime"].clone(),
            _ => crate::registry::now().into(),
        };
        status["conditions"] = json!([{
            "type": "DisruptionAllowed",
            "status": cond_status,
            "reason": reason,
            "message": "",
            "observedGeneration": status["observedGeneration"],
            "lastTransitionTime": transition,
        }]);
        if let Some(d) = old.get("disruptedPods") {
            status["disruptedPods"] = d.clone();
        }
        if status == old {
            continue;
        }
        let res = Kind::PodDisruptionBudget.canonical();
        let body = json!({"status": status});
        if let Err(e) = reg.patch(
            res,
            Some(namespace),
            pdb.name(),
            kube_patch::PatchType::Merge,
            body.to_string().as_bytes(),
            Subresource::Status,
            INTERNAL,
        ) {
            tracing::warn!(pdb = pdb.name(), error = %e.message, "cannot update PodDisruptionBudget status");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up_as_upstream() {
        assert_eq!(scaled(&json!("50%"), 3), Some(2));
        assert_eq!(scaled(&json!(2), 3), Some(2));
        assert_eq!(scaled(&json!("x"), 3), None);
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]
        }))
        .unwrap();
        let l = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(selector_matches(&sel, &l(&[("app", "web")])));
        assert!(!selector_matches(
            &sel,
            &l(&[("app", "web"), ("tier", "db")])
        ));
        assert!(!selector_matches(&sel, &l(&[("app", "db")])));
        assert!(selector_matches(&LabelSelector::default(), &l(&[])));
    }
}
