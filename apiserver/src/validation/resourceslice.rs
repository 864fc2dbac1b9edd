//! ResourceSlice and DeviceClass validation (reference captures 27 and 29).

use serde_json::Value;

use super::cel::check_selector;
use super::names::*;
use crate::status::Cause;

const ATTRIBUTE_TYPES: &[&str] = &["int", "bool", "string", "version"];

/// The Go struct the real server prints for an attribute with a wrong number of values.
fn render_attribute(v: &Value) -> String {
    let f = |k: &str| {
        v.get(k)
            .map(|x| x.to_string())
            .unwrap_or_else(|| "null".into())
    };
    format!(
        "{{\"IntValue\":{},\"BoolValue\":{},\"StringValue\":{},\"VersionValue\":{},\"IntValues\":null,\"BoolValues\":null,\"StringValues\":null,\"VersionValues\":null}}",
        f("int"),
        f("bool"),
        f("string"),
        f("version")
    )
}

/// Attribute and capacity names: a C identifier, optionally prefixed by a DNS subdomain.
pub(crate) fn qualified_attribute_name_error(name: &str) -> Option<(String, &'static str)> {
    let (domain, id) = match name.split_once('/') {
        Some((d, i)) => (Some(d), i),
        None => (None, name),
    };
    if let Some(d) = domain
        && !is_dns_subdomain(d)
    {
        return Some((d.to_string(), DNS_SUBDOMAIN_MSG));
    }
    if !is_c_identifier(id) {
        return Some((id.to_string(), C_IDENTIFIER_MSG));
    }
    None
}

