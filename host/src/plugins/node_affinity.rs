//! NodeAffinity: `spec.nodeSelector` and required node affinity filter nodes; preferred node
//! affinity scores them by the weights of the matching terms
//! (upstream `pkg/scheduler/framework/plugins/nodeaffinity`).
//!
//! Args (`NodeAffinityArgs`): `addedAffinity`, a node affinity every pod of the profile must
//! also satisfy (required) or prefers (preferred).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::NodeAffinity as K8sNodeAffinity;
use serde::Deserialize;

use crate::framework::{
    ClusterEvent, CycleState, EventAction, ExtensionPoint, NodeInfo, Plugin, PodInfo,
    PreFilterResult, ResourceKind, Status,
};

use super::helpers::{MAX_NODE_SCORE, decode_args, default_normalize_score};
use super::node_selector::{NodeSelector, PreferredTerms, Term};
use super::registry::RegistryError;

/// The plugin's name in the configuration.
pub const NAME: &str = "NodeAffinity";
/// CycleState key of the compiled required selector.
pub const PRE_FILTER_STATE_KEY: &str = "PreFilterNodeAffinity";
/// CycleState key of the compiled preferred terms.
pub const PRE_SCORE_STATE_KEY: &str = "PreScoreNodeAffinity";
/// Filter reason when the pod's node selector or required affinity does not match.
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
/// Filter reason when the profile's `addedAffinity` does not match.
pub const ERR_REASON_ENFORCED: &str = "node(s) didn't match scheduler-enforced node affinity";
/// PreFilter reason when the pod's `metadata.name` terms exclude every node.
pub const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";

/// `pluginConfig` args (upstream `NodeAffinityArgs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeAffinityArgs {
    /// Ignored; accepted so upstream-shaped args parse.
    pub api_version: Option<String>,
    /// Ignored; accepted so upstream-shaped args parse.
    pub kind: Option<String>,
    /// Affinity added to every pod of the profile.
    pub added_affinity: Option<K8sNodeAffinity>,
}

/// Filters on required node affinity, scores on preferred.
#[derive(Debug, Default)]
pub struct NodeAffinity {
    added_required: Option<NodeSelector>,
    added_preferred: Option<PreferredTerms>,
}

/// What Filter checks, compiled once per pod.
struct PreFilterState {
    node_selector: Option<BTreeMap<String, String>>,
    required: Option<NodeSelector>,
}

impl PreFilterState {
    fn for_pod(pod: &PodInfo) -> Self {
        let spec = pod.pod.spec.as_ref();
        let required = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|r| NodeSelector::new(&r.node_selector_terms));
        PreFilterState {
            node_selector: spec.and_then(|s| s.node_selector.clone()),
            required,
        }
    }

    fn matches(&self, node: &NodeInfo) -> bool {
        if let Some(sel) = &self.node_selector {
            let labels = node.node.metadata.labels.as_ref();
            if !sel
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            {
                return false;
            }
        }
        self.required
            .as_ref()
            .is_none_or(|r| r.matches(&node.node, &node.name))
    }
}

struct PreScoreState {
    preferred: Option<PreferredTerms>,
}

impl NodeAffinity {
    /// Creates the plugin from its args.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] for undecodable args or an invalid `addedAffinity`.
    pub fn new(args: &serde_json::Value) -> Result<Self, RegistryError> {
        let args: NodeAffinityArgs = decode_args(NAME, args)?;
        let invalid = |message: String| RegistryError::InvalidArgs {
            plugin: NAME.into(),
            message,
        };
        let mut pl = NodeAffinity::default();
        if let Some(added) = args.added_affinity {
            if let Some(req) = &added.required_during_scheduling_ignored_during_execution {
                let sel = NodeSelector::new(&req.node_selector_terms);
                if let Some(e) = sel.error() {
                    return Err(invalid(format!(
                        "addedAffinity.requiredDuringSchedulingIgnoredDuringExecution: {e}"
                    )));
                }
                pl.added_required = Some(sel);
            }
            if let Some(pref) = added
                .preferred_during_scheduling_ignored_during_execution
                .as_deref()
            {
                let terms = PreferredTerms::new(pref).map_err(|e| {
                    invalid(format!(
                        "addedAffinity.preferredDuringSchedulingIgnoredDuringExecution: {e}"
                    ))
                })?;
                pl.added_preferred = (!terms.is_empty()).then_some(terms);
            }
        }
        Ok(pl)
    }
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &str {
        NAME
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![
            ExtensionPoint::PreFilter,
            ExtensionPoint::Filter,
            ExtensionPoint::PreScore,
            ExtensionPoint::Score,
        ]
    }

