//! Nodes and pods: one [`NodeInfo`] per node with its bound and assumed pods, and incremental
//! snapshots (only nodes changed since the last snapshot are copied).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodResourceClaimStatus};

use crate::framework::{EventAction, NodeInfo, PodInfo, Snapshot};

use super::CacheError;

/// A pod the cache knows: pending, bound, or assumed on a node by the scheduler.
#[derive(Debug, Clone)]
pub(crate) struct PodEntry {
    pub info: Arc<PodInfo>,
    /// The node it is bound or assumed to.
    pub node: Option<String>,
    /// Assumed by the scheduler, not yet confirmed by the watch.
    pub assumed: bool,
}

/// What a pod update meant.
#[derive(Debug)]
pub(crate) enum PodChange {
    /// The pod waits to be scheduled.
    Pending {
        info: Arc<PodInfo>,
        spec_changed: bool,
    },
    /// The pod is bound to a node (new, changed, or confirming an assumption).
    Assigned { action: EventAction },
    /// An update of a pod the scheduler assumed on `node` before the watch showed its binding:
    /// it is in its binding cycle, not pending, so the queue must not take it back (upstream
    /// skips updates of assumed pods).
    StillAssumed { node: String },
    /// The pod was deleted or finished.
    Gone { was_assigned: bool },
}

