//! NodeLabel, version 2: the hot-swap target of the tests. Same args, extension points and
//! subscriptions as v1 (it parses the args with v1's own `args.rs`), one policy change: nodes
//! labelled `maintenance=true` are rejected by Filter.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use wasm_scheduler_sdk::{
    ClusterEvent, EventAction, ExtensionPoint, Metadata, ObjectEvent, Plugin, PodRef, ResourceKind,
    Status, export_plugin,
};

#[path = "../../../../plugins/node-label/src/args.rs"]
mod args;

/// Reason for a node under maintenance.
pub const REASON_MAINTENANCE: &str = "node(s) under maintenance (NodeLabel v2)";

#[derive(Deserialize)]
struct NodeView {
    metadata: NodeMeta,
}

#[derive(Deserialize)]
struct NodeMeta {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// NodeLabel v2.
pub struct NodeLabelV2 {
    args: args::Args,
    total_weight: i64,
    nodes: HashMap<String, BTreeMap<String, String>>,
}

impl Plugin for NodeLabelV2 {
    fn new(json: &str) -> Result<Self, String> {
        let args = args::Args::parse(json)?;
        let total_weight = args.prefer.iter().map(|p| p.weight).sum();
        Ok(NodeLabelV2 {
            args,
            total_weight,
            nodes: HashMap::new(),
        })
    }

    fn metadata(&self) -> Metadata {
        Metadata {
            name: "NodeLabel".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extension_points: vec![ExtensionPoint::Filter, ExtensionPoint::Score],
            subscriptions: vec![ResourceKind::node()],
            patches: Vec::new(),
            requeue_on: vec![ClusterEvent {
                resource: ResourceKind::node(),
                actions: vec![EventAction::Added, EventAction::Modified],
            }],
        }
    }

    fn on_event(&mut self, event: &ObjectEvent) {
        let Ok(node) = serde_json::from_str::<NodeView>(&event.object) else {
            return;
        };
        if event.action == EventAction::Deleted {
            self.nodes.remove(&node.metadata.name);
        } else {
            self.nodes.insert(node.metadata.name, node.metadata.labels);
        }
    }

    fn filter(&mut self, _pod: &PodRef, nodes: &[String]) -> Vec<Status> {
        nodes
            .iter()
            .map(|n| match self.nodes.get(n) {
                None => Status::unschedulable("node(s) unknown to NodeLabel"),
                Some(l) if l.get("maintenance").is_some_and(|v| v == "true") => {
                    Status::unresolvable(REASON_MAINTENANCE)
                }
                Some(l) if self.args.require.iter().all(|r| r.matches(l)) => Status::success(),
                Some(_) => Status::unresolvable("node(s) didn't match the required node labels"),
            })
            .collect()
    }

    fn score(&mut self, _pod: &PodRef, nodes: &[String]) -> Result<Vec<i64>, Status> {
        let score = |labels: &BTreeMap<String, String>| {
            let matched: i64 = self
                .args
                .prefer
                .iter()
                .filter(|p| labels.get(&p.key) == Some(&p.value))
                .map(|p| p.weight)
                .sum();
            if self.total_weight == 0 {
                0
            } else {
                matched * 100 / self.total_weight
            }
        };
        Ok(nodes
            .iter()
            .map(|n| self.nodes.get(n).map_or(0, score))
            .collect())
    }
}

export_plugin!(NodeLabelV2);
