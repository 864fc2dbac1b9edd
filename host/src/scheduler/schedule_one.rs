//! The scheduling cycle: serial, one pod at a time (upstream `scheduleOne` / `schedulingCycle`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rand::Rng;

use crate::framework::{
    Code, CycleState, FilterVerdicts, Framework, NodeInfo, PluginFailure, PodInfo,
    PostFilterContext, Snapshot, Status,
};
use crate::queue::QueuedPodInfo;

use super::binding::AssumedIntents;
use super::diagnosis::{Diagnosis, num_feasible_nodes_to_find, select_host};
use super::intents::check_kinds;
use super::{PodOutcome, Shared};

/// Filter runs on several threads only for batches at least this large. Measured on 2 cores
/// with the native plugins: one thread filters 5000 nodes in well under a millisecond, while
/// starting scoped threads per cycle made a 5000-node simulation 3.5x slower, so smaller
/// batches always run on the loop thread.
const PARALLEL_FILTER_MIN_NODES: usize = 4096;
/// ... and only with this many cores: the binding cycles and the watch need the others.
const PARALLEL_FILTER_MIN_CORES: usize = 4;
/// Smallest batch of nodes handed to Filter plugins in one call.
const MIN_FILTER_BATCH: usize = 32;
/// One cycle in this many records plugin durations (upstream samples 10%).
const PLUGIN_METRICS_EVERY: u64 = 10;

/// Per-loop state.
#[derive(Default)]
pub(crate) struct LoopState {
    /// Where the next Filter pass starts (upstream `nextStartNodeIndex`), so successive pods
    /// look at different nodes first.
    next_start: usize,
    cycles: u64,
}

/// Why a cycle ended without a node.
pub(crate) enum CycleFailure {
    /// No node fits; the diagnosis says why.
    Unschedulable(Box<Diagnosis>),
    /// The cluster has no nodes.
    NoNodes,
    /// A plugin or the host failed.
    Error(String),
}

impl Shared {
    /// Schedules pods until the queue closes. `local` is the loop thread's own runtime.
    pub(crate) fn run_loop(self: &Arc<Self>, local: &tokio::runtime::Runtime) {
        let mut snapshot = Snapshot::default();
        let mut st = LoopState::default();
        while let Some(qp) = local.block_on(self.queue.pop()) {
            self.schedule_one(qp, &mut snapshot, &mut st);
        }
    }

    fn schedule_one(
        self: &Arc<Self>,
        qp: QueuedPodInfo,
        snapshot: &mut Snapshot,
        st: &mut LoopState,
    ) {
        let start = Instant::now();
        let pod = qp.pod.clone();
        let Some(fwk) = self.profiles.get(pod.scheduler_name()).cloned() else {
            self.queue.delete(&pod.key.uid);
            return;
        };
        // A pod bound or assumed already is not pending (upstream skips assigned and assumed
        // pods); the cache keeps such pods out of the queue, this guards the loop anyway.
        if self.cache.is_assigned(&pod.key.uid) {
            tracing::debug!(pod = %pod.key.name, "dropping a popped pod that is already assigned");
            self.queue.delete(&pod.key.uid);
            return;
        }
        // One span per attempt; `result` and `node` are recorded where the attempt ends (the
        // binding cycle runs inside it too).
        let span = tracing::debug_span!(
            "schedule_attempt",
            pod = %format_args!("{}/{}", pod.key.namespace, pod.key.name),
            profile = fwk.name(),
            attempt = qp.attempts,
            result = tracing::field::Empty,
            node = tracing::field::Empty,
        );
        let _entered = span.enter();
        self.cache.update_snapshot(snapshot);
        st.cycles += 1;
        let mut state = CycleState::default();
        state.record_plugin_metrics = st.cycles.is_multiple_of(PLUGIN_METRICS_EVERY);
        match self.find_node(&fwk, &mut state, &pod, snapshot, st) {
            Ok(node) => self.reserve_and_permit(fwk, state, qp, node, start),
            Err(CycleFailure::Unschedulable(diag)) => {
                let code = diag.code();
                let plugins = diag.unschedulable_plugins.clone();
                if let Some(node) = &diag.nominated_node {
                    self.nominate(&pod, node);
                }
                self.fail(&fwk, &qp, code, plugins, diag.message(), start);
            }
            Err(CycleFailure::NoNodes) => {
                // Upstream retries with backoff; here any cluster event (a node added) moves it.
                let msg = "no nodes available to schedule pods".to_string();
                self.fail(&fwk, &qp, Code::Unschedulable, HashSet::new(), msg, start);
            }
            Err(CycleFailure::Error(msg)) => {
                self.fail(&fwk, &qp, Code::Error, HashSet::new(), msg, start)
            }
        }
    }

