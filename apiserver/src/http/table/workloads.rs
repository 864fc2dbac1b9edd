//! Table columns of Services, ReplicationControllers, ReplicaSets and StatefulSets, as kubectl
//! prints them (`kubectl get svc,rc,rs,sts`; `-o wide` adds the priority 1 columns).

use serde_json::Value;

use super::{Column, s};
use crate::resources::Kind;

const CONTAINERS: Column = ("Containers", "Names of each container in the template.", 1);
const IMAGES: Column = (
    "Images",
    "Images referenced by each container in the template.",
    1,
);
const SELECTOR: Column = ("Selector", "Label selector for pods.", 1);

/// The columns after Name, up to and including Age and the wide ones.
pub(super) fn columns(kind: Kind, name: Column, age: Column) -> Vec<Column> {
    match kind {
        Kind::Service => vec![
            name,
            ("Type", "type determines how the Service is exposed.", 0),
            (
                "Cluster-IP",
                "clusterIP is the IP address of the service.",
                0,
            ),
            (
                "External-IP",
                "The external IP addresses of the service.",
                0,
            ),
            (
                "Port(s)",
                "The list of ports that are exposed by this service.",
                0,
            ),
            age,
            (
                "Selector",
                "Route service traffic to pods with label keys and values matching this selector.",
                1,
            ),
        ],
        Kind::StatefulSet => vec![
            name,
            ("Ready", "Number of the pod with ready state", 0),
            age,
            CONTAINERS,
            IMAGES,
        ],
        _ => vec![
            name,
            ("Desired", "Number of desired pods.", 0),
            ("Current", "Number of actual replicas.", 0),
            (
                "Ready",
                "The number of ready replicas for this replica set.",
                0,
            ),
            age,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
    }
}

fn count(v: &Value, ptr: &str) -> Value {
    v.pointer(ptr).cloned().unwrap_or(Value::from(0))
}

fn containers(v: &Value) -> (String, String) {
    let list = v
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let names: Vec<&str> = list.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = list.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// `k=v,k2=v2` of a label map, `<none>` when empty.
fn label_map(m: Option<&Value>) -> String {
    let pairs: Vec<String> = m
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

/// A metav1 LabelSelector the way kubectl prints it (`app=web,tier in (a,b)`).
fn label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let mut parts: Vec<String> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let key = s(e, "/key");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        parts.push(match s(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn service_ports(v: &Value) -> String {
    let ports = v
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if ports.is_empty() {
        return "<none>".into();
    }
    let list: Vec<String> = ports
        .iter()
        .map(|p| {
            let port = p.get("port").cloned().unwrap_or(Value::from(0));
            let proto = s(p, "/protocol");
            match p.get("nodePort") {
                Some(n) => format!("{port}:{n}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    list.join(",")
}

fn external_ip(v: &Value) -> String {
    let spec_ips: Vec<&str> = v
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match s(v, "/spec/type") {
        "ExternalName" => s(v, "/spec/externalName").to_string(),
        "LoadBalancer" => {
            let mut ips: Vec<String> = spec_ips.iter().map(|s| s.to_string()).collect();
            for ing in v
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                let ip = if s(ing, "/ip").is_empty() {
                    s(ing, "/hostname")
                } else {
                    s(ing, "/ip")
                };
                ips.push(ip.to_string());
            }
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        _ if !spec_ips.is_empty() => spec_ips.join(","),
        _ => "<none>".into(),
    }
}

/// The cells of one row (same order as [`columns`]).
pub(super) fn cells(kind: Kind, v: &Value, name: String, created: String) -> Vec<Value> {
    match kind {
        Kind::Service => {
            let ip = s(v, "/spec/clusterIP");
            vec![
                name.into(),
                s(v, "/spec/type").into(),
                if ip.is_empty() { "<none>" } else { ip }.into(),
                external_ip(v).into(),
                service_ports(v).into(),
                created.into(),
                label_map(v.pointer("/spec/selector")).into(),
            ]
        }
        Kind::StatefulSet => {
            let (names, images) = containers(v);
            let ready = format!(
                "{}/{}",
                count(v, "/status/readyReplicas"),
                count(v, "/spec/replicas")
            );
            vec![
                name.into(),
                ready.into(),
                created.into(),
                names.into(),
                images.into(),
            ]
        }
        _ => {
            let (names, images) = containers(v);
            let selector = if kind == Kind::ReplicationController {
                label_map(v.pointer("/spec/selector"))
            } else {
                label_selector(v.pointer("/spec/selector"))
            };
            vec![
                name.into(),
                count(v, "/spec/replicas"),
                count(v, "/status/replicas"),
                count(v, "/status/readyReplicas"),
                created.into(),
                names.into(),
                images.into(),
                selector.into(),
            ]
        }
    }
}
