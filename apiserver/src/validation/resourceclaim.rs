//! ResourceClaim and ResourceClaimTemplate validation (reference captures 24, 36, 60).

use std::collections::HashSet;

use serde_json::Value;

use super::cel::check_selector;
use super::names::*;
use super::resourceslice::{binding_parameters, qualified_attribute_name_error};
use crate::status::Cause;

/// The most `status.reservedFor` entries a claim may have.
pub(crate) const RESERVED_FOR_MAX: usize = 256;

fn arr(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn s(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn validate_selectors(selectors: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    for (j, sel) in arr(selectors).iter().enumerate() {
        let expr = sel.pointer("/cel/expression").and_then(Value::as_str);
        let field = format!("{path}[{j}].cel.expression");
        match expr {
            None | Some("") => causes.push(Cause::required(field, "")),
            Some(e) => {
                if let Err(msg) = check_selector(e) {
                    causes.push(Cause::invalid(field, &Value::from(e), &msg));
                }
            }
        }
    }
}

/// Checks an `ExactDeviceRequest` or a `DeviceSubRequest` (they share these fields).
fn validate_exact(req: &Value, path: &str, causes: &mut Vec<Cause>) {
    let class = s(req, "deviceClassName");
    if class.is_empty() {
        causes.push(Cause::required(format!("{path}.deviceClassName"), ""));
    } else if !is_dns_subdomain(&class) {
        causes.push(Cause::invalid(
            format!("{path}.deviceClassName"),
            &Value::from(class),
            DNS_SUBDOMAIN_MSG,
        ));
    }
    let mode = s(req, "allocationMode");
    match mode.as_str() {
        "ExactCount" => {
            let count = req.get("count").and_then(Value::as_i64).unwrap_or(1);
            if count <= 0 {
                causes.push(Cause::invalid(
                    format!("{path}.count"),
                    &Value::from(count),
                    "must be greater than zero",
                ));
            }
        }
        "All" => {}
        other => causes.push(Cause::not_supported(
            format!("{path}.allocationMode"),
            &Value::from(other),
            &["All", "ExactCount"],
        )),
    }
    validate_selectors(req.get("selectors"), &format!("{path}.selectors"), causes);
    // Consumable capacity (KEP-5075): requested capacity names are qualified names.
    if let Some(requests) = req.pointer("/capacity/requests").and_then(Value::as_object) {
        for k in requests.keys() {
            if let Some((bad, msg)) = qualified_attribute_name_error(k) {
                causes.push(Cause::invalid(
                    format!("{path}.capacity.requests"),
                    &Value::from(bad),
                    msg,
                ));
            }
        }
    }
}

/// Upstream `validateUID` (for `shareID`): Go's `uuid.Validate`, then RFC 4122 normalized
/// form (36 characters, lowercase).
fn uid_error(uid: &str) -> Option<String> {
    let body = match uid.len() {
        32 | 36 => Some(uid),
        38 => uid.strip_prefix('{').and_then(|u| u.strip_suffix('}')),
        45 => uid.strip_prefix("urn:uuid:"),
        n => return Some(format!("error validating uid: invalid UUID length: {n}")),
    };
    let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    let valid = body.is_some_and(|b| match b.len() {
        32 => hex(b),
        36 => b.split('-').map(str::len).eq([8, 4, 4, 4, 12]) && hex(&b.replace('-', "")),
        _ => false,
    });
    if !valid {
        return Some("error validating uid: invalid UUID format".into());
    }
    (uid.len() != 36 || uid != uid.to_lowercase()).then(|| {
        "uid must be in RFC 4122 normalized form, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` with lowercase hexadecimal characters".into()
    })
}

/// Validates a `ResourceClaimSpec` found at `path` (`spec` of a claim, `spec.spec` of a template).
pub(crate) fn validate_claim_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let mut names = HashSet::new();
    for (i, req) in arr(spec.pointer("/devices/requests")).iter().enumerate() {
        let p = format!("{path}.devices.requests[{i}]");
        let name = s(req, "name");
        if name.is_empty() {
            causes.push(Cause::required(format!("{p}.name"), ""));
        } else if !is_dns_label(&name) {
            causes.push(Cause::invalid(
                format!("{p}.name"),
                &Value::from(name.as_str()),
                DNS_LABEL_MSG,
            ));
        } else if !names.insert(name.clone()) {
            causes.push(Cause::duplicate(format!("{p}.name"), &Value::from(name)));
        }
        match (req.get("exactly"), req.get("firstAvailable")) {
            (Some(e), None) => validate_exact(e, &format!("{p}.exactly"), causes),
            (None, Some(fa)) => {
                let mut sub_names = HashSet::new();
                for (k, sub) in arr(Some(fa)).iter().enumerate() {
                    let sp = format!("{p}.firstAvailable[{k}]");
                    let sn = s(sub, "name");
                    if sn.is_empty() {
                        causes.push(Cause::required(format!("{sp}.name"), ""));
                    } else if !is_dns_label(&sn) {
                        causes.push(Cause::invalid(format!("{sp}.name"), &Value::from(sn.as_str()), DNS_LABEL_MSG));
                    } else if !sub_names.insert(sn.clone()) {
                        causes.push(Cause::duplicate(format!("{sp}.name"), &Value::from(sn)));
                    }
                    validate_exact(sub, &sp, causes);
                }
            }
            (Some(_), Some(_)) => causes.push(Cause::forbidden(
                p,
                "exactly one of `exactly` or `firstAvailable` is required, but multiple fields are set",
            )),
            (None, None) => causes.push(Cause::required(p, "exactly one of `exactly` or `firstAvailable` is required")),
        }
    }
}

/// Whether `request` names a request of the claim (or `request/subrequest`).
fn request_exists(spec: &Value, request: &str) -> bool {
    let (main, sub) = match request.split_once('/') {
        Some((m, s)) => (m, Some(s)),
        None => (request, None),
    };
    arr(spec.pointer("/devices/requests")).iter().any(|r| {
        r.get("name").and_then(Value::as_str) == Some(main)
            && match sub {
                None => true,
                Some(sub) => arr(r.get("firstAvailable"))
                    .iter()
                    .any(|s| s.get("name").and_then(Value::as_str) == Some(sub)),
            }
    })
}

fn is_set(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null())
}

