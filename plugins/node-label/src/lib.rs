//! # NodeLabel
//!
//! A Filter and Score plugin over node labels, written with `wasm-scheduler-sdk`.
//!
//! - **Filter** keeps the nodes whose labels meet every `require` term (operators `In`, `NotIn`,
//!   `Exists`, `DoesNotExist`, as upstream node affinity).
//! - **Score** gives each node the share of `prefer` weights whose `key=value` it carries,
//!   scaled to `0..=100`.
//!
//! Node labels reach the plugin as pushed Node events; calls carry only node names.
//!
//! Args (`pluginConfig`):
//! ```json
//! { "require": [{"key": "zone", "operator": "In", "values": ["a", "b"]}],
//!   "prefer":  [{"key": "zone", "value": "a", "weight": 10}] }
//! ```

mod args;

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use wasm_scheduler_sdk::{
    ClusterEvent, EventAction, ExtensionPoint, FieldSelection, Metadata, ObjectEvent, Plugin,
    PodRef, ResourceKind, Status, export_plugin,
};

pub use args::{Args, Operator, Preference, Requirement};

/// The plugin's name in the scheduler configuration.
pub const NAME: &str = "NodeLabel";
/// Reason when a node's labels do not meet a requirement.
pub const REASON_MISMATCH: &str = "node(s) didn't match the required node labels";
/// Reason when a node is unknown to the plugin (no Node event seen yet).
pub const REASON_UNKNOWN_NODE: &str = "node(s) unknown to NodeLabel";

/// The plugin: its args and the labels of every node it was told about.
#[derive(Debug)]
pub struct NodeLabel {
    args: Args,
    /// Node name → labels, rebuilt from Node events only.
    nodes: HashMap<String, BTreeMap<String, String>>,
    total_weight: i64,
}

/// Just the part of a Node this plugin reads.
#[derive(Deserialize)]
struct NodeLabels {
    metadata: NodeMeta,
}

#[derive(Deserialize)]
struct NodeMeta {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl NodeLabel {
    fn fits(&self, labels: &BTreeMap<String, String>) -> bool {
        self.args.require.iter().all(|r| r.matches(labels))
    }

    fn score_of(&self, labels: &BTreeMap<String, String>) -> i64 {
        if self.total_weight == 0 {
            return 0;
        }
        let matched: i64 = self
            .args
            .prefer
            .iter()
            .filter(|p| labels.get(&p.key) == Some(&p.value))
            .map(|p| p.weight)
            .sum();
        matched * 100 / self.total_weight
    }
}

impl Plugin for NodeLabel {
    fn new(args: &str) -> Result<Self, String> {
        let args = Args::parse(args)?;
        let total_weight = args.prefer.iter().map(|p| p.weight).sum();
        Ok(NodeLabel {
            args,
            nodes: HashMap::new(),
            total_weight,
        })
    }

    fn metadata(&self) -> Metadata {
        let node_changes = ClusterEvent {
            resource: ResourceKind::node(),
            actions: vec![EventAction::Added, EventAction::Modified],
        };
        Metadata {
            name: NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extension_points: vec![ExtensionPoint::Filter, ExtensionPoint::Score],
            subscriptions: vec![ResourceKind::node()],
            patches: Vec::new(),
            requeue_on: vec![node_changes],
        }
    }

    /// Only labels are read, so status updates (heartbeats, allocatable) never reach the plugin.
    fn fields(&self) -> Vec<FieldSelection> {
        vec![FieldSelection::new(
            ResourceKind::node(),
            &["metadata.labels"],
        )]
    }

    fn on_event(&mut self, event: &ObjectEvent) {
        if event.resource.kind != "Node" {
            return;
        }
        let Ok(node) = serde_json::from_str::<NodeLabels>(&event.object) else {
            wasm_scheduler_sdk::log(wasm_scheduler_sdk::LogLevel::Warn, "unparsable Node event");
            return;
        };
        match event.action {
            EventAction::Deleted => {
                self.nodes.remove(&node.metadata.name);
            }
            EventAction::Added | EventAction::Modified => {
                self.nodes.insert(node.metadata.name, node.metadata.labels);
            }
        }
    }

