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
fn qualified_attribute_name_error(name: &str) -> Option<(String, &'static str)> {
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
        if let Some(caps) = d.get("capacity").and_then(Value::as_object) {
            for k in caps.keys() {
                if let Some((bad, msg)) = qualified_attribute_name_error(k) {
                    causes.push(Cause::invalid(
                        format!("{p}.capacity"),
                        &Value::from(bad),
                        msg,
                    ));
                }
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
    causes
}
