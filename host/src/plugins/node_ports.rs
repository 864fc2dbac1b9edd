//! NodePorts: a pod asking for a host port fits only nodes where no pod already holds that
//! port (upstream `pkg/scheduler/framework/plugins/nodeports`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{
    ClusterEvent, EventAction, ExtensionPoint, NodeInfo, Plugin, PodInfo, ResourceKind, Status,
};

use super::helpers::expect_no_args;
use super::registry::RegistryError;

/// The plugin's name in the configuration.
pub const NAME: &str = "NodePorts";
/// Filter reason when a wanted host port is taken on the node.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// The wildcard host IP: a port bound on it conflicts with that port on every IP.
const ANY_IP: &str = "0.0.0.0";

/// One `(hostIP, protocol, hostPort)` a container asks for, defaults applied as upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPort {
    ip: String,
    protocol: String,
    port: i32,
}

impl HostPort {
    /// Two host ports conflict on one protocol and port when their IPs match or either is the
    /// wildcard (upstream `HostPortInfo.CheckConflict`).
    fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == ANY_IP || other.ip == ANY_IP)
    }
}

/// The host ports of a pod's containers (upstream counts `spec.containers` only); a
/// `hostPort` of 0 asks for none.
fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|&hp| hp > 0)?;
            Some(HostPort {
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| ANY_IP.to_string()),
                protocol: p
                    .protocol
                    .clone()
                    .filter(|pr| !pr.is_empty())
                    .unwrap_or_else(|| "TCP".to_string()),
                port,
            })
        })
        .collect()
}

/// Filters out nodes where one of the pod's host ports is already in use.
#[derive(Debug, Default)]
pub struct NodePorts;

impl NodePorts {
    /// Creates the plugin; it takes no args.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] when args are given.
    pub fn new(args: &serde_json::Value) -> Result<Self, RegistryError> {
        expect_no_args(NAME, args)?;
        Ok(NodePorts)
    }
}

impl Plugin for NodePorts {
    fn name(&self) -> &str {
        NAME
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![ExtensionPoint::Filter]
    }

    /// A port frees when a pod goes away; a new node has all ports free (upstream registers
    /// Pod/Delete and Node/Add).
    fn requeue_on(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent {
                resource: ResourceKind::pod(),
                actions: vec![EventAction::Deleted],
            },
            ClusterEvent {
                resource: ResourceKind::node(),
                actions: vec![EventAction::Added],
            },
        ]
    }

    fn filter(
        &self,
        _state: &crate::framework::CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Vec<Status> {
        let wanted = host_ports(&pod.pod);
        nodes
            .iter()
            .map(|n| {
                if wanted.is_empty() {
                    return Status::success();
                }
                let taken = n.pods.iter().any(|other| {
                    host_ports(&other.pod)
                        .iter()
                        .any(|used| wanted.iter().any(|w| w.conflicts(used)))
                });
                if taken {
                    Status::unschedulable(ERR_REASON)
                } else {
                    Status::success()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Code, CycleState};
    use crate::plugins::testing::{node_info, pod};

    fn node_with(pods: &[&str]) -> Arc<NodeInfo> {
        let pods: Vec<PodInfo> = pods.iter().map(|p| pod(p)).collect();
        Arc::new(node_info("metadata: {name: a}", &pods))
    }

    const USES_8080: &str = "metadata: {name: old, namespace: d}\nspec: {nodeName: a, containers: [{name: c, ports: [{containerPort: 80, hostPort: 8080}]}]}";

    #[test]
    fn rejects_a_node_where_the_host_port_is_taken() {
        let p = pod(
            "metadata: {name: p}\nspec: {containers: [{name: c, ports: [{containerPort: 80, hostPort: 8080}]}]}",
        );
        let s = NodePorts.filter(&CycleState::default(), &p, &[node_with(&[USES_8080])]);
        assert_eq!(s[0].code, Code::Unschedulable);
        assert_eq!(s[0].reasons, [ERR_REASON]);
    }

    #[test]
    fn fits_when_the_protocol_or_the_ip_differ() {
        let udp = pod(
            "metadata: {name: p}\nspec: {containers: [{name: c, ports: [{containerPort: 80, hostPort: 8080, protocol: UDP}]}]}",
        );
        let n = node_with(&[
            "metadata: {name: old, namespace: d}\nspec: {nodeName: a, containers: [{name: c, ports: [{containerPort: 80, hostPort: 8080, hostIP: 10.0.0.1}]}]}",
        ]);
        assert!(NodePorts.filter(&CycleState::default(), &udp, &[n.clone()])[0].is_success());
        let other_ip = pod(
            "metadata: {name: p}\nspec: {containers: [{name: c, ports: [{containerPort: 80, hostPort: 8080, hostIP: 10.0.0.2}]}]}",
        );
        assert!(NodePorts.filter(&CycleState::default(), &other_ip, &[n.clone()])[0].is_success());
        let any_ip = pod(
            "metadata: {name: p}\nspec: {containers: [{name: c, ports: [{containerPort: 80, hostPort: 8080}]}]}",
        );
        assert!(!NodePorts.filter(&CycleState::default(), &any_ip, &[n])[0].is_success());
    }

    #[test]
    fn fits_every_node_when_the_pod_asks_for_no_host_port() {
        let p = pod(
            "metadata: {name: p}\nspec: {containers: [{name: c, ports: [{containerPort: 80}]}]}",
        );
        assert!(
            NodePorts.filter(&CycleState::default(), &p, &[node_with(&[USES_8080])])[0]
                .is_success()
        );
    }
}