#[derive(Default)]
pub(crate) struct NodeStore {
    nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    dirty: Vec<usize>,
    dirty_mark: Vec<bool>,
    structure_changed: bool,
    generation: u64,
    /// Pods bound to nodes the cache has not seen (yet).
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
    pub(crate) pods: HashMap<String, PodEntry>,
    pub(crate) assumed: usize,
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl NodeStore {
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn nodes(&self) -> &[Arc<NodeInfo>] {
        &self.nodes
    }

    fn touch(&mut self, i: usize) {
        self.generation += 1;
        let n = Arc::make_mut(&mut self.nodes[i]);
        n.generation = self.generation;
        if !self.dirty_mark[i] {
            self.dirty_mark[i] = true;
            self.dirty.push(i);
        }
    }

    /// Adds or replaces a node. Returns the event action.
    pub(crate) fn upsert_node(&mut self, node: Arc<Node>) -> EventAction {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(&i) = self.index.get(&name) {
            Arc::make_mut(&mut self.nodes[i]).set_node(node);
            self.touch(i);
            return EventAction::Modified;
        }
        let mut info = NodeInfo::new(node);
        for p in self.orphans.remove(&name).unwrap_or_default() {
            info.add_pod(p);
        }
        self.generation += 1;
        info.generation = self.generation;
        self.index.insert(name, self.nodes.len());
        self.nodes.push(Arc::new(info));
        self.dirty_mark.push(false);
        self.structure_changed = true;
        EventAction::Added
    }

    /// Removes a node; its pods wait as orphans in case it comes back.
    pub(crate) fn delete_node(&mut self, name: &str) -> Option<Arc<Node>> {
        let i = self.index.remove(name)?;
        let info = self.nodes.swap_remove(i);
        self.dirty_mark.swap_remove(i);
        if i < self.nodes.len() {
            self.index.insert(self.nodes[i].name.clone(), i);
        }
        if !info.pods.is_empty() {
            self.orphans.insert(name.to_string(), info.pods.clone());
        }
        self.structure_changed = true;
        self.generation += 1;
        Some(info.node.clone())
    }

    fn add_to_node(&mut self, node: &str, info: Arc<PodInfo>) {
        match self.index.get(node) {
            Some(&i) => {
                Arc::make_mut(&mut self.nodes[i]).add_pod(info);
                self.touch(i);
            }
            None => self.orphans.entry(node.to_string()).or_default().push(info),
        }
    }

    fn remove_from_node(&mut self, node: &str, uid: &str) {
        match self.index.get(node) {
            Some(&i) => {
                if Arc::make_mut(&mut self.nodes[i]).remove_pod(uid) {
                    self.touch(i);
                }
            }
            None => {
                if let Some(v) = self.orphans.get_mut(node) {
                    v.retain(|p| p.key.uid != uid);
                }
            }
        }
    }

    /// A pod from the watch (added or modified).
    pub(crate) fn apply_pod(&mut self, pod: Arc<Pod>) -> PodChange {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if is_terminal(&pod) {
            return self.delete_pod(&uid);
        }
        let info = Arc::new(PodInfo::new(pod));
        let old = self.pods.remove(&uid);
        match info.node_name().map(str::to_string) {
            Some(node) => {
                let action = match &old {
                    Some(PodEntry {
                        node: Some(old_node),
                        assumed,
                        ..
                    }) => {
                        self.remove_from_node(old_node, &uid);
                        if *assumed {
                            self.assumed -= 1;
                            EventAction::Added
                        } else {
                            EventAction::Modified
                        }
                    }
                    _ => EventAction::Added,
                };
                self.add_to_node(&node, info.clone());
                self.pods.insert(
                    uid,
                    PodEntry {
                        info,
                        node: Some(node),
                        assumed: false,
                    },
                );
                PodChange::Assigned { action }
            }
            None => {
                // An assumed pod stays assumed while the watch has not shown its binding.
                if let Some(PodEntry {
                    node: Some(n),
                    assumed: true,
                    ..
                }) = old
                {
                    self.remove_from_node(&n, &uid);
                    self.add_to_node(&n, info.clone());
                    self.pods.insert(
                        uid,
                        PodEntry {
                            info,
                            node: Some(n.clone()),
                            assumed: true,
                        },
                    );
                    return PodChange::StillAssumed { node: n };
                }
                // As upstream `isPodUpdated`: status changes do not count, except the claim
                // names the resourceclaim controller records (DRA's PreEnqueue waits on them).
                fn claim_statuses(p: &Pod) -> Option<&Vec<PodResourceClaimStatus>> {
                    p.status.as_ref()?.resource_claim_statuses.as_ref()
                }
                let spec_changed = old.as_ref().is_some_and(|o| {
                    o.info.pod.spec != info.pod.spec
                        || o.info.pod.metadata.labels != info.pod.metadata.labels
                        || claim_statuses(&o.info.pod) != claim_statuses(&info.pod)
                });
                self.pods.insert(
                    uid,
                    PodEntry {
                        info: info.clone(),
                        node: None,
                        assumed: false,
                    },
                );
                PodChange::Pending { info, spec_changed }
            }
        }
    }

    /// A pod was deleted.
    pub(crate) fn delete_pod(&mut self, uid: &str) -> PodChange {
        let Some(old) = self.pods.remove(uid) else {
            return PodChange::Gone {
                was_assigned: false,
            };
        };
        if old.assumed {
            self.assumed -= 1;
        }
        if let Some(n) = &old.node {
            self.remove_from_node(n, uid);
        }
        PodChange::Gone {
            was_assigned: old.node.is_some(),
        }
    }

    /// The scheduler placed the pod on `node` (upstream `AssumePod`).
    pub(crate) fn assume_pod(&mut self, info: &Arc<PodInfo>, node: &str) -> Result<(), CacheError> {
        let uid = &info.key.uid;
        if let Some(PodEntry { node: Some(n), .. }) = self.pods.get(uid) {
            return Err(CacheError::AlreadyAssigned {
                pod: info.key.name.clone(),
                node: n.clone(),
            });
        }
        self.add_to_node(node, info.clone());
        self.pods.insert(
            uid.clone(),
            PodEntry {
                info: info.clone(),
                node: Some(node.to_string()),
                assumed: true,
            },
        );
        self.assumed += 1;
        Ok(())
    }

    /// Undoes [`NodeStore::assume_pod`] (upstream `ForgetPod`). Returns whether it was assumed.
    pub(crate) fn forget_pod(&mut self, uid: &str) -> bool {
        let Some(entry) = self.pods.get_mut(uid) else {
            return false;
        };
        if !entry.assumed {
            return false;
        }
        entry.assumed = false;
        let node = entry.node.take().expect("assumed pods have a node");
        self.assumed -= 1;
        self.remove_from_node(&node, uid);
        true
    }

    /// Brings `snap` up to date, copying only nodes changed since the last call.
    /// Meant for one consumer (the scheduling loop).
    pub(crate) fn update_snapshot(&mut self, snap: &mut Snapshot) {
        if self.structure_changed || snap.nodes.len() != self.nodes.len() {
            *snap = Snapshot::from_nodes(self.nodes.clone());
            self.structure_changed = false;
        } else {
            for &i in &self.dirty {
                snap.set_node(i, self.nodes[i].clone());
            }
        }
        for &i in &self.dirty {
            if let Some(m) = self.dirty_mark.get_mut(i) {
                *m = false;
            }
        }
        self.dirty.clear();
    }

    /// A full, independent snapshot.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot::from_nodes(self.nodes.clone())
    }

