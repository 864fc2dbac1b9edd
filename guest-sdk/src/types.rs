//! The vocabulary shared by plugins and the host: statuses, object references, patch intents,
//! object events and plugin metadata. These types mirror the WIT world in `wit/` one to one.

use serde::{Deserialize, Serialize};

/// Result code of an extension point, as upstream `framework.Code`
/// (kubernetes/pkg/scheduler/framework/interface.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Code {
    /// The plugin ran and the pod may proceed.
    #[default]
    Success,
    /// An internal error: the pod is retried with backoff.
    Error,
    /// The pod does not fit now; preemption or a cluster event may change that.
    Unschedulable,
    /// The pod does not fit, and preemption cannot help.
    UnschedulableAndUnresolvable,
    /// Permit only: the pod waits until allowed, rejected or timed out.
    Wait,
    /// The plugin does not apply to this pod; later calls of the same plugin are skipped.
    Skip,
    /// The pod waits for something outside the scheduler; it is retried on a cluster event.
    Pending,
}

/// The outcome of one extension point call: a code and human-readable reasons.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Status {
    /// What the framework does next.
    pub code: Code,
    /// Reasons shown to users (pod events and conditions), most important first.
    pub reasons: Vec<String>,
}

impl Status {
    /// A status with the given code and one reason.
    pub fn new(code: Code, reason: impl Into<String>) -> Self {
        Status {
            code,
            reasons: vec![reason.into()],
        }
    }
    /// `Success` with no reason.
    pub fn success() -> Self {
        Status::default()
    }
    /// `Error` with a reason.
    pub fn error(reason: impl Into<String>) -> Self {
        Status::new(Code::Error, reason)
    }
    /// `Unschedulable` with a reason.
    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Status::new(Code::Unschedulable, reason)
    }
    /// `UnschedulableAndUnresolvable` with a reason.
    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Status::new(Code::UnschedulableAndUnresolvable, reason)
    }
    /// `Skip`: the plugin has nothing to do for this pod.
    pub fn skip() -> Self {
        Status {
            code: Code::Skip,
            reasons: Vec::new(),
        }
    }
    /// `Pending` with a reason.
    pub fn pending(reason: impl Into<String>) -> Self {
        Status::new(Code::Pending, reason)
    }
    /// `Wait` (Permit only).
    pub fn wait() -> Self {
        Status {
            code: Code::Wait,
            reasons: Vec::new(),
        }
    }
    /// True for `Success`.
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }
    /// True for `Unschedulable` and `UnschedulableAndUnresolvable`.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }
    /// The reasons joined with ", ".
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

/// The extension points of the scheduling framework, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ExtensionPoint {
    /// Before a pod enters the active queue.
    PreEnqueue,
    /// Once per scheduling cycle, before Filter.
    PreFilter,
    /// Per node: can the pod run there?
    Filter,
    /// When no node passed Filter.
    PostFilter,
    /// Once per cycle, before Score.
    PreScore,
    /// Per node: how good is the node?
    Score,
    /// Reserve and its rollback, Unreserve.
    Reserve,
    /// Approve, reject or delay the binding.
    Permit,
    /// Before binding, in the binding cycle.
    PreBind,
    /// Bind the pod to the node.
    Bind,
    /// After a successful binding.
    PostBind,
}

/// An object kind by API group, version and kind, e.g. `resource.k8s.io/v1` `ResourceClaim`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceKind {
    /// `apiVersion`: "v1" for core, "group/version" otherwise.
    pub api_version: String,
    /// The kind, e.g. "Pod".
    pub kind: String,
}

impl ResourceKind {
    /// A kind from its apiVersion and kind.
    pub fn new(api_version: impl Into<String>, kind: impl Into<String>) -> Self {
        ResourceKind {
            api_version: api_version.into(),
            kind: kind.into(),
        }
    }
    /// core/v1 Pod.
    pub fn pod() -> Self {
        Self::new("v1", "Pod")
    }
    /// core/v1 Node.
    pub fn node() -> Self {
        Self::new("v1", "Node")
    }
    /// resource.k8s.io/v1 ResourceClaim.
    pub fn resource_claim() -> Self {
        Self::new("resource.k8s.io/v1", "ResourceClaim")
    }
    /// resource.k8s.io/v1 ResourceClaimTemplate.
    pub fn resource_claim_template() -> Self {
        Self::new("resource.k8s.io/v1", "ResourceClaimTemplate")
    }
    /// resource.k8s.io/v1 ResourceSlice.
    pub fn resource_slice() -> Self {
        Self::new("resource.k8s.io/v1", "ResourceSlice")
    }
    /// resource.k8s.io/v1 DeviceClass.
    pub fn device_class() -> Self {
        Self::new("resource.k8s.io/v1", "DeviceClass")
    }
    /// resource.k8s.io/v1beta2 DeviceTaintRule (KEP-5055; beta in v1.36 and served only where
    /// that API version is enabled).
    pub fn device_taint_rule() -> Self {
        Self::new("resource.k8s.io/v1beta2", "DeviceTaintRule")
    }
}