pub(crate) fn validate_slice(obj: &Value) -> Vec<Cause> {
    let spec = &obj["spec"];
    let mut causes = Vec::new();
    let driver = spec
        .get("driver")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if driver.is_empty() {
        causes.push(Cause::required("spec.driver", ""));
    } else if !is_dns_subdomain(driver) {
        causes.push(Cause::invalid(
            "spec.driver",
            &Value::from(driver),
            DNS_SUBDOMAIN_MSG,
        ));
    }
    if spec
        .pointer("/pool/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .is_empty()
    {
        causes.push(Cause::required("spec.pool.name", ""));
    }
    if let Some(n) = spec
        .pointer("/pool/resourceSliceCount")
        .and_then(Value::as_i64)
    {
        if n <= 0 {
            causes.push(Cause::invalid(
                "spec.pool.resourceSliceCount",
                &Value::from(n),
                "must be greater than zero",
            ));
        }
    } else {
        causes.push(Cause::required("spec.pool.resourceSliceCount", ""));
    }
    let selection = [
        "nodeName",
        "nodeSelector",
        "allNodes",
        "perDeviceNodeSelection",
    ]
    .iter()
    .filter(|f| match spec.get(**f) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Bool(b)) => *b,
        Some(_) => true,
    })
    .count();
    if selection == 0 {
        causes.push(Cause::required(
            "spec",
            "exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required",
        ));
    } else if selection > 1 {
        causes.push(Cause::forbidden(
            "spec",
            "exactly one of `nodeName`, `nodeSelector`, `allNodes`, `perDeviceNodeSelection` is required, but multiple fields are set",
        ));
    }
    let present = |f: &str| spec.get(f).is_some_and(|v| !v.is_null());
    if present("sharedCounters") && present("devices") {
        causes.push(Cause::invalid(
            "spec",
            &Value::from(""),
            "only one of `sharedCounters` or `devices` is allowed",
        ));
    }
    let devices = spec
        .get("devices")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let has = |d: &Value, f: &str| {
        d.get(f)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    // ResourceSliceMaxDevices, or ResourceSliceMaxDevicesWithTaintsOrConsumesCounters.
    let max_devices = if devices
        .iter()
        .any(|d| has(d, "taints") || has(d, "consumesCounters"))
    {
        64
    } else {
        128
    };
    if devices.len() > max_devices {
        causes.push(Cause::too_many("spec.devices", devices.len(), max_devices));
    }
    causes.extend(counter_sets(spec));
    let mut seen = std::collections::HashSet::new();
    for (i, d) in devices.iter().enumerate() {
        let p = format!("spec.devices[{i}]");
        let name = d.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(format!("{p}.name"), ""));
        } else if !is_dns_label(name) {
            causes.push(Cause::invalid(
                format!("{p}.name"),
                &Value::from(name),
                DNS_LABEL_MSG,
            ));
        } else if !seen.insert(name) {
            causes.push(Cause::duplicate(format!("{p}.name"), &Value::from(name)));
        }
        if let Some(attrs) = d.get("attributes").and_then(Value::as_object) {
            for (k, v) in attrs {
                if let Some((bad, msg)) = qualified_attribute_name_error(k) {
                    causes.push(Cause::invalid(
                        format!("{p}.attributes"),
                        &Value::from(bad),
                        msg,
                    ));
                }
                let n = ATTRIBUTE_TYPES
                    .iter()
                    .filter(|t| v.get(**t).is_some_and(|x| !x.is_null()))
                    .count();
                if n != 1 {
                    causes.push(Cause {
                        reason: "FieldValueInvalid",
                        message: format!(
                            "Invalid value: {}: exactly one value must be specified",
                            render_attribute(v)
                        ),
                        field: format!("{p}.attributes[{k}]"),
                    });
                }
            }
        }
        causes.extend(counter_consumptions(d, &p));
        causes.extend(binding_parameters(d, &p));
        let multi = d.get("allowMultipleAllocations").and_then(Value::as_bool) == Some(true);
        if let Some(caps) = d.get("capacity").and_then(Value::as_object) {
            for (k, cap) in caps {
                if let Some((bad, msg)) = qualified_attribute_name_error(k) {
                    causes.push(Cause::invalid(
                        format!("{p}.capacity"),
                        &Value::from(bad),
                        msg,
                    ));
                }
                let Some(policy) = cap.get("requestPolicy").filter(|v| !v.is_null()) else {
                    continue;
                };
                let pp = format!("{p}.capacity[{k}].requestPolicy");
                if multi {
                    causes.extend(request_policy(cap.get("value"), policy, &pp));
                } else {
                    causes.push(Cause::forbidden(
                        pp,
                        "allowMultipleAllocations must be true",
                    ));
                }
            }
        }
    }
    causes
}

/// resource.k8s.io/v1 `BindingConditionsMaxSize` and `BindingFailureConditionsMaxSize`.
const BINDING_CONDITIONS_MAX: usize = 4;

/// `bindingConditions` and `bindingFailureConditions` (KEP-5007) of a device or an allocation
/// result at `p`, as upstream `validateDeviceBindingParameters`: at most 4 each, condition
/// types (qualified names), no duplicates, no overlap, and one list only with the other.
pub(crate) fn binding_parameters(v: &Value, p: &str) -> Vec<Cause> {
    let list = |f: &str| -> Vec<&str> {
        v.get(f)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|x| x.as_str().unwrap_or_default()).collect())
            .unwrap_or_default()
    };
    let (conds, failures) = (list("bindingConditions"), list("bindingFailureConditions"));
    let mut causes = Vec::new();
    for (field, items) in [
        ("bindingConditions", &conds),
        ("bindingFailureConditions", &failures),
    ] {
        let fp = format!("{p}.{field}");
        if items.len() > BINDING_CONDITIONS_MAX {
            causes.push(Cause::too_many(&fp, items.len(), BINDING_CONDITIONS_MAX));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in items.iter().enumerate() {
            for msg in qualified_name_errors(c) {
                causes.push(Cause::invalid(format!("{fp}[{i}]"), &Value::from(*c), &msg));
            }
            if !seen.insert(*c) {
                causes.push(Cause::duplicate(format!("{fp}[{i}]"), &Value::from(*c)));
            }
        }
    }
    for (i, c) in failures.iter().enumerate() {
        if conds.contains(c) {
            causes.push(Cause::invalid(
                format!("{p}.bindingFailureConditions[{i}]"),
                &Value::from(*c),
                "bindingFailureConditions must not overlap with bindingConditions",
            ));
        }
    }
    if conds.is_empty() && !failures.is_empty() {
        causes.push(Cause::invalid(
            format!("{p}.bindingConditions"),
            &Value::Array(Vec::new()),
            "bindingConditions are required to use bindingFailureConditions",
        ));
    }
    if failures.is_empty() && !conds.is_empty() {
        causes.push(Cause::invalid(
            format!("{p}.bindingFailureConditions"),
            &Value::Array(Vec::new()),
            "bindingFailureConditions are required to use bindingConditions",
        ));
    }
    causes
}

