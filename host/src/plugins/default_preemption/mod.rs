//! DefaultPreemption (PostFilter, PreEnqueue): when no node fits a pod, evict pods of lower
//! priority from one node so it fits there later (upstream
//! `pkg/scheduler/framework/plugins/defaultpreemption` and `framework/preemption`).
//!
//! 1. **Eligibility.** A pod with `preemptionPolicy: Never` does not preempt; nor does a pod
//!    whose nominated node still has a victim terminating because of an earlier preemption.
//! 2. **Candidates.** Only nodes rejected as `Unschedulable` (not `…AndUnresolvable`) are tried,
//!    from a random offset, until `max(nodes × minCandidateNodesPercentage / 100,
//!    minCandidateNodesAbsolute)` candidates are found (at least one without PDB violations).
//!    On each, all lower-priority pods are removed and Filter runs again (with the nominated pods
//!    of at least the pod's priority kept); then victims are reprieved one by one, most
//!    important first and the PDB-violating ones before the others.
//! 3. **Choice.** Fewest PDB violations, lowest highest-victim priority, smallest priority sum,
//!    fewest victims, latest start ([`select::pick_one`]).
//! 4. **Eviction, off the scheduling loop** (upstream's async preemption): a task gives each
//!    victim the `DisruptionTarget` condition (pods/status patch), deletes it, and clears the
//!    nomination of lower-priority pods nominated to the node. Until it is done, PreEnqueue
//!    keeps the preemptor out of the active queue; then the preemptor is activated.
//!
//! The preemptor gets `status.nominatedNodeName` (the scheduler patches it and holds its room
//! on the node); victims still terminating keep their room until they are gone.
//!
//! Args (`DefaultPreemptionArgs`): `minCandidateNodesPercentage` (0-100, default 10) and
//! `minCandidateNodesAbsolute` (default 100), not both 0.

pub mod select;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

use crate::framework::{
    ClusterEvent, Code, CycleState, EventAction, ExtensionPoint, ObjectEvent, Plugin, PodInfo,
    PostFilterContext, PostFilterResult, ResourceKind, Status,
};
use crate::scheduler::{Diagnosis, FIELD_MANAGER};

use super::helpers::decode_args;
use super::registry::RegistryError;
use select::{Budget, Candidate, DryRun, Selection};

/// The plugin's name in the configuration.
pub const NAME: &str = "DefaultPreemption";
/// Prefix of every PostFilter message.
pub const MSG_PREFIX: &str = "preemption: ";
/// The pod may not preempt.
pub const ERR_POLICY_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
/// A victim of the pod's earlier preemption is still terminating on its nominated node.
pub const ERR_TERMINATING_ON_NOMINATED: &str =
    "not eligible due to a terminating pod on the nominated node.";
/// A node with no pod of lower priority.
pub const ERR_NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// A node removing pods cannot help (it was rejected as unresolvable).
pub const ERR_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// PreEnqueue while the preemptor's evictions are being sent.
pub const ERR_WAITING: &str = "waiting for the preemption for this pod to be finished";
/// The `DisruptionTarget` condition's reason on victims.
pub const REASON_PREEMPTION_BY_SCHEDULER: &str = "PreemptionByScheduler";

/// `pluginConfig` args (upstream `DefaultPreemptionArgs`, defaults from `SetDefaults_DefaultPreemptionArgs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DefaultPreemptionArgs {
    /// Ignored; accepted so upstream-shaped args parse.
    pub api_version: Option<String>,
    /// Ignored; accepted so upstream-shaped args parse.
    pub kind: Option<String>,
    /// Candidates to find, as a percentage of the nodes (default 10).
    #[serde(default = "default_percentage")]
    pub min_candidate_nodes_percentage: i32,
    /// Candidates to find at least (default 100).
    #[serde(default = "default_absolute")]
    pub min_candidate_nodes_absolute: i32,
}

fn default_percentage() -> i32 {
    10
}

fn default_absolute() -> i32 {
    100
}

impl Default for DefaultPreemptionArgs {
    fn default() -> Self {
        DefaultPreemptionArgs {
            api_version: None,
            kind: None,
            min_candidate_nodes_percentage: default_percentage(),
            min_candidate_nodes_absolute: default_absolute(),
        }
    }
}

