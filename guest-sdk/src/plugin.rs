//! The one trait a plugin implements. Every extension point has a default, so a plugin writes
//! only the points it declares in [`Metadata::extension_points`]; the host calls no others.

use crate::types::*;

/// A scheduler plugin. It makes pure decisions from the state the host pushed to it
/// (see [`Plugin::on_event`]); it does no I/O and has no clock.
///
/// The same type runs as a Wasm component (through `export_plugin!`) or natively inside the host.
/// Calls are serialized: the host never calls one instance from two threads at once.
pub trait Plugin: Send + 'static {
    /// Creates the plugin from its `pluginConfig` args (JSON; `"{}"` when none are given).
    ///
    /// # Errors
    /// A message that names the bad field; the host refuses to load the plugin.
    fn new(args: &str) -> Result<Self, String>
    where
        Self: Sized;

    /// Describes the plugin: name, version, extension points, subscriptions, patchable kinds.
    fn metadata(&self) -> Metadata;

    /// The fields the plugin reads of its subscribed kinds (none: every kind is sent whole).
    /// The host then sends objects of a listed kind with only these fields (and
    /// `metadata.name`, `metadata.namespace`, `metadata.uid`), and no `Modified` event when none
    /// of them changed: a pod's status updates cost a plugin that reads only its spec nothing.
    /// A field read but not listed is missing from every event, so list each one the plugin's
    /// parsing looks at. The same holds for the plugin built natively, so its tests show a
    /// missing field.
    fn fields(&self) -> Vec<FieldSelection> {
        Vec::new()
    }

    /// Receives a change of an object of a subscribed kind, once per change, including objects
    /// the host assumed from patch intents. State kept by the plugin must be rebuildable from
    /// these events alone, so that a new instance can take over after a hot swap.
    fn on_event(&mut self, _event: &ObjectEvent) {}

    /// Health check called after instantiation and state replay, before the host uses the
    /// instance. Returns `Success` when ready.
    fn health(&mut self) -> Status {
        Status::success()
    }

    /// PreEnqueue: may the pod enter the active queue? `Success` or `UnschedulableAndUnresolvable`
    /// / `Pending` (the pod waits for a cluster event).
    fn pre_enqueue(&mut self, _pod: &PodRef) -> Status {
        Status::success()
    }

    /// PreFilter: once per cycle. `Skip` means the plugin does not apply to the pod: the host
    /// calls none of its Filter, PreScore and Score for it in this cycle (a plugin that scores
    /// pods it does not filter returns `Success`). A rejection ends the cycle with the pod
    /// unschedulable.
    fn pre_filter(&mut self, _pod: &PodRef) -> PreFilterResult {
        PreFilterResult::default()
    }

    /// Filter: one status per node, in the order of `nodes`.
    fn filter(&mut self, _pod: &PodRef, nodes: &[String]) -> Vec<Status> {
        vec![Status::success(); nodes.len()]
    }

    /// PostFilter: called when no node passed Filter, with each rejected node and its status.
    fn post_filter(&mut self, _pod: &PodRef, _rejected: &[(String, Status)]) -> PostFilterResult {
        PostFilterResult {
            status: Status::unschedulable("no change"),
            ..Default::default()
        }
    }

    /// PreScore: once per cycle with the nodes that passed Filter.
    fn pre_score(&mut self, _pod: &PodRef, _nodes: &[String]) -> Status {
        Status::success()
    }

    /// Score: one score in `0..=100` per node, in the order of `nodes`.
    ///
    /// # Errors
    /// A status with code `Error`; the pod is retried.
    fn score(&mut self, _pod: &PodRef, nodes: &[String]) -> Result<Vec<i64>, Status> {
        Ok(vec![0; nodes.len()])
    }

    /// Reserve: the pod is assumed on `node`. Returns the patch intents the host assumes now and
    /// applies in PreBind.
    ///
    /// # Errors
    /// A status; the host runs Unreserve on all plugins and requeues the pod.
    fn reserve(&mut self, _pod: &PodRef, _node: &str) -> Result<Vec<PatchIntent>, Status> {
        Ok(Vec::new())
    }

    /// Unreserve: undo Reserve. Returns compensating intents for any already applied.
    /// Must be idempotent: it may run after a partial Reserve.
    fn unreserve(&mut self, _pod: &PodRef, _node: &str) -> Vec<PatchIntent> {
        Vec::new()
    }

    /// Permit: allow, reject or make the pod wait (with a timeout), and allow or reject other
    /// waiting pods.
    fn permit(&mut self, _pod: &PodRef, _node: &str) -> PermitResult {
        PermitResult::default()
    }

    /// PreBind: in the binding cycle; more intents to apply before binding.
    ///
    /// # Errors
    /// A status; the binding fails and Unreserve runs.
    fn pre_bind(&mut self, _pod: &PodRef, _node: &str) -> Result<Vec<PatchIntent>, Status> {
        Ok(Vec::new())
    }

    /// PostBind: the pod is bound; informational.
    fn post_bind(&mut self, _pod: &PodRef, _node: &str) {}
}
