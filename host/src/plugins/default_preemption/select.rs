//! The pure half of preemption: which pods to evict on a node, and which node to pick
//! (upstream `SelectVictimsOnNode`, `filterPodsWithPDBViolation`, `pickOneNodeForPreemption`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, OnceLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::framework::{
    Code, CycleState, Framework, NodeInfo, Nominator, PluginFailure, PodInfo, Status,
};

use super::ERR_NO_VICTIMS;

/// A PodDisruptionBudget as preemption reads it.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    /// Its namespace.
    pub namespace: String,
    /// `spec.selector`; `None` (null) matches no pod.
    pub selector: Option<LabelSelector>,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i32,
    /// `status.disruptedPods`: pods the API server already counted as disrupted.
    pub disrupted_pods: HashSet<String>,
}

impl Budget {
    /// Whether the budget covers this pod (upstream: same namespace, a non-empty selector
    /// that matches its labels; a pod without labels matches nothing).
    fn covers(&self, pod: &PodInfo) -> bool {
        let Some(labels) = pod.pod.metadata.labels.as_ref().filter(|l| !l.is_empty()) else {
            return false;
        };
        let Some(selector) = &self.selector else {
            return false;
        };
        let empty = selector
            .match_labels
            .as_ref()
            .is_none_or(BTreeMap::is_empty)
            && selector
                .match_expressions
                .as_ref()
                .is_none_or(Vec::is_empty);
        pod.key.namespace == self.namespace && !empty && selector_matches(selector, labels)
    }
}

/// Whether `labels` satisfy a metav1 LabelSelector.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(m) = &selector.match_labels
        && m.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
}

/// Victims on one node and how many of them violate a budget.
#[derive(Debug, Clone)]
pub struct Victims {
    /// Most important first.
    pub pods: Vec<Arc<PodInfo>>,
    /// Victims whose eviction takes a budget below zero.
    pub num_pdb_violations: usize,
}

/// A node preemption could make room on.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node.
    pub node: String,
    /// Who has to go.
    pub victims: Victims,
}

/// When the pod started; pods that have not started (no kubelet reported them) count as
/// starting now, i.e. the latest (upstream `GetPodStartTime`).
fn start_time(pod: &PodInfo) -> Option<jiff::Timestamp> {
    pod.pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
}