    /// All node names (for relist clean-up).
    pub(crate) fn node_names(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "status": {"allocatable": {"cpu": cpu, "pods": "110"}}
            }))
            .unwrap(),
        )
    }

    fn pod(name: &str, node: Option<&str>) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "d", "uid": name},
                "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn an_assumed_pod_counts_on_its_node_until_forgotten() {
        let mut s = NodeStore::default();
        s.upsert_node(node("n1", "1"));
        let info = Arc::new(PodInfo::new(pod("p", None)));
        assert!(matches!(
            s.apply_pod(pod("p", None)),
            PodChange::Pending { .. }
        ));
        s.assume_pod(&info, "n1").unwrap();
        assert_eq!(s.nodes()[0].requested.milli_cpu, 100);
        assert!(s.forget_pod("p"));
        assert_eq!(s.nodes()[0].requested.milli_cpu, 0);
        assert_eq!(s.assumed, 0);
    }

    #[test]
    fn the_watch_confirms_an_assumed_pod() {
        let mut s = NodeStore::default();
        s.upsert_node(node("n1", "1"));
        s.apply_pod(pod("p", None));
        s.assume_pod(&Arc::new(PodInfo::new(pod("p", None))), "n1")
            .unwrap();
        // A status update before the binding shows keeps the assumption, and the pod is not
        // pending: it is being bound.
        assert!(matches!(
            s.apply_pod(pod("p", None)),
            PodChange::StillAssumed { node } if node == "n1"
        ));
        assert_eq!(s.nodes()[0].pods.len(), 1);
        assert_eq!(s.assumed, 1);
        assert!(matches!(
            s.apply_pod(pod("p", Some("n1"))),
            PodChange::Assigned {
                action: EventAction::Added
            }
        ));
        assert_eq!(s.assumed, 0);
        assert_eq!(s.nodes()[0].pods.len(), 1);
        assert!(!s.forget_pod("p"), "a confirmed pod is not forgotten");
    }

    #[test]
    fn claim_names_recorded_in_the_status_count_as_a_pod_update() {
        let mut s = NodeStore::default();
        s.apply_pod(pod("p", None));
        let mut with_claims = (*pod("p", None)).clone();
        with_claims.status = Some(
            serde_json::from_value(serde_json::json!({
                "resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "p-gpu-abc"}]
            }))
            .unwrap(),
        );
        assert!(matches!(
            s.apply_pod(Arc::new(with_claims.clone())),
            PodChange::Pending {
                spec_changed: true,
                ..
            }
        ));
        // Other status changes do not.
        with_claims.status.as_mut().unwrap().phase = Some("Pending".into());
        assert!(matches!(
            s.apply_pod(Arc::new(with_claims)),
            PodChange::Pending {
                spec_changed: false,
                ..
            }
        ));
    }

    #[test]
    fn snapshots_copy_only_changed_nodes() {
        let mut s = NodeStore::default();
        s.upsert_node(node("n1", "1"));
        s.upsert_node(node("n2", "1"));
        let mut snap = Snapshot::default();
        s.update_snapshot(&mut snap);
        assert_eq!(snap.len(), 2);
        let n1_before = snap.nodes[0].clone();
        s.apply_pod(pod("p", Some("n2")));
        s.update_snapshot(&mut snap);
        assert!(Arc::ptr_eq(&snap.nodes[0], &n1_before));
        assert_eq!(snap.get("n2").unwrap().pods.len(), 1);
        assert_eq!(n1_before.pods.len(), 0);
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_the_node() {
        let mut s = NodeStore::default();
        s.apply_pod(pod("p", Some("late")));
        s.upsert_node(node("late", "1"));
        assert_eq!(s.nodes()[0].requested.milli_cpu, 100);
        s.delete_node("late");
        s.upsert_node(node("late", "1"));
        assert_eq!(s.nodes()[0].pods.len(), 1);
    }
}