/// resource.k8s.io/v1 `CapacityRequestPolicyDiscreteMaxOptions`.
const MAX_VALID_VALUES: usize = 10;

/// A quantity field (string or number), if it parses.
fn quantity(v: Option<&Value>) -> Option<kube_quantity::Quantity> {
    match v? {
        Value::String(s) => kube_quantity::Quantity::parse(s).ok(),
        Value::Number(n) => kube_quantity::Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

/// A quantity in its canonical form, as the real server prints it in errors.
fn shown(q: &kube_quantity::Quantity) -> Value {
    Value::from(q.to_string())
}

/// A capacity's `requestPolicy` (KEP-5075), as upstream `validateRequestPolicy`: one of
/// `validValues` and `validRange`, a `default` that the policy allows, nothing above the
/// capacity's `value`.
fn request_policy(capacity: Option<&Value>, policy: &Value, p: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let cap = quantity(capacity).unwrap_or_else(|| kube_quantity::Quantity::from_int(0));
    let values = policy
        .get("validValues")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let range = policy.get("validRange").filter(|v| !v.is_null());
    let default = quantity(policy.get("default"));
    if !values.is_empty() && range.is_some() {
        causes.push(Cause::forbidden(
            p,
            "exactly one policy can be specified, cannot specify \"validValues\" and \"validRange\" at the same time",
        ));
        return causes;
    }
    if !values.is_empty() {
        let Some(default) = default else {
            causes.push(Cause::required(
                format!("{p}.default"),
                "required when validValues is defined",
            ));
            return causes;
        };
        let vp = format!("{p}.validValues");
        let options: Vec<_> = values.iter().map(|v| quantity(Some(v))).collect();
        for i in 0..options.len().saturating_sub(1) {
            if let (Some(a), Some(b)) = (&options[i], &options[i + 1])
                && a.nanos() > b.nanos()
            {
                causes.push(Cause::invalid(
                    format!("{vp}[{}]", i + 1),
                    &shown(b),
                    "values must be sorted in ascending order",
                ));
            }
        }
        if options.len() > MAX_VALID_VALUES {
            causes.push(Cause::too_many(vp.clone(), options.len(), MAX_VALID_VALUES));
        } else {
            let mut seen = std::collections::HashSet::new();
            for (i, o) in options.iter().enumerate() {
                let Some(o) = o else { continue };
                if o.nanos() > cap.nanos() {
                    causes.push(Cause::invalid(
                        format!("{vp}[{i}]"),
                        &shown(o),
                        &format!("option is larger than capacity value: {cap}"),
                    ));
                }
                if !seen.insert(o.value()) {
                    causes.push(Cause::duplicate(
                        format!("{vp}[{i}]"),
                        &Value::from(o.value().to_string()),
                    ));
                }
            }
        }
        if !options
            .iter()
            .flatten()
            .any(|o| o.nanos() == default.nanos())
        {
            causes.push(Cause::invalid(
                vp,
                &shown(&default),
                "default value is not valid according to the requestPolicy",
            ));
        }
        return causes;
    }
    let Some(range) = range else {
        return causes;
    };
    let Some(default) = default else {
        causes.push(Cause::required(
            format!("{p}.default"),
            "required when validRange is defined",
        ));
        return causes;
    };
    let rp = format!("{p}.validRange");
    let Some(min) = quantity(range.get("min")) else {
        causes.push(Cause::required(
            format!("{rp}.min"),
            "required when validRange is defined",
        ));
        return causes;
    };
    if min.nanos() > cap.nanos() {
        causes.push(Cause::invalid(
            format!("{rp}.min"),
            &shown(&min),
            &format!("min is larger than capacity value: {cap}"),
        ));
    }
    if default.nanos() < min.nanos() {
        causes.push(Cause::invalid(
            format!("{rp}.min"),
            &shown(&default),
            &format!("default is less than min: {min}"),
        ));
    }
    let max = quantity(range.get("max"));
    if let Some(max) = &max {
        if min.nanos() > max.nanos() {
            causes.push(Cause::invalid(
                format!("{rp}.max"),
                &shown(&min),
                &format!("min is larger than max: {max}"),
            ));
        }
        if max.nanos() > cap.nanos() {
            causes.push(Cause::invalid(
                format!("{rp}.max"),
                &shown(max),
                &format!("max is larger than capacity value: {cap}"),
            ));
        }
        if default.nanos() > max.nanos() {
            causes.push(Cause::invalid(
                format!("{rp}.max"),
                &shown(&default),
                &format!("default is more than max: {max}"),
            ));
        }
    }
    if let Some(step) = quantity(range.get("step")) {
        let sp = format!("{rp}.step");
        let one_step =
            kube_quantity::Quantity::from_nanos(min.nanos() + step.nanos(), step.format());
        if one_step.nanos() > cap.nanos() {
            causes.push(Cause::invalid(
                sp.clone(),
                &shown(&step),
                &format!("one step {one_step} is larger than capacity value: {cap}"),
            ));
        }
        for v in std::iter::once(&default).chain(max.as_ref()) {
            let (s, m) = (step.value(), min.value());
            if s != 0 && (v.value() - m) % s != 0 {
                causes.push(Cause::invalid(
                    sp.clone(),
                    &shown(v),
                    &format!("value is not a multiple of a given step ({step}) from ({min})"),
                ));
            }
        }
    }
    causes
}

/// resource.k8s.io/v1 `ResourceSliceMaxCounterSets`.
const MAX_COUNTER_SETS: usize = 8;
/// `ResourceSliceMaxCountersPerCounterSet` and `ResourceSliceMaxCountersPerDeviceCounterConsumption`.
const MAX_COUNTERS: usize = 32;
/// `ResourceSliceMaxDeviceCounterConsumptionsPerDevice`.
const MAX_COUNTER_CONSUMPTIONS: usize = 2;

/// A list of named entries as upstream's `validateSet`: too many items short-circuits, then each
/// item, then duplicates of `key` (reported at the item's index).
fn named_set(
    list: &[Value],
    max: usize,
    path: &str,
    key: &str,
    item: impl Fn(&Value, &str) -> Vec<Cause>,
) -> Vec<Cause> {
    if list.len() > max {
        return vec![Cause::too_many(path, list.len(), max)];
    }
    let mut causes = Vec::new();
    for (i, v) in list.iter().enumerate() {
        causes.extend(item(v, &format!("{path}[{i}]")));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, v) in list.iter().enumerate() {
        let k = v.get(key).and_then(Value::as_str).unwrap_or_default();
        if !seen.insert(k) {
            causes.push(Cause::duplicate(format!("{path}[{i}]"), &Value::from(k)));
        }
    }
    causes
}

/// A counter set or consumption: its name field (a DNS label) and its `counters` map.
fn counters_entry(v: &Value, p: &str, name_field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = v
        .get(name_field)
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required(format!("{p}.{name_field}"), ""));
    } else if !is_dns_label(name) {
        causes.push(Cause::invalid(
            format!("{p}.{name_field}"),
            &Value::from(name),
            DNS_LABEL_MSG,
        ));
    }
    match v.get("counters").and_then(Value::as_object) {
        None => causes.push(Cause::required(format!("{p}.counters"), "")),
        Some(m) if m.is_empty() => causes.push(Cause::required(format!("{p}.counters"), "")),
        Some(m) => {
            if m.len() > MAX_COUNTERS {
                causes.push(Cause::too_many(
                    format!("{p}.counters"),
                    m.len(),
                    MAX_COUNTERS,
                ));
            }
            for k in m.keys() {
                if !is_dns_label(k) {
                    causes.push(Cause::invalid(
                        format!("{p}.counters"),
                        &Value::from(k.as_str()),
                        DNS_LABEL_MSG,
                    ));
                }
            }
        }
    }
    causes
}

