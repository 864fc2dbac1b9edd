//! The plugin's view of the cluster, rebuilt from object events alone: pods (only what DRA
//! needs), nodes (labels), ResourceClaims, DeviceClasses, ResourceSlices and DeviceTaintRules,
//! plus the derived device inventory and the set of allocated devices.
//!
//! Every object is deserialized once per change. Pods and nodes go into small structs of their
//! own (a full `Pod` is large and most of it is irrelevant here); claims, slices and classes use
//! the k8s-openapi resource.k8s.io/v1 types.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use k8s_openapi::api::core::v1::NodeSelector;
use k8s_openapi::api::resource::v1::{
    DeviceClaim, DeviceClass, DeviceSelector, DeviceTaint, ResourceClaimSpec, ResourceSlice,
    ResourceSliceSpec,
};
use k8s_openapi::api::resource::v1beta2::DeviceTaintRule;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde::de::IgnoredAny;
use wasm_scheduler_sdk::{EventAction, ObjectEvent};

use crate::inventory::{Inventory, device_key};

/// The finalizer the scheduler puts on claims it allocates (upstream
/// `resourceapi.Finalizer`).
pub const FINALIZER: &str = "resource.kubernetes.io/delete-protection";

/// The annotation the resourceclaim controller puts on generated claims, naming the pod claim.
pub const POD_CLAIM_NAME_ANNOTATION: &str = "resource.kubernetes.io/pod-claim-name";

/// The annotation kube-scheduler puts on the claim it creates for a pod's extended resources
/// backed by DRA (KEP-5004, upstream `resourceapi.ExtendedResourceClaimAnnotation`).
pub const EXTENDED_RESOURCE_CLAIM_ANNOTATION: &str =
    "resource.kubernetes.io/extended-resource-claim";

/// The prefix of a DeviceClass's implicit extended resource name
/// (upstream `resourceapi.ResourceDeviceClassPrefix`).
pub const DEVICE_CLASS_PREFIX: &str = "deviceclass.resource.kubernetes.io/";

/// A container's resource requests, as far as extended resources backed by DRA need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRequests {
    /// The container's name.
    pub name: String,
    /// An init container that is not a sidecar (`restartPolicy: Always`): it runs before the
    /// others and may reuse their devices.
    pub short_lived: bool,
    /// Every requested resource name, sorted, with the quantity as an integer (`None` if it is
    /// not one): request names index into this list, as upstream.
    pub requests: Vec<(String, Option<i64>)>,
}

/// A pod's entry in `spec.resourceClaims`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodClaim {
    /// The name containers refer to.
    pub name: String,
    /// An existing claim shared with other pods.
    #[serde(default)]
    pub resource_claim_name: Option<String>,
    /// A template a claim is generated from for this pod.
    #[serde(default)]
    pub resource_claim_template_name: Option<String>,
}

/// What DRA needs of a pod.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// `spec.nodeName`: set once bound.
    pub node_name: Option<String>,
    /// `spec.resourceClaims`.
    pub claims: Vec<PodClaim>,
    /// `status.resourceClaimStatuses`: pod claim name → generated claim name (`None`: no claim
    /// is needed).
    pub claim_statuses: HashMap<String, Option<String>>,
    /// Init containers then containers, only for pods that request a resource outside the
    /// default namespace (a candidate extended resource); empty otherwise.
    pub containers: Vec<ContainerRequests>,
    /// `status.extendedResourceClaimStatus.resourceClaimName`.
    pub extended_claim: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodJson {
    metadata: PodMetaJson,
    #[serde(default)]
    spec: PodSpecJson,
    #[serde(default)]
    status: PodStatusJson,
}

/// The pod fields [`PodJson`] reads: the host sends pods with only these (see
/// `Plugin::fields`), so a field read here must be listed here.
pub const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.resourceClaims",
    "spec.initContainers.name",
    "spec.initContainers.restartPolicy",
    "spec.initContainers.resources.requests",
    "spec.containers.name",
    "spec.containers.restartPolicy",
    "spec.containers.resources.requests",
    "status.resourceClaimStatuses",
    "status.extendedResourceClaimStatus",
];

