//! TaintToleration: a pod may land only on nodes whose `NoSchedule` and `NoExecute` taints it
//! tolerates, and prefers nodes with fewer untolerated `PreferNoSchedule` taints
//! (upstream `pkg/scheduler/framework/plugins/tainttoleration`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{
    ClusterEvent, CycleState, EventAction, ExtensionPoint, NodeInfo, Plugin, PodInfo, ResourceKind,
    Status,
};

use super::helpers::{
    MAX_NODE_SCORE, default_normalize_score, expect_no_args, find_untolerated_taint,
    tolerations_tolerate,
};
use super::registry::RegistryError;

/// The plugin's name in the configuration.
pub const NAME: &str = "TaintToleration";
/// CycleState key of the tolerations Score considers.
pub const PRE_SCORE_STATE_KEY: &str = "PreScoreTaintToleration";

/// Filter reason: the first untolerated taint, as upstream formats it.
pub fn err_reason_untolerated(taint: &Taint) -> String {
    format!(
        "node(s) had untolerated taint {{{}: {}}}",
        taint.key,
        taint.value.as_deref().unwrap_or("")
    )
}

/// Filters on hard taints, scores on soft ones.
#[derive(Debug, Default)]
pub struct TaintToleration;

impl TaintToleration {
    /// Creates the plugin; it takes no args.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] when args are given.
    pub fn new(args: &serde_json::Value) -> Result<Self, RegistryError> {
        expect_no_args(NAME, args)?;
        Ok(TaintToleration)
    }
}

/// Tolerations that can match a `PreferNoSchedule` taint (effect empty or `PreferNoSchedule`).
struct PreScoreState {
    tolerations: Vec<Toleration>,
}

fn do_not_schedule(t: &Taint) -> bool {
    t.effect == "NoSchedule" || t.effect == "NoExecute"
}

fn pod_tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

impl Plugin for TaintToleration {
    fn name(&self) -> &str {
        NAME
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![
            ExtensionPoint::Filter,
            ExtensionPoint::PreScore,
            ExtensionPoint::Score,
        ]
    }

    /// A node added or its taints changed, or the pod gained a toleration (upstream:
    /// Node/Add|UpdateNodeTaint, Pod/UpdatePodToleration).
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
        let tolerations = pod_tolerations(pod);
        nodes
            .iter()
            .map(
                |n| match find_untolerated_taint(n.taints(), tolerations, do_not_schedule) {
                    None => Status::success(),
                    Some(t) => Status::unresolvable(err_reason_untolerated(t)),
                },
            )
            .collect()
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _nodes: &[Arc<NodeInfo>]) -> Status {
        let tolerations = pod_tolerations(pod)
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                )
            })
            .cloned()
            .collect();
        state.write(PRE_SCORE_STATE_KEY, PreScoreState { tolerations });
        Status::success()
    }

    /// The number of untolerated `PreferNoSchedule` taints; NormalizeScore reverses it.
    fn score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        let computed;
        let tolerations: &[Toleration] = match state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) {
            Some(s) => &s.tolerations,
            None => {
                computed = pod_tolerations(pod).to_vec();
                &computed
            }
        };
        Ok(nodes
            .iter()
            .map(|n| {
                n.taints()
                    .iter()
                    .filter(|t| {
                        t.effect == "PreferNoSchedule" && !tolerations_tolerate(tolerations, t)
                    })
                    .count() as i64
            })
            .collect())
    }

    fn normalize_score(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{node, pod};

    #[test]
    fn untolerated_no_schedule_taints_reject_the_node() {
        let p = pod("metadata: {name: p}\nspec: {containers: []}");
        let nodes = [
            node(
                "metadata: {name: a}\nspec: {taints: [{key: dedicated, value: gpu, effect: NoSchedule}]}",
            ),
            node(
                "metadata: {name: b}\nspec: {taints: [{key: soft, value: x, effect: PreferNoSchedule}]}",
            ),
            node(
                "metadata: {name: c}\nspec: {taints: [{key: node-role.kubernetes.io/control-plane, effect: NoExecute}]}",
            ),
        ];
        let s = TaintToleration.filter(&CycleState::default(), &p, &nodes);
        assert_eq!(s[0].code, Code::UnschedulableAndUnresolvable);
        assert_eq!(
            s[0].reasons,
            ["node(s) had untolerated taint {dedicated: gpu}"]
        );
        assert!(s[1].is_success(), "PreferNoSchedule does not filter");
        assert_eq!(
            s[2].reasons,
            ["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]
        );
    }

    #[test]
    fn tolerated_taints_let_the_pod_in() {
        let p = pod(
            "metadata: {name: p}\nspec: {containers: [], tolerations: [{key: dedicated, operator: Equal, value: gpu}]}",
        );
        let n = node(
            "metadata: {name: a}\nspec: {taints: [{key: dedicated, value: gpu, effect: NoSchedule}]}",
        );
        assert!(TaintToleration.filter(&CycleState::default(), &p, &[n])[0].is_success());
    }

    #[test]
    fn nodes_with_fewer_untolerated_soft_taints_score_higher() {
        let p = pod(
            "metadata: {name: p}\nspec: {containers: [], tolerations: [{key: tolerated, operator: Exists, effect: PreferNoSchedule}]}",
        );
        let nodes = [
            node("metadata: {name: clean}"),
            node(
                "metadata: {name: one}\nspec: {taints: [{key: a, effect: PreferNoSchedule}, {key: tolerated, effect: PreferNoSchedule}]}",
            ),
            node(
                "metadata: {name: two}\nspec: {taints: [{key: a, effect: PreferNoSchedule}, {key: b, effect: PreferNoSchedule}]}",
            ),
        ];
        let mut state = CycleState::default();
        assert!(
            TaintToleration
                .pre_score(&mut state, &p, &nodes)
                .is_success()
        );
        let mut scores = TaintToleration.score(&state, &p, &nodes).unwrap();
        assert_eq!(scores, [0, 1, 2]);
        TaintToleration.normalize_score(&state, &p, &mut scores);
        assert_eq!(scores, [100, 50, 0]);
    }
}