/// Validates a claim's `status` against the previous version (only writes through `/status` and the
/// controller can change it).
pub(crate) fn validate_status_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let status = &new["status"];
    let old_status = &old["status"];
    let reserved = arr(status.get("reservedFor"));
    let allocation = status.get("allocation").filter(|v| !v.is_null());

    if reserved.len() > RESERVED_FOR_MAX {
        causes.push(Cause::too_many(
            "status.reservedFor",
            reserved.len(),
            RESERVED_FOR_MAX,
        ));
    }
    let mut uids = HashSet::new();
    for (i, r) in reserved.iter().enumerate() {
        let p = format!("status.reservedFor[{i}]");
        for field in ["resource", "name", "uid"] {
            if s(r, field).is_empty() {
                causes.push(Cause::required(format!("{p}.{field}"), ""));
            }
        }
        let uid = s(r, "uid");
        if !uid.is_empty() && !uids.insert(uid.clone()) {
            causes.push(Cause::duplicate(p, &Value::from(uid)));
        }
    }
    if !reserved.is_empty() && allocation.is_none() {
        causes.push(Cause::forbidden(
            "status.reservedFor",
            "may not be specified when `allocated` is not set",
        ));
    }
    if let (Some(a), Some(old_a)) = (
        allocation,
        old_status.get("allocation").filter(|v| !v.is_null()),
    ) && a != old_a
    {
        causes.push(Cause::invalid("status.allocation", a, "field is immutable"));
    }
    if is_set(new.pointer("/metadata/deletionTimestamp")) {
        let old_uids: HashSet<String> = arr(old_status.get("reservedFor"))
            .iter()
            .map(|r| s(r, "uid"))
            .collect();
        if reserved.iter().any(|r| !old_uids.contains(&s(r, "uid"))) {
            causes.push(Cause::forbidden(
                "status.reservedFor",
                "new entries may not be added while `deallocationRequested` or `deletionTimestamp` are set",
            ));
        }
    }
    if let Some(a) = allocation {
        for (j, result) in arr(a.pointer("/devices/results")).iter().enumerate() {
            let p = format!("status.allocation.devices.results[{j}]");
            let request = s(result, "request");
            if request.is_empty() {
                causes.push(Cause::required(format!("{p}.request"), ""));
            } else if !request_exists(&new["spec"], &request) {
                causes.push(Cause::invalid(
                    format!("{p}.request"),
                    &Value::from(request),
                    "must be the name of a request in the claim or the name of a request and a subrequest separated by '/'",
                ));
            }
            for field in ["driver", "pool", "device"] {
                if s(result, field).is_empty() {
                    causes.push(Cause::required(format!("{p}.{field}"), ""));
                }
            }
            if let Some(id) = result.get("shareID").and_then(Value::as_str)
                && let Some(msg) = uid_error(id)
            {
                causes.push(Cause::invalid(
                    format!("{p}.shareID"),
                    &Value::from(id),
                    &msg,
                ));
            }
            causes.extend(binding_parameters(result, &p));
        }
    }
    causes.extend(device_statuses(status, allocation));
    causes
}