/// What happened to an object, as in a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventAction {
    /// The object was created (or is seen for the first time).
    Added,
    /// The object changed.
    Modified,
    /// The object was deleted.
    Deleted,
}

/// A cluster event that can make a pod rejected by a plugin schedulable again
/// (upstream `framework.ClusterEvent` used for queueing hints).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// The kind of object.
    pub resource: ResourceKind,
    /// Which actions on it matter.
    pub actions: Vec<EventAction>,
}

/// A change of one object, pushed by the host to plugins that subscribed to its kind.
/// Assumed objects (changed by patch intents, not yet confirmed by the API server) are pushed too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEvent {
    /// What happened.
    pub action: EventAction,
    /// The object's kind.
    pub resource: ResourceKind,
    /// The whole object as JSON (the new state, or the last state for `Deleted`).
    pub object: String,
}

/// A reference to a pod being scheduled; plugins look the pod up in the state they were pushed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

/// A reference to one object, the target of a patch intent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object's kind.
    pub resource: ResourceKind,
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// UID the patch is meant for; the host refuses an intent whose target has another uid.
    pub uid: String,
}

/// How a patch body is interpreted (the Content-Type of a Kubernetes PATCH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PatchKind {
    /// RFC 6902 JSON Patch.
    Json,
    /// RFC 7386 JSON merge patch.
    Merge,
    /// Kubernetes strategic merge patch.
    StrategicMerge,
    /// Not a PATCH: `body` is the whole object to create with POST; `target.name` is its name
    /// and `target.uid` is empty (the server assigns the uid). Since WIT 0.2.0.
    Create,
}

/// A change a plugin wants made to the cluster: a patch of an existing object, or (with
/// [`PatchKind::Create`]) a new object. The host assumes it in its cache at once and applies it
/// to the API server in the binding cycle (PreBind), in order per pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchIntent {
    /// The object to patch (or to create).
    pub target: ObjectRef,
    /// `Some("status")` to patch the status subresource.
    pub subresource: Option<String>,
    /// How `body` is interpreted.
    pub patch_kind: PatchKind,
    /// The patch body as JSON.
    pub body: String,
}

/// What Filter/PreFilter found out: the nodes worth checking, if the plugin knows them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PreFilterResult {
    /// The status of PreFilter.
    pub status: Status,
    /// If set, only these nodes are considered (upstream `PreFilterResult.NodeNames`).
    pub node_names: Option<Vec<String>>,
}

/// What PostFilter did for an unschedulable pod.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PostFilterResult {
    /// `Success` if the plugin made the pod schedulable (maybe on a later attempt).
    pub status: Status,
    /// A node the pod is nominated to, if any.
    pub nominated_node: Option<String>,
    /// Changes to make now, for example deallocating a claim nobody uses.
    pub intents: Vec<PatchIntent>,
}

/// The decision of a Permit plugin.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PermitResult {
    /// `Success`, `Wait`, or a rejection.
    pub status: Status,
    /// With `Wait`: how long to wait before the pod is rejected, in milliseconds.
    pub timeout_ms: u64,
    /// Waiting pods (by uid) this decision allows, e.g. the rest of a gang.
    pub allow: Vec<String>,
    /// Waiting pods (by uid) this decision rejects.
    pub reject: Vec<String>,
}

/// What a plugin tells the host about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// The plugin's name, used in the scheduler configuration.
    pub name: String,
    /// The plugin's version (semver).
    pub version: String,
    /// The extension points it implements; the host calls no others.
    pub extension_points: Vec<ExtensionPoint>,
    /// The kinds whose objects the host pushes to it.
    pub subscriptions: Vec<ResourceKind>,
    /// The kinds it may patch through intents; intents for other kinds are refused.
    pub patches: Vec<ResourceKind>,
    /// The cluster events that can make a pod it rejected schedulable.
    pub requeue_on: Vec<ClusterEvent>,
}

/// The fields a plugin reads of one subscribed kind (see [`crate::Plugin::fields`]). Since
/// WIT 0.3.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSelection {
    /// The kind; one of the plugin's subscriptions.
    pub resource: ResourceKind,
    /// Dot-separated paths from the object's root, each keeping that field whole, e.g.
    /// `spec.nodeName`. A path through a list applies to each item: `spec.containers.name`.
    pub paths: Vec<String>,
}

impl FieldSelection {
    /// The selection of `paths` of `resource`.
    pub fn new(resource: ResourceKind, paths: &[&str]) -> Self {
        FieldSelection {
            resource,
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        }
    }
}

/// Severity of a plugin's log line (see [`crate::log`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LogLevel {
    /// Very verbose.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}