    /// A node added or relabelled (upstream Node/Add|UpdateNodeLabel).
    fn requeue_on(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent {
            resource: ResourceKind::node(),
            actions: vec![EventAction::Added, EventAction::Modified],
        }]
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &crate::framework::Snapshot,
    ) -> PreFilterResult {
        let spec = pod.pod.spec.as_ref();
        let required = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        let node_selector = spec.and_then(|s| s.node_selector.as_ref());
        if required.is_none() && self.added_required.is_none() && node_selector.is_none() {
            return PreFilterResult {
                status: Status::skip(),
                node_names: None,
            };
        }
        state.write(PRE_FILTER_STATE_KEY, PreFilterState::for_pod(pod));

        // Terms pinned to node names by `metadata.name In` narrow the nodes to check; terms are
        // ORed, so one unpinned term keeps every node.
        let Some(required) = required.filter(|r| !r.node_selector_terms.is_empty()) else {
            return PreFilterResult::default();
        };
        let mut names = BTreeSet::new();
        for term in &required.node_selector_terms {
            match Term::pinned_node_names(term) {
                None => return PreFilterResult::default(),
                Some(n) => names.extend(n),
            }
        }
        if names.is_empty() {
            return PreFilterResult {
                status: Status::unresolvable(ERR_REASON_CONFLICT),
                node_names: None,
            };
        }
        PreFilterResult {
            status: Status::success(),
            node_names: Some(names.into_iter().collect()),
        }
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
        let computed;
        let s = match state.read::<PreFilterState>(PRE_FILTER_STATE_KEY) {
            Some(s) => s,
            None => {
                computed = PreFilterState::for_pod(pod);
                &computed
            }
        };
        nodes
            .iter()
            .map(|n| {
                if self
                    .added_required
                    .as_ref()
                    .is_some_and(|a| !a.matches(&n.node, &n.name))
                {
                    Status::unresolvable(ERR_REASON_ENFORCED)
                } else if !s.matches(n) {
                    Status::unresolvable(ERR_REASON_POD)
                } else {
                    Status::success()
                }
            })
            .collect()
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _nodes: &[Arc<NodeInfo>]) -> Status {
        let preferred = match preferred_terms(pod) {
            Ok(p) => p,
            Err(e) => return Status::error(e),
        };
        if preferred.is_none() && self.added_preferred.is_none() {
            return Status::skip();
        }
        state.write(PRE_SCORE_STATE_KEY, PreScoreState { preferred });
        Status::success()
    }

    /// The sum of the weights of the preferred terms the node matches.
    fn score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        let computed;
        let preferred = match state.read::<PreScoreState>(PRE_SCORE_STATE_KEY) {
            Some(s) => s.preferred.as_ref(),
            None => {
                computed = preferred_terms(pod).map_err(Status::error)?;
                computed.as_ref()
            }
        };
        Ok(nodes
            .iter()
            .map(|n| {
                self.added_preferred
                    .as_ref()
                    .map_or(0, |a| a.score(&n.node, &n.name))
                    + preferred.map_or(0, |p| p.score(&n.node, &n.name))
            })
            .collect())
    }

    fn normalize_score(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
        Status::success()
    }
}