/// `spec.sharedCounters` (KEP-4815).
fn counter_sets(spec: &Value) -> Vec<Cause> {
    let sets = spec
        .get("sharedCounters")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    named_set(
        sets,
        MAX_COUNTER_SETS,
        "spec.sharedCounters",
        "name",
        |v, p| counters_entry(v, p, "name"),
    )
}

/// `consumesCounters` of the device at path `p` (KEP-4815).
fn counter_consumptions(device: &Value, p: &str) -> Vec<Cause> {
    let list = device
        .get("consumesCounters")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    named_set(
        list,
        MAX_COUNTER_CONSUMPTIONS,
        &format!("{p}.consumesCounters"),
        "counterSet",
        |v, p| counters_entry(v, p, "counterSet"),
    )
}

pub(crate) fn validate_device_class(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (j, sel) in obj
        .pointer("/spec/selectors")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let field = format!("spec.selectors[{j}].cel.expression");
        match sel.pointer("/cel/expression").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required(field, "")),
            Some(e) => {
                if let Err(msg) = check_selector(e) {
                    causes.push(Cause::invalid(field, &Value::from(e), &msg));
                }
            }
        }
    }
    // KEP-5004 (beta in v1.36): the extended resource that pods may request from this class.
    if let Some(name) = obj
        .pointer("/spec/extendedResourceName")
        .and_then(Value::as_str)
        && !is_extended_resource_name(name)
    {
        causes.push(Cause::invalid(
            "spec.extendedResourceName",
            &Value::from(name),
            "must be a valid extended resource name",
        ));
    }
    causes
}

