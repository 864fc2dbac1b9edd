//! # GangPermit
//!
//! A Permit plugin for gang scheduling, written with `wasm-scheduler-sdk`: pods that carry the
//! same group label wait at Permit until `minMember` of them have a node (reserved, assumed or
//! bound); then the last one allows all the waiting ones at once. A pod that waits longer than
//! the timeout is rejected by the host and its reservation undone.
//!
//! State is rebuilt from pushed Pod events alone (group label, `spec.nodeName`), plus the pods
//! that reached Permit in this instance, so a new instance after a hot swap sees bound and
//! assumed members at once.
//!
//! Args (`pluginConfig`), all optional:
//! ```json
//! { "groupLabel": "pod-group", "minMemberLabel": "pod-group-min-member",
//!   "minMember": 2, "timeoutSeconds": 60 }
//! ```
//! A pod's `minMemberLabel` label overrides `minMember` for its group.
//!
//! PreFilter turns a pod away early while its group has fewer pods than its size (as upstream
//! coscheduling does); such pods wait for a Pod to be added instead of retrying.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use wasm_scheduler_sdk::{
    ClusterEvent, EventAction, ExtensionPoint, Metadata, ObjectEvent, PermitResult, Plugin, PodRef,
    PreFilterResult, ResourceKind, Status, export_plugin,
};

/// The plugin's name in the scheduler configuration.
pub const NAME: &str = "GangPermit";
/// Reason while a pod waits for the rest of its gang.
pub const REASON_WAITING: &str = "waiting for the rest of the pod group";
/// Reason while the group has fewer pods than its size (the message adds the counts).
pub const REASON_TOO_FEW: &str = "pod group has too few pods";
/// Reason when the pod's group size label is not a positive number.
pub const REASON_BAD_SIZE: &str = "pod group size label is not a positive integer";

/// `pluginConfig` args of GangPermit.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Args {
    /// Label whose value names the pod's group; pods without it pass at once.
    pub group_label: String,
    /// Label that sets the group's size on its pods.
    pub min_member_label: String,
    /// Group size when the label is absent.
    pub min_member: u32,
    /// How long a pod waits at Permit before it is rejected.
    pub timeout_seconds: u64,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            group_label: "pod-group".into(),
            min_member_label: "pod-group-min-member".into(),
            min_member: 2,
            timeout_seconds: 60,
        }
    }
}

/// What the plugin remembers about one pod.
#[derive(Debug, Clone)]
struct Member {
    group: String,
    min_member: Result<u32, ()>,
    has_node: bool,
}

/// The plugin: group membership from Pod events and the pods waiting at Permit.
#[derive(Debug)]
pub struct GangPermit {
    args: Args,
    /// Pod uid → membership, for pods with the group label.
    members: HashMap<String, Member>,
    /// Group → uids of pods that reached Permit and wait.
    waiting: HashMap<String, BTreeSet<String>>,
}

#[derive(Deserialize)]
struct PodView {
    metadata: PodMeta,
    #[serde(default)]
    spec: PodSpecView,
}

#[derive(Deserialize)]
struct PodMeta {
    uid: String,
    #[serde(default)]
    labels: HashMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodSpecView {
    #[serde(default)]
    node_name: Option<String>,
}

impl GangPermit {
    /// Pods of `group` that have a node or wait at Permit, counted once each.
    fn members_placed(&self, group: &str) -> usize {
        let waiting = self.waiting.get(group);
        let placed = self
            .members
            .iter()
            .filter(|(uid, m)| {
                m.group == group && m.has_node && !waiting.is_some_and(|w| w.contains(*uid))
            })
            .count();
        placed + waiting.map_or(0, BTreeSet::len)
    }

    fn forget_waiting(&mut self, uid: &str) {
        self.waiting.retain(|_, set| {
            set.remove(uid);
            !set.is_empty()
        });
    }
}

impl Plugin for GangPermit {
    fn new(args: &str) -> Result<Self, String> {
        let args: Args = serde_json::from_str(args).map_err(|e| format!("GangPermit args: {e}"))?;
        if args.min_member == 0 {
            return Err("GangPermit args: minMember must be at least 1".into());
        }
        Ok(GangPermit {
            args,
            members: HashMap::new(),
            waiting: HashMap::new(),
        })
    }

