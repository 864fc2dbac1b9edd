//! A plugin that implements every extension point with answers the tests can predict, so each
//! point is shown to cross the Wasm boundary both ways. It subscribes to Nodes and serves only
//! nodes labelled `probe=yes`.
//!
//! - PreEnqueue: pods named `gated*` are `Pending`; a pod named `stats` gets the log of
//!   PostBind calls as its reasons.
//! - PreFilter: the probe nodes, sorted. Filter: `Success` for probe nodes, else
//!   `Unschedulable`. PostFilter: nominates the first rejected node.
//! - PreScore: `Skip` for pods named `noscore*`. Score: 100 minus 10 × position in the batch.
//! - Reserve / Unreserve / PreBind: one ResourceClaim intent each, naming the pod and node.
//! - Permit: pods named `wait*` wait 1234 ms; others pass and allow the uid `friend`.
//! - Fields (WIT 0.3.0): it reads only the labels of nodes; a pod named `events` gets the node
//!   events it was sent (`<action> <object JSON>`) as its reasons.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasm_scheduler_sdk::{
    EventAction, ExtensionPoint, FieldSelection, Metadata, ObjectEvent, ObjectRef, PatchIntent,
    PatchKind, PermitResult, Plugin, PodRef, PostFilterResult, PreFilterResult, ResourceKind,
    Status, export_plugin,
};

/// The probe.
#[derive(Default)]
pub struct Probe {
    probe_nodes: BTreeMap<String, bool>,
    post_binds: Vec<String>,
    events: Vec<String>,
}

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

fn intent(point: &str, pod: &PodRef, node: &str) -> PatchIntent {
    PatchIntent {
        target: ObjectRef {
            resource: ResourceKind::resource_claim(),
            namespace: Some(pod.namespace.clone()),
            name: format!("{}-claim", pod.name),
            uid: format!("{}-claim-uid", pod.uid),
        },
        subresource: Some("status".into()),
        patch_kind: PatchKind::StrategicMerge,
        body: format!(r#"{{"metadata":{{"annotations":{{"probe/{point}":"{node}"}}}}}}"#),
    }
}

impl Plugin for Probe {
    fn new(_args: &str) -> Result<Self, String> {
        Ok(Probe::default())
    }

    fn metadata(&self) -> Metadata {
        use ExtensionPoint::*;
        Metadata {
            name: "Probe".into(),
            version: "1.0.0".into(),
            extension_points: vec![
                PreEnqueue, PreFilter, Filter, PostFilter, PreScore, Score, Reserve, Permit,
                PreBind, PostBind,
            ],
            subscriptions: vec![ResourceKind::node()],
            patches: vec![ResourceKind::resource_claim()],
            requeue_on: vec![wasm_scheduler_sdk::ClusterEvent {
                resource: ResourceKind::node(),
                actions: vec![EventAction::Added, EventAction::Modified],
            }],
        }
    }

    fn fields(&self) -> Vec<FieldSelection> {
        vec![FieldSelection::new(
            ResourceKind::node(),
            &["metadata.labels"],
        )]
    }

    fn on_event(&mut self, event: &ObjectEvent) {
        self.events
            .push(format!("{:?} {}", event.action, event.object));
        let Ok(node) = serde_json::from_str::<NodeView>(&event.object) else {
            return;
        };
        if event.action == EventAction::Deleted {
            self.probe_nodes.remove(&node.metadata.name);
        } else {
            let yes = node
                .metadata
                .labels
                .get("probe")
                .is_some_and(|v| v == "yes");
            self.probe_nodes.insert(node.metadata.name, yes);
        }
    }

    fn pre_enqueue(&mut self, pod: &PodRef) -> Status {
        if pod.name.starts_with("gated") {
            return Status::pending("gated by probe");
        }
        if pod.name == "events" {
            return Status {
                code: wasm_scheduler_sdk::Code::Success,
                reasons: self.events.clone(),
            };
        }
        if pod.name == "stats" {
            return Status {
                code: wasm_scheduler_sdk::Code::Success,
                reasons: self.post_binds.clone(),
            };
        }
        Status::success()
    }

    fn pre_filter(&mut self, _pod: &PodRef) -> PreFilterResult {
        let names = self
            .probe_nodes
            .iter()
            .filter(|(_, yes)| **yes)
            .map(|(n, _)| n.clone())
            .collect();
        PreFilterResult {
            status: Status::success(),
            node_names: Some(names),
        }
    }

    fn filter(&mut self, _pod: &PodRef, nodes: &[String]) -> Vec<Status> {
        nodes
            .iter()
            .map(|n| match self.probe_nodes.get(n) {
                Some(true) => Status::success(),
                _ => Status::unschedulable("not a probe node"),
            })
            .collect()
    }

    fn post_filter(&mut self, _pod: &PodRef, rejected: &[(String, Status)]) -> PostFilterResult {
        PostFilterResult {
            status: Status::unschedulable(format!("probe saw {} rejected nodes", rejected.len())),
            nominated_node: rejected.first().map(|(n, _)| n.clone()),
            intents: Vec::new(),
        }
    }

    fn pre_score(&mut self, pod: &PodRef, _nodes: &[String]) -> Status {
        if pod.name.starts_with("noscore") {
            Status::skip()
        } else {
            Status::success()
        }
    }

    fn score(&mut self, _pod: &PodRef, nodes: &[String]) -> Result<Vec<i64>, Status> {
        Ok((0..nodes.len() as i64)
            .map(|i| (100 - 10 * i).max(0))
            .collect())
    }

    fn reserve(&mut self, pod: &PodRef, node: &str) -> Result<Vec<PatchIntent>, Status> {
        Ok(vec![intent("reserve", pod, node)])
    }

    fn unreserve(&mut self, pod: &PodRef, node: &str) -> Vec<PatchIntent> {
        vec![intent("unreserve", pod, node)]
    }

    fn permit(&mut self, pod: &PodRef, _node: &str) -> PermitResult {
        if pod.name.starts_with("wait") {
            return PermitResult {
                status: Status::wait(),
                timeout_ms: 1234,
                ..Default::default()
            };
        }
        PermitResult {
            status: Status::success(),
            allow: vec!["friend".into()],
            ..Default::default()
        }
    }

    fn pre_bind(&mut self, pod: &PodRef, node: &str) -> Result<Vec<PatchIntent>, Status> {
        Ok(vec![intent("pre-bind", pod, node)])
    }

    fn post_bind(&mut self, pod: &PodRef, node: &str) {
        self.post_binds
            .push(format!("{}/{}@{node}", pod.namespace, pod.name));
    }
}

export_plugin!(Probe);
