//! Pods nominated to nodes (upstream `PodNominator`): a pod that preempted others waits for
//! them to go with `status.nominatedNodeName` set, and until it is bound its resources are held
//! on that node against pods of lower priority (see [`Framework::run_filter_with_nominated`]).
//!
//! [`Framework::run_filter_with_nominated`]: super::Framework::run_filter_with_nominated

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::PodInfo;

#[derive(Default)]
struct State {
    /// Nominated pods per node, in nomination order.
    by_node: HashMap<String, Vec<Arc<PodInfo>>>,
    /// The node of each nominated pod, by uid.
    node_of: HashMap<String, String>,
}

/// The nominations of one scheduler, shared by the scheduling loop, the queue feeder and the
/// preemption plugin. All methods take `&self`.
#[derive(Default)]
pub struct Nominator {
    state: RwLock<State>,
}

impl Nominator {
    /// An empty nominator.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Nominates `pod` to `node`, replacing an earlier nomination of the same pod.
    pub fn add(&self, pod: Arc<PodInfo>, node: &str) {
        let mut s = self.state.write();
        Self::remove_locked(&mut s, &pod.key.uid);
        s.node_of.insert(pod.key.uid.clone(), node.to_string());
        s.by_node.entry(node.to_string()).or_default().push(pod);
    }

    /// Replaces the pod object of a nominated pod (its node stays), if it is nominated.
    pub fn update(&self, pod: Arc<PodInfo>) {
        let node = self.state.read().node_of.get(&pod.key.uid).cloned();
        if let Some(node) = node {
            self.add(pod, &node);
        }
    }

    /// Drops the nomination of the pod with this uid, if any.
    pub fn remove(&self, uid: &str) {
        let mut s = self.state.write();
        Self::remove_locked(&mut s, uid);
    }

    fn remove_locked(s: &mut State, uid: &str) {
        let Some(node) = s.node_of.remove(uid) else {
            return;
        };
        if let Some(list) = s.by_node.get_mut(&node) {
            list.retain(|p| p.key.uid != uid);
            if list.is_empty() {
                s.by_node.remove(&node);
            }
        }
    }

    /// The node the pod is nominated to.
    pub fn node_of(&self, uid: &str) -> Option<String> {
        self.state.read().node_of.get(uid).cloned()
    }

    /// Whether no pod is nominated anywhere (the common case: Filter then skips the checks).
    pub fn is_empty(&self) -> bool {
        self.state.read().node_of.is_empty()
    }

    /// The pods nominated to `node`.
    pub fn pods_for_node(&self, node: &str) -> Vec<Arc<PodInfo>> {
        self.state
            .read()
            .by_node
            .get(node)
            .cloned()
            .unwrap_or_default()
    }

    /// The pods nominated to `node` that `pod` must leave room for: other pods of at least its
    /// priority (upstream `addGENominatedPods`).
    pub fn holding_against(&self, node: &str, pod: &PodInfo) -> Vec<Arc<PodInfo>> {
        let s = self.state.read();
        let Some(list) = s.by_node.get(node) else {
            return Vec::new();
        };
        list.iter()
            .filter(|p| p.key.uid != pod.key.uid && p.priority() >= pod.priority())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, priority: i32) -> Arc<PodInfo> {
        let yaml = format!(
            "metadata: {{name: {uid}, uid: {uid}}}\nspec: {{priority: {priority}, containers: [{{name: c}}]}}"
        );
        Arc::new(PodInfo::new(Arc::new(
            serde_yaml_ng::from_str(&yaml).unwrap(),
        )))
    }

    #[test]
    fn only_other_pods_of_at_least_the_same_priority_are_held_against_a_pod() {
        let n = Nominator::default();
        n.add(pod("high", 100), "n1");
        n.add(pod("low", 1), "n1");
        let names = |v: Vec<Arc<PodInfo>>| v.iter().map(|p| p.key.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(n.holding_against("n1", &pod("mid", 50))), ["high"]);
        assert_eq!(
            names(n.holding_against("n1", &pod("high", 100))),
            Vec::<String>::new()
        );
        assert!(n.holding_against("n2", &pod("mid", 50)).is_empty());
    }

    #[test]
    fn a_new_nomination_replaces_the_old_one() {
        let n = Nominator::default();
        n.add(pod("p", 1), "n1");
        n.add(pod("p", 1), "n2");
        assert_eq!(n.node_of("p").as_deref(), Some("n2"));
        assert!(n.pods_for_node("n1").is_empty());
        n.remove("p");
        assert!(n.is_empty());
    }
}