    fn metadata(&self) -> Metadata {
        Metadata {
            name: NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extension_points: vec![
                ExtensionPoint::PreFilter,
                ExtensionPoint::Reserve,
                ExtensionPoint::Permit,
            ],
            subscriptions: vec![ResourceKind::pod()],
            patches: Vec::new(),
            requeue_on: vec![ClusterEvent {
                resource: ResourceKind::pod(),
                actions: vec![EventAction::Added],
            }],
        }
    }

    fn on_event(&mut self, event: &ObjectEvent) {
        if event.resource.kind != "Pod" {
            return;
        }
        let Ok(pod) = serde_json::from_str::<PodView>(&event.object) else {
            return;
        };
        let uid = pod.metadata.uid;
        let group = pod.metadata.labels.get(&self.args.group_label);
        match (event.action, group) {
            (EventAction::Deleted, _) | (_, None) => {
                self.members.remove(&uid);
                self.forget_waiting(&uid);
            }
            (_, Some(group)) => {
                let min_member = match pod.metadata.labels.get(&self.args.min_member_label) {
                    None => Ok(self.args.min_member),
                    Some(v) => v.parse::<u32>().ok().filter(|n| *n > 0).ok_or(()),
                };
                let has_node = pod.spec.node_name.is_some_and(|n| !n.is_empty());
                self.members.insert(
                    uid,
                    Member {
                        group: group.clone(),
                        min_member,
                        has_node,
                    },
                );
            }
        }
    }

    fn pre_filter(&mut self, pod: &PodRef) -> PreFilterResult {
        let Some(member) = self.members.get(&pod.uid) else {
            return PreFilterResult::default();
        };
        let Ok(min_member) = member.min_member else {
            return PreFilterResult {
                status: Status::unresolvable(REASON_BAD_SIZE),
                node_names: None,
            };
        };
        let total = self
            .members
            .values()
            .filter(|m| m.group == member.group)
            .count();
        if total < min_member as usize {
            let msg = format!(
                "{REASON_TOO_FEW}: {} has {total} of {min_member}",
                member.group
            );
            return PreFilterResult {
                status: Status::unresolvable(msg),
                node_names: None,
            };
        }
        PreFilterResult::default()
    }

    fn unreserve(&mut self, pod: &PodRef, _node: &str) -> Vec<wasm_scheduler_sdk::PatchIntent> {
        // The pod left Permit (rejected or timed out) or never reached it.
        self.forget_waiting(&pod.uid);
        if let Some(m) = self.members.get_mut(&pod.uid) {
            m.has_node = false;
        }
        Vec::new()
    }

    fn permit(&mut self, pod: &PodRef, _node: &str) -> PermitResult {
        let Some(member) = self.members.get(&pod.uid).cloned() else {
            return PermitResult::default();
        };
        let Ok(min_member) = member.min_member else {
            return PermitResult {
                status: Status::unresolvable(REASON_BAD_SIZE),
                ..Default::default()
            };
        };
        self.waiting
            .entry(member.group.clone())
            .or_default()
            .insert(pod.uid.clone());
        if self.members_placed(&member.group) < min_member as usize {
            return PermitResult {
                status: Status::new(wasm_scheduler_sdk::Code::Wait, REASON_WAITING),
                timeout_ms: self.args.timeout_seconds * 1000,
                ..Default::default()
            };
        }
        // Quorum: this pod passes and allows every other waiting member of its group.
        let waiting = self.waiting.remove(&member.group).unwrap_or_default();
        for uid in &waiting {
            if let Some(m) = self.members.get_mut(uid) {
                m.has_node = true;
            }
        }
        let allow = waiting.into_iter().filter(|u| *u != pod.uid).collect();
        PermitResult {
            status: Status::success(),
            allow,
            ..Default::default()
        }
    }
}

export_plugin!(GangPermit);

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_scheduler_sdk::Code;

