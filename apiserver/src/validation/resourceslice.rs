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
    let devices = spec
        .get("devices")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if devices.len() > 128 {
        causes.push(Cause::too_many("spec.devices", devices.len(), 128));
    }
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
