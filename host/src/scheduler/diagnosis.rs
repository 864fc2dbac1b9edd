//! The pure parts of the algorithm: how many nodes to look at, which node wins, and how a
//! failure reads (upstream `schedule_one.go` and `framework.FitError`).

use std::collections::{BTreeMap, HashSet};

use crate::framework::{Code, Status};

/// Below this many nodes every node is checked (upstream `minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this (upstream `minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// How many feasible nodes to find before scoring (upstream `numFeasibleNodesToFind`):
/// all nodes below 100; else `percentage` of them, where an unset (or 0) percentage is
/// `50 - nodes/125` but at least 5%, and never fewer than 100 nodes.
pub fn num_feasible_nodes_to_find(
    percentage_of_nodes_to_score: Option<u32>,
    num_all_nodes: usize,
) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let mut percentage = percentage_of_nodes_to_score.unwrap_or(0) as usize;
    if percentage == 0 {
        percentage = 50usize
            .saturating_sub(num_all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    if percentage >= 100 {
        return num_all_nodes;
    }
    (num_all_nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// The index of the highest score; ties are broken uniformly at random by reservoir sampling
/// (upstream `selectHost`). `None` for no scores.
pub fn select_host(scores: &[i64], mut rand_below: impl FnMut(usize) -> usize) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut ties = 0usize;
    for (i, &s) in scores.iter().enumerate() {
        match best {
            None => {
                best = Some(i);
                ties = 1;
            }
            Some(b) if s > scores[b] => {
                best = Some(i);
                ties = 1;
            }
            Some(b) if s == scores[b] => {
                ties += 1;
                if rand_below(ties) == 0 {
                    best = Some(i);
                }
            }
            _ => {}
        }
    }
    best
}

/// Why no node fits a pod (upstream `framework.Diagnosis`).
#[derive(Debug, Default, Clone)]
pub struct Diagnosis {
    /// Number of nodes in the snapshot.
    pub num_all_nodes: usize,
    /// Per rejected node: node name and the first rejecting status.
    pub node_statuses: Vec<(String, Status)>,
    /// Plugins that rejected the pod (their events requeue it).
    pub unschedulable_plugins: HashSet<String>,
    /// The PreFilter rejection, if PreFilter rejected the pod.
    pub pre_filter_msg: Option<String>,
    /// PostFilter's message.
    pub post_filter_msg: String,
    /// The node PostFilter nominated the pod to; `Some("")` clears its nomination.
    pub nominated_node: Option<String>,
}

impl Diagnosis {
    /// The status code of the failure: `UnschedulableAndUnresolvable` only if every node was
    /// rejected that way.
    pub fn code(&self) -> Code {
        if !self.node_statuses.is_empty()
            && self
                .node_statuses
                .iter()
                .all(|(_, s)| s.code == Code::UnschedulableAndUnresolvable)
        {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        }
    }

    /// The message users see, as upstream `FitError.Error()`:
    /// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}.`
    /// followed by PostFilter's message. Reason counts are sorted as strings, like upstream.
    pub fn message(&self) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        match &self.pre_filter_msg {
            Some(pre) => msg.push_str(&format!(" {pre}.")),
            None => {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for (_, st) in &self.node_statuses {
                    for r in &st.reasons {
                        *counts.entry(r.as_str()).or_default() += 1;
                    }
                }
                let mut parts: Vec<String> = counts
                    .into_iter()
                    .map(|(r, c)| format!("{c} {r}"))
                    .collect();
                parts.sort();
                msg.push_str(&format!(" {}.", parts.join(", ")));
            }
        }
        if !self.post_filter_msg.is_empty() {
            // Upstream appends the message as is; messages that are themselves fit errors
            // (preemption's) end with their own period.
            msg.push(' ');
            msg.push_str(&self.post_filter_msg);
            if !self.post_filter_msg.ends_with('.') {
                msg.push('.');
            }
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_clusters_check_every_node() {
        assert_eq!(num_feasible_nodes_to_find(None, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(None, 99), 99);
    }

    #[test]
    fn the_adaptive_percentage_shrinks_with_cluster_size() {
        // 50 - 1000/125 = 42%
        assert_eq!(num_feasible_nodes_to_find(None, 1000), 420);
        // 50 - 5000/125 = 10%
        assert_eq!(num_feasible_nodes_to_find(None, 5000), 500);
        // at least 5%
        assert_eq!(num_feasible_nodes_to_find(None, 10000), 500);
        // at least 100 nodes
        assert_eq!(num_feasible_nodes_to_find(Some(1), 200), 100);
        assert_eq!(num_feasible_nodes_to_find(Some(100), 5000), 5000);
    }

    #[test]
    fn the_highest_score_wins_and_ties_are_sampled() {
        assert_eq!(select_host(&[10, 30, 20], |_| 0), Some(1));
        // Always replacing on a tie picks the last of the tied nodes.
        assert_eq!(select_host(&[30, 10, 30, 30], |_| 0), Some(3));
        // Never replacing keeps the first.
        assert_eq!(select_host(&[30, 10, 30, 30], |n| n - 1), Some(0));
        assert_eq!(select_host(&[], |_| 0), None);
    }

    #[test]
    fn the_message_counts_reasons_like_upstream() {
        let d = Diagnosis {
            num_all_nodes: 5,
            node_statuses: vec![
                ("a".into(), Status::unschedulable("Insufficient cpu")),
                ("b".into(), Status::unschedulable("Insufficient cpu")),
                ("c".into(), Status::unschedulable("Insufficient cpu")),
                (
                    "d".into(),
                    Status::unresolvable("node(s) had untolerated taint {dedicated: gpu}"),
                ),
                (
                    "e".into(),
                    Status::unresolvable("node(s) had untolerated taint {dedicated: gpu}"),
                ),
            ],
            ..Default::default()
        };
        assert_eq!(
            d.message(),
            "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu."
        );
        assert_eq!(d.code(), Code::Unschedulable);
        let pre = Diagnosis {
            num_all_nodes: 2,
            pre_filter_msg: Some("pod has unbound immediate claims".into()),
            post_filter_msg: "no new claims to deallocate".into(),
            ..Default::default()
        };
        assert_eq!(
            pre.message(),
            "0/2 nodes are available: pod has unbound immediate claims. no new claims to deallocate."
        );
    }
}
