//! `meta.k8s.io/v1` Table responses for `kubectl get` (reference 53), with the columns kubectl
//! users know for each kind.

mod workloads;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::resources::{Kind, ResourceDef};
use crate::store::Stored;

/// `includeObject=`: what each row carries besides its cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub(crate) fn parse(s: Option<&str>) -> Include {
        match s {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// (name, description, priority): priority 1 columns show only with `-o wide`.
type Column = (&'static str, &'static str, u8);

fn columns(kind: Kind) -> Vec<Column> {
    let name = ("Name", NAME_DESC, 0);
    let age = ("Age", AGE_DESC, 0);
    match kind {
        Kind::Node => vec![
            name,
            ("Status", "The status of the node", 0),
            ("Roles", "The roles of the node", 0),
            age,
            ("Version", "Kubelet Version reported by the node.", 0),
            ("Internal-IP", "List of addresses reachable to the node.", 1),
            (
                "OS-Image",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                1,
            ),
        ],
        Kind::Pod => vec![
            name,
            (
                "Ready",
                "The aggregate readiness state of this pod for accepting traffic.",
                0,
            ),
            (
                "Status",
                "The aggregate status of the containers in this pod.",
                0,
            ),
            (
                "Restarts",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                0,
            ),
            age,
            (
                "IP",
                "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                1,
            ),
            (
                "Node",
                "NodeName indicates in which node this pod is scheduled.",
                1,
            ),
            (
                "Nominated Node",
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
                1,
            ),
        ],
        Kind::Namespace => vec![name, ("Status", "The status of the namespace", 0), age],
        Kind::Event => vec![
            ("Last Seen", "The last time the event was observed.", 0),
            ("Type", "Type of this event (Normal, Warning).", 0),
            ("Reason", "Why the action was taken.", 0),
            ("Object", "The object this event is about.", 0),
            (
                "Message",
                "A human-readable description of the status of this operation.",
                0,
            ),
            name,
        ],
        Kind::Lease => vec![name, ("Holder", "The holder of the lease.", 0), age],
        Kind::DeviceClass | Kind::ResourceClaimTemplate | Kind::DeviceTaintRule => vec![name, age],
        Kind::ResourceSlice => vec![
            name,
            (
                "Node",
                "The node that provides the devices of this slice.",
                0,
            ),
            ("Driver", "The driver that publishes this slice.", 0),
            ("Pool", "The pool this slice belongs to.", 0),
            age,
        ],
        Kind::PriorityClass => vec![
            name,
            (
                "Value",
                "value represents the integer value of this priority class.",
                0,
            ),
            (
                "Global-Default",
                "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
                0,
            ),
            age,
            (
                "PreemptionPolicy",
                "preemptionPolicy is the Policy for preempting pods with lower priority.",
                0,
            ),
        ],
        Kind::PodDisruptionBudget => vec![
            name,
            (
                "Min Available",
                "The minimum number of pods that must be available simultaneously.",
                0,
            ),
            (
                "Max Unavailable",
                "The maximum number of pods that may be unavailable simultaneously.",
                0,
            ),
            (
                "Allowed Disruptions",
                "Calculated number of pods that may be disrupted at this time.",
                0,
            ),
            age,
        ],
        Kind::PersistentVolume => vec![
            name,
            (
                "Capacity",
                "capacity is the description of the persistent volume's resources and capacity.",
                0,
            ),
            (
                "Access Modes",
                "accessModes contains all ways the volume can be mounted.",
                0,
            ),
            (
                "Reclaim Policy",
                "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
                0,
            ),
            (
                "Status",
                "phase indicates if a volume is available, bound to a claim, or released by a claim.",
                0,
            ),
            (
                "Claim",
                "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
                0,
            ),
            ("StorageClass", "StorageClass of the pv", 0),
            (
                "VolumeAttributesClass",
                "VolumeAttributesClass of the pv",
                0,
            ),
            (
                "Reason",
                "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
                0,
            ),
            age,
            (
                "VolumeMode",
                "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
                1,
            ),
        ],
        Kind::PersistentVolumeClaim => vec![
            name,
            (
                "Status",
                "phase represents the current phase of PersistentVolumeClaim.",
                0,
            ),
            (
                "Volume",
                "volumeName is the binding reference to the PersistentVolume backing this claim.",
                0,
            ),
            (
                "Capacity",
                "capacity represents the actual resources of the underlying volume.",
                0,
            ),
            (
                "Access Modes",
                "accessModes contains the actual access modes the volume backing the PVC has.",
                0,
            ),
            ("StorageClass", "StorageClass of the pvc", 0),
            (
                "VolumeAttributesClass",
                "VolumeAttributesClass of the pvc",
                0,
            ),
            age,
            (
                "VolumeMode",
                "volumeMode defines what type of volume is required by the claim.",
                1,
            ),
        ],
        Kind::StorageClass => vec![
            name,
            (
                "Provisioner",
                "provisioner indicates the type of the provisioner.",
                0,
            ),
            (
                "ReclaimPolicy",
                "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.",
                0,
            ),
            (
                "VolumeBindingMode",
                "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
                0,
            ),
            (
                "AllowVolumeExpansion",
                "allowVolumeExpansion shows whether the storage class allow volume expand.",
                0,
            ),
            age,
        ],
        Kind::Service | Kind::ReplicationController | Kind::ReplicaSet | Kind::StatefulSet => {
            workloads::columns(kind, name, age)
        }
        Kind::ResourceClaim => {
            vec![
                name,
                (
                    "State",
                    "A summary of the current state (allocated, pending, reserved, etc.).",
                    0,
                ),
                age,
            ]
        }
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn unset_or(x: &str) -> String {
    if x.is_empty() {
        "<unset>".into()
    } else {
        x.into()
    }
}

fn or_none(x: &str) -> String {
    if x.is_empty() {
        "<none>".into()
    } else {
        x.into()
    }
}

/// Access modes as kubectl abbreviates them (`RWO,ROX,RWX,RWOP`, in that order).
fn access_modes(modes: Option<&Value>) -> String {
    let has = |m: &str| {
        modes
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == m))
    };
    let short: Vec<&str> = [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, s)| *s)
    .collect();
    short.join(",")
}

