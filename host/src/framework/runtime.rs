//! The framework runtime: runs one profile's plugins at each extension point, in the configured
//! order, with upstream semantics for each status code (kubernetes/pkg/scheduler/framework/runtime).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

use super::*;

/// Upstream caps a Permit wait at 15 minutes (`maxTimeout` in framework/runtime).
pub const MAX_PERMIT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Scores are in this range after NormalizeScore (upstream `MinNodeScore`/`MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// A failing plugin and its status.
pub type PluginFailure = (String, Status);

/// Intents returned by one plugin, with the plugin (for the kind check).
pub type PluginIntents = (PluginRef, Vec<PatchIntent>);

/// Per node: `None` if it passed every Filter, or the index of the first rejecting Filter
/// plugin and its status.
pub type FilterVerdicts = Vec<Option<(usize, Status)>>;

/// The node set PreFilter plugins narrowed a pod to, and the plugins that narrowed it.
pub type NarrowedNodes = Option<(HashSet<String>, Vec<String>)>;

/// Called with each Reserve plugin's intents before the next plugin runs.
pub type OnIntents<'a> = dyn FnMut(&PluginRef, Vec<PatchIntent>) -> Result<(), Status> + 'a;

/// What PostFilter did.
#[derive(Default)]
pub struct PostFilterOutcome {
    /// `Success` if a plugin made the pod schedulable later; otherwise a rejection whose
    /// reasons are all plugins' messages (shown after the node reasons).
    pub status: Status,
    /// The nominated node from the successful plugin; `Some("")` clears the pod's nomination
    /// (upstream `ModeOverride` with an empty name).
    pub nominated_node: Option<String>,
    /// Intents to apply now, per plugin.
    pub intents: Vec<PluginIntents>,
}

/// What Permit decided for a pod.
#[derive(Debug, Default)]
pub struct PermitOutcome {
    /// `Success`, `Wait`, or a rejection/error.
    pub status: Status,
    /// The plugin that rejected or failed, if any.
    pub failed_plugin: Option<String>,
    /// With `Wait`: the plugins the pod waits for, each with its timeout.
    pub wait: Vec<(String, Duration)>,
    /// Other waiting pods (by uid) allowed, with the allowing plugin.
    pub allow: Vec<(String, String)>,
    /// Other waiting pods (by uid) rejected, with the rejecting plugin.
    pub reject: Vec<(String, String)>,
}

/// One profile's plugins, ready to run. Built once from a resolved profile.
pub struct Framework {
    name: String,
    pre_enqueue: Vec<PluginRef>,
    pre_filter: Vec<PluginRef>,
    filter: Vec<PluginRef>,
    post_filter: Vec<PluginRef>,
    pre_score: Vec<PluginRef>,
    score: Vec<(PluginRef, i64)>,
    reserve: Vec<PluginRef>,
    permit: Vec<PluginRef>,
    pre_bind: Vec<PluginRef>,
    bind: Vec<PluginRef>,
    post_bind: Vec<PluginRef>,
    all: Vec<PluginRef>,
    metrics: Option<Arc<Metrics>>,
    percentage_of_nodes_to_score: Option<u32>,
}

fn code_str(code: Code) -> &'static str {
    match code {
        Code::Success => "Success",
        Code::Error => "Error",
        Code::Unschedulable => "Unschedulable",
        Code::UnschedulableAndUnresolvable => "UnschedulableAndUnresolvable",
        Code::Wait => "Wait",
        Code::Skip => "Skip",
        Code::Pending => "Pending",
    }
}

impl Framework {
    /// Builds a framework from plugins per extension point (in order, with score weights).
    /// Plugins listed at a point they do not implement are ignored there.
    pub fn new(
        scheduler_name: impl Into<String>,
        points: &BTreeMap<ExtensionPoint, Vec<(PluginRef, i64)>>,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        let at = |p: ExtensionPoint| -> Vec<PluginRef> {
            points
                .get(&p)
                .map(|v| {
                    v.iter()
                        .filter(|(pl, _)| pl.extension_points().contains(&p))
                        .map(|(pl, _)| pl.clone())
                        .collect()
                })
                .unwrap_or_default()
        };
        let score = points
            .get(&ExtensionPoint::Score)
            .map(|v| {
                v.iter()
                    .filter(|(pl, _)| pl.extension_points().contains(&ExtensionPoint::Score))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let mut all: Vec<PluginRef> = Vec::new();
        for (pl, _) in points.values().flatten() {
            if !all.iter().any(|p| Arc::ptr_eq(p, pl)) {
                all.push(pl.clone());
            }
        }
        Framework {
            name: scheduler_name.into(),
            pre_enqueue: at(ExtensionPoint::PreEnqueue),
            pre_filter: at(ExtensionPoint::PreFilter),
            filter: at(ExtensionPoint::Filter),
            post_filter: at(ExtensionPoint::PostFilter),
            pre_score: at(ExtensionPoint::PreScore),
            score,
            reserve: at(ExtensionPoint::Reserve),
            permit: at(ExtensionPoint::Permit),
            pre_bind: at(ExtensionPoint::PreBind),
            bind: at(ExtensionPoint::Bind),
            post_bind: at(ExtensionPoint::PostBind),
            all,
            metrics,
            percentage_of_nodes_to_score: None,
        }
    }

    /// Sets the profile's own `percentageOfNodesToScore` (overrides the global one).
    pub fn with_percentage_of_nodes_to_score(mut self, percentage: Option<u32>) -> Self {
        self.percentage_of_nodes_to_score = percentage;
        self
    }

    /// The profile's own `percentageOfNodesToScore`, if set.
    pub fn percentage_of_nodes_to_score(&self) -> Option<u32> {
        self.percentage_of_nodes_to_score
    }

    /// The profile's scheduler name (`spec.schedulerName` of its pods).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every distinct plugin of the profile.
    pub fn plugins(&self) -> &[PluginRef] {
        &self.all
    }

    /// The Filter plugins, in order (indexes of [`FilterVerdicts`] point here).
    pub fn filter_plugins(&self) -> &[PluginRef] {
        &self.filter
    }

    /// The PreBind plugins, in order.
    pub fn pre_bind_plugins(&self) -> &[PluginRef] {
        &self.pre_bind
    }

    /// Whether any plugin has a Permit point.
    pub fn has_permit(&self) -> bool {
        !self.permit.is_empty()
    }

    /// Queueing hints: each plugin's name and the cluster events that can make a pod it rejected
    /// schedulable.
    pub fn requeue_hints(&self) -> HashMap<String, Vec<ClusterEvent>> {
        self.all
            .iter()
            .map(|p| (p.name().to_string(), p.requeue_on()))
            .collect()
    }

    fn timed<T>(
        &self,
        record: bool,
        plugin: &dyn Plugin,
        point: &'static str,
        f: impl FnOnce() -> T,
        code: impl FnOnce(&T) -> Code,
    ) -> T {
        match (&self.metrics, record) {
            (Some(m), true) => {
                let start = Instant::now();
                let out = f();
                m.plugin(plugin.name(), point, code_str(code(&out)), start.elapsed());
                out
            }
            _ => f(),
        }
    }

    /// PreEnqueue: `Ok` if every plugin admits the pod, else the first rejecting plugin.
    pub fn run_pre_enqueue(&self, pod: &PodInfo) -> Result<(), PluginFailure> {
        for p in &self.pre_enqueue {
            let st = p.pre_enqueue(pod);
            if !st.is_success() {
                return Err((p.name().to_string(), st));
            }
        }
        Ok(())
    }

    /// PreFilter: runs every plugin; `Skip` marks its Filter skipped. Returns the intersection of
    /// the node sets plugins narrowed the pod to, with the names of those plugins (`None`: all
    /// nodes), or the first failure.
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Result<NarrowedNodes, PluginFailure> {
        let mut nodes: NarrowedNodes = None;
        let record = state.record_plugin_metrics;
        for p in &self.pre_filter {
            let r = self.timed(
                record,
                p.as_ref(),
                "PreFilter",
                || p.pre_filter(state, pod, snapshot),
                |r| r.status.code,
            );
            match r.status.code {
                Code::Success => {}
                Code::Skip => {
                    state.skip_filter.insert(p.name().to_string());
                    continue;
                }
                _ => return Err((p.name().to_string(), r.status)),
            }
            if let Some(names) = r.node_names {
                let names: HashSet<String> = names.into_iter().collect();
                nodes = Some(match nodes {
                    None => (names, vec![p.name().to_string()]),
                    Some((prev, mut by)) => {
                        by.push(p.name().to_string());
                        (prev.intersection(&names).cloned().collect(), by)
                    }
                });
            }
        }
        Ok(nodes)
    }

    /// Filter over a batch of nodes. Each plugin is called once with the nodes that passed the
    /// plugins before it, so a node's verdict is its first rejection, as upstream reports it.
    ///
    /// # Errors
    /// A plugin returned `Error`, or a wrong number of statuses: the cycle fails.
    pub fn run_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<FilterVerdicts, PluginFailure> {
        let mut verdicts: FilterVerdicts = vec![None; nodes.len()];
        let mut alive: Vec<usize> = (0..nodes.len()).collect();
        let mut batch: Vec<Arc<NodeInfo>> = Vec::new();
        for (pi, p) in self.filter.iter().enumerate() {
            if alive.is_empty() {
                break;
            }
            if state.skip_filter.contains(p.name()) {
                continue;
            }
            let input: &[Arc<NodeInfo>] = if alive.len() == nodes.len() {
                nodes
            } else {
                batch.clear();
                batch.extend(alive.iter().map(|&i| nodes[i].clone()));
                &batch
            };
            let statuses = self.timed(
                state.record_plugin_metrics,
                p.as_ref(),
                "Filter",
                || p.filter(state, pod, input),
                |_| Code::Success,
            );
            if statuses.len() != input.len() {
                let msg = format!(
                    "plugin {} returned {} filter statuses for {} nodes",
                    p.name(),
                    statuses.len(),
                    input.len()
                );
                return Err((p.name().to_string(), Status::error(msg)));
            }
            let mut next = Vec::with_capacity(alive.len());
            for (k, st) in statuses.into_iter().enumerate() {
                match st.code {
                    Code::Success | Code::Skip => next.push(alive[k]),
                    Code::Error => return Err((p.name().to_string(), st)),
                    _ => verdicts[alive[k]] = Some((pi, st)),
                }
            }
            alive = next;
        }
        Ok(verdicts)
    }

    /// Filter on one node as if the pods nominated there with at least the pod's priority
    /// already ran on it; then without them, as upstream `RunFilterPluginsWithNominatedPods`
    /// does (a pod must fit both ways). `None` if it passes.
    ///
    /// # Errors
    /// A Filter plugin failed (as [`Framework::run_filter`]).
    pub fn run_filter_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &Arc<NodeInfo>,
        nominator: &Nominator,
    ) -> Result<Option<(usize, Status)>, PluginFailure> {
        let holding = if nominator.is_empty() {
            Vec::new()
        } else {
            nominator.holding_against(&node.name, pod)
        };
        if !holding.is_empty() {
            let mut with = (**node).clone();
            for p in holding {
                with.add_pod(p);
            }
            let verdict = self
                .run_filter(state, pod, &[Arc::new(with)])?
                .pop()
                .flatten();
            if verdict.is_some() {
                return Ok(verdict);
            }
        }
        Ok(self
            .run_filter(state, pod, std::slice::from_ref(node))?
            .pop()
            .flatten())
    }

    /// PostFilter: plugins run in order until one returns `Success` or
    /// `UnschedulableAndUnresolvable`; the messages of the others are kept.
    pub fn run_post_filter(
        &self,
        ctx: &PostFilterContext<'_>,
        state: &mut CycleState,
        pod: &PodInfo,
        rejected: &[(String, Status)],
    ) -> PostFilterOutcome {
        let mut out = PostFilterOutcome {
            status: Status::unschedulable(""),
            ..Default::default()
        };
        out.status.reasons.clear();
        let record = state.record_plugin_metrics;
        for p in &self.post_filter {
            let r = self.timed(
                record,
                p.as_ref(),
                "PostFilter",
                || p.post_filter_in(ctx, state, pod, rejected),
                |r| r.status.code,
            );
            if !r.intents.is_empty() {
                out.intents.push((p.clone(), r.intents));
            }
            match r.status.code {
                Code::Success => {
                    out.status = r.status;
                    out.nominated_node = r.nominated_node;
                    return out;
                }
                Code::UnschedulableAndUnresolvable => {
                    out.status.code = Code::UnschedulableAndUnresolvable;
                    out.status.reasons.extend(r.status.reasons);
                    out.nominated_node = r.nominated_node;
                    return out;
                }
                Code::Error => {
                    out.status = r.status;
                    return out;
                }
                _ => {
                    out.status.reasons.extend(r.status.reasons);
                    // A plugin that found no way may ask to clear a stale nomination ("").
                    if r.nominated_node.is_some() {
                        out.nominated_node = r.nominated_node;
                    }
                }
            }
        }
        out
    }

    /// PreScore: `Skip` marks the plugin's Score skipped; anything but success fails the cycle.
    pub fn run_pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<(), PluginFailure> {
        let record = state.record_plugin_metrics;
        for p in &self.pre_score {
            let st = self.timed(
                record,
                p.as_ref(),
                "PreScore",
                || p.pre_score(state, pod, nodes),
                |s| s.code,
            );
            match st.code {
                Code::Success => {}
                Code::Skip => {
                    state.skip_score.insert(p.name().to_string());
                }
                _ => return Err((p.name().to_string(), st)),
            }
        }
        Ok(())
    }

    /// Score and NormalizeScore: the weighted sum per node.
    ///
    /// # Errors
    /// A plugin failed, returned the wrong number of scores, or a score outside `0..=100`.
    pub fn run_score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, PluginFailure> {
        let mut totals = vec![0i64; nodes.len()];
        let record = state.record_plugin_metrics;
        for (p, weight) in &self.score {
            if state.skip_score.contains(p.name()) {
                continue;
            }
            let name = || p.name().to_string();
            let mut scores = self
                .timed(
                    record,
                    p.as_ref(),
                    "Score",
                    || p.score(state, pod, nodes),
                    |r| r.as_ref().map(|_| Code::Success).unwrap_or(Code::Error),
                )
                .map_err(|st| (name(), st))?;
            if scores.len() != nodes.len() {
                let msg = format!(
                    "plugin {} returned {} scores for {} nodes",
                    p.name(),
                    scores.len(),
                    nodes.len()
                );
                return Err((name(), Status::error(msg)));
            }
            let st = self.timed(
                record,
                p.as_ref(),
                "NormalizeScore",
                || p.normalize_score(state, pod, &mut scores),
                |s| s.code,
            );
            if !st.is_success() {
                return Err((name(), st));
            }
            for (i, s) in scores.iter().enumerate() {
                if !(0..=MAX_NODE_SCORE).contains(s) {
                    let msg = format!(
                        "plugin {:?} returns an invalid score {s}, it should in the range of [0, {MAX_NODE_SCORE}] after normalizing",
                        p.name()
                    );
                    return Err((name(), Status::error(msg)));
                }
                totals[i] += s * weight;
            }
        }
        Ok(totals)
    }

    /// Reserve: each plugin in order; `on_intents` assumes a plugin's intents before the next
    /// plugin runs (and may refuse them, e.g. a kind the plugin did not declare).
    ///
    /// # Errors
    /// The first failing plugin; the caller runs Unreserve on all plugins.
    pub fn run_reserve(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
        on_intents: &mut OnIntents<'_>,
    ) -> Result<(), PluginFailure> {
        let record = state.record_plugin_metrics;
        for p in &self.reserve {
            let r = self.timed(
                record,
                p.as_ref(),
                "Reserve",
                || p.reserve(state, pod, node),
                |r| r.as_ref().map(|_| Code::Success).unwrap_or(Code::Error),
            );
            let intents = r.map_err(|st| (p.name().to_string(), st))?;
            if !intents.is_empty() {
                on_intents(p, intents).map_err(|st| (p.name().to_string(), st))?;
            }
        }
        Ok(())
    }

    /// Unreserve: every Reserve plugin in reverse order; returns their compensating intents.
    pub fn run_unreserve(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> Vec<PluginIntents> {
        let mut out = Vec::new();
        for p in self.reserve.iter().rev() {
            let intents = p.unreserve(state, pod, node);
            if !intents.is_empty() {
                out.push((p.clone(), intents));
            }
        }
        out
    }

    /// Permit: a rejection by any plugin rejects the pod; `Wait` from some plugins makes it wait
    /// for all of them (each timeout capped at 15 minutes).
    pub fn run_permit(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> PermitOutcome {
        let mut out = PermitOutcome::default();
        let record = state.record_plugin_metrics;
        for p in &self.permit {
            let r = self.timed(
                record,
                p.as_ref(),
                "Permit",
                || p.permit(state, pod, node),
                |r| r.status.code,
            );
            let name = p.name().to_string();
            out.allow
                .extend(r.allow.into_iter().map(|uid| (name.clone(), uid)));
            out.reject
                .extend(r.reject.into_iter().map(|uid| (name.clone(), uid)));
            match r.status.code {
                Code::Success | Code::Skip => {}
                Code::Wait => {
                    out.wait.push((
                        name,
                        Duration::from_millis(r.timeout_ms).min(MAX_PERMIT_TIMEOUT),
                    ));
                }
                _ => {
                    out.status = r.status;
                    out.failed_plugin = Some(name);
                    return out;
                }
            }
        }
        if !out.wait.is_empty() {
            out.status = Status::wait();
        }
        out
    }

    /// Calls one PreBind plugin.
    pub fn call_pre_bind(
        &self,
        plugin: &PluginRef,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> Result<Vec<PatchIntent>, Status> {
        let record = state.record_plugin_metrics;
        self.timed(
            record,
            plugin.as_ref(),
            "PreBind",
            || plugin.pre_bind(state, pod, node),
            |r| r.as_ref().map_or_else(|st| st.code, |_| Code::Success),
        )
    }

    /// Bind: bind plugins in order until one does not return `Skip`.
    pub async fn run_bind(&self, ctx: &BindContext, pod: &PodInfo, node: &str) -> Status {
        for p in &self.bind {
            let st = p.bind(ctx, pod, node).await;
            if st.code != Code::Skip {
                return st;
            }
        }
        Status::error(format!(
            "no bind plugin of profile {} bound the pod",
            self.name
        ))
    }

    /// PostBind: informational, every plugin.
    pub fn run_post_bind(&self, pod: &PodInfo, node: &str) {
        for p in &self.post_bind {
            p.post_bind(pod, node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use parking_lot::Mutex;

    /// Records its calls; PreFilter and PreScore return the configured codes.
    struct Probe {
        name: &'static str,
        pre_filter: Code,
        pre_score: Code,
        calls: Mutex<Vec<&'static str>>,
    }

    impl Probe {
        fn new(name: &'static str, pre_filter: Code, pre_score: Code) -> Arc<Probe> {
            Arc::new(Probe {
                name,
                pre_filter,
                pre_score,
                calls: Mutex::new(Vec::new()),
            })
        }

        fn status(code: Code) -> Status {
            match code {
                Code::Skip => Status::skip(),
                _ => Status::success(),
            }
        }
    }

    impl Plugin for Probe {
        fn name(&self) -> &str {
            self.name
        }
        fn extension_points(&self) -> Vec<ExtensionPoint> {
            use ExtensionPoint::*;
            vec![PreFilter, Filter, PreScore, Score]
        }
        fn pre_filter(&self, _: &mut CycleState, _: &PodInfo, _: &Snapshot) -> PreFilterResult {
            self.calls.lock().push("PreFilter");
            PreFilterResult {
                status: Probe::status(self.pre_filter),
                node_names: None,
            }
        }
        fn filter(&self, _: &CycleState, _: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
            self.calls.lock().push("Filter");
            vec![Status::success(); nodes.len()]
        }
        fn pre_score(&self, _: &mut CycleState, _: &PodInfo, _: &[Arc<NodeInfo>]) -> Status {
            self.calls.lock().push("PreScore");
            Probe::status(self.pre_score)
        }
        fn score(
            &self,
            _: &CycleState,
            _: &PodInfo,
            nodes: &[Arc<NodeInfo>],
        ) -> Result<Vec<i64>, Status> {
            self.calls.lock().push("Score");
            Ok(vec![10; nodes.len()])
        }
        fn normalize_score(&self, _: &CycleState, _: &PodInfo, _: &mut [i64]) -> Status {
            self.calls.lock().push("NormalizeScore");
            Status::success()
        }
    }

    fn framework(plugins: &[Arc<Probe>]) -> Framework {
        use ExtensionPoint::*;
        let points = [PreFilter, Filter, PreScore, Score]
            .into_iter()
            .map(|p| {
                let list = plugins
                    .iter()
                    .map(|q| (q.clone() as PluginRef, 1))
                    .collect();
                (p, list)
            })
            .collect();
        Framework::new("test", &points, None)
    }

    fn cycle(f: &Framework) -> Vec<i64> {
        let p = pod("metadata: {name: p, uid: u}\nspec: {containers: [{name: c}]}");
        let nodes = vec![node("metadata: {name: n1}"), node("metadata: {name: n2}")];
        let snapshot = Snapshot::from_nodes(nodes.clone());
        let mut state = CycleState::default();
        f.run_pre_filter(&mut state, &p, &snapshot).unwrap();
        f.run_filter(&state, &p, &nodes).unwrap();
        f.run_pre_score(&mut state, &p, &nodes).unwrap();
        f.run_score(&state, &p, &nodes).unwrap()
    }

    #[test]
    fn a_pre_score_skip_skips_score_and_normalize_score() {
        let skipping = Probe::new("Skipping", Code::Success, Code::Skip);
        let scoring = Probe::new("Scoring", Code::Success, Code::Success);
        let totals = cycle(&framework(&[skipping.clone(), scoring.clone()]));
        assert_eq!(totals, [10, 10], "only the scoring plugin counts");
        assert_eq!(*skipping.calls.lock(), ["PreFilter", "Filter", "PreScore"]);
        assert_eq!(
            *scoring.calls.lock(),
            ["PreFilter", "Filter", "PreScore", "Score", "NormalizeScore"]
        );
    }

    /// Upstream: a PreFilter `Skip` skips only the plugin's Filter (`SkipFilterPlugins`); Score
    /// is skipped only by a PreScore `Skip` (`SkipScorePlugins`).
    #[test]
    fn a_pre_filter_skip_skips_filter_but_not_score() {
        let skipping = Probe::new("Skipping", Code::Skip, Code::Success);
        cycle(&framework(std::slice::from_ref(&skipping)));
        assert_eq!(
            *skipping.calls.lock(),
            ["PreFilter", "PreScore", "Score", "NormalizeScore"]
        );
    }
}
