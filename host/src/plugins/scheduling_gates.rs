//! SchedulingGates: a pod with `spec.schedulingGates` stays out of the active queue until every
//! gate is removed (upstream `pkg/scheduler/framework/plugins/schedulinggates`).

use crate::framework::{
    ClusterEvent, EventAction, ExtensionPoint, Plugin, PodInfo, ResourceKind, Status,
};

use super::helpers::expect_no_args;
use super::registry::RegistryError;

/// The plugin's name in the configuration.
pub const NAME: &str = "SchedulingGates";

/// Holds gated pods back at PreEnqueue.
#[derive(Debug, Default)]
pub struct SchedulingGates;

impl SchedulingGates {
    /// Creates the plugin; it takes no args.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] when args are given.
    pub fn new(args: &serde_json::Value) -> Result<Self, RegistryError> {
        expect_no_args(NAME, args)?;
        Ok(SchedulingGates)
    }
}

impl Plugin for SchedulingGates {
    fn name(&self) -> &str {
        NAME
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![ExtensionPoint::PreEnqueue]
    }

    /// Removing a gate is an update of the pod itself (upstream Pod/UpdatePodSchedulingGatesEliminated).
    fn requeue_on(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent {
            resource: ResourceKind::pod(),
            actions: vec![EventAction::Modified],
        }]
    }

    fn pre_enqueue(&self, pod: &PodInfo) -> Status {
        let gates = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_deref())
            .unwrap_or(&[]);
        if gates.is_empty() {
            return Status::success();
        }
        let names: Vec<&str> = gates.iter().map(|g| g.name.as_str()).collect();
        // Upstream prints the Go slice: "waiting for scheduling gates: [a b]".
        Status::unresolvable(format!(
            "waiting for scheduling gates: [{}]",
            names.join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::pod;

    #[test]
    fn gated_pods_wait_with_the_gate_names() {
        let p = pod(
            "metadata: {name: p}\nspec: {containers: [], schedulingGates: [{name: a}, {name: b}]}",
        );
        let s = SchedulingGates.pre_enqueue(&p);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons, ["waiting for scheduling gates: [a b]"]);
    }

    #[test]
    fn pods_without_gates_are_enqueued() {
        assert!(
            SchedulingGates
                .pre_enqueue(&pod("metadata: {name: p}\nspec: {containers: []}"))
                .is_success()
        );
    }
}