impl DefaultPreemptionArgs {
    /// Upstream `ValidateDefaultPreemptionArgs`.
    fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        let (p, a) = (
            self.min_candidate_nodes_percentage,
            self.min_candidate_nodes_absolute,
        );
        if !(0..=100).contains(&p) {
            errs.push(format!(
                "minCandidateNodesPercentage: Invalid value: {p}: not in valid range [0, 100]"
            ));
        }
        if a < 0 {
            errs.push(format!(
                "minCandidateNodesAbsolute: Invalid value: {a}: not in valid range [0, inf)"
            ));
        }
        if p == 0 && a == 0 {
            errs.push("[minCandidateNodesPercentage, minCandidateNodesAbsolute]: Invalid value: \"[0, 0]\": cannot both be zero".into());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join(", "))
        }
    }

    /// How many candidates to look for among `nodes` potential nodes.
    pub fn num_candidates(&self, nodes: usize) -> usize {
        let n = nodes * self.min_candidate_nodes_percentage.max(0) as usize / 100;
        n.max(self.min_candidate_nodes_absolute.max(0) as usize)
            .min(nodes)
    }
}

/// The API side: where eviction tasks run and what they talk to.
#[derive(Clone)]
struct Api_ {
    client: kube::Client,
    rt: tokio::runtime::Handle,
}

/// The plugin. See the module docs.
pub struct DefaultPreemption {
    args: DefaultPreemptionArgs,
    /// PodDisruptionBudgets by `namespace/name`, fed by `on_event`.
    budgets: RwLock<HashMap<String, Budget>>,
    /// Preemptors whose eviction task is running (PreEnqueue holds them back meanwhile).
    preempting: Arc<Mutex<HashSet<String>>>,
    /// Eviction tasks not finished, counted until *after* they re-activate their preemptor:
    /// between leaving `preempting` and the activation nothing else shows that the preemptor
    /// is about to retry, and `simulate` would call the run settled there.
    tasks: Arc<AtomicUsize>,
    api: Option<Api_>,
    /// Threads the dry run uses: the CPUs available (upstream runs it on 16 goroutines).
    threads: usize,
}

