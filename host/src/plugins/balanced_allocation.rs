//! NodeResourcesBalancedAllocation: prefers nodes whose resources would be used evenly with the
//! pod placed (upstream `noderesources/balanced_allocation.go`): the score is
//! `(1 - std) * 100`, `std` the standard deviation of the requested/allocatable fractions of
//! the scored resources (cpu and memory by default).
//!
//! As upstream it counts the plain requests (no scoring defaults for containers that omit
//! them) and skips best-effort pods, so they do not all pile onto one node.
//!
//! Args (`NodeResourcesBalancedAllocationArgs`): `resources` (names; weights are accepted and,
//! as upstream, do not change the score).

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

use crate::framework::{
    ClusterEvent, CycleState, EventAction, ExtensionPoint, NodeInfo, Plugin, PodInfo, ResourceKind,
    Status,
};

use super::helpers::{MAX_NODE_SCORE, decode_args};
use super::node_resources_fit::ResourceSpec;
use super::registry::RegistryError;

/// The plugin's name in the configuration.
pub const NAME: &str = "NodeResourcesBalancedAllocation";
/// CycleState key of the pod's requests.
const PRE_SCORE_STATE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

/// `pluginConfig` args (upstream `NodeResourcesBalancedAllocationArgs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeResourcesBalancedAllocationArgs {
    /// Ignored; accepted so upstream-shaped args parse.
    pub api_version: Option<String>,
    /// Ignored; accepted so upstream-shaped args parse.
    pub kind: Option<String>,
    /// The scored resources (default cpu and memory, weight 1).
    pub resources: Option<Vec<ResourceSpec>>,
}

/// Scores nodes by how evenly their resources would be used.
#[derive(Debug)]
pub struct BalancedAllocation {
    resources: Vec<String>,
}

/// The pod's request of each scored resource.
struct PreScoreState(Vec<i64>);

/// Whether a resource is counted in a scalar field (extended resources, hugepages...): such a
/// resource the pod does not request is not scored (upstream `IsScalarResourceName`).
fn is_scalar(name: &str) -> bool {
    !matches!(name, "cpu" | "memory" | "ephemeral-storage" | "pods")
}

