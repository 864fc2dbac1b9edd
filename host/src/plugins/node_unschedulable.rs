//! NodeUnschedulable: a node with `spec.unschedulable` (cordoned) takes only pods that tolerate
//! the `node.kubernetes.io/unschedulable:NoSchedule` taint
//! (upstream `pkg/scheduler/framework/plugins/nodeunschedulable`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Taint;

use crate::framework::{
    ClusterEvent, CycleState, EventAction, ExtensionPoint, NodeInfo, Plugin, PodInfo, ResourceKind,
    Status,
};

use super::helpers::{expect_no_args, tolerations_tolerate};
use super::registry::RegistryError;

/// The plugin's name in the configuration.
pub const NAME: &str = "NodeUnschedulable";
/// Filter reason for a cordoned node.
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// The taint a pod must tolerate to land on a cordoned node.
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Filters out cordoned nodes.
#[derive(Debug)]
pub struct NodeUnschedulable {
    /// The taint tolerations are checked against, built once.
    taint: Taint,
}

impl NodeUnschedulable {
    /// Creates the plugin; it takes no args.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] when args are given.
    pub fn new(args: &serde_json::Value) -> Result<Self, RegistryError> {
        expect_no_args(NAME, args)?;
        let taint = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        Ok(NodeUnschedulable { taint })
    }
}

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &str {
        NAME
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![ExtensionPoint::Filter]
    }

    /// A node added or uncordoned, or the pod gaining a toleration (upstream: Node/Add,
    /// Node/UpdateNodeTaint, Pod/UpdatePodToleration).
    fn requeue_on(&self) -> Vec<ClusterEvent> {
        vec![
            ClusterEvent {
                resource: ResourceKind::node(),
                actions: vec![EventAction::Added, EventAction::Modified],
            },
            ClusterEvent {
                resource: ResourceKind::pod(),
                actions: vec![EventAction::Modified],
            },
        ]
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
        let tolerations = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or(&[]);
        // Computed lazily: most nodes are not cordoned.
        let mut tolerated: Option<bool> = None;
        nodes
            .iter()
            .map(|n| {
                if !n.unschedulable
                    || *tolerated
                        .get_or_insert_with(|| tolerations_tolerate(tolerations, &self.taint))
                {
                    Status::success()
                } else {
                    Status::unresolvable(ERR_REASON_UNSCHEDULABLE)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{node, pod};

    fn plugin() -> NodeUnschedulable {
        NodeUnschedulable::new(&serde_json::Value::Null).unwrap()
    }

    #[test]
    fn cordoned_nodes_are_filtered_out() {
        let p = pod("metadata: {name: p}\nspec: {containers: []}");
        let nodes = [
            node("metadata: {name: a}\nspec: {unschedulable: true}"),
            node("metadata: {name: b}"),
        ];
        let s = plugin().filter(&CycleState::default(), &p, &nodes);
        assert_eq!(s[0].code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s[0].reasons, [ERR_REASON_UNSCHEDULABLE]);
        assert!(s[1].is_success());
    }

    #[test]
    fn pods_tolerating_the_unschedulable_taint_fit_cordoned_nodes() {
        let p = pod(
            "metadata: {name: p}\nspec: {containers: [], tolerations: [{key: node.kubernetes.io/unschedulable, operator: Exists, effect: NoSchedule}]}",
        );
        let s = plugin().filter(
            &CycleState::default(),
            &p,
            &[node("metadata: {name: a}\nspec: {unschedulable: true}")],
        );
        assert!(s[0].is_success());
    }
}