/// Upstream `MoreImportantPod`: higher priority first, then the one that started earlier.
pub fn more_important(a: &PodInfo, b: &PodInfo) -> Ordering {
    b.priority()
        .cmp(&a.priority())
        .then_with(|| match (start_time(a), start_time(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
}

/// Splits pods (keeping their order) into those whose eviction would violate a budget and the
/// others, spending each budget's allowance as it goes (upstream `filterPodsWithPDBViolation`).
pub fn split_by_pdb_violation(
    pods: Vec<Arc<PodInfo>>,
    budgets: &[Budget],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = budgets.iter().map(|b| b.disruptions_allowed).collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for pod in pods {
        let mut violated = false;
        for (i, b) in budgets.iter().enumerate() {
            if !b.covers(&pod) || b.disrupted_pods.contains(&pod.key.name) {
                continue;
            }
            allowed[i] -= 1;
            if allowed[i] < 0 {
                violated = true;
            }
        }
        if violated {
            violating.push(pod);
        } else {
            fine.push(pod);
        }
    }
    (violating, fine)
}

/// What victim selection needs from the cycle.
pub struct Selection<'a> {
    /// The profile (its Filter plugins decide whether the pod fits).
    pub framework: &'a Framework,
    /// The cycle's state (PreFilter results).
    pub state: &'a CycleState,
    /// Nominated pods of at least the preemptor's priority keep their room.
    pub nominator: &'a Nominator,
    /// Budgets of the cluster.
    pub budgets: &'a [Budget],
}

/// The dry run's outcome on the nodes it tried (upstream `DryRunPreemption`).
#[derive(Debug, Default)]
pub struct DryRun {
    /// Candidates without PDB violations first, then the others, each in the order tried.
    pub candidates: Vec<Candidate>,
    /// Why each node tried without success is no candidate.
    pub statuses: Vec<(String, Status)>,
}

/// Below this many nodes per extra thread a window stays on the calling thread: starting a
/// scoped thread, and waiting for it to get a core on a busy machine, costs more than the
/// dry runs it would take over.
const MIN_NODES_PER_THREAD: usize = 64;

impl Selection<'_> {
    /// Filter on `info`, first with the nominated pods held against the pod added (`with`),
    /// then without them: a pod must fit both ways (upstream
    /// `RunFilterPluginsWithNominatedPods`). `None` if it fits.
    fn fits(
        &self,
        pod: &PodInfo,
        info: &Arc<NodeInfo>,
        with: Option<&Arc<NodeInfo>>,
    ) -> Result<Option<Status>, PluginFailure> {
        for n in with.into_iter().chain([info]) {
            let verdict = self
                .framework
                .run_filter(self.state, pod, std::slice::from_ref(n))?
                .pop()
                .flatten();
            if let Some((_, st)) = verdict {
                return Ok(Some(st));
            }
        }
        Ok(None)
    }

    /// The fewest pods of lower priority to evict from `node` so `pod` fits: all of them are
    /// removed, and then as many as possible are reprieved, most important first, those whose
    /// eviction would violate a budget before the others (upstream `SelectVictimsOnNode`).
    ///
    /// # Errors
    /// `Err(status)` when the node has no lower-priority pods (`UnschedulableAndUnresolvable`
    /// "No preemption victims found for incoming pod") or the pod does not fit even without
    /// them (the rejecting Filter status); a failing Filter plugin is an `Error` status.
    pub fn victims(&self, pod: &PodInfo, node: &NodeInfo) -> Result<Victims, Status> {
        let error = |(plugin, st): PluginFailure| {
            Status::error(format!(
                "running Filter plugin {plugin:?}: {}",
                st.message()
            ))
        };
        let mut potential: Vec<Arc<PodInfo>> = node
            .pods
            .iter()
            .filter(|p| p.priority() < pod.priority())
            .cloned()
            .collect();
        if potential.is_empty() {
            return Err(Status::unresolvable(ERR_NO_VICTIMS));
        }
        // Private copies, changed in place (the Arcs are never shared, so `make_mut` does not
        // copy again): `info` without the victims, `with` the same plus the nominated pods
        // held against this pod, looked up once per node rather than once per Filter run.
        let holding = if self.nominator.is_empty() {
            Vec::new()
        } else {
            self.nominator.holding_against(&node.name, pod)
        };
        let mut info = Arc::new(node.clone());
        for p in &potential {
            Arc::make_mut(&mut info).remove_pod(&p.key.uid);
        }
        let mut with = (!holding.is_empty()).then(|| {
            let mut w = (*info).clone();
            for p in holding {
                w.add_pod(p);
            }
            Arc::new(w)
        });
        if let Some(st) = self.fits(pod, &info, with.as_ref()).map_err(error)? {
            return Err(st);
        }
        potential.sort_by(|a, b| more_important(a, b));
        let (violating, fine) = split_by_pdb_violation(potential, self.budgets);
        let any_violating = !violating.is_empty();
        let mut victims = Vec::new();
        let mut num_pdb_violations = 0;
        for (p, is_violating) in violating
            .into_iter()
            .map(|p| (p, true))
            .chain(fine.into_iter().map(|p| (p, false)))
        {
            for n in with.iter_mut().chain([&mut info]) {
                Arc::make_mut(n).add_pod(p.clone());
            }
            if self
                .fits(pod, &info, with.as_ref())
                .map_err(error)?
                .is_some()
            {
                for n in with.iter_mut().chain([&mut info]) {
                    Arc::make_mut(n).remove_pod(&p.key.uid);
                }
                num_pdb_violations += usize::from(is_violating);
                victims.push(p);
            }
        }
        if any_violating {
            victims.sort_by(|a, b| more_important(a, b));
        }
        Ok(Victims {
            pods: victims,
            num_pdb_violations,
        })
    }

    /// [`Selection::victims`] on each node, on up to `threads` threads; the results are in
    /// the nodes' order whatever the threads' timing. The calling thread works too and the
    /// others take nodes one at a time as they get a core, so on a loaded machine a helper
    /// that starts late costs little.
    fn victims_on(
        &self,
        pod: &PodInfo,
        nodes: &[&Arc<NodeInfo>],
        threads: usize,
    ) -> Vec<Result<Victims, Status>> {
        let helpers = threads
            .saturating_sub(1)
            .min(nodes.len() / MIN_NODES_PER_THREAD);
        if helpers == 0 {
            return nodes.iter().map(|n| self.victims(pod, n)).collect();
        }
        let next = AtomicUsize::new(0);
        let slots: Vec<OnceLock<Result<Victims, Status>>> =
            nodes.iter().map(|_| OnceLock::new()).collect();
        let work = || loop {
            let i = next.fetch_add(1, AtomicOrdering::Relaxed);
            let Some(node) = nodes.get(i) else { break };
            let _ = slots[i].set(self.victims(pod, node));
        };
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..helpers).map(|_| s.spawn(work)).collect();
            work();
            for h in handles {
                // A panicking Filter plugin leaves its node's slot empty (an error below).
                let _ = h.join();
            }
        });
        slots
            .into_iter()
            .map(|slot| {
                slot.into_inner().unwrap_or_else(|| {
                    Err(Status::error("a Filter plugin panicked in the dry run"))
                })
            })
            .collect()
    }

    /// Tries `nodes` in order until `wanted` candidates are found, at least one of them without
    /// PDB violations (upstream `DryRunPreemption`, which starts at a random offset; the caller
    /// passes the nodes rotated). Nodes are tried in windows of as many nodes as candidates are
    /// still missing, each window spread over `threads` threads; the outcome is the serial
    /// one: results are taken in order and those past the stopping point are dropped.
    ///
    /// # Errors
    /// The first `Error` status in node order (a failing Filter plugin).
    pub fn dry_run(
        &self,
        pod: &PodInfo,
        nodes: &[&Arc<NodeInfo>],
        wanted: usize,
        threads: usize,
    ) -> Result<DryRun, Status> {
        let (mut fine, mut violating) = (Vec::new(), Vec::new());
        let mut statuses = Vec::new();
        let mut next = 0;
        while next < nodes.len() {
            let missing = wanted.saturating_sub(fine.len() + violating.len()).max(1);
            let window = &nodes[next..nodes.len().min(next + missing)];
            next += window.len();
            for (node, result) in window.iter().zip(self.victims_on(pod, window, threads)) {
                match result {
                    Ok(v) if v.pods.is_empty() => statuses.push((
                        node.name.clone(),
                        Status::error(format!(
                            "expected at least one victim pod on node {:?}",
                            node.name
                        )),
                    )),
                    Ok(victims) => {
                        let c = Candidate {
                            node: node.name.clone(),
                            victims,
                        };
                        if c.victims.num_pdb_violations == 0 {
                            fine.push(c);
                        } else {
                            violating.push(c);
                        }
                        if !fine.is_empty() && fine.len() + violating.len() >= wanted {
                            fine.extend(violating);
                            return Ok(DryRun {
                                candidates: fine,
                                statuses,
                            });
                        }
                    }
                    Err(st) if st.code == Code::Error => return Err(st),
                    Err(st) => statuses.push((node.name.clone(), st)),
                }
            }
        }
        fine.extend(violating);
        Ok(DryRun {
            candidates: fine,
            statuses,
        })
    }
}

