//! PriorityClass (scheduling.k8s.io/v1) and PodDisruptionBudget (policy/v1) rules, worded as
//! upstream `ValidatePriorityClass` and `ValidatePodDisruptionBudgetSpec`.

use serde_json::Value;

use crate::admission::{
    HIGHEST_USER_DEFINABLE_PRIORITY, SYSTEM_PRIORITY_CLASS_PREFIX, is_known_system_class,
};
use crate::status::Cause;

const POLICIES: [&str; 2] = ["Never", "PreemptLowerPriority"];

/// A complete PriorityClass.
pub(super) fn validate_class(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
    if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
        if let Err(e) = is_known_system_class(name, value) {
            causes.push(Cause::forbidden(
                "metadata.name",
                &format!(
                    "priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved for system use only. error: {e}"
                ),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        causes.push(Cause::forbidden(
            "value",
            &format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
            ),
        ));
    }
    if let Some(p) = obj.get("preemptionPolicy").and_then(Value::as_str)
        && !POLICIES.contains(&p)
    {
        causes.push(Cause::not_supported(
            "preemptionPolicy",
            &Value::from(p),
            &POLICIES,
        ));
    }
    causes
}

/// An update: `value` and `preemptionPolicy` cannot change.
pub(super) fn validate_class_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if new.get("value") != old.get("value") {
        causes.push(Cause::forbidden(
            "value",
            "may not be changed in an update.",
        ));
    }
    if new.get("preemptionPolicy") != old.get("preemptionPolicy") {
        causes.push(Cause::invalid(
            "preemptionPolicy",
            new.get("preemptionPolicy").unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
    causes
}

/// A complete PodDisruptionBudget: at most one of `minAvailable` and `maxUnavailable`, neither
/// negative, and percentages at most 100%.
pub(super) fn validate_pdb(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let set = |f: &str| spec.get(f).is_some_and(|v| !v.is_null());
    if set("minAvailable") && set("maxUnavailable") {
        causes.push(Cause::invalid(
            "spec",
            &spec,
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for field in ["minAvailable", "maxUnavailable"] {
        match spec.get(field) {
            Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n < 0) => {
                causes.push(Cause::invalid(
                    format!("spec.{field}"),
                    &Value::Number(n.clone()),
                    "must be greater than or equal to 0",
                ));
            }
            Some(Value::String(s)) => match s.strip_suffix('%').map(str::parse::<i64>) {
                Some(Ok(p)) if (0..=100).contains(&p) => {}
                Some(Ok(_)) => causes.push(Cause::invalid(
                    format!("spec.{field}"),
                    &Value::from(s.as_str()),
                    "must not be greater than 100%",
                )),
                _ => causes.push(Cause::invalid(
                    format!("spec.{field}"),
                    &Value::from(s.as_str()),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )),
            },
            _ => {}
        }
    }
    causes
}
