//! DeviceTaintRule (resource.k8s.io/v1beta2, KEP-5055) rules, worded as upstream
//! `ValidateDeviceTaintRule` and `ValidateDeviceTaintRuleStatusUpdate`.

use serde_json::Value;

use super::names::*;
use crate::status::Cause;

/// The effects a device taint may have (upstream `validDeviceTaintEffects`, sorted).
pub(crate) const EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "None"];

/// resource.k8s.io `DeviceTaintRuleStatusMaxConditions`.
const MAX_CONDITIONS: usize = 8;

/// `DriverNameMaxLength` (a CSI driver name) and `PoolNameMaxLength`.
const DRIVER_NAME_MAX: usize = 63;
const POOL_NAME_MAX: usize = 253;

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A complete DeviceTaintRule; `old` is the stored one on update (an unchanged effect is not
/// checked again, as upstream).
pub(crate) fn validate_rule(obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut causes = Vec::new();
    if let Some(sel) = spec.get("deviceSelector").filter(|s| s.is_object()) {
        let p = "spec.deviceSelector";
        if let Some(d) = str_at(sel, "driver") {
            driver_name(d, &format!("{p}.driver"), &mut causes);
        }
        if let Some(pool) = str_at(sel, "pool") {
            pool_name(pool, &format!("{p}.pool"), &mut causes);
        }
        if let Some(d) = str_at(sel, "device") {
            device_name(d, &format!("{p}.device"), &mut causes);
        }
    }
    let old_taint = old.map(|o| &o["spec"]["taint"]);
    causes.extend(validate_taint(&spec["taint"], old_taint, "spec.taint"));
    causes
}

/// One device taint at `p` (also used for taints in ResourceSlices), as upstream
/// `validateDeviceTaint`: the key is a label name, the value a label value, the effect one of
/// [`EFFECTS`] (checked only when it is new or changed).
pub(crate) fn validate_taint(taint: &Value, old: Option<&Value>, p: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let key = str_at(taint, "key").unwrap_or_default();
    let kp = format!("{p}.key");
    if key.is_empty() {
        causes.push(Cause::invalid(
            &kp,
            &Value::from(""),
            "name part must be non-empty",
        ));
        causes.push(Cause::invalid(
            &kp,
            &Value::from(""),
            &format!("name part {QUALIFIED_NAME_PART_MSG}"),
        ));
    } else {
        for msg in qualified_name_errors(key) {
            causes.push(Cause::invalid(&kp, &Value::from(key), &msg));
        }
    }
    let value = str_at(taint, "value").unwrap_or_default();
    if !value.is_empty() {
        label_value(value, &format!("{p}.value"), &mut causes);
    }
    let effect = str_at(taint, "effect").unwrap_or_default();
    let old_effect = old.and_then(|o| str_at(o, "effect"));
    if old_effect != Some(effect) {
        let ep = format!("{p}.effect");
        if effect.is_empty() {
            causes.push(Cause::required(ep, ""));
        } else if !EFFECTS.contains(&effect) {
            causes.push(Cause::not_supported(ep, &Value::from(effect), EFFECTS));
        }
    }
    causes
}

/// A `/status` write: at most 8 conditions, each well-formed (metav1 `ValidateConditions`).
pub(crate) fn validate_status_update(new: &Value) -> Vec<Cause> {
    let conditions = new
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut causes = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, c) in conditions.iter().enumerate() {
        let p = format!("status.conditions[{i}]");
        let t = str_at(c, "type").unwrap_or_default();
        if t.is_empty() {
            causes.push(Cause::required(format!("{p}.type"), ""));
        } else {
            for msg in qualified_name_errors(t) {
                causes.push(Cause::invalid(format!("{p}.type"), &Value::from(t), &msg));
            }
            if !seen.insert(t) {
                causes.push(Cause::duplicate(format!("{p}.type"), &Value::from(t)));
            }
        }
        let status = str_at(c, "status").unwrap_or_default();
        if !["True", "False", "Unknown"].contains(&status) {
            causes.push(Cause::not_supported(
                format!("{p}.status"),
                &Value::from(status),
                &["False", "True", "Unknown"],
            ));
        }
        if c.get("lastTransitionTime").is_none_or(Value::is_null) {
            causes.push(Cause::required(
                format!("{p}.lastTransitionTime"),
                "must be set",
            ));
        }
        if str_at(c, "reason").unwrap_or_default().is_empty() {
            causes.push(Cause::required(format!("{p}.reason"), "must be set"));
        }
    }
    if conditions.len() > MAX_CONDITIONS {
        causes.push(Cause::too_many(
            "status.conditions",
            conditions.len(),
            MAX_CONDITIONS,
        ));
    }
    causes
}