/// Upstream `v1helper.IsExtendedResourceName`: a domain-prefixed name outside `kubernetes.io`
/// (and not `requests.`-prefixed) that stays a qualified name as `requests.<name>`.
pub(crate) fn is_extended_resource_name(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    if native || name.starts_with("requests.") {
        return false;
    }
    let quota = format!("requests.{name}");
    quota.split('/').count() == 2 && qualified_name_errors(&quota).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn device_classes_name_a_valid_extended_resource() {
        for ok in ["example.com/gpu", "nvidia.com/gpu"] {
            assert!(is_extended_resource_name(ok), "{ok}");
        }
        // The implicit `deviceclass.resource.kubernetes.io/<class>` names are native, not set.
        for bad in [
            "gpu",
            "kubernetes.io/gpu",
            "deviceclass.resource.kubernetes.io/x",
            "requests.example.com/gpu",
            "example.com/-gpu",
        ] {
            assert!(!is_extended_resource_name(bad), "{bad}");
        }
        let class = json!({"spec": {"extendedResourceName": "gpu"}});
        let causes = validate_device_class(&class);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.extendedResourceName");
        assert_eq!(
            causes[0].message,
            "Invalid value: \"gpu\": must be a valid extended resource name"
        );
        assert!(
            validate_device_class(&json!({"spec": {"extendedResourceName": "example.com/gpu"}}))
                .is_empty()
        );
    }
}
