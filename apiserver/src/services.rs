//! Service address allocation, as kube-apiserver's service REST storage does on create: a cluster
//! IP from the service CIDR and node ports from the node port range, both unique in the cluster.
//!
//! The cluster is single-stack IPv4 with the service CIDR 10.96.0.0/12 (kubeadm's default) and
//! node ports 30000-32767. Addresses are taken lowest-free-first (the real allocator picks at
//! random), and 10.96.0.1 stays reserved for the `kubernetes` Service, which this server does not
//! create. Allocation happens on create only; an update keeps what was allocated.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::registry::Registry;
use crate::resources::Kind;
use crate::status::{ApiError, Cause};

/// The service CIDR as `kube-apiserver --service-cluster-ip-range` would name it.
pub(crate) const SERVICE_CIDR: &str = "10.96.0.0/12";
const NET: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const PREFIX: u32 = 12;
/// `--service-node-port-range`.
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

fn in_range(ip: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - PREFIX);
    u32::from(ip) & mask == NET
}

/// Fills `spec.clusterIP(s)`, `ipFamilies`, `ipFamilyPolicy` and node ports of a new Service.
/// Call it after the static defaults, with the registry's allocation lock held until the Service
/// is stored, so two creates cannot take the same address.
///
/// # Errors
///
/// 422 as the real allocator: a requested IP or node port out of range or already taken, or a
/// dual-stack / IPv6 request on this single-stack cluster.
pub(crate) fn allocate(reg: &Registry, svc: &mut Value) -> Result<(), ApiError> {
    let name = svc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let res = Kind::Service.canonical();
    let spec = &mut svc["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if kind == "ExternalName" {
        return Ok(());
    }
    let mut causes = Vec::new();
    // clusterIP and clusterIPs[0] describe the same address; either may be given.
    let first = spec["clusterIPs"]
        .get(0)
        .and_then(Value::as_str)
        .map(str::to_string);
    let requested = spec["clusterIP"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or(first);
    match spec["ipFamilyPolicy"].as_str() {
        Some("RequireDualStack") => causes.push(Cause::invalid(
            "spec.ipFamilyPolicy",
            &Value::from("RequireDualStack"),
            "this cluster is not configured for dual-stack services",
        )),
        None => spec["ipFamilyPolicy"] = "SingleStack".into(),
        _ => {}
    }
    for (i, family) in spec["ipFamilies"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if family != "IPv4" {
            causes.push(Cause::invalid(
                format!("spec.ipFamilies[{i}]"),
                family,
                "not configured on this cluster",
            ));
        }
    }
    spec["ipFamilies"] = json!(["IPv4"]);
    let ip = match requested.as_deref() {
        Some("None") => Some("None".to_string()),
        Some(s) => match s.parse::<Ipv4Addr>() {
            Err(_) => {
                // Reported by validation, which checks the IP's format.
                Some(s.to_string())
            }
            Ok(ip) if !in_range(ip) => {
                causes.push(cluster_ips_invalid(
                    s,
                    &format!("the provided IP ({s}) is not in the valid range. The range of valid IPs is {SERVICE_CIDR}"),
                ));
                None
            }
            Ok(_) if used_ips(reg).contains(s) => {
                causes.push(cluster_ips_invalid(s, "provided IP is already allocated"));
                None
            }
            Ok(_) => Some(s.to_string()),
        },
        None => match free_ip(reg) {
            Some(ip) => Some(ip),
            None => {
                return Err(ApiError::internal(
                    "failed to allocate a serviceIP: range is full",
                ));
            }
        },
    };
    if let Some(ip) = ip {
        spec["clusterIP"] = ip.clone().into();
        spec["clusterIPs"] = json!([ip]);
    }
    let wants_node_ports = kind == "NodePort"
        || (kind == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"] != false);
    if wants_node_ports && let Some(ports) = spec["ports"].as_array_mut() {
        let mut used = used_node_ports(reg);
        for (i, p) in ports.iter_mut().enumerate() {
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(n) if !NODE_PORTS.contains(&n) => causes.push(Cause::invalid(
                    format!("spec.ports[{i}].nodePort"),
                    &Value::from(n),
                    &format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        NODE_PORTS.start(),
                        NODE_PORTS.end()
                    ),
                )),
                Some(n) if !used.insert(n) => causes.push(Cause::invalid(
                    format!("spec.ports[{i}].nodePort"),
                    &Value::from(n),
                    "provided port is already allocated",
                )),
                Some(_) => {}
                None => match NODE_PORTS.clone().find(|n| !used.contains(n)) {
                    Some(n) => {
                        used.insert(n);
                        p["nodePort"] = n.into();
                    }
                    None => {
                        return Err(ApiError::internal(
                            "failed to allocate a nodePort: range is full",
                        ));
                    }
                },
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res, &name, causes))
    }
}

