//! NodeName: a pod with `spec.nodeName` set fits only that node
//! (upstream `pkg/scheduler/framework/plugins/nodename`).

use std::sync::Arc;

use crate::framework::{
    ClusterEvent, EventAction, ExtensionPoint, NodeInfo, Plugin, PodInfo, ResourceKind, Status,
};

use super::helpers::expect_no_args;
use super::registry::RegistryError;

/// The plugin's name in the configuration.
pub const NAME: &str = "NodeName";
/// Filter reason when the pod asks for another node.
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

/// Filters out every node but the one named in `spec.nodeName`.
#[derive(Debug, Default)]
pub struct NodeName;

impl NodeName {
    /// Creates the plugin; it takes no args.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] when args are given.
    pub fn new(args: &serde_json::Value) -> Result<Self, RegistryError> {
        expect_no_args(NAME, args)?;
        Ok(NodeName)
    }
}

impl Plugin for NodeName {
    fn name(&self) -> &str {
        NAME
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![ExtensionPoint::Filter]
    }

    /// Only a new node can have the requested name (upstream registers Node/Add).
    fn requeue_on(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent {
            resource: ResourceKind::node(),
            actions: vec![EventAction::Added],
        }]
    }

    fn filter(
        &self,
        _state: &crate::framework::CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Vec<Status> {
        let wanted = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty());
        nodes
            .iter()
            .map(|n| match wanted {
                Some(w) if w != n.name => Status::unresolvable(ERR_REASON),
                _ => Status::success(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Code, CycleState};
    use crate::plugins::testing::{node, pod};

    #[test]
    fn fits_only_the_node_the_pod_names() {
        let p = pod("metadata: {name: p}\nspec: {nodeName: b, containers: []}");
        let nodes = [node("metadata: {name: a}"), node("metadata: {name: b}")];
        let s = NodeName.filter(&CycleState::default(), &p, &nodes);
        assert_eq!(s[0].code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s[0].reasons, [ERR_REASON]);
        assert!(s[1].is_success());
    }

    #[test]
    fn fits_every_node_when_the_pod_names_none() {
        let p = pod("metadata: {name: p}\nspec: {containers: []}");
        let s = NodeName.filter(&CycleState::default(), &p, &[node("metadata: {name: a}")]);
        assert!(s[0].is_success());
    }
}
