use std::sync::Arc;

use futures::future::BoxFuture;

use super::*;

/// Upstream `DynamicResourcesBindingTimeoutDefault` (pkg/scheduler/apis/config/v1/defaults.go):
/// how long PreBind may stay `Pending`.
pub const DEFAULT_PRE_BIND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// A plugin as the framework calls it. Native plugins implement it directly; SDK plugins (run
/// natively) and Wasm components are adapted to it by the plugin runtime. Each method is one
/// extension point; the framework only calls the points listed in [`Plugin::extension_points`].
///
/// Methods take `&self`: plugins that keep state lock it themselves. The scheduling cycle is
/// serial, but binding-cycle points (PreBind, Unreserve, PostBind) of several pods run
/// concurrently with it.
pub trait Plugin: Send + Sync {
    /// The plugin's name as used in the configuration.
    fn name(&self) -> &str;

    /// The extension points it implements.
    fn extension_points(&self) -> Vec<ExtensionPoint>;

    /// Cluster events that can make a pod it rejected schedulable (queueing hints).
    fn requeue_on(&self) -> Vec<ClusterEvent> {
        Vec::new()
    }

    /// Kinds of objects pushed to [`Plugin::on_event`].
    fn subscriptions(&self) -> Vec<ResourceKind> {
        Vec::new()
    }

    /// Kinds this plugin may patch through intents.
    fn patchable_kinds(&self) -> Vec<ResourceKind> {
        Vec::new()
    }

    /// Receives a change of a subscribed object (including assumed objects).
    fn on_event(&self, _event: &ObjectEvent) {}

    /// API work this plugin started in the background that may still change the cluster
    /// (DefaultPreemption's evictions); the scheduler is idle only when every plugin says 0.
    fn background_work(&self) -> usize {
        0
    }

    /// PreEnqueue. `Success`, or the pod stays out of the active queue until a cluster event.
    fn pre_enqueue(&self, _pod: &PodInfo) -> Status {
        Status::success()
    }

    /// PreFilter, once per cycle. `Skip` skips this plugin's Filter for the pod.
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> PreFilterResult {
        PreFilterResult::default()
    }

    /// Filter over a batch of nodes; one status per node, in order.
    fn filter(&self, _state: &CycleState, _pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
        vec![Status::success(); nodes.len()]
    }

    /// PostFilter with what only host-native plugins can use: the cycle's snapshot, the
    /// profile's framework (to re-run Filter), the nominated pods and the queue. The default
    /// calls [`Plugin::post_filter`]; DefaultPreemption implements this one.
    fn post_filter_in(
        &self,
        _ctx: &PostFilterContext<'_>,
        state: &mut CycleState,
        pod: &PodInfo,
        rejected: &[(String, Status)],
    ) -> PostFilterResult {
        self.post_filter(state, pod, rejected)
    }

    /// PostFilter, when no node passed Filter; `rejected` holds each node's failing status.
    fn post_filter(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _rejected: &[(String, Status)],
    ) -> PostFilterResult {
        PostFilterResult {
            status: Status::unschedulable("no change"),
            ..Default::default()
        }
    }

    /// PreScore, once per cycle with the feasible nodes. `Skip` skips this plugin's Score.
    fn pre_score(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
    ) -> Status {
        Status::success()
    }

    /// Score over a batch of nodes; one score per node, in order.
    fn score(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        Ok(vec![0; nodes.len()])
    }

    /// NormalizeScore: rescale this plugin's scores to `0..=100` in place.
    fn normalize_score(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [i64]) -> Status {
        Status::success()
    }

    /// Reserve: returns intents the host assumes at once and applies in PreBind.
    fn reserve(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _node: &str,
    ) -> Result<Vec<PatchIntent>, Status> {
        Ok(Vec::new())
    }

    /// Unreserve: undo Reserve; returns compensating intents. Idempotent.
    fn unreserve(&self, _state: &mut CycleState, _pod: &PodInfo, _node: &str) -> Vec<PatchIntent> {
        Vec::new()
    }

    /// Permit: allow, reject, or wait with a timeout.
    fn permit(&self, _state: &mut CycleState, _pod: &PodInfo, _node: &str) -> PermitResult {
        PermitResult::default()
    }

    /// How long the binding cycle keeps calling [`Plugin::pre_bind`] while it returns
    /// `Pending` (waiting for something outside the scheduler, e.g. DRA binding conditions)
    /// before the binding fails. SDK plugins take `bindingTimeout` from their args
    /// (upstream `DynamicResourcesArgs`).
    fn pre_bind_timeout(&self) -> std::time::Duration {
        DEFAULT_PRE_BIND_TIMEOUT
    }

    /// PreBind: more intents to apply before binding. `Pending`: not yet; the binding cycle
    /// calls again when a subscribed object changes, until [`Plugin::pre_bind_timeout`].
    fn pre_bind(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _node: &str,
    ) -> Result<Vec<PatchIntent>, Status> {
        Ok(Vec::new())
    }

    /// Bind: `Skip` lets the next bind plugin try; only host-native plugins bind (they get an
    /// API handle through `ctx`).
    fn bind<'a>(
        &'a self,
        _ctx: &'a BindContext,
        _pod: &'a PodInfo,
        _node: &'a str,
    ) -> BoxFuture<'a, Status> {
        Box::pin(async { Status::skip() })
    }

    /// PostBind: informational.
    fn post_bind(&self, _pod: &PodInfo, _node: &str) {}
}

/// A shared handle to a plugin.
pub type PluginRef = Arc<dyn Plugin>;

/// What [`Plugin::post_filter_in`] gets besides the pod (upstream's framework `Handle`).
pub struct PostFilterContext<'a> {
    /// The nodes as this cycle saw them.
    pub snapshot: &'a Snapshot,
    /// The profile, to run Filter on changed nodes.
    pub framework: &'a super::Framework,
    /// Pods nominated to nodes.
    pub nominator: &'a Arc<super::Nominator>,
    /// Moves pods back to the active queue.
    pub activator: &'a Arc<dyn PodActivator>,
}

/// Moves a pending pod to the active queue through PreEnqueue (upstream `Handle.Activate`).
pub trait PodActivator: Send + Sync {
    /// The pod with this uid leaves the unschedulable pool, backoff or the gated set (if its
    /// PreEnqueue plugins admit it now). Pods elsewhere are left alone.
    fn activate(&self, uid: &str);
}

/// What a Bind plugin may use: the API client.
pub struct BindContext {
    /// Client for the cluster (or the embedded API server).
    pub client: kube::Client,
}

/// Gives a new plugin instance the current state of the kinds it subscribes to, as `Added`
/// events (including assumed objects). The cache implements it; the Wasm runtime uses it to
/// feed a freshly loaded module before it is swapped in.
pub trait StateReplay: Send + Sync {
    /// One `Added` event per current object of each kind.
    fn replay(&self, kinds: &[ResourceKind]) -> Vec<ObjectEvent>;
}