fn preferred_terms(pod: &PodInfo) -> Result<Option<PreferredTerms>, String> {
    let terms = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        });
    terms.map(PreferredTerms::new).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Code, Snapshot};
    use crate::plugins::testing::{node, pod};

    fn plugin() -> NodeAffinity {
        NodeAffinity::new(&serde_json::Value::Null).unwrap()
    }

    fn nodes() -> Vec<Arc<NodeInfo>> {
        vec![
            node("metadata: {name: a, labels: {zone: east, disk: ssd}}"),
            node("metadata: {name: b, labels: {zone: west}}"),
            node("metadata: {name: c}"),
        ]
    }

    fn run_filter(pl: &NodeAffinity, p: &PodInfo) -> (PreFilterResult, Vec<Status>) {
        let mut state = CycleState::default();
        let pre = pl.pre_filter(&mut state, p, &Snapshot::default());
        let s = pl.filter(&state, p, &nodes());
        (pre, s)
    }

    #[test]
    fn pods_without_affinity_or_selector_skip_the_filter() {
        let (pre, _) = run_filter(
            &plugin(),
            &pod("metadata: {name: p}\nspec: {containers: []}"),
        );
        assert_eq!(pre.status.code, Code::Skip);
    }

    #[test]
    fn node_selector_requires_every_label() {
        let p = pod(
            "metadata: {name: p}\nspec: {containers: [], nodeSelector: {zone: east, disk: ssd}}",
        );
        let (pre, s) = run_filter(&plugin(), &p);
        assert!(pre.status.is_success());
        assert!(s[0].is_success());
        assert_eq!(s[1].code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s[1].reasons, [ERR_REASON_POD]);
        assert!(!s[2].is_success());
    }

    #[test]
    fn required_affinity_terms_are_ored() {
        let p = pod(r#"
metadata: {name: p}
spec:
  containers: []
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: zone, operator: In, values: [west]}]
        - matchExpressions: [{key: disk, operator: Exists}]
"#);
        let (_, s) = run_filter(&plugin(), &p);
        assert_eq!(
            s.iter().map(Status::is_success).collect::<Vec<_>>(),
            [true, true, false]
        );
    }

    #[test]
    fn metadata_name_terms_narrow_the_nodes_in_pre_filter() {
        let p = pod(r#"
metadata: {name: p}
spec:
  containers: []
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchFields: [{key: metadata.name, operator: In, values: [b]}]
"#);
        let (pre, s) = run_filter(&plugin(), &p);
        assert_eq!(pre.node_names, Some(vec!["b".to_string()]));
        assert_eq!(
            s.iter().map(Status::is_success).collect::<Vec<_>>(),
            [false, true, false]
        );
    }

    #[test]
    fn conflicting_metadata_name_terms_are_unresolvable() {
        let p = pod(r#"
metadata: {name: p}
spec:
  containers: []
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchFields: [{key: metadata.name, operator: In, values: [a]}, {key: metadata.name, operator: In, values: [b]}]
"#);
        let (pre, _) = run_filter(&plugin(), &p);
        assert_eq!(pre.status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(pre.status.reasons, [ERR_REASON_CONFLICT]);
    }

    #[test]
    fn added_affinity_from_args_is_enforced() {
        let pl = NodeAffinity::new(&serde_json::json!({
            "addedAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}
            ]}}
        }))
        .unwrap();
        let (pre, s) = run_filter(&pl, &pod("metadata: {name: p}\nspec: {containers: []}"));
        assert!(pre.status.is_success(), "added affinity disables the skip");
        assert!(s[0].is_success() && s[1].is_success());
        assert_eq!(s[2].reasons, [ERR_REASON_ENFORCED]);
    }

    #[test]
    fn errors_when_args_have_an_unknown_field() {
        let err = NodeAffinity::new(&serde_json::json!({"addedAffinityy": {}})).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "plugin \"NodeAffinity\": invalid args: unknown field `addedAffinityy`"
            ),
            "{err}"
        );
    }

    #[test]
    fn preferred_terms_score_by_weight_and_normalize_to_the_best_node() {
        let p = pod(r#"
metadata: {name: p}
spec:
  containers: []
  affinity:
    nodeAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - {weight: 80, preference: {matchExpressions: [{key: zone, operator: In, values: [east]}]}}
      - {weight: 20, preference: {matchExpressions: [{key: zone, operator: Exists}]}}
"#);
        let pl = plugin();
        let mut state = CycleState::default();
        assert!(pl.pre_score(&mut state, &p, &nodes()).is_success());
        let mut scores = pl.score(&state, &p, &nodes()).unwrap();
        assert_eq!(scores, [100, 20, 0]);
        pl.normalize_score(&state, &p, &mut scores);
        assert_eq!(scores, [100, 20, 0]);
    }

    #[test]
    fn pods_without_preferred_terms_skip_score() {
        let mut state = CycleState::default();
        let s = plugin().pre_score(
            &mut state,
            &pod("metadata: {name: p}\nspec: {containers: []}"),
            &nodes(),
        );
        assert_eq!(s.code, Code::Skip);
    }
}