    /// PreFilter, Filter over a sample of nodes, PostFilter, PreScore, Score, and host selection
    /// (upstream `schedulePod`).
    fn find_node(
        &self,
        fwk: &Framework,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        st: &mut LoopState,
    ) -> Result<String, CycleFailure> {
        let num_all_nodes = snapshot.len();
        if num_all_nodes == 0 {
            return Err(CycleFailure::NoNodes);
        }
        let narrowed = match fwk.run_pre_filter(state, pod, snapshot) {
            Ok(n) => n,
            Err((plugin, status)) if status.code == Code::Error => {
                return Err(CycleFailure::Error(format!(
                    "running PreFilter plugin {plugin:?}: {}",
                    status.message()
                )));
            }
            Err((plugin, status)) => {
                // Every node gets the PreFilter status (for PostFilter); the message shows it once.
                let node_statuses = snapshot
                    .nodes
                    .iter()
                    .map(|n| (n.name.clone(), status.clone()))
                    .collect();
                let mut diag = Diagnosis {
                    num_all_nodes,
                    node_statuses,
                    unschedulable_plugins: HashSet::from([plugin]),
                    pre_filter_msg: Some(status.message()),
                    post_filter_msg: String::new(),
                    nominated_node: None,
                };
                self.post_filter(fwk, state, pod, snapshot, &mut diag);
                return Err(CycleFailure::Unschedulable(Box::new(diag)));
            }
        };

        // The candidate nodes, in snapshot order (`None`: all of them, not materialized).
        let mut excluded: Vec<(String, Status)> = Vec::new();
        let candidates: Option<Vec<usize>> = match &narrowed {
            None => None,
            Some((names, by)) => {
                let mut idx: Vec<usize> = names
                    .iter()
                    .filter_map(|n| snapshot.index.get(n).copied())
                    .collect();
                idx.sort_unstable();
                let keep: HashSet<usize> = idx.iter().copied().collect();
                // Upstream prints the plugin list as a Go slice: [A B].
                let reason = Status::unresolvable(format!(
                    "node(s) didn't satisfy plugin(s) [{}]",
                    by.join(" ")
                ));
                excluded.extend(
                    (0..num_all_nodes)
                        .filter(|i| !keep.contains(i))
                        .map(|i| (snapshot.nodes[i].name.clone(), reason.clone())),
                );
                Some(idx)
            }
        };

        // A pod nominated by an earlier preemption tries its node first (upstream
        // `evaluateNominatedNode`): the victims are gone once it fits there.
        if let Some(nominated) = self.nominated_node(pod)
            && let Some(node) = snapshot.get(&nominated)
            && narrowed
                .as_ref()
                .is_none_or(|(names, _)| names.contains(&nominated))
        {
            let verdict = fwk
                .run_filter_with_nominated(state, pod, node, &self.nominator)
                .map_err(|(p, s)| plugin_error("Filter", p, s))?;
            if verdict.is_none() {
                return Ok(nominated);
            }
        }

        let (feasible, rejected) =
            self.find_feasible(fwk, state, pod, snapshot, candidates.as_deref(), st)?;
        if feasible.is_empty() {
            let mut plugins: HashSet<String> = narrowed
                .map(|(_, by)| by.into_iter().collect())
                .unwrap_or_default();
            let mut node_statuses = excluded;
            for (name, pi, status) in rejected {
                plugins.insert(fwk.filter_plugins()[pi].name().to_string());
                node_statuses.push((name, status));
            }
            let mut diag = Diagnosis {
                num_all_nodes,
                node_statuses,
                unschedulable_plugins: plugins,
                pre_filter_msg: None,
                post_filter_msg: String::new(),
                nominated_node: None,
            };
            self.post_filter(fwk, state, pod, snapshot, &mut diag);
            return Err(CycleFailure::Unschedulable(Box::new(diag)));
        }
        if feasible.len() == 1 {
            return Ok(feasible[0].name.clone());
        }
        fwk.run_pre_score(state, pod, &feasible)
            .map_err(|(p, s)| plugin_error("PreScore", p, s))?;
        let scores = fwk
            .run_score(state, pod, &feasible)
            .map_err(|(p, s)| plugin_error("Score", p, s))?;
        let mut rng = rand::rng();
        let best = select_host(&scores, |n| rng.random_range(0..n)).expect("feasible is not empty");
        Ok(feasible[best].name.clone())
    }