/// The node fields [`NodeJson`] reads (names are always sent).
pub const NODE_FIELDS: &[&str] = &["metadata.labels", "status.allocatable"];

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MetaJson {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodSpecJson {
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    resource_claims: Vec<PodClaim>,
    #[serde(default, deserialize_with = "null_as_default")]
    init_containers: Vec<ContainerJson>,
    #[serde(default, deserialize_with = "null_as_default")]
    containers: Vec<ContainerJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerJson {
    #[serde(default)]
    name: String,
    #[serde(default)]
    restart_policy: Option<String>,
    #[serde(default)]
    resources: ContainerResourcesJson,
}

#[derive(Deserialize, Default)]
struct ContainerResourcesJson {
    #[serde(default, deserialize_with = "null_as_default")]
    requests: BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodStatusJson {
    #[serde(default)]
    resource_claim_statuses: Vec<ClaimStatusJson>,
    #[serde(default)]
    extended_resource_claim_status: Option<ExtendedStatusJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExtendedStatusJson {
    #[serde(default)]
    resource_claim_name: String,
}

/// The containers of a pod that requests a possible extended resource (a name with a domain
/// outside `kubernetes.io`); none otherwise, so ordinary pods keep nothing.
fn container_requests(spec: &mut PodSpecJson) -> Vec<ContainerRequests> {
    let extended = |n: &str| {
        n.contains('/') && !n.starts_with("kubernetes.io/") && !n.contains(".kubernetes.io/")
            || n.starts_with(DEVICE_CLASS_PREFIX)
    };
    let any = spec
        .init_containers
        .iter()
        .chain(&spec.containers)
        .any(|c| c.resources.requests.keys().any(|k| extended(k)));
    if !any {
        return Vec::new();
    }
    let convert = |c: &mut ContainerJson, init: bool| ContainerRequests {
        name: std::mem::take(&mut c.name),
        short_lived: init && c.restart_policy.as_deref() != Some("Always"),
        requests: std::mem::take(&mut c.resources.requests)
            .into_iter()
            .map(|(k, q)| {
                let n = kube_quantity::Quantity::parse_json(&q.0)
                    .ok()
                    .and_then(|q| q.as_integer());
                (k, n)
            })
            .collect(),
    };
    let mut out: Vec<ContainerRequests> = spec
        .init_containers
        .iter_mut()
        .map(|c| convert(c, true))
        .collect();
    out.extend(spec.containers.iter_mut().map(|c| convert(c, false)));
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimStatusJson {
    name: String,
    #[serde(default)]
    resource_claim_name: Option<String>,
}

#[derive(Deserialize)]
struct NodeJson {
    metadata: MetaJson,
    #[serde(default)]
    status: NodeStatusJson,
}

#[derive(Deserialize, Default)]
struct NodeStatusJson {
    #[serde(default, deserialize_with = "null_as_default")]
    allocatable: BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
}

/// A ResourceClaimTemplate: its name and the requests of the claims it makes.
#[derive(Deserialize)]
struct TemplateJson {
    metadata: MetaJson,
    #[serde(default)]
    spec: TemplateSpecJson,
}

#[derive(Deserialize, Default)]
struct TemplateSpecJson {
    #[serde(default)]
    spec: Option<ResourceClaimSpec>,
}

/// A pod's metadata: only what DRA keeps (no labels, annotations or timestamps to parse).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodMetaJson {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
}

/// A ResourceClaim reduced to what [`Claim`] keeps. Claims change several times per scheduled
/// pod and every change is parsed, so the generic object metadata (timestamps, managed
/// fields) and the status' device results beyond their identity are skipped unparsed; only
/// `spec.devices` uses the Kubernetes type, which the allocator plans from.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimJson {
    #[serde(default)]
    metadata: ClaimMetaJson,
    spec: ResourceClaimSpec,
    #[serde(default)]
    status: ResourceClaimStatusJson,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ClaimMetaJson {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    deletion_timestamp: Option<IgnoredAny>,
    #[serde(default, deserialize_with = "null_as_default")]
    finalizers: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    owner_references: Vec<OwnerJson>,
    #[serde(default, deserialize_with = "null_as_default")]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerJson {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    controller: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ResourceClaimStatusJson {
    #[serde(default)]
    allocation: Option<AllocationJson>,
    #[serde(default, deserialize_with = "null_as_default")]
    reserved_for: Vec<ConsumerJson>,
    /// Per-device status written by drivers (KEP-4817), where binding conditions appear.
    #[serde(default, deserialize_with = "null_as_default")]
    devices: Vec<DeviceStatusJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceStatusJson {
    #[serde(default)]
    driver: String,
    #[serde(default)]
    pool: String,
    #[serde(default)]
    device: String,
    #[serde(default, deserialize_with = "null_as_default")]
    conditions: Vec<ConditionJson>,
}

#[derive(Deserialize)]
struct ConditionJson {
    #[serde(default, rename = "type")]
    type_: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AllocationJson {
    #[serde(default)]
    devices: AllocatedDevicesJson,
    #[serde(default)]
    node_selector: Option<NodeSelector>,
}

#[derive(Deserialize, Default)]
struct AllocatedDevicesJson {
    #[serde(default, deserialize_with = "null_as_default")]
    results: Vec<ResultJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultJson {
    driver: String,
    pool: String,
    device: String,
    /// A share of a device with `allowMultipleAllocations` (KEP-5075).
    #[serde(default, rename = "shareID")]
    share_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    consumed_capacity: BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    /// Copied from the device at allocation (KEP-5007).
    #[serde(default, deserialize_with = "null_as_default")]
    binding_conditions: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    binding_failure_conditions: Vec<String>,
}

#[derive(Deserialize)]
struct ConsumerJson {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
}

/// `null` as the type's default, as Kubernetes clients read omitted-or-null lists and maps.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A pod (or other consumer) in a claim's `status.reservedFor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// `resource`, "pods" for pods.
    pub resource: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

/// A claim's `status.allocation`, reduced to what scheduling needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Keys (see [`device_key`]) of the devices it holds whole.
    pub devices: Vec<String>,
    /// Shares of devices with `allowMultipleAllocations` (results with a `shareID`): the device
    /// key and its `consumedCapacity` (name, nano-units).
    pub shared: Vec<(String, Vec<(String, i128)>)>,
    /// Where the claim can be used.
    pub node_selector: Option<NodeSelector>,
    /// Results whose device has binding conditions (KEP-5007): the pod may only be bound once
    /// they are all `True` in the claim's device status.
    pub binding: Vec<BindingWait>,
}

/// The binding conditions of one allocated device (KEP-5007).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingWait {
    /// Device key (see [`device_key`]).
    pub device: String,
    /// `bindingConditions`: all must be `True` before binding.
    pub conditions: Vec<String>,
    /// `bindingFailureConditions`: any `True` fails the binding.
    pub failure: Vec<String>,
}

/// A condition of a device in a claim's `status.devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCondition {
    /// `type`.
    pub type_: String,
    /// `status` is `True`.
    pub is_true: bool,
    /// `reason`.
    pub reason: String,
    /// `message`.
    pub message: String,
}

/// Whether a claim's pod may be bound, as upstream `isClaimReadyForBinding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingReadiness {
    /// No binding conditions, or all of them are `True`.
    Ready,
    /// Some binding condition is not `True` yet (or the device has no status entry).
    Waiting,
    /// A failure condition is `True`: reason and message of the first one.
    Failed(String),
}

/// What DRA needs of a ResourceClaim.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// For the claim of a pod's extended resources (annotation
    /// `resource.kubernetes.io/extended-resource-claim: "true"`): the controlling pod's uid.
    pub extended_for: Option<String>,
    /// It carries [`FINALIZER`].
    pub has_finalizer: bool,
    /// UIDs of its owners (a generated claim is owned by its pod).
    pub owners: Vec<String>,
    /// For a claim generated from a template: the controlling pod's uid and the pod claim name
    /// (annotation `resource.kubernetes.io/pod-claim-name`).
    pub generated_for: Option<(String, String)>,
    /// `spec.devices`.
    pub spec: DeviceClaim,
    /// `status.allocation`.
    pub allocation: Option<Allocation>,
    /// `status.reservedFor`.
    pub reserved_for: Vec<Consumer>,
    /// `status.devices[].conditions` by device key (only devices with conditions).
    pub device_conditions: Vec<(String, Vec<DeviceCondition>)>,
}

impl Claim {
    /// True if `pod_uid` is in `reservedFor`.
    pub fn is_reserved_for(&self, pod_uid: &str) -> bool {
        self.reserved_for.iter().any(|c| c.uid == pod_uid)
    }

    /// Upstream `isClaimReadyForBinding`: every result with binding conditions has a device
    /// status entry (matched by driver, pool and device; the share is not compared, as
    /// upstream) where no failure condition is `True` and every binding condition is `True`.
    pub fn binding_readiness(&self) -> BindingReadiness {
        let Some(a) = &self.allocation else {
            return BindingReadiness::Ready;
        };
        let mut ready = true;
        for w in &a.binding {
            let Some((_, conds)) = self.device_conditions.iter().find(|(k, _)| *k == w.device)
            else {
                ready = false;
                continue;
            };
            let is_true = |t: &str| conds.iter().find(|c| c.type_ == t).filter(|c| c.is_true);
            if let Some(c) = w.failure.iter().find_map(|t| is_true(t)) {
                return BindingReadiness::Failed(format!(
                    "device binding failed: claim={}, reason={}, message={:?}",
                    self.name, c.reason, c.message
                ));
            }
            ready &= w.conditions.iter().all(|t| is_true(t).is_some());
        }
        if ready {
            BindingReadiness::Ready
        } else {
            BindingReadiness::Waiting
        }
    }

    fn from_json(c: ClaimJson) -> Claim {
        let meta = c.metadata;
        let status = c.status;
        let extended = meta
            .annotations
            .get(EXTENDED_RESOURCE_CLAIM_ANNOTATION)
            .is_some_and(|v| v == "true");
        Claim {
            extended_for: meta
                .owner_references
                .iter()
                .find(|o| extended && o.controller == Some(true) && o.kind == "Pod")
                .map(|o| o.uid.clone()),
            deleting: meta.deletion_timestamp.is_some(),
            has_finalizer: meta.finalizers.iter().any(|f| f == FINALIZER),
            generated_for: meta
                .owner_references
                .iter()
                .find(|o| o.controller == Some(true) && o.kind == "Pod")
                .zip(meta.annotations.get(POD_CLAIM_NAME_ANNOTATION))
                .map(|(o, n)| (o.uid.clone(), n.clone())),
            owners: meta.owner_references.into_iter().map(|o| o.uid).collect(),
            namespace: meta.namespace,
            name: meta.name,
            uid: meta.uid,
            spec: c.spec.devices.unwrap_or_default(),
            allocation: status.allocation.map(|a| {
                let (shared, whole): (Vec<_>, Vec<_>) =
                    a.devices.results.iter().partition(|r| r.share_id.is_some());
                Allocation {
                    devices: whole
                        .iter()
                        .map(|r| device_key(&r.driver, &r.pool, &r.device))
                        .collect(),
                    shared: shared
                        .iter()
                        .map(|r| {
                            let consumed = r
                                .consumed_capacity
                                .iter()
                                .map(|(n, q)| {
                                    let nanos = kube_quantity::Quantity::parse_json(&q.0)
                                        .map_or(0, |q| q.nanos());
                                    (n.clone(), nanos)
                                })
                                .collect();
                            (device_key(&r.driver, &r.pool, &r.device), consumed)
                        })
                        .collect(),
                    node_selector: a.node_selector,
                    binding: a
                        .devices
                        .results
                        .iter()
                        .filter(|r| !r.binding_conditions.is_empty())
                        .map(|r| BindingWait {
                            device: device_key(&r.driver, &r.pool, &r.device),
                            conditions: r.binding_conditions.clone(),
                            failure: r.binding_failure_conditions.clone(),
                        })
                        .collect(),
                }
            }),
            device_conditions: status
                .devices
                .into_iter()
                .filter(|d| !d.conditions.is_empty())
                .map(|d| {
                    let conds = d
                        .conditions
                        .into_iter()
                        .map(|c| DeviceCondition {
                            is_true: c.status == "True",
                            type_: c.type_,
                            reason: c.reason,
                            message: c.message,
                        })
                        .collect();
                    (device_key(&d.driver, &d.pool, &d.device), conds)
                })
                .collect(),
            reserved_for: status
                .reserved_for
                .into_iter()
                .map(|r| Consumer {
                    resource: r.resource,
                    name: r.name,
                    uid: r.uid,
                })
                .collect(),
        }
    }
}

/// Namespace and name of a namespaced object.
pub type Key = (String, String);

/// The cluster as the plugin sees it.
#[derive(Default)]
pub struct ClusterState {
    /// Pods by UID.
    pub pods: FxHashMap<String, Pod>,
    /// Node labels by node name.
    pub nodes: FxHashMap<String, BTreeMap<String, String>>,
    /// Claims by namespace and name.
    pub claims: FxHashMap<Key, Claim>,
    /// Template names (namespace, name) that exist.
    pub templates: HashSet<Key>,
    /// Device class selectors (CEL expressions) by class name.
    pub classes: HashMap<String, Vec<String>>,
    /// ResourceSlice specs by slice name.
    pub slices: HashMap<String, ResourceSliceSpec>,
    /// DeviceTaintRules (KEP-5055) by name: their taints apply to the devices they select as if
    /// the slices carried them.
    pub taint_rules: BTreeMap<String, TaintRule>,
    /// How many claims hold each device (adminAccess allocations may share a device).
    pub allocated: FxHashMap<String, u32>,
    /// Capacity consumed by the allocated shares of each device with
    /// `allowMultipleAllocations`: device key → (capacity name, nano-units).
    pub shared_consumed: FxHashMap<String, Vec<(String, i128)>>,
    /// Generated claims by (pod uid, pod claim name).
    generated: HashMap<(String, String), String>,
    /// Claims for extended resources (KEP-5004) by the uid of the pod that controls them.
    extended_claims: HashMap<String, String>,
    /// Per DeviceClass: `spec.extendedResourceName` and the creation time (Unix seconds),
    /// which decides between classes that name the same resource.
    pub class_extended: HashMap<String, (Option<String>, i64)>,
    /// Extended resources each node lists as allocatable (non-zero), by node name.
    pub node_extended: FxHashMap<String, BTreeSet<String>>,
    inventory: Inventory,
    inventory_dirty: bool,
    /// `allocated` by inventory device index, kept in step with it while the inventory is
    /// current and rebuilt with the inventory: the allocator's per-device check is an index.
    taken: Vec<u32>,
    /// Per node of the inventory ([`Inventory::node_ids`]): bumped whenever one of its devices
    /// is taken or freed, so a Filter result computed for the node can be reused until then.
    node_generation: Vec<u64>,
    /// Bumped by changes that can alter Filter results on any node: devices reachable from
    /// several nodes taken or freed, node labels, device classes.
    shared_generation: u64,
    /// Request shapes seen (see [`crate::placement`]): (DeviceClass, request selector
    /// expressions) of every DeviceClass, template and unallocated claim, in first-seen order.
    pub shape_keys: Vec<(String, Vec<String>)>,
    /// Bumped when `shape_keys` or a DeviceClass changes.
    pub shapes_generation: u64,
}

/// A DeviceTaintRule (resource.k8s.io/v1beta2): one taint for the devices its selector picks.
#[derive(Debug, Clone, PartialEq)]
pub struct TaintRule {
    /// `spec.deviceSelector`: (driver, pool, device), each `None` for any. `None` when the
    /// rule has no selector, which selects no device (the API's "without a selector, no
    /// devices are matched").
    pub selector: Option<(Option<String>, Option<String>, Option<String>)>,
    /// `spec.taint`.
    pub taint: DeviceTaint,
}

impl TaintRule {
    /// Whether the rule selects device `name` of `pool` from `driver`.
    pub fn selects(&self, driver: &str, pool: &str, name: &str) -> bool {
        let Some((d, p, n)) = &self.selector else {
            return false;
        };
        let ok = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        ok(d, driver) && ok(p, pool) && ok(n, name)
    }
}

/// Which kind of object an event changed, for the plugin's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Nothing the plugin tracks (unknown kind or unparsable object).
    Nothing,
    /// A pod.
    Pod,
    /// A node.
    Node,
    /// A claim, with its uid and whether it was deleted.
    Claim {
        /// The claim's uid.
        uid: String,
        /// It was deleted.
        gone: bool,
    },
    /// A ResourceSlice (device indices change).
    Slices,
    /// A DeviceClass or ResourceClaimTemplate.
    Other,
}

impl ClusterState {
    /// Applies one event. Returns what changed, or an error message for an object that does not
    /// parse (it is then ignored, as a watch would skip it).
    pub fn apply(&mut self, event: &ObjectEvent) -> Result<Changed, String> {
        let deleted = event.action == EventAction::Deleted;
        let err = |e: serde_json::Error| {
            format!(
                "{} {}: {e}",
                event.resource.api_version, event.resource.kind
            )
        };
        match (
            event.resource.api_version.as_str(),
            event.resource.kind.as_str(),
        ) {
            ("v1", "Pod") => {
                let mut p: PodJson = serde_json::from_str(&event.object).map_err(err)?;
                if deleted {
                    self.pods.remove(&p.metadata.uid);
                } else {
                    let containers = container_requests(&mut p.spec);
                    let pod = Pod {
                        namespace: p.metadata.namespace,
                        name: p.metadata.name,
                        uid: p.metadata.uid.clone(),
                        node_name: p.spec.node_name.filter(|n| !n.is_empty()),
                        containers,
                        extended_claim: p
                            .status
                            .extended_resource_claim_status
                            .map(|s| s.resource_claim_name)
                            .filter(|n| !n.is_empty()),
                        claims: p.spec.resource_claims,
                        claim_statuses: p
                            .status
                            .resource_claim_statuses
                            .into_iter()
                            .map(|s| (s.name, s.resource_claim_name))
                            .collect(),
                    };
                    self.pods.insert(p.metadata.uid, pod);
                }
                Ok(Changed::Pod)
            }
            ("v1", "Node") => {
                let n: NodeJson = serde_json::from_str(&event.object).map_err(err)?;
                // Extended resources the node offers itself (device plugins): those are not
                // DRA's to allocate there.
                let offered: BTreeSet<String> = n
                    .status
                    .allocatable
                    .iter()
                    .filter(|(k, q)| {
                        k.contains('/')
                            && kube_quantity::Quantity::parse_json(&q.0).is_ok_and(|q| !q.is_zero())
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                if deleted || offered.is_empty() {
                    self.node_extended.remove(&n.metadata.name);
                } else {
                    self.node_extended.insert(n.metadata.name.clone(), offered);
                }
                if deleted {
                    self.nodes.remove(&n.metadata.name);
                } else if self.nodes.get(&n.metadata.name) != Some(&n.metadata.labels) {
                    self.nodes.insert(n.metadata.name, n.metadata.labels);
                } else {
                    return Ok(Changed::Node); // status-only update: nothing DRA sees changed
                }
                self.shared_generation += 1; // labels decide which shared devices a node reaches
                Ok(Changed::Node)
            }
            ("resource.k8s.io/v1", "ResourceClaim") => {
                let c = Claim::from_json(serde_json::from_str(&event.object).map_err(err)?);
                let key = (c.namespace.clone(), c.name.clone());
                let mut replaced = None;
                if let Some(old) = self.claims.remove(&key) {
                    self.count_devices(&old, -1);
                    if let Some(g) = &old.generated_for {
                        self.generated.remove(g);
                    }
                    if let Some(pod) = &old.extended_for {
                        self.extended_claims.remove(pod);
                    }
                    if old.uid != c.uid {
                        replaced = Some(old.uid);
                    }
                }
                let uid = c.uid.clone();
                if !deleted && c.allocation.is_none() {
                    self.note_shapes(&c.spec);
                }
                if !deleted {
                    self.count_devices(&c, 1);
                    if let Some(g) = &c.generated_for {
                        self.generated.insert(g.clone(), c.name.clone());
                    }
                    if let Some(pod) = &c.extended_for {
                        self.extended_claims.insert(pod.clone(), c.name.clone());
                    }
                    self.claims.insert(key, c);
                }
                // A claim recreated under the same name: the old one is gone.
                match replaced {
                    Some(old_uid) => Ok(Changed::Claim {
                        uid: old_uid,
                        gone: true,
                    }),
                    None => Ok(Changed::Claim { uid, gone: deleted }),
                }
            }
            ("resource.k8s.io/v1", "ResourceClaimTemplate") => {
                let m: TemplateJson = serde_json::from_str(&event.object).map_err(err)?;
                let key = (m.metadata.namespace, m.metadata.name);
                if deleted {
                    self.templates.remove(&key);
                } else {
                    if let Some(devices) = m.spec.spec.and_then(|s| s.devices) {
                        self.note_shapes(&devices);
                    }
                    self.templates.insert(key);
                }
                Ok(Changed::Other)
            }
            ("resource.k8s.io/v1", "DeviceClass") => {
                let c: DeviceClass = serde_json::from_str(&event.object).map_err(err)?;
                let name = c.metadata.name.unwrap_or_default();
                self.shared_generation += 1;
                self.shapes_generation += 1;
                self.note_shape(&name, None);
                if deleted {
                    self.classes.remove(&name);
                    self.class_extended.remove(&name);
                } else {
                    let created = c
                        .metadata
                        .creation_timestamp
                        .map(|t| t.0.as_second())
                        .unwrap_or_default();
                    self.class_extended.insert(
                        name.clone(),
                        (c.spec.extended_resource_name.clone(), created),
                    );
                    let exprs = c
                        .spec
                        .selectors
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.cel)
                        .map(|c| c.expression);
                    self.classes.insert(name, exprs.collect());
                }
                Ok(Changed::Other)
            }
            ("resource.k8s.io/v1", "ResourceSlice") => {
                let s: ResourceSlice = serde_json::from_str(&event.object).map_err(err)?;
                let name = s.metadata.name.unwrap_or_default();
                if deleted {
                    self.slices.remove(&name);
                } else {
                    self.slices.insert(name, s.spec);
                }
                self.inventory_dirty = true;
                Ok(Changed::Slices)
            }
            ("resource.k8s.io/v1beta2", "DeviceTaintRule") => {
                let r: DeviceTaintRule = serde_json::from_str(&event.object).map_err(err)?;
                let name = r.metadata.name.unwrap_or_default();
                let t = r.spec.taint;
                let rule = TaintRule {
                    selector: r.spec.device_selector.map(|s| (s.driver, s.pool, s.device)),
                    // The same taint type as in slices (the fields are the same).
                    taint: DeviceTaint {
                        key: t.key,
                        value: t.value,
                        effect: t.effect,
                        time_added: t.time_added,
                    },
                };
                let changed = if deleted {
                    self.taint_rules.remove(&name).is_some()
                } else {
                    self.taint_rules.insert(name, rule.clone()).as_ref() != Some(&rule)
                };
                if !changed {
                    return Ok(Changed::Nothing); // status or metadata only
                }
                self.inventory_dirty = true;
                Ok(Changed::Slices)
            }
            _ => Ok(Changed::Nothing),
        }
    }

    /// The names of the ResourceClaims `pod` uses, in spec order; entries whose template produced
    /// no claim are skipped.
    ///
    /// A template's claim is named in `pod.status.resourceClaimStatuses` (as upstream reads it).
    /// Until that status update is seen, the claim generated for the pod is found by its
    /// controller owner reference and `resource.kubernetes.io/pod-claim-name` annotation, so the
    /// pod does not wait on its own status update.
    ///
    /// # Errors
    /// The pod claim whose generated claim does not exist yet.
    pub fn claim_names<'a>(&'a self, pod: &'a Pod) -> Result<Vec<&'a str>, &'a PodClaim> {
        let mut out = Vec::with_capacity(pod.claims.len());
        for c in &pod.claims {
            if let Some(n) = &c.resource_claim_name {
                out.push(n.as_str());
            } else if c.resource_claim_template_name.is_some() {
                match pod.claim_statuses.get(&c.name) {
                    Some(Some(n)) => out.push(n.as_str()),
                    Some(None) => {}
                    None => match self.generated.get(&(pod.uid.clone(), c.name.clone())) {
                        Some(n) => out.push(n.as_str()),
                        None => return Err(c),
                    },
                }
            }
        }
        if let Some(n) = self.extended_claim(pod) {
            out.push(n);
        }
        Ok(out)
    }

    /// The claim for the pod's extended resources (KEP-5004) that exists already: the one its
    /// status names, else one it controls (created by an earlier attempt whose pod status
    /// update did not land, or assumed).
    pub fn extended_claim<'a>(&'a self, pod: &'a Pod) -> Option<&'a str> {
        pod.extended_claim
            .as_deref()
            .or_else(|| self.extended_claims.get(&pod.uid).map(String::as_str))
    }

    /// The DeviceClass that backs extended resource `name`, as upstream's
    /// `DeviceClassResolver`: `deviceclass.resource.kubernetes.io/<class>` names its class;
    /// otherwise the class whose `spec.extendedResourceName` it is, and if several are, the
    /// newest (by creation time), then the first by name.
    pub fn class_for_resource(&self, name: &str) -> Option<&str> {
        if let Some(class) = name.strip_prefix(DEVICE_CLASS_PREFIX) {
            return self
                .class_extended
                .get_key_value(class)
                .map(|(k, _)| k.as_str());
        }
        self.class_extended
            .iter()
            .filter(|(_, (ext, _))| ext.as_deref() == Some(name))
            .max_by(|(a, (_, ta)), (b, (_, tb))| ta.cmp(tb).then_with(|| b.cmp(a)))
            .map(|(k, _)| k.as_str())
    }

    /// Records the shapes of a claim's request alternatives (see [`crate::placement`]).
    fn note_shapes(&mut self, spec: &DeviceClaim) {
        for r in spec.requests.iter().flatten() {
            if let Some(e) = &r.exactly {
                self.note_shape(&e.device_class_name, e.selectors.as_deref());
            }
            for sub in r.first_available.iter().flatten() {
                self.note_shape(&sub.device_class_name, sub.selectors.as_deref());
            }
        }
    }

    fn note_shape(&mut self, class: &str, selectors: Option<&[DeviceSelector]>) {
        let exprs = || {
            selectors
                .into_iter()
                .flatten()
                .filter_map(|s| s.cel.as_ref())
                .map(|c| c.expression.as_str())
        };
        let known = self
            .shape_keys
            .iter()
            .any(|(c, e)| c == class && e.iter().map(String::as_str).eq(exprs()));
        if known || self.shape_keys.len() >= crate::placement::MAX_SHAPES {
            return;
        }
        self.shape_keys
            .push((class.to_owned(), exprs().map(str::to_owned).collect()));
        self.shapes_generation += 1;
    }

    fn count_devices(&mut self, c: &Claim, delta: i32) {
        for (key, consumed) in c.allocation.iter().flat_map(|a| &a.shared) {
            add_consumed(&mut self.shared_consumed, key, consumed, i128::from(delta));
            if !self.inventory_dirty
                && let Some(&i) = self.inventory.index.get(key)
            {
                self.touch_device(i);
            }
        }
        for d in c.allocation.iter().flat_map(|a| &a.devices) {
            let n = match self.allocated.get_mut(d) {
                Some(n) => n,
                None => self.allocated.entry(d.clone()).or_default(),
            };
            *n = n.saturating_add_signed(delta);
            let count = *n;
            if count == 0 {
                self.allocated.remove(d);
            }
            if !self.inventory_dirty
                && let Some(&i) = self.inventory.index.get(d)
            {
                if (self.taken[i as usize] == 0) != (count == 0) {
                    self.touch_device(i);
                }
                self.taken[i as usize] = count;
            }
        }
    }

    /// Records that device `index` of the current inventory was taken or freed (allocated or
    /// in flight): Filter results cached for the nodes that reach it are stale.
    pub fn touch_device(&mut self, index: u32) {
        match self
            .inventory
            .devices
            .get(index as usize)
            .and_then(|d| d.node)
        {
            Some(n) => self.node_generation[n as usize] += 1,
            None => self.shared_generation += 1,
        }
    }

    /// The generation a Filter result for a node with inventory node index `node` is valid
    /// for: (that node's, everything shared). Equal pairs mean no device the node reaches
    /// changed hands and no label or class changed (within one inventory).
    pub fn fit_generation(&self, node: Option<u32>) -> (u64, u64) {
        let own = node.map_or(0, |n| self.node_generation[n as usize]);
        (own, self.shared_generation)
    }

    /// True if device `index` of the current inventory is allocated to some claim.
    pub fn is_taken(&self, index: u32) -> bool {
        self.taken.get(index as usize).is_some_and(|&n| n > 0)
    }

    /// The device inventory, rebuilt if slices changed since the last call. Returns whether it
    /// was rebuilt (device indices changed).
    pub fn refresh_inventory(&mut self) -> bool {
        if !self.inventory_dirty {
            return false;
        }
        self.inventory = Inventory::build(self.slices.iter().map(|(n, s)| (n.as_str(), s)));
        self.inventory.add_rule_taints(self.taint_rules.values());
        self.taken = vec![0; self.inventory.devices.len()];
        self.node_generation = vec![0; self.inventory.node_ids.len()];
        self.shared_generation += 1;
        for (key, &n) in &self.allocated {
            if let Some(&i) = self.inventory.index.get(key) {
                self.taken[i as usize] = n;
            }
        }
        self.inventory_dirty = false;
        true
    }

    /// The inventory as of the last [`ClusterState::refresh_inventory`].
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }
}