/// An update keeps the allocated addresses when it leaves them out (upstream
/// `patchAllocatedValues`), so a PUT of a manifest without `clusterIP` does not try to change it.
pub(crate) fn keep_allocations(old: &Value, new: &mut Value) {
    let (Some(old_spec), Some(new_spec)) = (
        old.get("spec"),
        new.get_mut("spec").and_then(Value::as_object_mut),
    ) else {
        return;
    };
    if old_spec.get("type") != new_spec.get("type") {
        return;
    }
    for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        let missing = new_spec
            .get(field)
            .is_none_or(|v| v.is_null() || v == "" || v.as_array().is_some_and(Vec::is_empty));
        if missing && let Some(v) = old_spec.get(field) {
            new_spec.insert(field.into(), v.clone());
        }
    }
    // Node ports are kept per port number and protocol.
    let old_ports = old_spec["ports"].as_array().cloned().unwrap_or_default();
    if let Some(ports) = new_spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter(|p| p.get("nodePort").is_none()) {
            if let Some(o) = old_ports
                .iter()
                .find(|o| o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol"))
                && let Some(n) = o.get("nodePort")
            {
                p["nodePort"] = n.clone();
            }
        }
    }
}

/// `spec.clusterIPs: Invalid value: []string{"<ip>"}: failed to allocate IP <ip>: <why>`.
fn cluster_ips_invalid(ip: &str, why: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        message: format!("Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: {why}"),
        field: "spec.clusterIPs".into(),
    }
}

fn used_ips(reg: &Registry) -> HashSet<String> {
    let (items, _) = reg.store.snapshot(Kind::Service, None);
    items
        .iter()
        .map(|s| s.field(Kind::Service, "spec.clusterIP").to_string())
        .collect()
}

/// The lowest free address after the network address and the reserved `.1`.
fn free_ip(reg: &Registry) -> Option<String> {
    let used = used_ips(reg);
    let size = 1u32 << (32 - PREFIX);
    (2..size - 1)
        .map(|i| Ipv4Addr::from(NET + i).to_string())
        .find(|ip| !used.contains(ip))
}

fn used_node_ports(reg: &Registry) -> HashSet<i64> {
    let (items, _) = reg.store.snapshot(Kind::Service, None);
    items
        .iter()
        .flat_map(|s| {
            s.value()["spec"]["ports"]
                .as_array()
                .map(|ports| {
                    ports
                        .iter()
                        .filter_map(|p| p.get("nodePort").and_then(Value::as_i64))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_cidr_is_ten_ninety_six_slash_twelve() {
        assert!(in_range("10.96.0.10".parse().unwrap()));
        assert!(in_range("10.111.255.254".parse().unwrap()));
        assert!(!in_range("10.112.0.1".parse().unwrap()));
        assert!(!in_range("10.0.0.5".parse().unwrap()));
    }

    #[test]
    fn updates_keep_the_allocated_addresses() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.2", "clusterIPs": ["10.96.0.2"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30000}]}});
        let mut new =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
        keep_allocations(&old, &mut new);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.2");
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30000);
    }
}