/// `ValidateCSIDriverName`.
fn driver_name(name: &str, p: &str, causes: &mut Vec<Cause>) {
    if name.is_empty() {
        causes.push(Cause::required(p, ""));
        return;
    }
    if name.len() > DRIVER_NAME_MAX {
        causes.push(Cause::too_long(p, DRIVER_NAME_MAX));
    }
    if !is_dns_subdomain(&name.to_ascii_lowercase()) {
        causes.push(Cause::invalid(p, &Value::from(name), DNS_SUBDOMAIN_MSG));
    }
}

/// `validatePoolName`: DNS subdomains separated by `/`, at most 253 characters.
fn pool_name(name: &str, p: &str, causes: &mut Vec<Cause>) {
    if name.is_empty() {
        causes.push(Cause::required(p, ""));
        return;
    }
    if name.len() > POOL_NAME_MAX {
        causes.push(Cause::too_long(p, POOL_NAME_MAX));
    }
    for part in name.split('/') {
        if !is_dns_subdomain(part) {
            causes.push(Cause::invalid(p, &Value::from(part), DNS_SUBDOMAIN_MSG));
        }
    }
}

/// `ValidateDNS1123Label`.
fn device_name(name: &str, p: &str, causes: &mut Vec<Cause>) {
    if name.len() > 63 {
        causes.push(Cause::invalid(
            p,
            &Value::from(name),
            "must be no more than 63 characters",
        ));
    }
    let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let pattern_ok = name.chars().all(|c| lower_alnum(c) || c == '-')
        && name.starts_with(lower_alnum)
        && name.ends_with(lower_alnum);
    if !pattern_ok {
        causes.push(Cause::invalid(p, &Value::from(name), DNS_LABEL_MSG));
    }
}

/// `IsValidLabelValue`.
fn label_value(value: &str, p: &str, causes: &mut Vec<Cause>) {
    if value.len() > 63 {
        causes.push(Cause::invalid(
            p,
            &Value::from(value),
            "must be no more than 63 characters",
        ));
    }
    let pattern_ok = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !pattern_ok {
        causes.push(Cause::invalid(p, &Value::from(value), LABEL_VALUE_MSG));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(causes: &[Cause]) -> Vec<(String, String)> {
        causes
            .iter()
            .map(|c| (c.field.clone(), c.message.clone()))
            .collect()
    }

    #[test]
    fn a_rule_needs_a_taint_key_and_a_known_effect() {
        let rule = json!({"spec": {"taint": {"key": "", "effect": "PreferNoSchedule"}}});
        let got = fields(&validate_rule(&rule, None));
        assert_eq!(
            got[0],
            (
                "spec.taint.key".into(),
                "Invalid value: \"\": name part must be non-empty".into()
            )
        );
        assert_eq!(
            got.last().unwrap(),
            &(
                "spec.taint.effect".into(),
                "Unsupported value: \"PreferNoSchedule\": supported values: \"NoExecute\", \"NoSchedule\", \"None\"".into()
            )
        );
        let missing = json!({"spec": {"taint": {"key": "example.com/broken"}}});
        assert_eq!(
            fields(&validate_rule(&missing, None)),
            [("spec.taint.effect".into(), "Required value".into())]
        );
    }

    #[test]
    fn selector_names_are_checked_as_in_slices() {
        let rule = json!({"spec": {"deviceSelector": {"driver": "GPU_x", "pool": "a/-b", "device": "gpu_0"},
                                   "taint": {"key": "k", "value": "-v", "effect": "NoSchedule"}}});
        let got: Vec<String> = validate_rule(&rule, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            got,
            [
                "spec.deviceSelector.driver",
                "spec.deviceSelector.pool",
                "spec.deviceSelector.device",
                "spec.taint.value"
            ]
        );
    }

    #[test]
    fn an_unchanged_effect_is_not_checked_again() {
        let old = json!({"spec": {"taint": {"key": "k", "effect": "Bogus"}}});
        assert!(validate_rule(&old, Some(&old)).is_empty());
    }

    #[test]
    fn status_conditions_are_capped_at_eight() {
        let c = |i: usize| json!({"type": format!("T{i}"), "status": "True", "reason": "R", "lastTransitionTime": "2026-01-01T00:00:00Z"});
        let obj = json!({"status": {"conditions": (0..9).map(c).collect::<Vec<_>>()}});
        assert_eq!(
            fields(&validate_status_update(&obj)),
            [(
                "status.conditions".into(),
                "Too many: 9: must have at most 8 items".into()
            )]
        );
    }
}