/// Adds `sign ×` the amounts `consumed` of device `key` to `totals` (dropping a device whose
/// totals become zero).
pub fn add_consumed(
    totals: &mut FxHashMap<String, Vec<(String, i128)>>,
    key: &str,
    consumed: &[(String, i128)],
    sign: i128,
) {
    let entry = match totals.get_mut(key) {
        Some(e) => e,
        None => totals.entry(key.to_owned()).or_default(),
    };
    for (name, amount) in consumed {
        match entry.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v += sign * amount,
            None => entry.push((name.clone(), sign * amount)),
        }
    }
    if entry.iter().all(|(_, v)| *v == 0) {
        totals.remove(key);
    }
}

impl ClusterState {
    /// How much of capacity `name` of device `key` the allocated shares consume.
    pub fn consumed(&self, key: &str, name: &str) -> i128 {
        consumed_of(&self.shared_consumed, key, name)
    }
}

/// The amount of capacity `name` of device `key` in `totals`.
pub fn consumed_of(totals: &FxHashMap<String, Vec<(String, i128)>>, key: &str, name: &str) -> i128 {
    totals
        .get(key)
        .and_then(|v| v.iter().find(|(n, _)| n == name))
        .map_or(0, |(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_scheduler_sdk::ResourceKind;

    fn ev(action: EventAction, resource: ResourceKind, object: serde_json::Value) -> ObjectEvent {
        ObjectEvent {
            action,
            resource,
            object: object.to_string(),
        }
    }

    #[test]
    fn device_taint_rules_taint_the_devices_they_select_until_deleted() {
        let mut s = ClusterState::default();
        let slice = serde_json::json!({
            "metadata": {"name": "s"},
            "spec": {"driver": "gpu.example.com", "nodeName": "node-a",
                     "pool": {"name": "node-a", "generation": 1, "resourceSliceCount": 1},
                     "devices": [{"name": "gpu-0"}, {"name": "gpu-1"}]}
        });
        s.apply(&ev(
            EventAction::Added,
            ResourceKind::resource_slice(),
            slice,
        ))
        .unwrap();
        let rule = |name: &str, selector: serde_json::Value, effect: &str| {
            let mut r = serde_json::json!({"metadata": {"name": name},
                "spec": {"taint": {"key": "example.com/broken", "effect": effect}}});
            if !selector.is_null() {
                r["spec"]["deviceSelector"] = selector;
            }
            r
        };
        let kind = ResourceKind::device_taint_rule();
        let one = rule("one", serde_json::json!({"device": "gpu-1"}), "NoSchedule");
        for r in [
            one.clone(),
            rule("informational", serde_json::json!({}), "None"),
            rule("no-selector", serde_json::Value::Null, "NoExecute"),
        ] {
            s.apply(&ev(EventAction::Added, kind.clone(), r)).unwrap();
        }
        s.refresh_inventory();
        let tainted = |s: &ClusterState| -> Vec<usize> {
            s.inventory()
                .devices
                .iter()
                .map(|d| d.taints.len())
                .collect()
        };
        assert_eq!(
            tainted(&s),
            [0, 1],
            "only gpu-1; None and selector-less rules taint nothing"
        );
        let all = rule(
            "all",
            serde_json::json!({"driver": "gpu.example.com", "pool": "node-a"}),
            "NoExecute",
        );
        s.apply(&ev(EventAction::Added, kind.clone(), all)).unwrap();
        s.apply(&ev(EventAction::Deleted, kind.clone(), one))
            .unwrap();
        assert!(s.refresh_inventory());
        assert_eq!(tainted(&s), [1, 1]);
    }

    #[test]
    fn tracks_pods_with_claims_from_names_and_templates() {
        let mut s = ClusterState::default();
        let pod = serde_json::json!({
            "metadata": {"name": "p", "namespace": "demo", "uid": "u1"},
            "spec": {"containers": [], "resourceClaims": [
                {"name": "a", "resourceClaimName": "shared"},
                {"name": "b", "resourceClaimTemplateName": "gpu-template"}]},
            "status": {"phase": "Pending"}
        });
        s.apply(&ev(EventAction::Added, ResourceKind::pod(), pod.clone()))
            .unwrap();
        let err = s.claim_names(&s.pods["u1"]).unwrap_err();
        assert_eq!(err.name, "b");
        let mut pod2 = pod;
        pod2["status"]["resourceClaimStatuses"] =
            serde_json::json!([{"name": "b", "resourceClaimName": "p-b-xyz"}]);
        s.apply(&ev(
            EventAction::Modified,
            ResourceKind::pod(),
            pod2.clone(),
        ))
        .unwrap();
        assert_eq!(s.claim_names(&s.pods["u1"]).unwrap(), ["shared", "p-b-xyz"]);
        s.apply(&ev(EventAction::Deleted, ResourceKind::pod(), pod2))
            .unwrap();
        assert!(s.pods.is_empty());
    }

    #[test]
    fn counts_allocated_devices_across_claim_updates() {
        let mut s = ClusterState::default();
        let claim = |alloc: bool| {
            let mut c = serde_json::json!({
                "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": {"name": "c", "namespace": "demo", "uid": "cu"},
                "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu"}}]}},
                "status": {}
            });
            if alloc {
                c["status"] = serde_json::json!({"allocation": {"devices": {"results": [
                    {"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu-0"}]}},
                    "reservedFor": [{"resource": "pods", "name": "p", "uid": "pu"}]});
            }
            c
        };
        let changed = s
            .apply(&ev(
                EventAction::Added,
                ResourceKind::resource_claim(),
                claim(false),
            ))
            .unwrap();
        assert_eq!(
            changed,
            Changed::Claim {
                uid: "cu".into(),
                gone: false
            }
        );
        assert!(s.allocated.is_empty());
        s.apply(&ev(
            EventAction::Modified,
            ResourceKind::resource_claim(),
            claim(true),
        ))
        .unwrap();
        assert_eq!(s.allocated.len(), 1);
        assert!(s.claims[&("demo".to_string(), "c".to_string())].is_reserved_for("pu"));
        s.apply(&ev(
            EventAction::Modified,
            ResourceKind::resource_claim(),
            claim(true),
        ))
        .unwrap();
        assert_eq!(s.allocated.values().copied().collect::<Vec<_>>(), [1]);
        s.apply(&ev(
            EventAction::Deleted,
            ResourceKind::resource_claim(),
            claim(true),
        ))
        .unwrap();
        assert!(s.allocated.is_empty());
    }

    #[test]
    fn finds_a_generated_claim_before_the_pod_status_names_it() {
        let mut s = ClusterState::default();
        let pod = serde_json::json!({
            "metadata": {"name": "p", "namespace": "demo", "uid": "u1"},
            "spec": {"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "t"}]}
        });
        s.apply(&ev(EventAction::Added, ResourceKind::pod(), pod))
            .unwrap();
        assert!(s.claim_names(&s.pods["u1"]).is_err());
        let claim = serde_json::json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "p-gpu-abcde", "namespace": "demo", "uid": "cu",
                "annotations": {"resource.kubernetes.io/pod-claim-name": "gpu"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u1", "controller": true}]},
            "spec": {"devices": {"requests": []}}
        });
        s.apply(&ev(
            EventAction::Added,
            ResourceKind::resource_claim(),
            claim.clone(),
        ))
        .unwrap();
        assert_eq!(s.claim_names(&s.pods["u1"]).unwrap(), ["p-gpu-abcde"]);
        s.apply(&ev(
            EventAction::Deleted,
            ResourceKind::resource_claim(),
            claim,
        ))
        .unwrap();
        assert!(s.claim_names(&s.pods["u1"]).is_err());
    }
}