/// resource.k8s.io/v1 `AllocatedDeviceStatusMaxConditions`.
const DEVICE_STATUS_MAX_CONDITIONS: usize = 8;

/// `status.devices` (written by drivers; binding conditions live here): each entry names an
/// allocated device (driver, pool, device and shareID), once, with at most 8 conditions of
/// distinct types whose status is True, False or Unknown.
fn device_statuses(status: &Value, allocation: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let allocated: HashSet<(String, String, String, String)> = allocation
        .map(|a| arr(a.pointer("/devices/results")))
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                s(r, "driver"),
                s(r, "pool"),
                s(r, "device"),
                s(r, "shareID"),
            )
        })
        .collect();
    let mut seen = HashSet::new();
    for (i, d) in arr(status.get("devices")).iter().enumerate() {
        let p = format!("status.devices[{i}]");
        let id = (
            s(d, "driver"),
            s(d, "pool"),
            s(d, "device"),
            s(d, "shareID"),
        );
        for (field, value) in [("driver", &id.0), ("pool", &id.1), ("device", &id.2)] {
            if value.is_empty() {
                causes.push(Cause::required(format!("{p}.{field}"), ""));
            }
        }
        if !seen.insert(id.clone()) {
            causes.push(Cause::duplicate(p.clone(), &json_id(&id)));
        } else if !allocated.contains(&id) {
            causes.push(Cause::invalid(
                p.clone(),
                &json_id(&id),
                "must be an allocated device in the claim",
            ));
        }
        let conditions = arr(d.get("conditions"));
        if conditions.len() > DEVICE_STATUS_MAX_CONDITIONS {
            causes.push(Cause::too_many(
                format!("{p}.conditions"),
                conditions.len(),
                DEVICE_STATUS_MAX_CONDITIONS,
            ));
        }
        let mut types = HashSet::new();
        for (j, c) in conditions.iter().enumerate() {
            let cp = format!("{p}.conditions[{j}]");
            let t = s(c, "type");
            if t.is_empty() {
                causes.push(Cause::required(format!("{cp}.type"), "must be set"));
            } else if !types.insert(t.clone()) {
                causes.push(Cause::duplicate(format!("{cp}.type"), &Value::from(t)));
            }
            let st = s(c, "status");
            if !["True", "False", "Unknown"].contains(&st.as_str()) {
                causes.push(Cause::not_supported(
                    format!("{cp}.status"),
                    &Value::from(st),
                    &["False", "True", "Unknown"],
                ));
            }
        }
    }
    causes
}

/// A device status entry's identity as the server prints it.
fn json_id(id: &(String, String, String, String)) -> Value {
    let mut v = serde_json::json!({"driver": id.0, "pool": id.1, "device": id.2});
    if !id.3.is_empty() {
        v["shareID"] = Value::from(id.3.clone());
    }
    v
}