/// Picks the node to preempt on, as upstream `pickOneNodeForPreemption`: fewest budget
/// violations, then the lowest highest-victim priority, the smallest sum of priorities, the
/// fewest victims, the latest start among the highest-priority victims; then the first.
pub fn pick_one(candidates: &[Candidate]) -> Option<&Candidate> {
    let now = jiff::Timestamp::now();
    // Each criterion scores a candidate (higher is better); ties go to the next criterion.
    let criteria: [&dyn Fn(&Candidate) -> i128; 5] = [
        &|c| -(c.victims.num_pdb_violations as i128),
        &|c| -i128::from(c.victims.pods.first().map_or(i32::MIN, |p| p.priority())),
        &|c| {
            -c.victims
                .pods
                .iter()
                .map(|p| i128::from(p.priority()) + i128::from(i32::MAX) + 1)
                .sum::<i128>()
        },
        &|c| -(c.victims.pods.len() as i128),
        &|c| {
            // The earliest start among the highest-priority victims; later is better.
            let top = c.victims.pods.first().map_or(0, |p| p.priority());
            c.victims
                .pods
                .iter()
                .filter(|p| p.priority() == top)
                .map(|p| start_time(p).unwrap_or(now).as_nanosecond())
                .min()
                .unwrap_or(i128::MIN)
        },
    ];
    let mut left: Vec<&Candidate> = candidates.iter().collect();
    for score in criteria {
        let best = left.iter().map(|c| score(c)).max()?;
        left.retain(|c| score(c) == best);
        if left.len() == 1 {
            break;
        }
    }
    left.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{ExtensionPoint, PluginRef, Snapshot};
    use crate::plugins::node_resources_fit::NodeResourcesFit;
    use crate::plugins::testing::{node_info, pod};

    fn victim(name: &str, priority: i32, labels: &str) -> Arc<PodInfo> {
        Arc::new(pod(&format!(
            "metadata: {{name: {name}, uid: {name}, namespace: default, labels: {{{labels}}}}}\nspec: {{priority: {priority}, containers: [{{name: c}}]}}"
        )))
    }

    fn candidate(node: &str, pods: Vec<Arc<PodInfo>>, violations: usize) -> Candidate {
        Candidate {
            node: node.into(),
            victims: Victims {
                pods,
                num_pdb_violations: violations,
            },
        }
    }

    #[test]
    fn the_node_with_fewer_pdb_violations_wins_over_cheaper_victims() {
        let c = [
            candidate("a", vec![victim("a1", 1, "")], 1),
            candidate("b", vec![victim("b1", 100, "")], 0),
        ];
        assert_eq!(pick_one(&c).unwrap().node, "b");
    }

    #[test]
    fn the_lowest_highest_priority_then_the_smallest_sum_then_the_fewest_victims_win() {
        let c = [
            candidate("a", vec![victim("a1", 10, "")], 0),
            candidate("b", vec![victim("b1", 5, ""), victim("b2", 5, "")], 0),
            candidate("c", vec![victim("c1", 5, ""), victim("c2", 1, "")], 0),
            candidate("d", vec![victim("d1", 5, "")], 0),
        ];
        assert_eq!(pick_one(&c).unwrap().node, "d");
        assert_eq!(pick_one(&c[..3]).unwrap().node, "c");
        assert_eq!(pick_one(&c[..2]).unwrap().node, "b");
    }

    #[test]
    fn budgets_are_spent_in_order_and_only_by_pods_they_cover() {
        let budget = Budget {
            namespace: "default".into(),
            selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), "db".to_string())].into()),
                ..Default::default()
            }),
            disruptions_allowed: 1,
            disrupted_pods: HashSet::new(),
        };
        let pods = vec![
            victim("db1", 1, "app: db"),
            victim("web", 1, "app: web"),
            victim("db2", 1, "app: db"),
        ];
        let (violating, fine) = split_by_pdb_violation(pods, &[budget]);
        let names = |v: &[Arc<PodInfo>]| v.iter().map(|p| p.key.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&violating), ["db2"]);
        assert_eq!(names(&fine), ["db1", "web"]);
    }

    #[test]
    fn more_important_pods_sort_first() {
        let mut v = vec![victim("low", 1, ""), victim("high", 9, "")];
        v.sort_by(|a, b| more_important(a, b));
        assert_eq!(v[0].key.name, "high");
    }

    /// A pod with a cpu request, priority and labels.
    fn cpu_pod(name: &str, priority: i32, milli: u32, labels: &str) -> PodInfo {
        pod(&format!(
            "metadata: {{name: {name}, uid: {name}, namespace: default, labels: {{{labels}}}}}\nspec: {{priority: {priority}, containers: [{{name: c, resources: {{requests: {{cpu: {milli}m}}}}}}]}}"
        ))
    }

    /// 4-cpu nodes filled in different ways: some hold nothing of lower priority, some too
    /// little to make room, some pods covered by a budget, one a nominated pod.
    fn cluster(n: usize) -> Vec<Arc<NodeInfo>> {
        (0..n)
            .map(|i| {
                let pods: Vec<PodInfo> = (0..4)
                    .map(|k| {
                        let priority = match i % 5 {
                            0 => 100, // nothing to preempt
                            1 => (k % 2) as i32,
                            _ => ((i + k) % 3) as i32,
                        };
                        let milli = if i % 7 == 0 { 500 } else { 900 + (k as u32 % 2) * 100 };
                        let app = if (i + k) % 4 == 0 || (i % 3 == 0 && k < 2) { "db" } else { "web" };
                        cpu_pod(&format!("v{i}-{k}"), priority, milli, &format!("app: {app}"))
                    })
                    .collect();
                Arc::new(node_info(
                    &format!(
                        "metadata: {{name: n{i}}}\nstatus: {{allocatable: {{cpu: '4', pods: '110'}}}}"
                    ),
                    &pods,
                ))
            })
            .collect()
    }

    /// Candidates (node, victims, violations) and statuses (node, message) of a dry run.
    type Summary = (Vec<(String, Vec<String>, usize)>, Vec<(String, String)>);

    fn summary(d: &DryRun) -> Summary {
        (
            d.candidates
                .iter()
                .map(|c| {
                    let names = c.victims.pods.iter().map(|p| p.key.name.clone()).collect();
                    (c.node.clone(), names, c.victims.num_pdb_violations)
                })
                .collect(),
            d.statuses
                .iter()
                .map(|(n, st)| (n.clone(), st.message()))
                .collect(),
        )
    }

    #[test]
    fn the_parallel_dry_run_finds_what_the_serial_one_finds() {
        let fit: PluginRef = Arc::new(NodeResourcesFit::new(&serde_json::json!({})).unwrap());
        let points = [
            (ExtensionPoint::PreFilter, vec![(fit.clone(), 1)]),
            (ExtensionPoint::Filter, vec![(fit, 1)]),
        ]
        .into_iter()
        .collect();
        let framework = Framework::new("test", &points, None);
        let nodes = cluster(300);
        let preemptor = cpu_pod("preemptor", 10, 3000, "");
        let mut state = CycleState::default();
        framework
            .run_pre_filter(&mut state, &preemptor, &Snapshot::from_nodes(nodes.clone()))
            .unwrap();
        let nominator = Nominator::default();
        nominator.add(Arc::new(cpu_pod("nominated", 50, 2000, "")), "n3");
        let budgets = [Budget {
            namespace: "default".into(),
            selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), "db".to_string())].into()),
                ..Default::default()
            }),
            disruptions_allowed: 0,
            disrupted_pods: HashSet::new(),
        }];
        let selection = Selection {
            framework: &framework,
            state: &state,
            nominator: &nominator,
            budgets: &budgets,
        };
        let offset = 17;
        let rotated: Vec<&Arc<NodeInfo>> = (0..nodes.len())
            .map(|i| &nodes[(offset + i) % nodes.len()])
            .collect();
        for wanted in [1, 40, 100, 300] {
            let serial = selection.dry_run(&preemptor, &rotated, wanted, 1).unwrap();
            let (candidates, statuses) = summary(&serial);
            assert!(
                !candidates.is_empty() && (wanted == 1 || !statuses.is_empty()),
                "wanted {wanted}"
            );
            assert!(candidates.len() <= wanted, "wanted {wanted}");
            for threads in [2, 3, 8] {
                let parallel = selection
                    .dry_run(&preemptor, &rotated, wanted, threads)
                    .unwrap();
                assert_eq!(
                    summary(&parallel),
                    (candidates.clone(), statuses.clone()),
                    "wanted {wanted}, {threads} threads"
                );
            }
        }
        // Both kinds of failure and candidates with and without violations are covered.
        let all = summary(&selection.dry_run(&preemptor, &rotated, 300, 1).unwrap());
        assert!(all.1.iter().any(|(_, m)| m == super::super::ERR_NO_VICTIMS));
        assert!(
            all.1
                .iter()
                .any(|(n, m)| n == "n3" && m.contains("Insufficient cpu"))
        );
        assert!(all.0.iter().any(|c| c.2 > 0) && all.0.iter().any(|c| c.2 == 0));
    }
}