    fn filter(&mut self, _pod: &PodRef, nodes: &[String]) -> Vec<Status> {
        nodes
            .iter()
            .map(|name| match self.nodes.get(name) {
                None => Status::unschedulable(REASON_UNKNOWN_NODE),
                Some(labels) if self.fits(labels) => Status::success(),
                Some(_) => Status::unresolvable(REASON_MISMATCH),
            })
            .collect()
    }

    fn score(&mut self, _pod: &PodRef, nodes: &[String]) -> Result<Vec<i64>, Status> {
        Ok(nodes
            .iter()
            .map(|n| self.nodes.get(n).map_or(0, |l| self.score_of(l)))
            .collect())
    }
}

export_plugin!(NodeLabel);

#[cfg(test)]
mod tests {
    use super::*;

    fn node_event(action: EventAction, name: &str, zone: &str) -> ObjectEvent {
        let object = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"zone": zone}},
        });
        ObjectEvent {
            action,
            resource: ResourceKind::node(),
            object: object.to_string(),
        }
    }

    fn pod() -> PodRef {
        PodRef {
            namespace: "default".into(),
            name: "p".into(),
            uid: "u".into(),
        }
    }

    fn plugin() -> NodeLabel {
        let mut p = NodeLabel::new(
            r#"{"require":[{"key":"zone","operator":"In","values":["a","b"]}],
                "prefer":[{"key":"zone","value":"a","weight":3},{"key":"zone","value":"b","weight":1}]}"#,
        )
        .unwrap();
        for (n, z) in [("n1", "a"), ("n2", "b"), ("n3", "c")] {
            p.on_event(&node_event(EventAction::Added, n, z));
        }
        p
    }

    #[test]
    fn filter_keeps_nodes_whose_labels_match() {
        let mut p = plugin();
        let nodes: Vec<String> = ["n1", "n2", "n3", "n4"].map(String::from).into();
        let codes: Vec<_> = p
            .filter(&pod(), &nodes)
            .into_iter()
            .map(|s| s.code)
            .collect();
        use wasm_scheduler_sdk::Code::*;
        assert_eq!(
            codes,
            vec![
                Success,
                Success,
                UnschedulableAndUnresolvable,
                Unschedulable
            ]
        );
    }

    #[test]
    fn score_is_the_share_of_matching_preference_weights() {
        let mut p = plugin();
        let nodes: Vec<String> = ["n1", "n2", "n3"].map(String::from).into();
        assert_eq!(p.score(&pod(), &nodes).unwrap(), vec![75, 25, 0]);
    }

    #[test]
    fn works_when_a_node_changes_or_goes_away() {
        let mut p = plugin();
        p.on_event(&node_event(EventAction::Modified, "n3", "a"));
        p.on_event(&node_event(EventAction::Deleted, "n1", "a"));
        let nodes: Vec<String> = ["n1", "n3"].map(String::from).into();
        let s = p.filter(&pod(), &nodes);
        assert_eq!(s[0].reasons, vec![REASON_UNKNOWN_NODE.to_string()]);
        assert!(s[1].is_success());
    }

    #[test]
    fn errors_when_args_are_invalid() {
        let err = NodeLabel::new(r#"{"require":[{"key":"zone","operator":"In"}]}"#).unwrap_err();
        assert!(err.contains("require[0]"), "{err}");
        assert!(NodeLabel::new(r#"{"prefer":[{"key":"z","value":"a","weight":-1}]}"#).is_err());
        assert!(NodeLabel::new("not json").is_err());
    }

    #[test]
    fn works_with_empty_args() {
        let mut p = NodeLabel::new("{}").unwrap();
        p.on_event(&node_event(EventAction::Added, "n1", "a"));
        assert!(p.filter(&pod(), &["n1".to_string()])[0].is_success());
        assert_eq!(p.score(&pod(), &["n1".to_string()]).unwrap(), vec![0]);
    }
}