/// `(1 - std) * MaxNodeScore` over the fractions, each capped at 1 (upstream
/// `balancedResourceScorer`).
pub fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let fractions: Vec<f64> = requested
        .iter()
        .zip(allocatable)
        .filter(|(_, a)| **a != 0)
        .map(|(r, a)| (*r as f64 / *a as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        0 | 1 => 0.0,
        // Two resources: the deviation is half the difference.
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            let sum: f64 = fractions.iter().map(|f| (f - mean) * (f - mean)).sum();
            (sum / n as f64).sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl BalancedAllocation {
    /// Creates the plugin from its args (upstream `ValidateNodeResourcesBalancedAllocationArgs`).
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] for undecodable args, a weight outside 1..=100 or a
    /// repeated resource.
    pub fn new(args: &serde_json::Value) -> Result<Self, RegistryError> {
        let args: NodeResourcesBalancedAllocationArgs = decode_args(NAME, args)?;
        let specs = args.resources.unwrap_or_else(|| {
            ["cpu", "memory"]
                .map(|name| ResourceSpec {
                    name: name.into(),
                    weight: 1,
                })
                .into()
        });
        let mut seen = HashSet::new();
        for (i, r) in specs.iter().enumerate() {
            if !(1..=100).contains(&r.weight) {
                return Err(RegistryError::InvalidArgs {
                    plugin: NAME.into(),
                    message: format!(
                        "resources[{i}].weight: Invalid value: {}: resource weight of {} should be in range [1, 100]",
                        r.weight, r.name
                    ),
                });
            }
            if !seen.insert(r.name.clone()) {
                return Err(RegistryError::InvalidArgs {
                    plugin: NAME.into(),
                    message: format!("resources[{i}].name: Duplicate value: {:?}", r.name),
                });
            }
        }
        Ok(BalancedAllocation {
            resources: specs.into_iter().map(|r| r.name).collect(),
        })
    }

    fn score_node(&self, node: &NodeInfo, pod: &[i64]) -> i64 {
        let mut requested = Vec::with_capacity(self.resources.len());
        let mut allocatable = Vec::with_capacity(self.resources.len());
        for (name, &p) in self.resources.iter().zip(pod) {
            if p == 0 && is_scalar(name) {
                continue;
            }
            requested.push(node.requested.get(name) + p);
            allocatable.push(node.allocatable.get(name));
        }
        balanced_score(&requested, &allocatable)
    }
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &str {
        NAME
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![ExtensionPoint::PreScore, ExtensionPoint::Score]
    }

    /// Scores never make a pod schedulable; listed so a rejected pod is not held back by us.
    fn requeue_on(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent {
            resource: ResourceKind::node(),
            actions: vec![EventAction::Added, EventAction::Modified],
        }]
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _nodes: &[Arc<NodeInfo>]) -> Status {
        let requests: Vec<i64> = self.resources.iter().map(|r| pod.requests.get(r)).collect();
        // Best-effort pods would all score the emptiest-looking node the same way: skip them.
        if requests.iter().all(|r| *r == 0) {
            return Status::skip();
        }
        state.write(PRE_SCORE_STATE_KEY, PreScoreState(requests));
        Status::success()
    }

    fn score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        let fallback;
        let requests = match state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) {
            Some(s) => &s.0,
            None => {
                fallback = self
                    .resources
                    .iter()
                    .map(|r| pod.requests.get(r))
                    .collect::<Vec<_>>();
                &fallback
            }
        };
        Ok(nodes.iter().map(|n| self.score_node(n, requests)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, node_info, pod};

    fn scores(pl: &BalancedAllocation, p: &PodInfo, nodes: Vec<Arc<NodeInfo>>) -> Vec<i64> {
        let mut state = CycleState::default();
        assert!(pl.pre_score(&mut state, p, &nodes).is_success());
        pl.score(&state, p, &nodes).unwrap()
    }

    fn requesting(cpu: &str, memory: &str) -> PodInfo {
        pod(&format!(
            "metadata: {{name: p, namespace: d, uid: p}}\nspec: {{containers: [{{name: c, resources: {{requests: {{cpu: '{cpu}', memory: '{memory}'}}}}}}]}}"
        ))
    }

    // Shaped like upstream TestNodeResourcesBalancedAllocation ("resources requested, pods
    // scheduled with resources").
    #[test]
    fn the_evenly_used_node_scores_higher() {
        let pl = BalancedAllocation::new(&serde_json::Value::Null).unwrap();
        let existing = requesting("3", "5000");
        let n1 = Arc::new(node_info(
            "metadata: {name: n1}\nstatus: {allocatable: {cpu: '10', memory: '20000', pods: '10'}}",
            &[existing],
        ));
        let existing2 = requesting("3", "5000");
        let n2 = Arc::new(node_info(
            "metadata: {name: n2}\nstatus: {allocatable: {cpu: '6', memory: '10000', pods: '10'}}",
            &[existing2],
        ));
        let p = requesting("1m", "1");
        // n1: cpu 3001/10000 = .3001, memory 5001/20000 = .25005: (1 - .025025) * 100 = 97.
        // n2: cpu 3001/6000 = .50016, memory 5001/10000 = .5001: 99.99... = 99.
        assert_eq!(scores(&pl, &p, vec![n1, n2]), [97, 99]);
    }

    #[test]
    fn fractions_are_capped_at_one_and_three_resources_use_the_standard_deviation() {
        assert_eq!(balanced_score(&[20, 5], &[10, 10]), 75);
        // Fractions .2, .4, .6: mean .4, std sqrt(.08 / 3) = .1633: 83.
        assert_eq!(balanced_score(&[2, 4, 6], &[10, 10, 10]), 83);
        // A resource with no allocatable is left out.
        assert_eq!(balanced_score(&[5, 3], &[10, 0]), 100);
    }

    #[test]
    fn best_effort_pods_are_skipped() {
        let pl = BalancedAllocation::new(&serde_json::Value::Null).unwrap();
        let p = pod("metadata: {name: p, namespace: d}\nspec: {containers: [{name: c}]}");
        let mut state = CycleState::default();
        let n = node("metadata: {name: n}\nstatus: {allocatable: {cpu: '1', memory: 1Gi}}");
        assert_eq!(
            pl.pre_score(&mut state, &p, &[n]).code,
            crate::framework::Code::Skip
        );
    }

    #[test]
    fn an_extended_resource_the_pod_does_not_request_is_not_scored() {
        let pl = BalancedAllocation::new(&serde_json::json!({
            "resources": [{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1},
                          {"name": "example.com/gpu", "weight": 1}]
        }))
        .unwrap();
        let n = node(
            "metadata: {name: n}\nstatus: {allocatable: {cpu: '4', memory: '4000', example.com/gpu: '4'}}",
        );
        // cpu 1/4, memory 1000/4000: equal fractions; the gpu (0/4) would lower it otherwise.
        assert_eq!(scores(&pl, &requesting("1", "1000"), vec![n]), [100]);
    }

    #[test]
    fn errors_when_args_are_invalid() {
        let err = BalancedAllocation::new(&serde_json::json!({
            "resources": [{"name": "cpu", "weight": 0}]
        }))
        .unwrap_err();
        assert!(err.to_string().contains("resources[0].weight"), "{err}");
        let err = BalancedAllocation::new(&serde_json::json!({
            "resources": [{"name": "cpu", "weight": 1}, {"name": "cpu", "weight": 2}]
        }))
        .unwrap_err();
        assert!(err.to_string().contains("Duplicate"), "{err}");
    }
}