    /// Runs Filter over candidates (snapshot indexes; `None` for every node) from the rotating
    /// start index until enough nodes fit. Returns the feasible nodes and, per rejected node,
    /// its name, the rejecting Filter plugin's index and status.
    #[allow(clippy::type_complexity)]
    fn find_feasible(
        &self,
        fwk: &Framework,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        candidates: Option<&[usize]>,
        st: &mut LoopState,
    ) -> Result<(Vec<Arc<NodeInfo>>, Vec<(String, usize, Status)>), CycleFailure> {
        let total = candidates.map_or(snapshot.len(), <[usize]>::len);
        if total == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let percentage = fwk
            .percentage_of_nodes_to_score()
            .or(self.options.percentage_of_nodes_to_score);
        let to_find = num_feasible_nodes_to_find(percentage, total);
        let start = st.next_start % total;
        let mut feasible = Vec::with_capacity(to_find);
        let mut rejected = Vec::new();
        let mut processed = 0;
        let mut gathered: Vec<Arc<NodeInfo>> = Vec::new();
        while feasible.len() < to_find && processed < total {
            let mut len = (to_find - feasible.len())
                .max(MIN_FILTER_BATCH)
                .min(total - processed);
            let from = (start + processed) % total;
            let batch: &[Arc<NodeInfo>] = match candidates {
                // Filter a slice of the snapshot itself: cloning the Arcs would touch every
                // node's refcount, a cache miss each on large clusters. A batch stops at the
                // end of the node list; the next one starts at its beginning.
                None => {
                    len = len.min(total - from);
                    &snapshot.nodes[from..from + len]
                }
                Some(c) => {
                    gathered.clear();
                    gathered
                        .extend((0..len).map(|k| snapshot.nodes[c[(from + k) % total]].clone()));
                    &gathered
                }
            };
            let verdicts = self
                .filter_batch(fwk, state, pod, batch)
                .map_err(|(p, s)| plugin_error("Filter", p, s))?;
            let nominations = !self.nominator.is_empty();
            for (node, verdict) in batch.iter().zip(verdicts) {
                // Nodes that fit must also leave room for the pods nominated there with at
                // least this pod's priority (upstream `RunFilterPluginsWithNominatedPods`).
                let verdict = match verdict {
                    None if nominations
                        && !self.nominator.holding_against(&node.name, pod).is_empty() =>
                    {
                        fwk.run_filter_with_nominated(state, pod, node, &self.nominator)
                            .map_err(|(p, s)| plugin_error("Filter", p, s))?
                    }
                    v => v,
                };
                match verdict {
                    None if feasible.len() < to_find => feasible.push(node.clone()),
                    None => {}
                    Some((pi, status)) => rejected.push((node.name.clone(), pi, status)),
                }
            }
            processed += len;
        }
        st.next_start = (start + processed) % total;
        Ok((feasible, rejected))
    }

