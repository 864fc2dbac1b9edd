//! Validation per kind, producing the real server's field errors. Every write is validated in full
//! before it is committed, so an invalid result (of a create, an update or a patch) changes nothing.

mod cel;
mod devicetaintrule;
mod meta;
pub(crate) mod names;
mod pod;
pub(crate) mod resourceclaim;
mod resourceslice;
mod scheduling;
mod storage;
mod workloads;

use serde_json::Value;

use crate::resources::{Kind, ResourceDef};
use crate::status::Cause;

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Subresource {
    /// The main resource: everything but `status` (for kinds with a status subresource).
    Main,
    /// `/status`: only `status`.
    Status,
}

/// Validation of a new object.
pub(crate) fn validate_create(res: &ResourceDef, obj: &Value) -> Vec<Cause> {
    let mut causes = kind_rules(res.kind_enum, obj);
    if causes.is_empty() {
        // The real server checks metadata only after the kind's own rules passed.
        causes = meta::validate_create(res, obj);
    } else {
        causes.extend(
            meta::validate_create(res, obj)
                .into_iter()
                .filter(|c| c.field == "metadata.name"),
        );
    }
    causes
}

/// Validation of an update (also of patch results and controller writes).
pub(crate) fn validate_update(
    res: &ResourceDef,
    new: &Value,
    old: &Value,
    sub: Subresource,
) -> Vec<Cause> {
    let mut causes = meta::validate_update(new, old);
    match sub {
        Subresource::Status => match res.kind_enum {
            Kind::ResourceClaim => causes.extend(resourceclaim::validate_status_update(new, old)),
            Kind::DeviceTaintRule => causes.extend(devicetaintrule::validate_status_update(new)),
            Kind::Pod => causes.extend(pod::validate_status_update(new)),
            _ => {}
        },
        Subresource::Main if res.kind_enum == Kind::DeviceTaintRule => {
            causes.extend(devicetaintrule::validate_rule(new, Some(old)));
        }
        Subresource::Main => {
            causes.extend(kind_rules(res.kind_enum, new));
            match res.kind_enum {
                Kind::ResourceClaim | Kind::ResourceClaimTemplate
                    if new.get("spec") != old.get("spec") =>
                {
                    causes.push(Cause::invalid(
                        "spec",
                        new.get("spec").unwrap_or(&Value::Null),
                        "field is immutable",
                    ));
                }
                Kind::Pod => causes.extend(pod::validate_spec_update(new, old)),
                Kind::PriorityClass => causes.extend(scheduling::validate_class_update(new, old)),
                Kind::PersistentVolume => causes.extend(storage::validate_pv_update(new, old)),
                Kind::PersistentVolumeClaim => {
                    causes.extend(storage::validate_pvc_update(new, old))
                }
                Kind::StorageClass => causes.extend(storage::validate_class_update(new, old)),
                Kind::Service | Kind::ReplicaSet | Kind::StatefulSet => {
                    causes.extend(workloads::validate_update(res.kind_enum, new, old))
                }
                _ => {}
            }
        }
    }
    causes
}

/// The kind's own rules for a complete object.
fn kind_rules(kind: Kind, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match kind {
        Kind::Pod => causes.extend(pod::validate_pod(obj)),
        Kind::ResourceClaim => {
            resourceclaim::validate_claim_spec(&obj["spec"], "spec", &mut causes)
        }
        Kind::ResourceClaimTemplate => {
            resourceclaim::validate_claim_spec(&obj["spec"]["spec"], "spec.spec", &mut causes)
        }
        Kind::ResourceSlice => causes.extend(resourceslice::validate_slice(obj)),
        Kind::DeviceClass => causes.extend(resourceslice::validate_device_class(obj)),
        Kind::Lease => {
            if let Some(d) = obj
                .pointer("/spec/leaseDurationSeconds")
                .and_then(Value::as_i64)
                && d <= 0
            {
                causes.push(Cause::invalid(
                    "spec.leaseDurationSeconds",
                    &Value::from(d),
                    "must be greater than 0",
                ));
            }
            if let Some(t) = obj
                .pointer("/spec/leaseTransitions")
                .and_then(Value::as_i64)
                && t < 0
            {
                causes.push(Cause::invalid(
                    "spec.leaseTransitions",
                    &Value::from(t),
                    "must be greater than or equal to 0",
                ));
            }
        }
        Kind::PriorityClass => causes.extend(scheduling::validate_class(obj)),
        Kind::PodDisruptionBudget => causes.extend(scheduling::validate_pdb(obj)),
        Kind::PersistentVolume => causes.extend(storage::validate_pv(obj)),
        Kind::PersistentVolumeClaim => causes.extend(storage::validate_pvc(obj)),
        Kind::StorageClass => causes.extend(storage::validate_class(obj)),
        Kind::Service | Kind::ReplicationController | Kind::ReplicaSet | Kind::StatefulSet => {
            causes.extend(workloads::validate(kind, obj))
        }
        Kind::DeviceTaintRule => causes.extend(devicetaintrule::validate_rule(obj, None)),
        Kind::Namespace | Kind::Node | Kind::Event => {}
    }
    causes
}

/// Checks a `MicroTime` string the way Go parses it (`2006-01-02T15:04:05.000000Z07:00`): exactly six
/// fractional digits. Returns the decode error text otherwise.
pub(crate) fn check_micro_time(s: &str) -> Result<(), String> {
    let layout = "2006-01-02T15:04:05.000000Z07:00";
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let err = |rest: &str, part: &str| {
        Err(format!(
            "parsing time \"{s}\" as \"{layout}\": cannot parse \"{rest}\" as \"{part}\""
        ))
    };
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10))
    {
        return err(s, "2006");
    }
    if b.get(10) != Some(&b'T') {
        return err(&s[10.min(s.len())..], "T");
    }
    if !(digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19))
    {
        return err(&s[11.min(s.len())..], "15");
    }
    if !(b.get(19) == Some(&b'.') && digits(20..26) && !b.get(26).is_some_and(u8::is_ascii_digit)) {
        return err(&s[19.min(s.len())..], ".000000");
    }
    let zone = &s[26..];
    if zone == "Z"
        || (zone.len() == 6
            && (zone.starts_with('+') || zone.starts_with('-'))
            && zone.as_bytes()[3] == b':')
    {
        Ok(())
    } else {
        err(zone, "Z07:00")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_time_needs_six_fractional_digits() {
        check_micro_time("2026-11-26T05:33:10.511702Z").unwrap();
        assert_eq!(
            check_micro_time("2026-01-02T03:04:05Z").unwrap_err(),
            "parsing time \"2026-01-02T03:04:05Z\" as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse \"Z\" as \".000000\""
        );
        assert_eq!(
            check_micro_time("2026-01-02 03:04:05").unwrap_err(),
            "parsing time \"2026-01-02 03:04:05\" as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse \" 03:04:05\" as \"T\""
        );
    }
}