    fn pod_event(
        action: EventAction,
        uid: &str,
        group: Option<&str>,
        node: Option<&str>,
    ) -> ObjectEvent {
        let mut labels = serde_json::Map::new();
        if let Some(g) = group {
            labels.insert("pod-group".into(), g.into());
            labels.insert("pod-group-min-member".into(), "3".into());
        }
        let object = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": uid, "namespace": "default", "uid": uid, "labels": labels},
            "spec": {"nodeName": node},
        });
        ObjectEvent {
            action,
            resource: ResourceKind::pod(),
            object: object.to_string(),
        }
    }

    fn pod(uid: &str) -> PodRef {
        PodRef {
            namespace: "default".into(),
            name: uid.into(),
            uid: uid.into(),
        }
    }

    fn plugin() -> GangPermit {
        GangPermit::new(r#"{"timeoutSeconds": 5}"#).unwrap()
    }

    #[test]
    fn works_when_a_pod_has_no_group() {
        let mut p = plugin();
        p.on_event(&pod_event(EventAction::Added, "solo", None, None));
        assert_eq!(p.permit(&pod("solo"), "n1").status.code, Code::Success);
    }

    #[test]
    fn waits_until_the_gang_is_complete_then_allows_all() {
        let mut p = plugin();
        for uid in ["a", "b", "c"] {
            p.on_event(&pod_event(EventAction::Added, uid, Some("g"), None));
        }
        let r = p.permit(&pod("a"), "n1");
        assert_eq!((r.status.code, r.timeout_ms), (Code::Wait, 5000));
        assert_eq!(p.permit(&pod("b"), "n1").status.code, Code::Wait);
        let last = p.permit(&pod("c"), "n1");
        assert_eq!(last.status.code, Code::Success);
        assert_eq!(last.allow, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn counts_members_that_already_have_a_node() {
        let mut p = plugin();
        p.on_event(&pod_event(EventAction::Added, "a", Some("g"), Some("n1")));
        p.on_event(&pod_event(EventAction::Added, "b", Some("g"), Some("n2")));
        p.on_event(&pod_event(EventAction::Added, "c", Some("g"), None));
        let r = p.permit(&pod("c"), "n3");
        assert_eq!(r.status.code, Code::Success);
        assert!(r.allow.is_empty());
    }

    #[test]
    fn forgets_a_waiting_pod_on_unreserve() {
        let mut p = plugin();
        for uid in ["a", "b", "c"] {
            p.on_event(&pod_event(EventAction::Added, uid, Some("g"), None));
        }
        assert_eq!(p.permit(&pod("a"), "n1").status.code, Code::Wait);
        p.unreserve(&pod("a"), "n1");
        assert_eq!(p.permit(&pod("b"), "n1").status.code, Code::Wait);
        assert_eq!(p.permit(&pod("c"), "n1").status.code, Code::Wait);
    }

    #[test]
    fn errors_when_the_group_size_is_not_a_number() {
        let mut p = plugin();
        let mut ev = pod_event(EventAction::Added, "x", Some("g"), None);
        ev.object = ev.object.replace("\"3\"", "\"three\"");
        p.on_event(&ev);
        assert_eq!(
            p.permit(&pod("x"), "n1").status.code,
            Code::UnschedulableAndUnresolvable
        );
    }

    #[test]
    fn pre_filter_turns_pods_away_while_the_group_is_too_small() {
        let mut p = plugin();
        p.on_event(&pod_event(EventAction::Added, "a", Some("g"), None));
        p.on_event(&pod_event(EventAction::Added, "b", Some("g"), None));
        let r = p.pre_filter(&pod("a"));
        assert_eq!(r.status.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(
            r.status.message(),
            format!("{REASON_TOO_FEW}: g has 2 of 3")
        );
        p.on_event(&pod_event(EventAction::Added, "c", Some("g"), None));
        assert!(p.pre_filter(&pod("a")).status.is_success());
        assert!(p.pre_filter(&pod("solo")).status.is_success());
    }

    #[test]
    fn errors_when_args_are_invalid() {
        assert!(
            GangPermit::new(r#"{"minMember": 0}"#)
                .unwrap_err()
                .contains("minMember")
        );
        assert!(GangPermit::new(r#"{"bogus": 1}"#).is_err());
    }
}