    /// Filter over one batch, split across threads when the batch is large.
    fn filter_batch(
        &self,
        fwk: &Framework,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<FilterVerdicts, PluginFailure> {
        let threads = self.options.parallelism;
        if threads <= 1
            || nodes.len() < PARALLEL_FILTER_MIN_NODES
            || self.cores < PARALLEL_FILTER_MIN_CORES
        {
            return fwk.run_filter(state, pod, nodes);
        }
        let chunk = nodes.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = nodes
                .chunks(chunk)
                .map(|c| s.spawn(move || fwk.run_filter(state, pod, c)))
                .collect();
            let mut out = Vec::with_capacity(nodes.len());
            for h in handles {
                let part = h.join().unwrap_or_else(|_| {
                    Err(("Filter".into(), Status::error("a Filter plugin panicked")))
                });
                out.extend(part?);
            }
            Ok(out)
        })
    }

    /// The node the pod is nominated to: in memory, or by its status.
    fn nominated_node(&self, pod: &PodInfo) -> Option<String> {
        self.nominator.node_of(&pod.key.uid).or_else(|| {
            pod.pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty())
        })
    }

    /// Records a nomination from PostFilter (`""` clears one): in memory at once, so the next
    /// cycles hold the pod's room, and in `status.nominatedNodeName` by a pods/status patch in
    /// the background (upstream `handleSchedulingFailure` with its nominating info).
    fn nominate(&self, pod: &Arc<PodInfo>, node: &str) {
        let had = self.nominated_node(pod).is_some();
        if node.is_empty() {
            self.nominator.remove(&pod.key.uid);
            if !had {
                return;
            }
        } else {
            self.nominator.add(pod.clone(), node);
        }
        let value = if node.is_empty() {
            serde_json::Value::Null
        } else {
            node.into()
        };
        let body = serde_json::json!({"status": {"nominatedNodeName": value}});
        let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(self.client.clone(), &pod.key.namespace);
        let name = pod.key.name.clone();
        self.rt.spawn(async move {
            let params = kube::api::PatchParams {
                field_manager: Some(super::FIELD_MANAGER.to_string()),
                ..Default::default()
            };
            if let Err(e) = api
                .patch_status(&name, &params, &kube::api::Patch::Strategic(body))
                .await
            {
                tracing::debug!(pod = %name, error = %e, "could not set nominatedNodeName");
            }
        });
    }

    /// PostFilter: its message joins the diagnosis; its intents are assumed and applied now.
    fn post_filter(
        &self,
        fwk: &Framework,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        diag: &mut Diagnosis,
    ) {
        let ctx = PostFilterContext {
            snapshot,
            framework: fwk,
            nominator: &self.nominator,
            activator: &self.activator,
        };
        let outcome = fwk.run_post_filter(&ctx, state, pod, &diag.node_statuses);
        if !outcome.status.is_success() {
            diag.post_filter_msg = outcome.status.message();
        }
        diag.nominated_node = outcome.nominated_node;
        for (plugin, intents) in outcome.intents {
            if let Err(st) = check_kinds(plugin.as_ref(), &intents) {
                tracing::warn!(pod = %pod.key.name, "{}", st.message());
                continue;
            }
            self.apply_in_background(format!("postfilter:{}", pod.key.uid), intents);
        }
    }

    /// Assume, Reserve and Permit; then the binding cycle runs in the background.
    fn reserve_and_permit(
        self: &Arc<Self>,
        fwk: Arc<Framework>,
        mut state: CycleState,
        qp: QueuedPodInfo,
        node: String,
        start: Instant,
    ) {
        let pod = qp.pod.clone();
        let uid = pod.key.uid.clone();
        if let Err(e) = self.cache.assume_pod(&pod, &node) {
            self.fail(&fwk, &qp, Code::Error, HashSet::new(), e.to_string(), start);
            return;
        }
        // On its node now: its nomination no longer needs to hold room (upstream
        // `DeleteNominatedPodIfExists` when assuming).
        self.nominator.remove(&uid);
        let mut reserved: Vec<AssumedIntents> = Vec::new();
        let reserve = fwk.run_reserve(&mut state, &pod, &node, &mut |plugin, intents| {
            check_kinds(plugin.as_ref(), &intents)?;
            let ids = self
                .cache
                .assume_intents(&uid, &intents)
                .map_err(|e| Status::error(e.to_string()))?;
            reserved.push(AssumedIntents {
                plugin: plugin.clone(),
                intents,
                ids,
            });
            Ok(())
        });
        if let Err((plugin, status)) = reserve {
            self.unreserve(&fwk, &mut state, &pod, &node);
            let code = if status.is_rejected() {
                Code::Unschedulable
            } else {
                Code::Error
            };
            let msg = format!("running Reserve plugin {plugin:?}: {}", status.message());
            self.fail(&fwk, &qp, code, HashSet::from([plugin]), msg, start);
            return;
        }
        let permit = fwk.run_permit(&mut state, &pod, &node);
        for (plugin, other) in &permit.allow {
            self.waiting.allow(other, plugin);
        }
        for (plugin, other) in &permit.reject {
            self.waiting
                .reject(other, plugin, &format!("rejected by plugin {plugin}"));
        }
        let wait = match permit.status.code {
            Code::Success => None,
            Code::Wait => Some(self.waiting.add(&uid, &permit.wait)),
            code => {
                self.unreserve(&fwk, &mut state, &pod, &node);
                let plugin = permit.failed_plugin.unwrap_or_default();
                let code = if code == Code::Error {
                    Code::Error
                } else {
                    Code::Unschedulable
                };
                let msg = permit.status.message();
                self.fail(&fwk, &qp, code, HashSet::from([plugin]), msg, start);
                return;
            }
        };
        self.bindings.fetch_add(1, Ordering::AcqRel);
        if wait.is_some() {
            // A new waiting pod (see `Scheduler::waiting_pods`).
            self.progress.notify_waiters();
        }
        let span = tracing::Span::current();
        span.record("node", node.as_str());
        self.rt.spawn(tracing::Instrument::instrument(
            self.clone()
                .binding_cycle(fwk, state, qp, node, reserved, wait, start),
            span,
        ));
    }

    /// Records a failed attempt and requeues the pod (upstream `handleSchedulingFailure`).
    pub(crate) fn fail(
        &self,
        fwk: &Framework,
        qp: &QueuedPodInfo,
        code: Code,
        plugins: HashSet<String>,
        message: String,
        start: Instant,
    ) {
        let result = if code == Code::Error {
            "error"
        } else {
            "unschedulable"
        };
        self.metrics.attempt(fwk.name(), result, start.elapsed());
        let pod = &qp.pod;
        tracing::Span::current().record("result", result);
        tracing::debug!(result, "{message}");
        self.outcomes.record(
            &pod.key.uid,
            PodOutcome {
                namespace: pod.key.namespace.clone(),
                name: pod.key.name.clone(),
                node: None,
                message: Some(message.clone()),
                attempts: qp.attempts,
            },
        );
        let reason = if code == Code::Error {
            "SchedulerError"
        } else {
            "Unschedulable"
        };
        self.recorder
            .failed(pod.clone(), reason, message, fwk.name());
        // Last: once the pod leaves in-flight the scheduler may look idle, and whoever waited
        // for that (e.g. `simulate`) must find the outcome and the queued records.
        self.queue.requeue_failed(qp, code, plugins);
    }
}

fn plugin_error(point: &str, plugin: String, status: Status) -> CycleFailure {
    CycleFailure::Error(format!(
        "running {point} plugin {plugin:?}: {}",
        status.message()
    ))
}