/// Human-readable age, like kubectl's `HumanDuration` (`7m46s`, `5d`, `2y3d`).
pub(crate) fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if days < 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if days < 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if years < 8 {
        let d = days % 365;
        return if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        };
    }
    format!("{years}y")
}

fn age(v: &Value, ptr: &str) -> String {
    let t = s(v, ptr);
    match t.parse::<jiff::Timestamp>() {
        Ok(ts) => human_duration(jiff::Timestamp::now().as_second() - ts.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

fn cells(kind: Kind, v: &Value) -> Vec<Value> {
    let name = s(v, "/metadata/name").to_string();
    let created = age(v, "/metadata/creationTimestamp");
    match kind {
        Kind::Node => {
            let ready = v
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else if c["status"] == "False" {
                        "NotReady"
                    } else {
                        "Unknown"
                    }
                })
                .unwrap_or("Unknown");
            let mut status = ready.to_string();
            if v.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<&str> = v
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .collect()
                })
                .unwrap_or_default();
            let ip = v
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
                .and_then(|a| a["address"].as_str())
                .unwrap_or_default();
            vec![
                name.into(),
                status.into(),
                or_none(&roles.join(",")).into(),
                created.into(),
                s(v, "/status/nodeInfo/kubeletVersion").into(),
                or_none(ip).into(),
                or_none(s(v, "/status/nodeInfo/osImage")).into(),
            ]
        }
        Kind::Pod => {
            let containers = v
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = v
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |c| c.iter().filter(|c| c["ready"] == true).count());
            let mut status = s(v, "/status/phase").to_string();
            if let Some(r) = v.pointer("/status/reason").and_then(Value::as_str) {
                status = r.to_string();
            }
            if v.pointer("/metadata/deletionTimestamp")
                .is_some_and(|t| !t.is_null())
            {
                status = "Terminating".into();
            } else if v
                .pointer("/spec/schedulingGates")
                .and_then(Value::as_array)
                .is_some_and(|g| !g.is_empty())
            {
                status = "SchedulingGated".into();
            }
            vec![
                name.into(),
                format!("{ready}/{containers}").into(),
                status.into(),
                "0".into(),
                created.into(),
                or_none(s(v, "/status/podIP")).into(),
                or_none(s(v, "/spec/nodeName")).into(),
                or_none(s(v, "/status/nominatedNodeName")).into(),
            ]
        }
        Kind::Namespace => vec![name.into(), s(v, "/status/phase").into(), created.into()],
        Kind::Event => {
            // Works on both event shapes (the table is built from what is served).
            let last = [
                "/lastTimestamp",
                "/deprecatedLastTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .find(|p| v.pointer(p).is_some_and(|t| t.is_string()))
            .map(|p| age(v, p))
            .unwrap_or_else(|| "<unknown>".into());
            let obj = v
                .get("involvedObject")
                .or_else(|| v.get("regarding"))
                .cloned()
                .unwrap_or(Value::Null);
            let object = format!(
                "{}/{}",
                s(&obj, "/kind").to_ascii_lowercase(),
                s(&obj, "/name")
            );
            let message = v
                .get("message")
                .or_else(|| v.get("note"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            vec![
                last.into(),
                s(v, "/type").into(),
                s(v, "/reason").into(),
                object.into(),
                message.into(),
                name.into(),
            ]
        }
        Kind::Lease => vec![
            name.into(),
            or_none(s(v, "/spec/holderIdentity")).into(),
            created.into(),
        ],
        Kind::DeviceClass | Kind::ResourceClaimTemplate | Kind::DeviceTaintRule => {
            vec![name.into(), created.into()]
        }
        Kind::PriorityClass => vec![
            name.into(),
            v.get("value").cloned().unwrap_or(Value::from(0)),
            v.get("globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .into(),
            created.into(),
            s(v, "/preemptionPolicy").into(),
        ],
        Kind::PodDisruptionBudget => {
            let int_or_str = |ptr: &str| match v.pointer(ptr) {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => "N/A".to_string(),
            };
            vec![
                name.into(),
                int_or_str("/spec/minAvailable").into(),
                int_or_str("/spec/maxUnavailable").into(),
                v.pointer("/status/disruptionsAllowed")
                    .cloned()
                    .unwrap_or(Value::from(0)),
                created.into(),
            ]
        }
        Kind::PersistentVolume => {
            let claim = match s(v, "/spec/claimRef/name") {
                "" => String::new(),
                n => format!("{}/{n}", s(v, "/spec/claimRef/namespace")),
            };
            vec![
                name.into(),
                s(v, "/spec/capacity/storage").into(),
                access_modes(v.pointer("/spec/accessModes")).into(),
                s(v, "/spec/persistentVolumeReclaimPolicy").into(),
                s(v, "/status/phase").into(),
                claim.into(),
                s(v, "/spec/storageClassName").into(),
                unset_or(s(v, "/spec/volumeAttributesClassName")).into(),
                s(v, "/status/reason").into(),
                created.into(),
                s(v, "/spec/volumeMode").into(),
            ]
        }
        Kind::PersistentVolumeClaim => {
            // Capacity and access modes are the bound volume's, so empty until bound.
            let bound = !s(v, "/spec/volumeName").is_empty();
            let (capacity, modes) = if bound {
                (
                    s(v, "/status/capacity/storage"),
                    access_modes(v.pointer("/status/accessModes")),
                )
            } else {
                ("", String::new())
            };
            let deleting = v
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|t| !t.is_null());
            vec![
                name.into(),
                if deleting {
                    "Terminating"
                } else {
                    s(v, "/status/phase")
                }
                .into(),
                s(v, "/spec/volumeName").into(),
                capacity.into(),
                modes.into(),
                s(v, "/spec/storageClassName").into(),
                unset_or(s(v, "/spec/volumeAttributesClassName")).into(),
                created.into(),
                s(v, "/spec/volumeMode").into(),
            ]
        }
        Kind::StorageClass => {
            let default = s(
                v,
                "/metadata/annotations/storageclass.kubernetes.io~1is-default-class",
            ) == "true"
                || s(
                    v,
                    "/metadata/annotations/storageclass.beta.kubernetes.io~1is-default-class",
                ) == "true";
            let shown = if default {
                format!("{name} (default)")
            } else {
                name
            };
            vec![
                shown.into(),
                s(v, "/provisioner").into(),
                s(v, "/reclaimPolicy").into(),
                s(v, "/volumeBindingMode").into(),
                v.get("allowVolumeExpansion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .into(),
                created.into(),
            ]
        }
        Kind::ResourceSlice => vec![
            name.into(),
            or_none(s(v, "/spec/nodeName")).into(),
            s(v, "/spec/driver").into(),
            s(v, "/spec/pool/name").into(),
            created.into(),
        ],
        Kind::Service | Kind::ReplicationController | Kind::ReplicaSet | Kind::StatefulSet => {
            workloads::cells(kind, v, name, created)
        }
        Kind::ResourceClaim => {
            // Same summary as kubectl's printer for claims.
            let mut states = Vec::new();
            let deleting = v
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|t| !t.is_null());
            if deleting {
                states.push("deleted");
            }
            if v.pointer("/status/allocation").is_none_or(Value::is_null) {
                if !deleting {
                    states.push("pending");
                }
            } else {
                states.push("allocated");
                if v.pointer("/status/reservedFor")
                    .and_then(Value::as_array)
                    .is_some_and(|r| !r.is_empty())
                {
                    states.push("reserved");
                }
            }
            vec![name.into(), states.join(",").into(), created.into()]
        }
    }
}

/// Renders a Table of `items` (already in the served representation).
pub(crate) fn render(
    res: &ResourceDef,
    items: &[Arc<Stored>],
    rv: u64,
    cont: Option<&str>,
    include: Include,
) -> Vec<u8> {
    let defs: Vec<Value> = columns(res.kind_enum)
        .into_iter()
        .map(|(name, description, priority)| {
            json!({"name": name, "type": "string", "format": if name == "Name" { "name" } else { "" },
                   "description": description, "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let value = o.value();
            let cells = cells(res.kind_enum, &value);
            let object = match include {
                Include::None => Value::Null,
                Include::Object => value,
                Include::Metadata => {
                    let mut meta = value.get("metadata").cloned().unwrap_or_else(|| json!({}));
                    if let Some(m) = meta.as_object_mut() {
                        m.remove("managedFields");
                    }
                    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
                }
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = c.into();
    }
    let table = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows});
    serde_json::to_vec(&table).expect("tables serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(466), "7m46s");
        assert_eq!(human_duration(3600 * 50), "2d2h");
    }
}