impl DefaultPreemption {
    /// Creates the plugin. Without a client (config validation, unit tests) it still selects
    /// victims but cannot evict them.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] for args that do not decode or validate.
    pub fn new(
        args: &serde_json::Value,
        client: Option<kube::Client>,
    ) -> Result<Self, RegistryError> {
        let args: DefaultPreemptionArgs = decode_args(NAME, args)?;
        args.validate()
            .map_err(|message| RegistryError::InvalidArgs {
                plugin: NAME.into(),
                message,
            })?;
        let api = match (client, tokio::runtime::Handle::try_current()) {
            (Some(client), Ok(rt)) => Some(Api_ { client, rt }),
            _ => None,
        };
        Ok(DefaultPreemption {
            args,
            budgets: RwLock::new(HashMap::new()),
            preempting: Arc::new(Mutex::new(HashSet::new())),
            tasks: Arc::new(AtomicUsize::new(0)),
            api,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(16)),
        })
    }

    /// policy/v1 PodDisruptionBudget.
    pub fn pdb_kind() -> ResourceKind {
        ResourceKind::new("policy/v1", "PodDisruptionBudget")
    }

    fn budgets(&self) -> Vec<Budget> {
        self.budgets.read().values().cloned().collect()
    }

    /// Upstream `PodEligibleToPreemptOthers`.
    fn eligible(
        &self,
        ctx: &PostFilterContext<'_>,
        pod: &PodInfo,
        rejected: &[(String, Status)],
    ) -> Result<(), &'static str> {
        let spec = pod.pod.spec.as_ref();
        if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
            return Err(ERR_POLICY_NEVER);
        }
        let Some(nominated) = nominated_node(pod).or_else(|| ctx.nominator.node_of(&pod.key.uid))
        else {
            return Ok(());
        };
        let unresolvable = rejected
            .iter()
            .any(|(n, st)| *n == nominated && st.code == Code::UnschedulableAndUnresolvable);
        if unresolvable {
            return Ok(());
        }
        if let Some(node) = ctx.snapshot.get(&nominated)
            && node
                .pods
                .iter()
                .any(|p| p.priority() < pod.priority() && terminating_by_preemption(&p.pod))
        {
            return Err(ERR_TERMINATING_ON_NOMINATED);
        }
        Ok(())
    }

    /// The upstream `FitError` message of a failed preemption, prefixed.
    fn fit_error(
        num_all_nodes: usize,
        mut statuses: Vec<(String, Status)>,
        all: impl Iterator<Item = String>,
    ) -> String {
        let seen: HashSet<String> = statuses.iter().map(|(n, _)| n.clone()).collect();
        statuses.extend(
            all.filter(|n| !seen.contains(n))
                .map(|n| (n, Status::unresolvable(ERR_NOT_HELPFUL))),
        );
        let diag = Diagnosis {
            num_all_nodes,
            node_statuses: statuses,
            ..Default::default()
        };
        format!("{MSG_PREFIX}{}", diag.message())
    }

    /// Sends the evictions in the background (upstream `prepareCandidateAsync`).
    fn prepare_async(&self, ctx: &PostFilterContext<'_>, pod: &PodInfo, candidate: &Candidate) {
        let Some(api) = self.api.clone() else {
            tracing::warn!(pod = %pod.key.name, "preemption chose node {} but has no API client to evict with", candidate.node);
            return;
        };
        let victims: Vec<Arc<PodInfo>> = candidate
            .victims
            .pods
            .iter()
            .filter(|v| v.pod.metadata.deletion_timestamp.is_none())
            .cloned()
            .collect();
        // Lower-priority pods nominated to the node may no longer fit: they lose the nomination
        // and try elsewhere.
        let lower: Vec<Arc<PodInfo>> = ctx
            .nominator
            .pods_for_node(&candidate.node)
            .into_iter()
            .filter(|p| p.priority() < pod.priority())
            .collect();
        for p in &lower {
            ctx.nominator.remove(&p.key.uid);
        }
        if victims.is_empty() && lower.is_empty() {
            return;
        }
        let uid = pod.key.uid.clone();
        self.preempting.lock().insert(uid.clone());
        self.tasks.fetch_add(1, Ordering::AcqRel);
        let preempting = self.preempting.clone();
        let tasks = self.tasks.clone();
        let activator = ctx.activator.clone();
        let node = candidate.node.clone();
        let scheduler = pod.scheduler_name().to_string();
        let preemptor = pod.key.clone();
        api.rt.clone().spawn(async move {
            for p in &lower {
                let pods: Api<Pod> = Api::namespaced(api.client.clone(), &p.key.namespace);
                let body = json!({"status": {"nominatedNodeName": null}});
                if let Err(e) = pods
                    .patch_status(&p.key.name, &patch_params(), &Patch::Merge(body))
                    .await
                {
                    tracing::debug!(pod = %p.key.name, error = %e, "cannot clear nominatedNodeName");
                }
            }
            let evictions = victims
                .iter()
                .map(|v| evict(&api.client, v, &scheduler));
            let results = futures::future::join_all(evictions).await;
            for (v, r) in victims.iter().zip(results) {
                match r {
                    Ok(()) => tracing::debug!(
                        preemptor = %preemptor.name, victim = %v.key.name, node = %node,
                        "preempted"
                    ),
                    Err(e) => tracing::warn!(
                        preemptor = %preemptor.name, victim = %v.key.name, error = %e,
                        "could not preempt"
                    ),
                }
            }
            preempting.lock().remove(&uid);
            // The preemptor may have been gated meanwhile; let it try again.
            activator.activate(&uid);
            tasks.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// Marks a victim with `DisruptionTarget` and deletes it; a victim already gone is fine.
async fn evict(
    client: &kube::Client,
    victim: &PodInfo,
    scheduler: &str,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &victim.key.namespace);
    let mut condition = json!({
        "type": "DisruptionTarget",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "reason": REASON_PREEMPTION_BY_SCHEDULER,
        "message": format!("{scheduler}: preempting to accommodate a higher priority pod"),
    });
    if let Some(g) = victim.pod.metadata.generation {
        condition["observedGeneration"] = g.into();
    }
    let body = json!({"status": {"conditions": [condition]}});
    let gone = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404);
    match pods
        .patch_status(&victim.key.name, &patch_params(), &Patch::Strategic(body))
        .await
    {
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some(victim.key.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&victim.key.name, &params).await {
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

/// `status.nominatedNodeName`, if set.
fn nominated_node(pod: &PodInfo) -> Option<String> {
    pod.pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.clone())
        .filter(|n| !n.is_empty())
}

/// A pod being deleted because the scheduler preempted it (upstream
/// `podTerminatingByPreemption`).
fn terminating_by_preemption(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionTarget"))
            .is_some_and(|c| {
                c.status == "True" && c.reason.as_deref() == Some(REASON_PREEMPTION_BY_SCHEDULER)
            })
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &str {
        NAME
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![ExtensionPoint::PreEnqueue, ExtensionPoint::PostFilter]
    }

    /// A preemptor gated by PreEnqueue is re-checked when a pod goes (its victims); the other
    /// plugins that rejected it decide when it is retried, as upstream (`QueueSkip`).
    fn requeue_on(&self) -> Vec<ClusterEvent> {
        vec![ClusterEvent {
            resource: ResourceKind::pod(),
            actions: vec![EventAction::Deleted],
        }]
    }

    fn subscriptions(&self) -> Vec<ResourceKind> {
        vec![Self::pdb_kind()]
    }

    fn on_event(&self, event: &ObjectEvent) {
        if event.resource != Self::pdb_kind() {
            return;
        }
        let Ok(pdb) = serde_json::from_str::<PodDisruptionBudget>(&event.object) else {
            return;
        };
        let namespace = pdb.metadata.namespace.clone().unwrap_or_default();
        let key = format!(
            "{namespace}/{}",
            pdb.metadata.name.clone().unwrap_or_default()
        );
        if event.action == EventAction::Deleted {
            self.budgets.write().remove(&key);
            return;
        }
        let status = pdb.status.unwrap_or_default();
        let budget = Budget {
            namespace,
            selector: pdb.spec.and_then(|s| s.selector),
            disruptions_allowed: status.disruptions_allowed.unwrap_or(0),
            disrupted_pods: status
                .disrupted_pods
                .map(|d| d.into_keys().collect())
                .unwrap_or_default(),
        };
        self.budgets.write().insert(key, budget);
    }

    fn background_work(&self) -> usize {
        self.tasks.load(Ordering::Acquire)
    }

    fn pre_enqueue(&self, pod: &PodInfo) -> Status {
        if self.preempting.lock().contains(&pod.key.uid) {
            return Status::unresolvable(ERR_WAITING);
        }
        Status::success()
    }

    fn post_filter_in(
        &self,
        ctx: &PostFilterContext<'_>,
        state: &mut CycleState,
        pod: &PodInfo,
        rejected: &[(String, Status)],
    ) -> PostFilterResult {
        let fail = |code: Code, msg: String, nominated: Option<String>| PostFilterResult {
            status: Status::new(code, msg),
            nominated_node: nominated,
            intents: Vec::new(),
        };
        if let Err(why) = self.eligible(ctx, pod, rejected) {
            return fail(Code::Unschedulable, format!("{MSG_PREFIX}{why}"), None);
        }
        let snapshot = ctx.snapshot;
        let all_names = || snapshot.nodes.iter().map(|n| n.name.clone());
        let potential: Vec<&Arc<crate::framework::NodeInfo>> = rejected
            .iter()
            .filter(|(_, st)| st.code == Code::Unschedulable)
            .filter_map(|(n, _)| snapshot.get(n))
            .collect();
        // No node can be helped: clear a stale nomination too (upstream `ModeOverride`, "").
        let clear = Some(String::new());
        if potential.is_empty() {
            let msg = Self::fit_error(snapshot.len(), Vec::new(), all_names());
            return fail(Code::Unschedulable, msg, clear);
        }
        let budgets = self.budgets();
        let selection = Selection {
            framework: ctx.framework,
            state,
            nominator: ctx.nominator,
            budgets: &budgets,
        };
        let wanted = self.args.num_candidates(potential.len());
        let offset = rand::rng().random_range(0..potential.len());
        let rotated: Vec<&Arc<crate::framework::NodeInfo>> = (0..potential.len())
            .map(|i| potential[(offset + i) % potential.len()])
            .collect();
        let DryRun {
            candidates,
            statuses,
        } = match selection.dry_run(pod, &rotated, wanted, self.threads) {
            Ok(d) => d,
            Err(st) => return fail(Code::Error, st.message(), None),
        };
        let Some(best) = select::pick_one(&candidates) else {
            let msg = Self::fit_error(snapshot.len(), statuses, all_names());
            return fail(Code::Unschedulable, msg, clear);
        };
        tracing::debug!(
            pod = %pod.key.name, node = %best.node, victims = best.victims.pods.len(),
            "the target node for the preemption is determined"
        );
        self.prepare_async(ctx, pod, best);
        PostFilterResult {
            status: Status::success(),
            nominated_node: Some(best.node.clone()),
            intents: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_number_of_candidates_follows_the_args() {
        let a = DefaultPreemptionArgs::default();
        assert_eq!(a.num_candidates(50), 50);
        assert_eq!(a.num_candidates(5000), 500);
        let small = DefaultPreemptionArgs {
            min_candidate_nodes_percentage: 0,
            min_candidate_nodes_absolute: 1,
            ..Default::default()
        };
        assert_eq!(small.num_candidates(5000), 1);
    }

    #[test]
    fn errors_when_args_are_out_of_range() {
        let err = DefaultPreemption::new(
            &json!({"minCandidateNodesPercentage": 101, "minCandidateNodesAbsolute": -1}),
            None,
        )
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "plugin \"DefaultPreemption\": invalid args: minCandidateNodesPercentage: Invalid value: 101: not in valid range [0, 100], minCandidateNodesAbsolute: Invalid value: -1: not in valid range [0, inf)"
        );
        let err = DefaultPreemption::new(
            &json!({"minCandidateNodesPercentage": 0, "minCandidateNodesAbsolute": 0}),
            None,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("cannot both be zero"), "{err}");
    }
}
