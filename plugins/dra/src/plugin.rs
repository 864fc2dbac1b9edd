//! `DynamicResources`: the scheduler plugin, upstream
//! `pkg/scheduler/framework/plugins/dynamicresources` for resource.k8s.io/v1 with structured
//! parameters, written against the `wasm-scheduler-sdk` [`Plugin`] trait.
//!
//! | point | what it does |
//! |---|---|
//! | PreEnqueue | waits until every claim of the pod exists and is not being deleted |
//! | PreFilter | sorts the pod's claims into allocated / to allocate, compiles requests; waits on claims in use by 256 consumers or being allocated for another pod; `Skip` for pods without claims |
//! | Filter | allocated claims: their node selector must match; unallocated (and the special claim for the extended resources the node does not offer as allocatable): the allocator must find devices on the node |
//! | PostFilter | deallocates one allocated claim of the pod that nobody uses |
//! | PreScore | `Skip` unless a claim to allocate has a `firstAvailable` request (Score would give 0 everywhere) |
//! | Score | prefers nodes where earlier `firstAvailable` subrequests fit |
//! | Reserve | picks the devices, records them as in flight, returns the claim patches; for extended resources backed by DRA (KEP-5004, see [`crate::extended`]) the intents that create the special claim, allocate it and name it in the pod's status |
//! | Unreserve | compensating patches; forgets what Reserve recorded (idempotent) |
//! | PreBind | `Pending` until the binding conditions of allocated devices are `True` (KEP-5007), an error when a failure condition is |
//!
//! State comes only from pushed events (see [`crate::state`]), so a new instance fed the
//! current objects behaves the same (hot swap).

use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashMap;
use serde_json::{Value, json};
use wasm_scheduler_sdk::{
    ClusterEvent, Code, EventAction, ExtensionPoint, FieldSelection, Metadata, ObjectEvent,
    PatchIntent, Plugin, PodRef, PostFilterResult, PreFilterResult, ResourceKind, Status,
};

use crate::allocator::{self, ClaimAllocation, PlannedClaim, Scratch, Usage};
use crate::cel_env::Selectors;
use crate::extended::{self, Mapping};
use crate::intents::{self, ClaimTarget};
use crate::node_selector;
use crate::placement::Placement;
use crate::state::{BindingReadiness, Changed, ClusterState, Key, add_consumed, consumed_of};

/// The plugin's name in the scheduler configuration (as upstream).
pub const NAME: &str = "DynamicResources";
/// Filter: no combination of free devices on the node satisfies the pod's unallocated claims.
pub const REASON_CANNOT_ALLOCATE: &str = "cannot allocate all claims";
/// Filter: an allocated claim's node selector does not match the node.
pub const REASON_NOT_AVAILABLE: &str = "resourceclaim not available on the node";
/// PreFilter: the claim already has 256 consumers (resource.k8s.io/v1 `ResourceClaimReservedForMaxSize`).
pub const REASON_IN_USE: &str = "resourceclaim in use";
/// PostFilter: a claim nobody used was deallocated so the pod can go elsewhere.
pub const REASON_DEALLOCATED: &str = "deallocation of ResourceClaim completed";
/// PreBind: a device's binding conditions are not all `True` yet (upstream's
/// `BindingConditionsPending` event says the same).
pub const REASON_BINDING_CONDITIONS_PENDING: &str = "waiting for binding conditions for device";
/// resource.k8s.io/v1 `ResourceClaimReservedForMaxSize`.
pub const MAX_RESERVED_FOR: usize = 256;
/// Upstream `DynamicResourcesBindingTimeoutDefault`
/// (pkg/scheduler/apis/config/v1/defaults.go): how long PreBind waits for binding conditions.
pub const DEFAULT_BINDING_TIMEOUT_MS: u64 = 600_000;

/// `DynamicResourcesArgs` (pkg/scheduler/apis/config/types_pluginargs.go), as far as this
/// plugin uses them. The binding timeout is enforced by the host (a plugin has no clock),
/// which reads the same `bindingTimeout`; the plugin validates it as upstream does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `bindingTimeout` in milliseconds (at least one second).
    pub binding_timeout_ms: u64,
}

impl Args {
    /// Parses the args JSON (`{}` for none); `filterTimeout` is accepted and not used.
    ///
    /// # Errors
    /// A message naming the bad field, as upstream `ValidateDynamicResourcesArgs`.
    pub fn parse(json: &str) -> Result<Args, String> {
        let v: Value = serde_json::from_str(json).map_err(|e| format!("args: {e}"))?;
        let mut args = Args {
            binding_timeout_ms: DEFAULT_BINDING_TIMEOUT_MS,
        };
        if let Some(t) = v.get("bindingTimeout").filter(|t| !t.is_null()) {
            let text = t.as_str().unwrap_or_default();
            let ms = parse_duration_ms(text)
                .ok_or_else(|| format!("bindingTimeout: Invalid value: {t}: not a duration"))?;
            if ms < 1000 {
                return Err(format!(
                    "bindingTimeout: Invalid value: \"{text}\": must be at least 1 second"
                ));
            }
            args.binding_timeout_ms = ms;
        }
        if let Some(t) = v.get("filterTimeout").filter(|t| !t.is_null()) {
            parse_duration_ms(t.as_str().unwrap_or_default()).ok_or_else(|| {
                format!("filterTimeout: Invalid value: {t}: must be zero or positive")
            })?;
        }
        Ok(args)
    }
}

/// A Go duration (`600s`, `1m30s`, `500ms`, `1h`) in milliseconds; `None` if it does not
/// parse or is negative.
fn parse_duration_ms(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ms = match &rest[..u] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return None,
        };
        total += value * ms;
        rest = &rest[u..];
    }
    Some(total.round() as u64)
}
/// Nodes of one Filter batch whose rejection carries details beyond the main reason.
const MAX_DETAILED_NODES: usize = 16;

/// An allocation decided at Reserve that may not be on the API server yet: none of the pods
/// whose status patch carries it has been bound. Pods joining the claim meanwhile write the
/// same allocation in their own patch (identical allocations are a no-op for the server), so
/// their reservation is valid whichever PreBind lands first.
struct InFlight {
    /// The claim.
    key: Key,
    /// Pods whose Reserve wrote the allocation (the allocating pod, then joiners).
    carriers: Vec<String>,
    /// Keys of the devices it takes whole, taken until the allocation is confirmed.
    devices: Vec<String>,
    /// Shares of devices with `allowMultipleAllocations`: key and consumed capacity.
    shared: Vec<(String, Vec<(String, i128)>)>,
    /// `shared` counts in [`DraPlugin::in_flight_consumed`]: until the claim is seen allocated
    /// (the host's assumed object), which then counts it instead.
    shared_counted: bool,
    /// The allocation JSON, exactly as first written.
    allocation: Value,
    /// The pod whose patches add the delete-protection finalizer, if the claim lacked it.
    /// Joiners do not write it again (one finalizer write per claim, not per pod); if this pod
    /// fails while joiners still carry the allocation, its Unreserve adds the finalizer instead.
    finalizer_by: Option<String>,
}

/// What Reserve did for one claim of a pod, so Unreserve can undo it.
struct Reservation {
    key: Key,
    claim_uid: String,
    /// The pod's patch wrote the allocation: deallocate on Unreserve if nobody else uses it.
    carried_allocation: bool,
    /// The special claim for the pod's extended resources, created by these intents: it has
    /// no uid yet (`claim_uid` is the in-flight id).
    created: bool,
}

/// The in-flight id of a special claim not created yet (it has no uid before the server's).
fn special_id(pod_uid: &str) -> String {
    format!("extended-resources/{pod_uid}")
}

/// One variant of the special claim: the requests for the extended resources a set of nodes
/// must serve through DRA (those they do not list as allocatable).
struct ExtVariant {
    /// Bit `i`: resource `i` of [`Cycle::extended`] is allocated through DRA.
    mask: u64,
    requests: Vec<extended::Request>,
    mappings: Vec<Mapping>,
    /// `None` while it is lent to the allocator in [`Cycle::plans`].
    plan: Option<PlannedClaim>,
}

/// What PreFilter worked out for the pod being scheduled, reused by Filter, Score and Reserve.
struct Cycle {
    pod_uid: String,
    /// Inventory generation the plans and per-node results were computed with.
    epoch: u64,
    /// Claims that are allocated (their node selector is checked).
    allocated: Vec<Key>,
    /// Claims to allocate.
    to_allocate: Vec<Key>,
    /// Their compiled requests, in the same order.
    plans: Vec<PlannedClaim>,
    /// A claim to allocate has a `firstAvailable` request: Score needs each node's choice, so
    /// Filter keeps its allocations.
    prioritized: bool,
    /// Allocations found per node (by Filter when `prioritized`, by Score, by Reserve).
    per_node: FxHashMap<String, Vec<ClaimAllocation>>,
    /// The specs of the claims to allocate, as JSON: pods with equal signatures get equal
    /// Filter verdicts on equal cluster state.
    signature: String,
    /// Extended resources the pod requests that a DeviceClass backs (resource, class), sorted
    /// by resource; empty when the pod has none or its special claim exists already.
    extended: Vec<(String, String)>,
    /// Special-claim variants built so far (one per set of resources nodes lack).
    variants: Vec<ExtVariant>,
}

impl Cycle {
    /// Which of the pod's extended resources `node` must serve through DRA: those it does not
    /// offer as allocatable (upstream `filterExtendedResources`).
    fn extended_mask(&self, state: &ClusterState, node: &str) -> u64 {
        let offered = state.node_extended.get(node);
        let mut mask = 0;
        for (i, (resource, _)) in self.extended.iter().enumerate().take(64) {
            if !offered.is_some_and(|o| o.contains(resource)) {
                mask |= 1 << i;
            }
        }
        mask
    }
}

/// The extended resources `pod` requests (a non-zero integer in some container) that a
/// DeviceClass backs, with that class, sorted by resource.
fn mapped_resources(state: &ClusterState, pod: &crate::state::Pod) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for c in &pod.containers {
        for (name, q) in &c.requests {
            if q.is_none_or(|q| q == 0) || out.iter().any(|(n, _)| n == name) {
                continue;
            }
            if let Some(class) = state.class_for_resource(name) {
                out.push((name.clone(), class.to_owned()));
            }
        }
    }
    out.sort();
    out
}

/// Filter verdicts per node for one shape of claims to allocate, reused by later pods whose
/// claims have the same shape (e.g. all generated from one template) until something the
/// verdict depends on changes: a device the node reaches is taken or freed, labels, classes,
/// or the inventory ([`ClusterState::fit_generation`], the plugin's epoch). Pods of a
/// template then cost one lookup per node instead of an allocation search.
#[derive(Default)]
struct FitCache {
    epoch: u64,
    /// The claims' specs the verdicts are for (see [`Cycle::signature`]).
    signature: String,
    nodes: FxHashMap<String, FitEntry>,
}

struct FitEntry {
    /// The node's index in the inventory (`None`: no node-local devices).
    node: Option<u32>,
    generation: (u64, u64),
    status: Status,
    /// The scarce-device Score for this generation, with the [`Placement::version`] it used.
    score: Option<(u64, i64)>,
}

/// The plugin. See the module docs.
pub struct DraPlugin {
    state: ClusterState,
    selectors: Selectors,
    epoch: u64,
    cycle: Option<Cycle>,
    in_flight: HashMap<String, InFlight>,
    /// Device keys of `in_flight`, with how many in-flight allocations hold each.
    in_flight_devices: FxHashMap<String, u32>,
    /// `in_flight_devices` by inventory device index (kept in step, rebuilt with the inventory).
    in_flight_mask: Vec<bool>,
    /// Capacity of shared devices consumed by in-flight allocations not seen on their claim
    /// yet: device key → (capacity name, nano-units).
    in_flight_consumed: FxHashMap<String, Vec<(String, i128)>>,
    fit_cache: FitCache,
    reservations: HashMap<String, Vec<Reservation>>,
    scratch: Scratch,
    placement: Placement,
}

impl DraPlugin {
    /// Brings the device ranks of [`crate::placement`] up to date (cheap when nothing changed).
    fn refresh_placement(&mut self) {
        self.placement.refresh(
            self.state.inventory(),
            &mut self.selectors,
            &self.state.classes,
            &self.state.shape_keys,
            self.state.shapes_generation,
            self.epoch,
        );
    }

    /// Whether the devices some request of the cycle could take differ in value, so that the
    /// device choice and Score should keep the more valuable ones free.
    fn scarce_matters(&self) -> bool {
        self.cycle.as_ref().is_some_and(|c| {
            c.plans
                .iter()
                .flat_map(PlannedClaim::alternatives)
                .any(|a| self.placement.matters(a))
        })
    }

    /// The scarce-device score cached for `node`, if nothing it depends on changed.
    fn cached_score(&self, node: &str) -> Option<i64> {
        let e = self.fit_cache.nodes.get(node)?;
        let (version, score) = e.score?;
        (e.generation == self.state.fit_generation(e.node) && version == self.placement.version)
            .then_some(score)
    }

    /// Caches the scarce-device score of `node` (whose claims fit: Score found an allocation).
    fn store_score(&mut self, node: &str, score: i64) {
        let id = self.state.inventory().node_ids.get(node).copied();
        let generation = self.state.fit_generation(id);
        let score = Some((self.placement.version, score));
        match self.fit_cache.nodes.get_mut(node) {
            Some(e) => {
                if e.generation != generation {
                    e.generation = generation;
                    e.status = Status::success();
                }
                e.score = score;
            }
            None => {
                let entry = FitEntry {
                    node: id,
                    generation,
                    status: Status::success(),
                    score,
                };
                self.fit_cache.nodes.insert(node.to_owned(), entry);
            }
        }
    }

    fn refresh(&mut self) {
        if self.state.refresh_inventory() {
            self.selectors.clear_results();
            self.epoch += 1;
            self.rebuild_in_flight_mask();
        }
    }

    /// Records an allocation decided at Reserve for `claim_uid`; its devices are taken until it
    /// is confirmed or dropped.
    fn add_in_flight(&mut self, claim_uid: String, f: InFlight) {
        if f.shared_counted {
            self.count_shared(&f.shared, 1);
        }
        for key in &f.devices {
            let n = self.in_flight_devices.entry(key.clone()).or_default();
            *n += 1;
            if *n == 1 {
                self.mark_in_flight(key, true);
            }
        }
        if let Some(old) = self.in_flight.insert(claim_uid, f) {
            self.release_devices(&old);
        }
    }

    /// Forgets the in-flight allocation of `claim_uid`, if any.
    fn remove_in_flight(&mut self, claim_uid: &str) {
        if let Some(f) = self.in_flight.remove(claim_uid) {
            self.release_devices(&f);
        }
    }

    /// Adds (`sign` 1) or removes (-1) in-flight shares of devices.
    fn count_shared(&mut self, shared: &[(String, Vec<(String, i128)>)], sign: i128) {
        for (key, consumed) in shared {
            add_consumed(&mut self.in_flight_consumed, key, consumed, sign);
            if let Some(&i) = self.state.inventory().index.get(key) {
                self.state.touch_device(i);
            }
        }
    }

    fn release_devices(&mut self, f: &InFlight) {
        if f.shared_counted {
            self.count_shared(&f.shared, -1);
        }
        for key in &f.devices {
            let Some(n) = self.in_flight_devices.get_mut(key) else {
                continue;
            };
            *n -= 1;
            if *n == 0 {
                self.in_flight_devices.remove(key);
                self.mark_in_flight(key, false);
            }
        }
    }

    fn mark_in_flight(&mut self, key: &str, taken: bool) {
        if let Some(&i) = self.state.inventory().index.get(key) {
            if let Some(m) = self.in_flight_mask.get_mut(i as usize) {
                *m = taken;
            }
            self.state.touch_device(i);
        }
    }

    fn rebuild_in_flight_mask(&mut self) {
        let inv = self.state.inventory();
        self.in_flight_mask.clear();
        self.in_flight_mask.resize(inv.devices.len(), false);
        for key in self.in_flight_devices.keys() {
            if let Some(&i) = inv.index.get(key) {
                self.in_flight_mask[i as usize] = true;
            }
        }
    }

    /// True if device `index` is allocated or in flight.
    fn device_in_use(&self, index: u32) -> bool {
        self.state.is_taken(index) || self.in_flight_mask.get(index as usize) == Some(&true)
    }

    /// PreFilter's work: classify the pod's claims. `Ok(None)` means the pod has no claims.
    fn prepare(&mut self, pod: &PodRef) -> Result<Option<Cycle>, Status> {
        self.refresh();
        let p = self.state.pods.get(&pod.uid).ok_or_else(|| {
            Status::error(format!(
                "pod {}/{} is not known to {NAME}",
                pod.namespace, pod.name
            ))
        })?;
        let names = self.state.claim_names(p).map_err(|c| not_created(p, c))?;
        // A pod whose special claim exists uses it like any other claim.
        let extended = if self.state.extended_claim(p).is_none() {
            mapped_resources(&self.state, p)
        } else {
            Vec::new()
        };
        if names.is_empty() && extended.is_empty() {
            return Ok(None);
        }
        let mut seen = HashSet::new();
        let mut cycle = Cycle {
            pod_uid: pod.uid.clone(),
            epoch: self.epoch,
            allocated: Vec::new(),
            to_allocate: Vec::new(),
            plans: Vec::new(),
            prioritized: false,
            per_node: FxHashMap::default(),
            signature: String::new(),
            extended,
            variants: Vec::new(),
        };
        for name in names {
            let key = (p.namespace.clone(), name.to_owned());
            if !seen.insert(key.clone()) {
                continue;
            }
            let claim = self.state.claims.get(&key).ok_or_else(|| {
                Status::unresolvable(format!("resourceclaim \"{name}\" not found"))
            })?;
            if claim.deleting {
                return Err(Status::unresolvable(format!(
                    "resourceclaim \"{name}\" is being deleted"
                )));
            }
            if claim.allocation.is_some() {
                if !claim.is_reserved_for(&pod.uid) && claim.reserved_for.len() >= MAX_RESERVED_FOR
                {
                    return Err(Status::unresolvable(REASON_IN_USE));
                }
                cycle.allocated.push(key);
            } else {
                if self
                    .in_flight
                    .get(&claim.uid)
                    .is_some_and(|f| !f.carriers.contains(&pod.uid))
                {
                    return Err(Status::unresolvable(format!(
                        "resourceclaim \"{name}\" is in the process of being allocated"
                    )));
                }
                let plan =
                    allocator::plan_claim(&claim.spec, &self.state.classes, &mut self.selectors)
                        .map_err(|e| {
                            Status::unresolvable(format!("resourceclaim \"{name}\": {e}"))
                        })?;
                cycle.prioritized |= plan.has_first_available();
                cycle.signature += &serde_json::to_string(&claim.spec).unwrap_or_default();
                cycle.signature.push('\n');
                cycle.to_allocate.push(key);
                cycle.plans.push(plan);
            }
        }
        Ok(Some(cycle))
    }

    /// Makes sure `self.cycle` is for `pod` (Filter or Reserve without PreFilter, or after an
    /// inventory change), and returns whether the pod has claims.
    fn ensure_cycle(&mut self, pod: &PodRef) -> Result<bool, Status> {
        self.refresh();
        let current = self
            .cycle
            .as_ref()
            .is_some_and(|c| c.pod_uid == pod.uid && c.epoch == self.epoch);
        if !current {
            self.cycle = self.prepare(pod)?;
        }
        Ok(self.cycle.is_some())
    }

    /// Filter for one node; with `keep` (or for a prioritized cycle) the allocation found is
    /// kept for Score and Reserve. Filter over many nodes keeps nothing otherwise: Reserve
    /// recomputes the one node it needs, which costs less than storing every node's result.
    fn filter_node(&mut self, node: &str, keep: bool) -> Status {
        // Allocations that are kept pick devices by placement rank; verdicts alone need none.
        let ordered = keep || self.cycle.as_ref().is_some_and(|c| c.prioritized);
        if ordered {
            self.refresh_placement();
        }
        let Some(cycle) = self.cycle.as_mut() else {
            return Status::success();
        };
        let empty = Default::default();
        let labels = self.state.nodes.get(node).unwrap_or(&empty);
        for key in &cycle.allocated {
            let Some(claim) = self.state.claims.get(key) else {
                continue;
            };
            let sel = claim
                .allocation
                .as_ref()
                .and_then(|a| a.node_selector.as_ref());
            if sel.is_some_and(|s| !node_selector::matches(s, node, labels)) {
                return Status::unresolvable(REASON_NOT_AVAILABLE);
            }
        }
        let mask = cycle.extended_mask(&self.state, node);
        if cycle.to_allocate.is_empty() && mask == 0 {
            return Status::success();
        }
        // The special claim for the extended resources this node serves through DRA is
        // allocated with the pod's other claims, as the last one.
        let variant = if mask == 0 {
            None
        } else {
            match cycle.variants.iter().position(|v| v.mask == mask) {
                Some(i) => Some(i),
                None => {
                    let containers = self
                        .state
                        .pods
                        .get(&cycle.pod_uid)
                        .map(|p| p.containers.as_slice())
                        .unwrap_or_default();
                    let resources: Vec<(String, String)> = cycle
                        .extended
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, r)| r.clone())
                        .collect();
                    let (requests, mappings) =
                        extended::requests_and_mappings(containers, &resources);
                    let spec = serde_json::from_value(extended::devices_spec(&requests))
                        .map_err(|e| e.to_string())
                        .and_then(|spec| {
                            allocator::plan_claim(&spec, &self.state.classes, &mut self.selectors)
                        });
                    match spec {
                        Ok(plan) => {
                            cycle.variants.push(ExtVariant {
                                mask,
                                requests,
                                mappings,
                                plan: Some(plan),
                            });
                            Some(cycle.variants.len() - 1)
                        }
                        Err(e) => {
                            return Status::unresolvable(format!(
                                "claim for extended resources: {e}"
                            ));
                        }
                    }
                }
            }
        };
        if let Some(plan) = variant.and_then(|i| cycle.variants[i].plan.take()) {
            cycle.plans.push(plan);
        }
        let state = &self.state;
        let in_use = InUse {
            state,
            in_flight: &self.in_flight_mask,
            in_flight_consumed: &self.in_flight_consumed,
        };
        let inv = state.inventory();
        // Verdicts for the special claim depend on the node's allocatable too: not cached.
        let cached = !(keep || cycle.prioritized || variant.is_some());
        if cached
            && let Some(e) = self.fit_cache.nodes.get(node)
            && e.generation == state.fit_generation(e.node)
        {
            return e.status.clone();
        }
        let result = if !cached {
            let ranks = &self.placement.value;
            let order = (ranks.len() == inv.devices.len()).then_some(ranks.as_slice());
            allocator::allocate(
                inv,
                &mut self.selectors,
                &mut self.scratch,
                node,
                labels,
                &mut cycle.plans,
                &in_use,
                order,
            )
            .map(|allocs| {
                cycle.per_node.insert(node.to_owned(), allocs);
            })
        } else {
            allocator::fits(
                inv,
                &mut self.selectors,
                &mut self.scratch,
                node,
                labels,
                &mut cycle.plans,
                &in_use,
            )
        };
        if let Some(i) = variant {
            cycle.variants[i].plan = cycle.plans.pop();
        }
        let status = match result {
            Ok(()) => Status::success(),
            Err(e) => {
                let mut reasons = vec![REASON_CANNOT_ALLOCATE.to_owned()];
                reasons.extend(e.details);
                Status {
                    code: Code::UnschedulableAndUnresolvable,
                    reasons,
                }
            }
        };
        if cached {
            match self.fit_cache.nodes.get_mut(node) {
                Some(e) => {
                    e.generation = state.fit_generation(e.node);
                    e.status.clone_from(&status);
                    e.score = None;
                }
                None => {
                    let id = inv.node_ids.get(node).copied();
                    let entry = FitEntry {
                        node: id,
                        generation: state.fit_generation(id),
                        status: status.clone(),
                        score: None,
                    };
                    self.fit_cache.nodes.insert(node.to_owned(), entry);
                }
            }
        }
        status
    }

    /// Points the fit cache at the current cycle's claims, dropping verdicts for other claims
    /// or an older inventory.
    fn sync_fit_cache(&mut self) {
        let Some(cycle) = &self.cycle else {
            return;
        };
        let c = &mut self.fit_cache;
        if c.epoch != cycle.epoch || c.signature != cycle.signature {
            c.epoch = cycle.epoch;
            c.signature.clone_from(&cycle.signature);
            c.nodes.clear();
        }
    }

    /// The allocation result JSON, shaped as the real scheduler writes it (reference capture 83),
    /// without `allocationTimestamp`: a plugin has no clock.
    ///
    /// A share of a device with `allowMultipleAllocations` carries its `consumedCapacity` and a
    /// `shareID`: a UUID derived from the claim's uid and the result's position (upstream
    /// draws a random one; a plugin has no randomness, and the uid makes it unique).
    ///
    /// Devices with binding conditions (KEP-5007) copy them into their result; a device with
    /// `bindsToNode` limits the allocation to `node`.
    /// What an allocation takes until it is confirmed: the keys of the devices it takes whole,
    /// and the shares (key and consumed capacity) of devices with `allowMultipleAllocations`.
    #[allow(clippy::type_complexity)]
    fn taken(&self, a: &ClaimAllocation) -> (Vec<String>, Vec<(String, Vec<(String, i128)>)>) {
        let inv = self.state.inventory();
        let devices = a
            .results
            .iter()
            .filter(|r| r.consumed.is_none())
            .map(|r| inv.devices[r.device as usize].key.clone())
            .collect();
        let shared = a
            .results
            .iter()
            .filter_map(|r| {
                let d = &inv.devices[r.device as usize];
                let names = d.capacity.iter().map(|(n, _)| n.clone());
                Some((d.key.clone(), names.zip(r.consumed.clone()?).collect()))
            })
            .collect();
        (devices, shared)
    }

    fn allocation_json(&self, a: &ClaimAllocation, claim_uid: &str, node: &str) -> Value {
        let inv = self.state.inventory();
        let results: Vec<Value> = a
            .results
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let d = &inv.devices[r.device as usize];
                let mut v = json!({"request": &*r.request, "driver": d.driver, "pool": d.pool, "device": d.name});
                if r.admin_access {
                    v["adminAccess"] = Value::Bool(true);
                }
                if !d.binding_conditions.is_empty() {
                    v["bindingConditions"] = json!(d.binding_conditions);
                    v["bindingFailureConditions"] = json!(d.binding_failure_conditions);
                }
                if let Some(amounts) = &r.consumed {
                    let consumed: serde_json::Map<String, Value> = d
                        .capacity
                        .iter()
                        .zip(&d.formats)
                        .zip(amounts)
                        .map(|(((name, _), &format), &n)| {
                            let q = kube_quantity::Quantity::from_nanos(n, format);
                            (name.clone(), Value::String(q.to_string()))
                        })
                        .collect();
                    if !consumed.is_empty() {
                        v["consumedCapacity"] = Value::Object(consumed);
                    }
                    v["shareID"] = Value::String(share_id(claim_uid, i, &d.key));
                }
                v
            })
            .collect();
        let mut out = json!({"devices": {"results": results}});
        let binds = a
            .results
            .iter()
            .any(|r| inv.devices[r.device as usize].binds_to_node);
        if binds {
            out["nodeSelector"] =
                serde_json::to_value(node_selector::for_node(node)).unwrap_or(Value::Null);
        } else if let Some(sel) = a.node_selector(inv) {
            out["nodeSelector"] = serde_json::to_value(sel).unwrap_or(Value::Null);
        }
        out
    }

    /// The allocation for the cycle's claims on `node`: Filter's, if its devices are still free,
    /// else computed anew.
    fn allocation_for(&mut self, node: &str) -> Result<Vec<ClaimAllocation>, Status> {
        let cached = self.cycle.as_mut().and_then(|c| c.per_node.remove(node));
        if let Some(allocs) = cached {
            // Shares are checked again: capacity may have been taken since.
            let free = allocs
                .iter()
                .flat_map(|a| &a.results)
                .all(|r| r.consumed.is_none() && (r.admin_access || !self.device_in_use(r.device)));
            if free {
                return Ok(allocs);
            }
        }
        let status = self.filter_node(node, true);
        if !status.is_success() {
            return Err(status);
        }
        Ok(self
            .cycle
            .as_mut()
            .and_then(|c| c.per_node.remove(node))
            .unwrap_or_default())
    }

    /// Reserve for extended resources backed by DRA (KEP-5004), after the pod's other claims:
    /// - a special claim allocated on `node`: create it, write its allocation and reservation,
    ///   then name it in the pod's `status.extendedResourceClaimStatus` (upstream does the same
    ///   writes in PreBind; here they are intents the host applies in order in PreBind);
    /// - a special claim that exists from an earlier attempt but is not in the pod's status
    ///   yet: the pod status write that attempt did not make.
    fn reserve_extended(
        &mut self,
        pod: &PodRef,
        node: &str,
        cycle: &Cycle,
        allocs: &[ClaimAllocation],
        out: &mut Vec<PatchIntent>,
        records: &mut Vec<Reservation>,
    ) {
        let Some(p) = self.state.pods.get(&pod.uid) else {
            return;
        };
        let mask = cycle.extended_mask(&self.state, node);
        let variant = cycle.variants.iter().find(|v| v.mask == mask);
        if let (true, Some(v), Some(a)) = (mask != 0, variant, allocs.get(cycle.to_allocate.len()))
        {
            let name = extended::claim_name(&p.name, &p.uid);
            let id = special_id(&p.uid);
            let target = ClaimTarget {
                namespace: &p.namespace,
                name: &name,
                uid: "",
            };
            let allocation = self.allocation_json(a, &id, node);
            out.push(intents::create(
                target,
                extended::claim_object(p, &name, &v.requests),
            ));
            out.push(intents::reserve(
                target,
                Some(allocation.clone()),
                &p.name,
                &p.uid,
            ));
            out.push(intents::pod_extended_status(
                &p.namespace,
                &p.name,
                &p.uid,
                extended::pod_status(&name, &v.mappings),
            ));
            let (devices, shared) = self.taken(a);
            let key = (p.namespace.clone(), name);
            records.push(Reservation {
                key: key.clone(),
                claim_uid: id.clone(),
                carried_allocation: true,
                created: true,
            });
            let f = InFlight {
                key,
                carriers: vec![pod.uid.clone()],
                devices,
                shared,
                shared_counted: true,
                allocation,
                finalizer_by: None,
            };
            self.add_in_flight(id, f);
            return;
        }
        // An existing special claim the pod's status does not name yet.
        if p.extended_claim.is_some() {
            return;
        }
        let Some(name) = self.state.extended_claim(p) else {
            return;
        };
        let Some(claim) = self
            .state
            .claims
            .get(&(p.namespace.clone(), name.to_owned()))
        else {
            return;
        };
        let in_spec: HashSet<&str> = claim
            .spec
            .requests
            .iter()
            .flatten()
            .map(|r| r.name.as_str())
            .collect();
        let (_, mappings) =
            extended::requests_and_mappings(&p.containers, &mapped_resources(&self.state, p));
        let mappings: Vec<Mapping> = mappings
            .into_iter()
            .filter(|m| in_spec.contains(m.request.as_str()))
            .collect();
        if !mappings.is_empty() {
            out.push(intents::pod_extended_status(
                &p.namespace,
                &p.name,
                &p.uid,
                extended::pod_status(name, &mappings),
            ));
        }
    }
}

impl Plugin for DraPlugin {
    fn new(args: &str) -> Result<Self, String> {
        Args::parse(args)?;
        Ok(DraPlugin {
            state: ClusterState::default(),
            selectors: Selectors::new(),
            epoch: 0,
            cycle: None,
            in_flight: HashMap::new(),
            in_flight_devices: FxHashMap::default(),
            in_flight_consumed: FxHashMap::default(),
            in_flight_mask: Vec::new(),
            fit_cache: FitCache::default(),
            reservations: HashMap::new(),
            scratch: Scratch::default(),
            placement: Placement::default(),
        })
    }

    fn metadata(&self) -> Metadata {
        let ev = |resource: ResourceKind, actions: &[EventAction]| ClusterEvent {
            resource,
            actions: actions.to_vec(),
        };
        let add_update = [EventAction::Added, EventAction::Modified];
        Metadata {
            name: NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            extension_points: vec![
                ExtensionPoint::PreEnqueue,
                ExtensionPoint::PreFilter,
                ExtensionPoint::Filter,
                ExtensionPoint::PostFilter,
                ExtensionPoint::PreScore,
                ExtensionPoint::Score,
                ExtensionPoint::Reserve,
                ExtensionPoint::PreBind,
                ExtensionPoint::PostBind,
            ],
            subscriptions: vec![
                ResourceKind::pod(),
                ResourceKind::node(),
                ResourceKind::resource_claim(),
                ResourceKind::resource_claim_template(),
                ResourceKind::resource_slice(),
                ResourceKind::device_class(),
                ResourceKind::device_taint_rule(),
            ],
            // Pods: `status.extendedResourceClaimStatus` (KEP-5004).
            patches: vec![ResourceKind::resource_claim(), ResourceKind::pod()],
            requeue_on: vec![
                ev(ResourceKind::resource_claim(), &add_update),
                ev(ResourceKind::resource_slice(), &add_update),
                ev(ResourceKind::device_class(), &add_update),
                // A rule deleted or changed (e.g. to effect None) can untaint devices.
                ev(
                    ResourceKind::device_taint_rule(),
                    &[EventAction::Modified, EventAction::Deleted],
                ),
                ev(ResourceKind::node(), &add_update),
                ev(ResourceKind::pod(), &[EventAction::Deleted]),
            ],
        }
    }

    /// Pods and nodes change often for reasons DRA does not see (conditions, container and
    /// node status): only the fields it parses are sent, and no event when none changed.
    fn fields(&self) -> Vec<FieldSelection> {
        vec![
            FieldSelection::new(ResourceKind::pod(), crate::state::POD_FIELDS),
            FieldSelection::new(ResourceKind::node(), crate::state::NODE_FIELDS),
        ]
    }

    /// Called once the state is replayed, before the instance serves: builds the inventory and
    /// the device ranks now, off the scheduling path, so a new instance's first cycle (after a
    /// start, a hot swap or a respawn) is as fast as the next ones.
    fn health(&mut self) -> Status {
        self.refresh();
        self.refresh_placement();
        Status::success()
    }

    fn on_event(&mut self, event: &ObjectEvent) {
        // An object that does not parse is skipped, as an informer would.
        match self.state.apply(event) {
            Ok(Changed::Claim { uid, gone: true }) => {
                // The claim was deleted: its allocation can never land.
                self.remove_in_flight(&uid);
            }
            Ok(Changed::Claim { uid, gone: false }) => {
                // A special claim assumed from its create intent has no uid yet: its in-flight
                // allocation is found by the claim's name instead.
                let uid = if uid.is_empty() {
                    let by_key = self.in_flight.iter().find(|(_, f)| {
                        self.state
                            .claims
                            .get(&f.key)
                            .is_some_and(|c| c.uid.is_empty())
                    });
                    match by_key {
                        Some((id, _)) => id.clone(),
                        None => return,
                    }
                } else {
                    uid
                };
                // The claim shows its allocation (assumed or written): its shares count there.
                let seen = self.in_flight.get(&uid).is_some_and(|f| {
                    f.shared_counted
                        && self.state.claims.get(&f.key).is_some_and(|c| {
                            (c.uid == uid || c.uid.is_empty()) && c.allocation.is_some()
                        })
                });
                if seen && let Some(f) = self.in_flight.get_mut(&uid) {
                    f.shared_counted = false;
                    let shared = std::mem::take(&mut f.shared);
                    self.count_shared(&shared, -1);
                }
            }
            _ => {}
        }
    }

    fn pre_enqueue(&mut self, pod: &PodRef) -> Status {
        let Some(p) = self.state.pods.get(&pod.uid) else {
            return Status::error(format!(
                "pod {}/{} is not known to {NAME}",
                pod.namespace, pod.name
            ));
        };
        let names = match self.state.claim_names(p) {
            Ok(n) => n,
            Err(c) => return not_created(p, c),
        };
        for name in names {
            let Some(claim) = self
                .state
                .claims
                .get(&(p.namespace.clone(), name.to_owned()))
            else {
                return Status::unresolvable(format!("resourceclaim \"{name}\" not found"));
            };
            if claim.deleting {
                return Status::unresolvable(format!("resourceclaim \"{name}\" is being deleted"));
            }
            let from_template = p.claims.iter().any(|c| {
                c.resource_claim_template_name.is_some()
                    && p.claim_statuses
                        .get(&c.name)
                        .is_some_and(|s| s.as_deref() == Some(name))
            });
            if from_template && !claim.owners.contains(&p.uid) {
                return Status::unresolvable(format!(
                    "ResourceClaim {}/{name} was not created for pod {}/{} (pod is not owner)",
                    p.namespace, p.namespace, p.name
                ));
            }
        }
        Status::success()
    }

    fn pre_filter(&mut self, pod: &PodRef) -> PreFilterResult {
        self.cycle = None;
        match self.prepare(pod) {
            Ok(None) => PreFilterResult {
                status: Status::skip(),
                node_names: None,
            },
            Ok(Some(cycle)) => {
                // An allocation pinned to one node (node-local devices) restricts the pod to it.
                let mut node_names: Option<Vec<String>> = None;
                for key in &cycle.allocated {
                    let sel = self
                        .state
                        .claims
                        .get(key)
                        .and_then(|c| c.allocation.as_ref()?.node_selector.as_ref());
                    if let Some(n) = sel.and_then(single_node) {
                        match &mut node_names {
                            None => node_names = Some(vec![n.to_owned()]),
                            Some(v) => v.retain(|x| x == n),
                        }
                    }
                }
                self.cycle = Some(cycle);
                PreFilterResult {
                    status: Status::success(),
                    node_names,
                }
            }
            Err(status) => PreFilterResult {
                status,
                node_names: None,
            },
        }
    }

    fn filter(&mut self, pod: &PodRef, nodes: &[String]) -> Vec<Status> {
        match self.ensure_cycle(pod) {
            Ok(true) => {
                if let Some(c) = self.cycle.as_mut() {
                    c.per_node
                        .reserve(if c.prioritized { nodes.len() } else { 0 });
                }
                self.sync_fit_cache();
                let mut out: Vec<Status> =
                    nodes.iter().map(|n| self.filter_node(n, false)).collect();
                // Details (CEL errors, pools being updated) repeat across nodes; keep them on the
                // first few so the batch stays well under the host's reason-size limit.
                for s in out
                    .iter_mut()
                    .filter(|s| s.reasons.len() > 1)
                    .skip(MAX_DETAILED_NODES)
                {
                    s.reasons.truncate(1);
                }
                out
            }
            Ok(false) => vec![Status::success(); nodes.len()],
            Err(s) => vec![s; nodes.len()],
        }
    }

    fn post_filter(&mut self, pod: &PodRef, _rejected: &[(String, Status)]) -> PostFilterResult {
        let no_change = PostFilterResult {
            status: Status::unschedulable("still not schedulable"),
            ..Default::default()
        };
        let Some(p) = self.state.pods.get(&pod.uid) else {
            return no_change;
        };
        let Ok(names) = self.state.claim_names(p) else {
            return no_change;
        };
        for name in names {
            let Some(claim) = self
                .state
                .claims
                .get(&(p.namespace.clone(), name.to_owned()))
            else {
                continue;
            };
            let unused = claim.reserved_for.iter().all(|c| c.uid == pod.uid);
            if claim.allocation.is_none() || !unused || self.in_flight.contains_key(&claim.uid) {
                continue;
            }
            // Deallocate one claim per attempt, as upstream does.
            let target = ClaimTarget {
                namespace: &claim.namespace,
                name: &claim.name,
                uid: &claim.uid,
            };
            let mut out = Vec::new();
            if claim.is_reserved_for(&pod.uid) {
                out.push(intents::unreserve(target, &pod.uid));
            }
            out.push(intents::deallocate(target));
            return PostFilterResult {
                status: Status::unschedulable(REASON_DEALLOCATED),
                nominated_node: None,
                intents: out,
            };
        }
        no_change
    }

    /// PreScore: Score matters for claims to allocate with a `firstAvailable` request, or when
    /// the devices a request could take differ in value ([`crate::placement`]); otherwise every
    /// node would score the same, so Score is skipped.
    fn pre_score(&mut self, pod: &PodRef, _nodes: &[String]) -> Status {
        match self.ensure_cycle(pod) {
            Ok(true) => {}
            Ok(false) => return Status::skip(),
            Err(s) => return s,
        }
        self.refresh_placement();
        let prioritized = self.cycle.as_ref().is_some_and(|c| c.prioritized);
        if prioritized || self.scarce_matters() {
            Status::success()
        } else {
            Status::skip()
        }
    }

    /// Score:
    /// - with a `firstAvailable` request, as upstream: `100 × mean over those requests of
    ///   (n − i) / n`, where `i` is the index of the subrequest the allocator chose on the node
    ///   and `n` the number of subrequests (nodes where the first choice fits get 100); the
    ///   user's order of preference wins over keeping devices free;
    /// - otherwise, scarce devices: [`Placement::score`] of the devices the allocation takes
    ///   there, so nodes where the request is served by the least valuable devices score
    ///   highest. Cached per node like Filter verdicts.
    fn score(&mut self, pod: &PodRef, nodes: &[String]) -> Result<Vec<i64>, Status> {
        if !self.ensure_cycle(pod)? {
            return Ok(vec![0; nodes.len()]);
        }
        self.refresh_placement();
        self.sync_fit_cache();
        let prioritized = self.cycle.as_ref().is_some_and(|c| c.prioritized);
        let cacheable = !prioritized && self.scarce_matters();
        let mut scores = Vec::with_capacity(nodes.len());
        for node in nodes {
            if cacheable && let Some(s) = self.cached_score(node) {
                scores.push(s);
                continue;
            }
            let have = self
                .cycle
                .as_ref()
                .is_some_and(|c| c.per_node.contains_key(node));
            if !have && !self.filter_node(node, true).is_success() {
                scores.push(0);
                continue;
            }
            let allocs = self.cycle.as_ref().and_then(|c| c.per_node.get(node));
            let allocs = allocs.map(Vec::as_slice).unwrap_or_default();
            let first_available = prioritized.then(|| {
                let choices: Vec<(usize, usize)> = allocs
                    .iter()
                    .flat_map(|a| a.subrequest_choices.iter().copied())
                    .collect();
                if choices.is_empty() {
                    return 0;
                }
                let sum: f64 = choices
                    .iter()
                    .map(|&(i, n)| (n - i) as f64 / n as f64)
                    .sum();
                (100.0 * sum / choices.len() as f64).round() as i64
            });
            let devices = allocs
                .iter()
                .flat_map(|a| &a.results)
                .filter(|r| !r.admin_access)
                .map(|r| r.device);
            let score = match first_available {
                Some(s) => s,
                None if cacheable => self.placement.score(devices),
                None => 0,
            };
            if cacheable {
                self.store_score(node, score);
            }
            scores.push(score);
        }
        Ok(scores)
    }

    fn reserve(&mut self, pod: &PodRef, node: &str) -> Result<Vec<PatchIntent>, Status> {
        // Claims may have changed since Filter: classify again (cheap) unless nothing moved.
        if !self.ensure_cycle(pod)? {
            return Ok(Vec::new());
        }
        let allocs = self.allocation_for(node)?;
        let cycle = self.cycle.take().expect("cycle prepared above");
        let mut out = Vec::new();
        let mut records = Vec::new();
        let mut added = Vec::new();
        let mut new_allocs: HashMap<&Key, &ClaimAllocation> = HashMap::new();
        for (key, a) in cycle.to_allocate.iter().zip(&allocs) {
            new_allocs.insert(key, a);
        }
        for key in cycle.allocated.iter().chain(cycle.to_allocate.iter()) {
            let Some(claim) = self.state.claims.get(key) else {
                return Err(Status::unresolvable(format!(
                    "resourceclaim \"{}\" not found",
                    key.1
                )));
            };
            let new = new_allocs.get(key);
            if new.is_none() && claim.is_reserved_for(&pod.uid) {
                continue; // allocated and reserved for this pod already
            }
            if new.is_none() && claim.reserved_for.len() >= MAX_RESERVED_FOR {
                return Err(Status::unresolvable(REASON_IN_USE));
            }
            let target = ClaimTarget {
                namespace: &claim.namespace,
                name: &claim.name,
                uid: &claim.uid,
            };
            // An allocation still in flight for another pod is written again by this pod, so
            // this reservation never lands on an unallocated claim. The finalizer is the
            // allocating pod's job (it writes it before the allocation): a joiner costs one write.
            let pending = self.in_flight.get_mut(&claim.uid).filter(|_| new.is_none());
            let add_finalizer = !claim.has_finalizer && pending.is_none();
            if add_finalizer {
                out.push(intents::add_finalizer(target));
            }
            let allocation = match (new, pending) {
                (Some(a), _) => {
                    let json = self.allocation_json(a, &claim.uid, node);
                    let (devices, shared) = self.taken(a);
                    added.push((
                        claim.uid.clone(),
                        InFlight {
                            key: key.clone(),
                            carriers: vec![pod.uid.clone()],
                            devices,
                            shared,
                            shared_counted: true,
                            allocation: json.clone(),
                            finalizer_by: add_finalizer.then(|| pod.uid.clone()),
                        },
                    ));
                    Some(json)
                }
                (None, Some(f)) => {
                    f.carriers.push(pod.uid.clone());
                    Some(f.allocation.clone())
                }
                (None, None) => None,
            };
            records.push(Reservation {
                key: key.clone(),
                claim_uid: claim.uid.clone(),
                carried_allocation: allocation.is_some(),
                created: false,
            });
            out.push(intents::reserve(target, allocation, &pod.name, &pod.uid));
        }
        for (uid, f) in added {
            self.add_in_flight(uid, f);
        }
        self.reserve_extended(pod, node, &cycle, &allocs, &mut out, &mut records);
        self.reservations
            .entry(pod.uid.clone())
            .or_default()
            .extend(records);
        Ok(out)
    }

    /// PreBind (KEP-5007): the pod's claims are allocated and reserved on the API server now;
    /// devices with binding conditions must see them all `True` in the claim's
    /// `status.devices` before the pod is bound (upstream `isClaimReadyForBinding`).
    /// `Pending` while any is not: the host calls again when an object changes, off the
    /// scheduling loop, until the `bindingTimeout` of the args. An error when a failure
    /// condition is `True`: Unreserve then deallocates and the pod is retried.
    fn pre_bind(&mut self, pod: &PodRef, node: &str) -> Result<Vec<PatchIntent>, Status> {
        let Some(p) = self.state.pods.get(&pod.uid) else {
            return Ok(Vec::new());
        };
        let Ok(names) = self.state.claim_names(p) else {
            return Ok(Vec::new());
        };
        let mut waiting = false;
        for name in names {
            let Some(claim) = self
                .state
                .claims
                .get(&(p.namespace.clone(), name.to_owned()))
            else {
                continue;
            };
            match claim.binding_readiness() {
                BindingReadiness::Ready => {}
                BindingReadiness::Waiting => waiting = true,
                BindingReadiness::Failed(msg) => return Err(Status::error(msg)),
            }
        }
        if waiting {
            return Err(Status::pending(format!(
                "{REASON_BINDING_CONDITIONS_PENDING} on node {node}"
            )));
        }
        Ok(Vec::new())
    }

    /// PostBind: the pod's patches all landed, so every allocation it carried is on the API
    /// server now.
    fn post_bind(&mut self, pod: &PodRef, _node: &str) {
        self.reservations.remove(&pod.uid);
        let landed: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.carriers.contains(&pod.uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in landed {
            self.remove_in_flight(&uid);
        }
    }

    fn unreserve(&mut self, pod: &PodRef, _node: &str) -> Vec<PatchIntent> {
        self.cycle = None;
        let Some(records) = self.reservations.remove(&pod.uid) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for r in records {
            if r.created {
                self.remove_in_flight(&r.claim_uid);
                // Writes not applied yet are dropped by the host. A special claim the watch
                // shows (it has a uid) was created: give its devices back. One not seen yet is
                // found again by its name and owner on the pod's next attempt.
                let Some(c) = self
                    .state
                    .claims
                    .get(&r.key)
                    .filter(|c| !c.uid.is_empty() && c.is_reserved_for(&pod.uid))
                else {
                    continue;
                };
                let target = ClaimTarget {
                    namespace: &c.namespace,
                    name: &c.name,
                    uid: &c.uid,
                };
                out.push(intents::unreserve(target, &pod.uid));
                out.push(intents::deallocate(target));
                continue;
            }
            let target = ClaimTarget {
                namespace: &r.key.0,
                name: &r.key.1,
                uid: &r.claim_uid,
            };
            if let Some(f) = self.in_flight.get_mut(&r.claim_uid) {
                f.carriers.retain(|c| *c != pod.uid);
                if f.carriers.is_empty() {
                    self.remove_in_flight(&r.claim_uid);
                } else if f.finalizer_by.as_deref() == Some(pod.uid.as_str()) {
                    // Joiners still write this allocation but not the finalizer this pod owed.
                    f.finalizer_by = None;
                    out.push(intents::add_finalizer(target));
                }
            }
            out.push(intents::unreserve(target, &pod.uid));
            if r.carried_allocation {
                let others = self
                    .state
                    .claims
                    .get(&r.key)
                    .filter(|c| c.uid == r.claim_uid)
                    .is_some_and(|c| c.reserved_for.iter().any(|x| x.uid != pod.uid));
                if !others {
                    out.push(intents::deallocate(target));
                }
            }
        }
        out
    }
}

/// Devices and capacity in use, as the allocator sees them: allocated (from claims) or in
/// flight.
struct InUse<'a> {
    state: &'a ClusterState,
    in_flight: &'a [bool],
    in_flight_consumed: &'a FxHashMap<String, Vec<(String, i128)>>,
}

impl Usage for InUse<'_> {
    fn in_use(&self, i: u32) -> bool {
        self.state.is_taken(i) || self.in_flight.get(i as usize).is_some_and(|&taken| taken)
    }

    fn consumed(&self, i: u32, capacity: usize) -> i128 {
        let d = &self.state.inventory().devices[i as usize];
        let name = &d.capacity[capacity].0;
        self.state.consumed(&d.key, name) + consumed_of(self.in_flight_consumed, &d.key, name)
    }
}

/// A `shareID` (KEP-5075): a lowercase RFC 4122 UUID (version 4 layout) hashed from the claim
/// uid, the result's position and the device, so the same allocation always gets the same one.
fn share_id(claim_uid: &str, result: usize, device_key: &str) -> String {
    // FNV-1a, 128 bits.
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in claim_uid
        .bytes()
        .chain((result as u64).to_le_bytes())
        .chain(device_key.bytes())
    {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    let h = (h & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let x = format!("{h:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// PreEnqueue/PreFilter status while a template's claim does not exist yet.
fn not_created(p: &crate::state::Pod, c: &crate::state::PodClaim) -> Status {
    Status::unresolvable(format!(
        "pod {}/{}: ResourceClaim for pod claim {} not created yet",
        p.namespace, p.name, c.name
    ))
}

/// The node of a selector that is exactly `matchFields metadata.name In [node]`.
fn single_node(sel: &k8s_openapi::api::core::v1::NodeSelector) -> Option<&str> {
    let [term] = sel.node_selector_terms.as_slice() else {
        return None;
    };
    if term
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        return None;
    }
    match term.match_fields.as_deref() {
        Some([f]) if f.key == "metadata.name" && f.operator == "In" => match f.values.as_deref() {
            Some([n]) => Some(n.as_str()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_scheduler_sdk::PatchKind;

    fn event(action: EventAction, resource: ResourceKind, object: Value) -> ObjectEvent {
        ObjectEvent {
            action,
            resource,
            object: object.to_string(),
        }
    }

    fn add(p: &mut DraPlugin, resource: ResourceKind, object: Value) {
        p.on_event(&event(EventAction::Added, resource, object));
    }

    fn pod_ref(name: &str) -> PodRef {
        PodRef {
            namespace: "demo".into(),
            name: name.into(),
            uid: format!("{name}-uid"),
        }
    }

    fn pod(name: &str, claim: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "demo", "uid": format!("{name}-uid")},
               "spec": {"containers": [], "resourceClaims": [{"name": "gpu", "resourceClaimName": claim}]}})
    }

    fn claim(name: &str, count: i64) -> Value {
        json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
               "metadata": {"name": name, "namespace": "demo", "uid": format!("{name}-uid")},
               "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {
                   "deviceClassName": "gpu.example.com", "allocationMode": "ExactCount", "count": count}}]}},
               "status": {}})
    }

    /// Two nodes with two GPUs each, a class, and nodes.
    fn cluster() -> DraPlugin {
        let mut p = DraPlugin::new("{}").unwrap();
        add(
            &mut p,
            ResourceKind::device_class(),
            json!({"metadata": {"name": "gpu.example.com"},
            "spec": {"selectors": [{"cel": {"expression": "device.driver == \"gpu.example.com\""}}]}}),
        );
        for node in ["node-a", "node-b"] {
            add(
                &mut p,
                ResourceKind::node(),
                json!({"metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}}),
            );
            add(
                &mut p,
                ResourceKind::resource_slice(),
                json!({"metadata": {"name": format!("{node}-gpu")},
                "spec": {"driver": "gpu.example.com", "nodeName": node,
                         "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                         "devices": [{"name": "gpu-0"}, {"name": "gpu-1"}]}}),
            );
        }
        p
    }

    /// Applies intents the way the host assumes them (a tiny subset of strategic merge, enough
    /// for the DRA patches), and pushes the result back as the claim event.
    fn assume(p: &mut DraPlugin, claim_obj: &mut Value, intents: &[PatchIntent]) {
        for i in intents {
            let body: Value = serde_json::from_str(&i.body).unwrap();
            if i.subresource.is_none() {
                claim_obj["metadata"]["finalizers"] = body["metadata"]["finalizers"].clone();
                continue;
            }
            if let Some(a) = body["status"].get("allocation") {
                if a.is_null() {
                    claim_obj["status"]
                        .as_object_mut()
                        .unwrap()
                        .remove("allocation");
                } else {
                    claim_obj["status"]["allocation"] = a.clone();
                }
            }
            if let Some(rf) = body["status"].get("reservedFor") {
                let mut list = claim_obj["status"]["reservedFor"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for e in rf.as_array().unwrap() {
                    if e.get("$patch").is_some() {
                        list.retain(|x| x["uid"] != e["uid"]);
                    } else {
                        list.insert(0, e.clone());
                    }
                }
                claim_obj["status"]["reservedFor"] = Value::Array(list);
            }
        }
        p.on_event(&event(
            EventAction::Modified,
            ResourceKind::resource_claim(),
            claim_obj.clone(),
        ));
    }

    #[test]
    fn skips_pods_without_claims() {
        let mut p = cluster();
        add(
            &mut p,
            ResourceKind::pod(),
            json!({"metadata": {"name": "plain", "namespace": "demo", "uid": "plain-uid"}, "spec": {}}),
        );
        assert_eq!(p.pre_enqueue(&pod_ref("plain")), Status::success());
        assert_eq!(p.pre_filter(&pod_ref("plain")).status.code, Code::Skip);
    }

    #[test]
    fn pre_enqueue_waits_for_the_claim() {
        let mut p = cluster();
        add(&mut p, ResourceKind::pod(), pod("p", "c"));
        let s = p.pre_enqueue(&pod_ref("p"));
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.message(), "resourceclaim \"c\" not found");
        add(&mut p, ResourceKind::resource_claim(), claim("c", 1));
        assert_eq!(p.pre_enqueue(&pod_ref("p")), Status::success());
    }

    #[test]
    fn reserve_returns_finalizer_then_status_patch_with_allocation() {
        let mut p = cluster();
        add(&mut p, ResourceKind::pod(), pod("p", "c"));
        add(&mut p, ResourceKind::resource_claim(), claim("c", 2));
        assert!(p.pre_filter(&pod_ref("p")).status.is_success());
        let st = p.filter(&pod_ref("p"), &["node-a".into(), "node-x".into()]);
        assert!(st[0].is_success());
        assert_eq!(st[1].reasons[0], REASON_CANNOT_ALLOCATE);
        let intents = p.reserve(&pod_ref("p"), "node-a").unwrap();
        assert_eq!(intents.len(), 2);
        assert_eq!(intents[0].subresource, None);
        assert_eq!(intents[1].subresource.as_deref(), Some("status"));
        assert_eq!(intents[1].patch_kind, PatchKind::StrategicMerge);
        let body: Value = serde_json::from_str(&intents[1].body).unwrap();
        assert_eq!(
            body,
            json!({"metadata": {"uid": "c-uid"}, "status": {
                "allocation": {
                    "devices": {"results": [
                        {"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu-0"},
                        {"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu-1"}]},
                    "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [
                        {"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]}},
                "reservedFor": [{"resource": "pods", "name": "p", "uid": "p-uid"}]}})
        );
    }

    /// A shared slice (all nodes) whose first device needs binding conditions and whose
    /// second does not.
    fn attachable_slice(both: bool) -> Value {
        let attachable = json!({"name": "fabric-0", "bindsToNode": true,
            "bindingConditions": ["example.com/attached"],
            "bindingFailureConditions": ["example.com/failed"]});
        let mut devices = vec![attachable];
        if both {
            devices.push(json!({"name": "local-0"}));
        }
        json!({"metadata": {"name": "fabric"},
            "spec": {"driver": "gpu.example.com", "allNodes": true,
                     "pool": {"name": "fabric", "generation": 1, "resourceSliceCount": 1},
                     "devices": devices}})
    }

    /// A cluster with only the fabric pool, the pod `p` reserved on node-a with claim `c`
    /// (assumed), and the claim object as assumed.
    fn reserved_on_fabric() -> (DraPlugin, Value) {
        let mut p = DraPlugin::new("{}").unwrap();
        add(
            &mut p,
            ResourceKind::device_class(),
            json!({"metadata": {"name": "gpu.example.com"}, "spec": {}}),
        );
        add(
            &mut p,
            ResourceKind::node(),
            json!({"metadata": {"name": "node-a"}}),
        );
        add(
            &mut p,
            ResourceKind::resource_slice(),
            attachable_slice(false),
        );
        add(&mut p, ResourceKind::pod(), pod("p", "c"));
        let mut c = claim("c", 1);
        add(&mut p, ResourceKind::resource_claim(), c.clone());
        assert!(p.pre_filter(&pod_ref("p")).status.is_success());
        let intents = p.reserve(&pod_ref("p"), "node-a").unwrap();
        assume(&mut p, &mut c, &intents);
        (p, c)
    }

    fn set_device_conditions(p: &mut DraPlugin, c: &mut Value, conditions: Value) {
        c["status"]["devices"] = json!([{"driver": "gpu.example.com", "pool": "fabric",
            "device": "fabric-0", "conditions": conditions}]);
        p.on_event(&event(
            EventAction::Modified,
            ResourceKind::resource_claim(),
            c.clone(),
        ));
    }

    #[test]
    fn allocation_copies_binding_conditions_and_binds_to_the_node() {
        let (_, c) = reserved_on_fabric();
        let a = &c["status"]["allocation"];
        assert_eq!(
            a["devices"]["results"][0],
            json!({"request": "gpu", "driver": "gpu.example.com", "pool": "fabric",
                "device": "fabric-0", "bindingConditions": ["example.com/attached"],
                "bindingFailureConditions": ["example.com/failed"]})
        );
        assert_eq!(
            a["nodeSelector"],
            json!({"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]})
        );
    }

    #[test]
    fn pre_bind_waits_until_every_binding_condition_is_true() {
        let (mut p, mut c) = reserved_on_fabric();
        let st = p.pre_bind(&pod_ref("p"), "node-a").unwrap_err();
        assert_eq!(st.code, Code::Pending);
        assert_eq!(
            st.message(),
            format!("{REASON_BINDING_CONDITIONS_PENDING} on node node-a")
        );
        let cond =
            |t: &str, s: &str| json!({"type": t, "status": s, "reason": "R", "message": "m"});
        set_device_conditions(
            &mut p,
            &mut c,
            json!([cond("example.com/attached", "False")]),
        );
        assert_eq!(
            p.pre_bind(&pod_ref("p"), "node-a").unwrap_err().code,
            Code::Pending
        );
        set_device_conditions(
            &mut p,
            &mut c,
            json!([cond("example.com/attached", "True")]),
        );
        assert_eq!(p.pre_bind(&pod_ref("p"), "node-a").unwrap(), Vec::new());
    }

    #[test]
    fn pre_bind_fails_on_a_failure_condition_and_unreserve_deallocates() {
        let (mut p, mut c) = reserved_on_fabric();
        let failed = json!([{"type": "example.com/failed", "status": "True",
            "reason": "AttachFailed", "message": "no path"}]);
        set_device_conditions(&mut p, &mut c, failed);
        let st = p.pre_bind(&pod_ref("p"), "node-a").unwrap_err();
        assert_eq!(st.code, Code::Error);
        assert_eq!(
            st.message(),
            "device binding failed: claim=c, reason=AttachFailed, message=\"no path\""
        );
        let undo = p.unreserve(&pod_ref("p"), "node-a");
        let bodies: Vec<Value> = undo
            .iter()
            .map(|i| serde_json::from_str(&i.body).unwrap())
            .collect();
        assert_eq!(bodies.len(), 2, "{bodies:?}");
        assert_eq!(
            bodies[0]["status"]["reservedFor"],
            json!([{"$patch": "delete", "uid": "p-uid"}])
        );
        assert_eq!(
            bodies[1]["status"],
            json!({"allocation": null, "devices": null})
        );
    }

    #[test]
    fn devices_without_binding_conditions_are_preferred() {
        let mut p = DraPlugin::new("{}").unwrap();
        add(
            &mut p,
            ResourceKind::device_class(),
            json!({"metadata": {"name": "gpu.example.com"}, "spec": {}}),
        );
        add(
            &mut p,
            ResourceKind::node(),
            json!({"metadata": {"name": "node-a"}}),
        );
        add(
            &mut p,
            ResourceKind::resource_slice(),
            attachable_slice(true),
        );
        add(&mut p, ResourceKind::pod(), pod("p", "c"));
        add(&mut p, ResourceKind::resource_claim(), claim("c", 1));
        assert!(p.pre_filter(&pod_ref("p")).status.is_success());
        let intents = p.reserve(&pod_ref("p"), "node-a").unwrap();
        let body: Value = serde_json::from_str(&intents[1].body).unwrap();
        let result = &body["status"]["allocation"]["devices"]["results"][0];
        assert_eq!(result["device"], "local-0");
        assert!(result.get("bindingConditions").is_none());
        assert!(body["status"]["allocation"].get("nodeSelector").is_none());
        assert_eq!(p.pre_bind(&pod_ref("p"), "node-a").unwrap(), Vec::new());
    }

    #[test]
    fn args_take_a_binding_timeout_of_at_least_one_second() {
        assert_eq!(Args::parse("{}").unwrap().binding_timeout_ms, 600_000);
        assert_eq!(
            Args::parse(r#"{"bindingTimeout": "1m30s"}"#)
                .unwrap()
                .binding_timeout_ms,
            90_000
        );
        assert_eq!(
            DraPlugin::new(r#"{"bindingTimeout": "500ms"}"#)
                .err()
                .unwrap(),
            "bindingTimeout: Invalid value: \"500ms\": must be at least 1 second"
        );
        assert!(DraPlugin::new(r#"{"bindingTimeout": "soon"}"#).is_err());
        assert!(DraPlugin::new(r#"{"filterTimeout": "10s"}"#).is_ok());
    }

    #[test]
    fn unreserve_of_the_allocating_pod_adds_the_finalizer_its_joiners_did_not_write() {
        let mut p = cluster();
        let mut c = claim("shared", 1);
        add(&mut p, ResourceKind::resource_claim(), c.clone());
        for name in ["p1", "p2"] {
            add(&mut p, ResourceKind::pod(), pod(name, "shared"));
            p.pre_filter(&pod_ref(name));
            let intents = p.reserve(&pod_ref(name), "node-a").unwrap();
            assume(&mut p, &mut c, &intents);
        }
        // p1 (which owed the finalizer) fails while p2 still carries the allocation.
        let undo = p.unreserve(&pod_ref("p1"), "node-a");
        assert_eq!(undo[0].subresource, None, "finalizer first: {undo:?}");
        assert!(undo[0].body.contains(crate::state::FINALIZER));
        // p2 failing afterwards owes nothing more.
        let undo = p.unreserve(&pod_ref("p2"), "node-a");
        assert!(
            undo.iter()
                .all(|i| i.subresource.as_deref() == Some("status"))
        );
    }

    #[test]
    fn in_flight_devices_are_taken_before_the_claim_event_arrives() {
        let mut p = cluster();
        for (pod_name, c) in [("p1", "c1"), ("p2", "c2")] {
            add(&mut p, ResourceKind::pod(), pod(pod_name, c));
            add(&mut p, ResourceKind::resource_claim(), claim(c, 2));
        }
        p.pre_filter(&pod_ref("p1"));
        p.filter(&pod_ref("p1"), &["node-a".into()]);
        p.reserve(&pod_ref("p1"), "node-a").unwrap();
        // No assumed event pushed: the in-flight record alone keeps node-a's GPUs taken.
        p.pre_filter(&pod_ref("p2"));
        let st = p.filter(&pod_ref("p2"), &["node-a".into(), "node-b".into()]);
        assert_eq!(st[0].code, Code::UnschedulableAndUnresolvable);
        assert!(st[1].is_success());
    }

    #[test]
    fn shared_claim_is_allocated_once_and_reserved_by_each_pod() {
        let mut p = cluster();
        let mut c = claim("shared", 1);
        add(&mut p, ResourceKind::resource_claim(), c.clone());
        let mut p1_status = String::new();
        for name in ["p1", "p2", "p3"] {
            add(&mut p, ResourceKind::pod(), pod(name, "shared"));
            assert!(p.pre_filter(&pod_ref(name)).status.is_success());
            assert!(p.filter(&pod_ref(name), &["node-a".into()])[0].is_success());
            let intents = p.reserve(&pod_ref(name), "node-a").unwrap();
            let status: Value = serde_json::from_str(&intents.last().unwrap().body).unwrap();
            match name {
                // p1 allocates (finalizer, then status); p2 joins while p1's patches may not have
                // landed, so it writes the same allocation again, but not the finalizer; p3
                // comes after p1 was bound.
                "p1" => {
                    assert_eq!(intents.len(), 2, "{name}: finalizer + status");
                    assert!(status["status"].get("allocation").is_some());
                }
                "p2" => {
                    assert_eq!(intents.len(), 1, "{name}: status only");
                    assert_eq!(intents[0].subresource.as_deref(), Some("status"));
                    assert!(status["status"].get("allocation").is_some());
                }
                _ => {
                    assert_eq!(intents.len(), 1, "{name}: reservedFor only");
                    assert!(status["status"].get("allocation").is_none());
                }
            }
            if name == "p2" {
                let first: Value = serde_json::from_str(&p1_status).unwrap();
                assert_eq!(
                    status["status"]["allocation"],
                    first["status"]["allocation"]
                );
                p.post_bind(&pod_ref("p1"), "node-a");
            }
            if name == "p1" {
                p1_status = intents.last().unwrap().body.clone();
            }
            assume(&mut p, &mut c, &intents);
        }
        assert_eq!(c["status"]["reservedFor"].as_array().unwrap().len(), 3);
        // Allocated on node-a: a fourth pod only fits there.
        add(&mut p, ResourceKind::pod(), pod("p4", "shared"));
        let pre = p.pre_filter(&pod_ref("p4"));
        assert_eq!(pre.node_names, Some(vec!["node-a".to_string()]));
        let st = p.filter(&pod_ref("p4"), &["node-b".into()]);
        assert_eq!(st[0].message(), REASON_NOT_AVAILABLE);
    }

    #[test]
    fn a_claim_with_256_consumers_makes_the_next_pod_wait() {
        let mut p = cluster();
        let mut c = claim("shared", 1);
        c["status"] = json!({
            "allocation": {"devices": {"results": [{"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu-0"}]}},
            "reservedFor": (0..256).map(|i| json!({"resource": "pods", "name": format!("x{i}"), "uid": format!("x{i}")})).collect::<Vec<_>>()
        });
        add(&mut p, ResourceKind::resource_claim(), c);
        add(&mut p, ResourceKind::pod(), pod("p", "shared"));
        let s = p.pre_filter(&pod_ref("p")).status;
        assert_eq!(
            (s.code, s.message()),
            (
                Code::UnschedulableAndUnresolvable,
                REASON_IN_USE.to_string()
            )
        );
    }

    #[test]
    fn unreserve_removes_the_pod_and_the_allocation_it_made_once() {
        let mut p = cluster();
        let mut c = claim("c", 1);
        add(&mut p, ResourceKind::resource_claim(), c.clone());
        add(&mut p, ResourceKind::pod(), pod("p", "c"));
        p.pre_filter(&pod_ref("p"));
        let intents = p.reserve(&pod_ref("p"), "node-a").unwrap();
        assume(&mut p, &mut c, &intents);
        let undo = p.unreserve(&pod_ref("p"), "node-a");
        assert_eq!(undo.len(), 2);
        assert_eq!(
            serde_json::from_str::<Value>(&undo[0].body).unwrap(),
            json!({"metadata": {"uid": "c-uid"}, "status": {"reservedFor": [{"$patch": "delete", "uid": "p-uid"}]}})
        );
        assert_eq!(undo[1].patch_kind, PatchKind::Merge);
        assert!(
            p.unreserve(&pod_ref("p"), "node-a").is_empty(),
            "idempotent"
        );
        assume(&mut p, &mut c, &undo);
        assert!(p.state.allocated.is_empty());
    }

    #[test]
    fn unreserve_keeps_an_allocation_another_pod_joined() {
        let mut p = cluster();
        let mut c = claim("shared", 1);
        add(&mut p, ResourceKind::resource_claim(), c.clone());
        for name in ["p1", "p2"] {
            add(&mut p, ResourceKind::pod(), pod(name, "shared"));
            p.pre_filter(&pod_ref(name));
            let intents = p.reserve(&pod_ref(name), "node-a").unwrap();
            assume(&mut p, &mut c, &intents);
        }
        let undo = p.unreserve(&pod_ref("p1"), "node-a");
        assert_eq!(
            undo.iter()
                .map(|i| i.subresource.as_deref())
                .collect::<Vec<_>>(),
            [None, Some("status")],
            "the finalizer p1 owed and its reservedFor entry, no deallocation: p2 still uses the devices"
        );
    }

    #[test]
    fn post_filter_deallocates_an_unused_claim() {
        let mut p = cluster();
        let mut c = claim("c", 1);
        c["status"] = json!({"allocation": {"devices": {"results": [
            {"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu-0"}]},
            "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]}}});
        add(&mut p, ResourceKind::resource_claim(), c);
        add(&mut p, ResourceKind::pod(), pod("p", "c"));
        let r = p.post_filter(&pod_ref("p"), &[]);
        assert_eq!(r.status.message(), REASON_DEALLOCATED);
        assert_eq!(r.intents.len(), 1);
        assert_eq!(
            serde_json::from_str::<Value>(&r.intents[0].body).unwrap()["status"],
            json!({"allocation": null, "devices": null})
        );
    }

    #[test]
    fn score_prefers_nodes_where_the_first_subrequest_fits() {
        let mut p = cluster();
        add(
            &mut p,
            ResourceKind::resource_claim(),
            json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "fa", "namespace": "demo", "uid": "fa-uid"},
            "spec": {"devices": {"requests": [{"name": "gpu", "firstAvailable": [
                {"name": "two", "deviceClassName": "gpu.example.com", "count": 2},
                {"name": "one", "deviceClassName": "gpu.example.com", "count": 1}]}]}}}),
        );
        // node-b has one GPU taken by another claim.
        let mut other = claim("other", 1);
        other["status"] = json!({"allocation": {"devices": {"results": [
            {"request": "gpu", "driver": "gpu.example.com", "pool": "node-b", "device": "gpu-0"}]}}});
        add(&mut p, ResourceKind::resource_claim(), other);
        add(&mut p, ResourceKind::pod(), pod("p", "fa"));
        p.pre_filter(&pod_ref("p"));
        let nodes = ["node-a".to_string(), "node-b".to_string()];
        assert!(
            p.filter(&pod_ref("p"), &nodes)
                .iter()
                .all(Status::is_success)
        );
        assert_eq!(p.score(&pod_ref("p"), &nodes).unwrap(), [100, 50]);
    }

    /// node-a: one 80Gi GPU; node-b: an 80Gi and a 40Gi GPU (in that order). A template asks
    /// for 80Gi, so the 80Gi GPUs are worth more: a generic claim scores node-b higher and gets
    /// its 40Gi GPU there, though the 80Gi one comes first in the slice.
    #[test]
    fn placement_keeps_the_special_devices_free() {
        let mut p = DraPlugin::new("{}").unwrap();
        add(
            &mut p,
            ResourceKind::device_class(),
            json!({"metadata": {"name": "gpu.example.com"},
            "spec": {"selectors": [{"cel": {"expression": "device.driver == \"gpu.example.com\""}}]}}),
        );
        let gpu =
            |name: &str, mem: &str| json!({"name": name, "capacity": {"memory": {"value": mem}}});
        for (node, devices) in [
            ("node-a", vec![gpu("gpu-0", "80Gi")]),
            ("node-b", vec![gpu("gpu-0", "80Gi"), gpu("gpu-1", "40Gi")]),
        ] {
            add(
                &mut p,
                ResourceKind::node(),
                json!({"metadata": {"name": node}}),
            );
            add(
                &mut p,
                ResourceKind::resource_slice(),
                json!({"metadata": {"name": node},
                "spec": {"driver": "gpu.example.com", "nodeName": node,
                         "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                         "devices": devices}}),
            );
        }
        add(
            &mut p,
            ResourceKind::resource_claim_template(),
            json!({"metadata": {"name": "big", "namespace": "demo"},
            "spec": {"spec": {"devices": {"requests": [{"name": "gpu", "exactly": {
                "deviceClassName": "gpu.example.com",
                "selectors": [{"cel": {"expression":
                    "device.capacity[\"gpu.example.com\"].memory.compareTo(quantity(\"80Gi\")) >= 0"}}]}}]}}}}),
        );
        add(&mut p, ResourceKind::resource_claim(), claim("c", 1));
        add(&mut p, ResourceKind::pod(), pod("p", "c"));
        assert!(p.pre_filter(&pod_ref("p")).status.is_success());
        let nodes = ["node-a".to_string(), "node-b".to_string()];
        assert!(
            p.filter(&pod_ref("p"), &nodes)
                .iter()
                .all(Status::is_success)
        );
        assert!(p.pre_score(&pod_ref("p"), &nodes).is_success());
        assert_eq!(p.score(&pod_ref("p"), &nodes).unwrap(), [0, 100]);
        // Cached: the same scores without a new allocation.
        assert_eq!(p.score(&pod_ref("p"), &nodes).unwrap(), [0, 100]);
        let intents = p.reserve(&pod_ref("p"), "node-b").unwrap();
        let status: Value = serde_json::from_str(&intents[1].body).unwrap();
        assert_eq!(
            status["status"]["allocation"]["devices"]["results"][0]["device"],
            "gpu-1"
        );
    }

    /// A NIC with `allowMultipleAllocations` and 10G of bandwidth on node-a: claims asking for
    /// 4G each share it, each with its own `shareID` and `consumedCapacity`, until the next
    /// share would exceed the capacity (in-flight shares count).
    #[test]
    fn shares_of_a_device_never_exceed_its_capacity() {
        let mut p = DraPlugin::new("{}").unwrap();
        add(
            &mut p,
            ResourceKind::device_class(),
            json!({"metadata": {"name": "nic"},
            "spec": {"selectors": [{"cel": {"expression": "device.driver == \"nic.example.com\""}}]}}),
        );
        add(
            &mut p,
            ResourceKind::node(),
            json!({"metadata": {"name": "node-a"}}),
        );
        add(
            &mut p,
            ResourceKind::resource_slice(),
            json!({"metadata": {"name": "nics"},
            "spec": {"driver": "nic.example.com", "nodeName": "node-a",
                     "pool": {"name": "nics", "generation": 1, "resourceSliceCount": 1},
                     "devices": [{"name": "nic-0", "allowMultipleAllocations": true,
                                  "capacity": {"bandwidth": {"value": "10G"}}}]}}),
        );
        let nodes = ["node-a".to_string()];
        let mut ids = Vec::new();
        for i in 0..3 {
            let name = format!("p{i}");
            add(
                &mut p,
                ResourceKind::resource_claim(),
                json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": {"name": format!("c{i}"), "namespace": "demo", "uid": format!("c{i}-uid")},
                "spec": {"devices": {"requests": [{"name": "nic", "exactly": {
                    "deviceClassName": "nic", "capacity": {"requests": {"bandwidth": "4G"}}}}]}}}),
            );
            add(&mut p, ResourceKind::pod(), pod(&name, &format!("c{i}")));
            assert!(p.pre_filter(&pod_ref(&name)).status.is_success());
            let fits = p.filter(&pod_ref(&name), &nodes)[0].is_success();
            assert_eq!(fits, i < 2, "two 4G shares of 10G fit, a third does not");
            if !fits {
                break;
            }
            // Reserve only: the first share is still in flight when the second is allocated.
            let intents = p.reserve(&pod_ref(&name), "node-a").unwrap();
            let body: Value = serde_json::from_str(&intents[1].body).unwrap();
            let r = &body["status"]["allocation"]["devices"]["results"][0];
            assert_eq!(r["device"], "nic-0");
            assert_eq!(r["consumedCapacity"], json!({"bandwidth": "4G"}));
            ids.push(r["shareID"].as_str().unwrap().to_owned());
        }
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert!(
            ids.iter()
                .all(|id| id.len() == 36 && id.as_bytes()[14] == b'4')
        );
    }

    /// As upstream's allocator (a shared device is not marked in use while allocating), one
    /// request for 2 devices takes two shares of the same `allowMultipleAllocations` NIC, each
    /// with its own `shareID`, and a request for 3 × 4G does not fit in 10G. A CEL selector on
    /// `device.allowMultipleAllocations` picks the shared NIC over a plain one.
    #[test]
    fn one_request_takes_two_shares_of_the_same_device() {
        let mut p = DraPlugin::new("{}").unwrap();
        add(
            &mut p,
            ResourceKind::device_class(),
            json!({"metadata": {"name": "nic"},
            "spec": {"selectors": [{"cel": {"expression": "device.driver == \"nic.example.com\""}}]}}),
        );
        add(
            &mut p,
            ResourceKind::node(),
            json!({"metadata": {"name": "node-a"}}),
        );
        add(
            &mut p,
            ResourceKind::resource_slice(),
            json!({"metadata": {"name": "nics"},
            "spec": {"driver": "nic.example.com", "nodeName": "node-a",
                     "pool": {"name": "nics", "generation": 1, "resourceSliceCount": 1},
                     "devices": [{"name": "plain-0", "capacity": {"bandwidth": {"value": "10G"}}},
                                 {"name": "nic-0", "allowMultipleAllocations": true,
                                  "capacity": {"bandwidth": {"value": "10G"}}}]}}),
        );
        let nodes = ["node-a".to_string()];
        let claim = |name: &str, count: i64| {
            json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": "demo", "uid": format!("{name}-uid")},
            "spec": {"devices": {"requests": [{"name": "nic", "exactly": {
                "deviceClassName": "nic", "allocationMode": "ExactCount", "count": count,
                "selectors": [{"cel": {"expression": "device.allowMultipleAllocations"}}],
                "capacity": {"requests": {"bandwidth": "4G"}}}}]}}})
        };
        add(&mut p, ResourceKind::resource_claim(), claim("three", 3));
        add(&mut p, ResourceKind::pod(), pod("p3", "three"));
        assert!(p.pre_filter(&pod_ref("p3")).status.is_success());
        assert!(
            !p.filter(&pod_ref("p3"), &nodes)[0].is_success(),
            "12G > 10G"
        );
        add(&mut p, ResourceKind::resource_claim(), claim("two", 2));
        add(&mut p, ResourceKind::pod(), pod("p2", "two"));
        assert!(p.pre_filter(&pod_ref("p2")).status.is_success());
        assert!(p.filter(&pod_ref("p2"), &nodes)[0].is_success());
        let intents = p.reserve(&pod_ref("p2"), "node-a").unwrap();
        let body: Value = serde_json::from_str(&intents[1].body).unwrap();
        let results = body["status"]["allocation"]["devices"]["results"]
            .as_array()
            .unwrap();
        assert_eq!(results.len(), 2);
        assert!(
            results.iter().all(|r| r["device"] == "nic-0"),
            "{results:?}"
        );
        assert_ne!(results[0]["shareID"], results[1]["shareID"]);
    }

    /// Adds pod `name` with its own claim for `count` devices, runs PreFilter and returns
    /// whether each node passes Filter.
    fn new_pod_fits(p: &mut DraPlugin, name: &str, count: i64, nodes: &[String]) -> Vec<bool> {
        add(
            p,
            ResourceKind::resource_claim(),
            claim(&format!("c-{name}"), count),
        );
        add(p, ResourceKind::pod(), pod(name, &format!("c-{name}")));
        assert!(p.pre_filter(&pod_ref(name)).status.is_success());
        p.filter(&pod_ref(name), nodes)
            .iter()
            .map(Status::is_success)
            .collect()
    }

    /// Filter verdicts are reused across pods with claims of one shape; every change they depend
    /// on must show: devices taken in flight, freed by a claim event, the class, node labels.
    #[test]
    fn reused_filter_verdicts_follow_every_change_they_depend_on() {
        let mut p = cluster();
        let nodes = ["node-a".to_string(), "node-b".to_string()];
        let filter = |p: &mut DraPlugin, name: &str| new_pod_fits(p, name, 2, &nodes);
        assert_eq!(filter(&mut p, "p1"), [true, true]);
        p.reserve(&pod_ref("p1"), "node-a").unwrap();
        // node-a's GPUs are in flight: the verdict cached for p1's shape must not be reused.
        assert_eq!(filter(&mut p, "p2"), [false, true]);
        p.reserve(&pod_ref("p2"), "node-b").unwrap();
        assert_eq!(filter(&mut p, "p3"), [false, false]);
        // p1's allocation is confirmed (claim event), then the claim is deleted: free again.
        let mut c1 = claim("c-p1", 2);
        c1["status"] = json!({"allocation": {"devices": {"results": [
            {"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu-0"},
            {"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu-1"}]}}});
        p.on_event(&event(
            EventAction::Modified,
            ResourceKind::resource_claim(),
            c1.clone(),
        ));
        p.post_bind(&pod_ref("p1"), "node-a");
        assert_eq!(filter(&mut p, "p4"), [false, false]);
        p.on_event(&event(
            EventAction::Deleted,
            ResourceKind::resource_claim(),
            c1,
        ));
        assert_eq!(filter(&mut p, "p5"), [true, false]);
        // Unreserve of p2 frees node-b.
        p.unreserve(&pod_ref("p2"), "node-b");
        assert_eq!(filter(&mut p, "p6"), [true, true]);
        // A class whose selector no device matches any more.
        add(
            &mut p,
            ResourceKind::device_class(),
            json!({"metadata": {"name": "gpu.example.com"},
            "spec": {"selectors": [{"cel": {"expression": "device.driver == \"other\""}}]}}),
        );
        assert_eq!(filter(&mut p, "p7"), [false, false]);
    }

    #[test]
    fn reused_filter_verdicts_follow_node_labels_for_shared_devices() {
        let mut p = cluster();
        add(
            &mut p,
            ResourceKind::resource_slice(),
            json!({"metadata": {"name": "rack-gpu"},
            "spec": {"driver": "gpu.example.com", "pool": {"name": "rack", "generation": 1, "resourceSliceCount": 1},
                     "nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "rack", "operator": "In", "values": ["r1"]}]}]},
                     "devices": [{"name": "gpu-0"}, {"name": "gpu-1"}, {"name": "gpu-2"}]}}),
        );
        let nodes = ["node-a".to_string()];
        let filter = |p: &mut DraPlugin, name: &str| new_pod_fits(p, name, 3, &nodes)[0];
        assert!(
            !filter(&mut p, "p1"),
            "two local GPUs, the rack's are out of reach"
        );
        add(
            &mut p,
            ResourceKind::node(),
            json!({"metadata": {"name": "node-a", "labels": {"rack": "r1"}}}),
        );
        assert!(
            filter(&mut p, "p2"),
            "the label brings the rack's GPUs in reach"
        );
    }

    #[test]
    fn pending_allocation_for_another_pod_makes_the_pod_wait() {
        let mut p = cluster();
        add(&mut p, ResourceKind::resource_claim(), claim("shared", 1));
        add(&mut p, ResourceKind::pod(), pod("p1", "shared"));
        add(&mut p, ResourceKind::pod(), pod("p2", "shared"));
        p.pre_filter(&pod_ref("p1"));
        p.reserve(&pod_ref("p1"), "node-a").unwrap();
        let s = p.pre_filter(&pod_ref("p2")).status;
        assert!(
            s.message().contains("in the process of being allocated"),
            "{s:?}"
        );
    }

    /// A pod whose container asks for `resource: n` (requests and limits).
    fn extended_pod(name: &str, resource: &str, n: i64) -> Value {
        json!({"metadata": {"name": name, "namespace": "demo", "uid": format!("{name}-uid")},
               "spec": {"containers": [{"name": "c", "resources": {
                   "requests": {"cpu": "1", resource: n.to_string()},
                   "limits": {resource: n.to_string()}}}]}})
    }

    fn map_gpu_class(p: &mut DraPlugin) {
        add(
            p,
            ResourceKind::device_class(),
            json!({"metadata": {"name": "gpu.example.com", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"extendedResourceName": "example.com/gpu",
                     "selectors": [{"cel": {"expression": "device.driver == \"gpu.example.com\""}}]}}),
        );
    }

    #[test]
    fn an_extended_resource_gets_a_created_claim_its_allocation_and_the_pod_status() {
        let mut p = cluster();
        map_gpu_class(&mut p);
        add(
            &mut p,
            ResourceKind::pod(),
            extended_pod("x", "example.com/gpu", 2),
        );
        let pr = pod_ref("x");
        assert!(p.pre_filter(&pr).status.is_success());
        let nodes = ["node-a".to_string(), "node-b".to_string()];
        assert!(p.filter(&pr, &nodes).iter().all(Status::is_success));
        let intents = p.reserve(&pr, "node-a").unwrap();
        assert_eq!(intents.len(), 3, "{intents:#?}");
        let name = extended::claim_name("x", "x-uid");
        assert_eq!(intents[0].patch_kind, PatchKind::Create);
        assert_eq!(intents[0].target.name, name);
        assert_eq!(intents[0].target.uid, "");
        let created: Value = serde_json::from_str(&intents[0].body).unwrap();
        assert_eq!(
            created["metadata"]["annotations"]["resource.kubernetes.io/extended-resource-claim"],
            "true"
        );
        assert_eq!(created["metadata"]["ownerReferences"][0]["uid"], "x-uid");
        assert_eq!(
            created["metadata"]["ownerReferences"][0]["controller"],
            true
        );
        // The request is named by container 0 and the resource's place among its sorted
        // requests (cpu, example.com/gpu).
        assert_eq!(
            created["spec"]["devices"]["requests"],
            json!([{"name": "container-0-request-1", "exactly": {
                "deviceClassName": "gpu.example.com", "allocationMode": "ExactCount", "count": 2}}])
        );
        let status: Value = serde_json::from_str(&intents[1].body).unwrap();
        assert_eq!(intents[1].subresource.as_deref(), Some("status"));
        assert!(
            status["metadata"].get("uid").is_none(),
            "no uid before the create"
        );
        assert_eq!(
            status["status"]["allocation"]["devices"]["results"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(status["status"]["reservedFor"][0]["uid"], "x-uid");
        assert_eq!(intents[2].target.resource, ResourceKind::pod());
        let pod_status: Value = serde_json::from_str(&intents[2].body).unwrap();
        assert_eq!(
            pod_status["status"]["extendedResourceClaimStatus"],
            json!({"resourceClaimName": name, "requestMappings": [
                {"containerName": "c", "resourceName": "example.com/gpu", "requestName": "container-0-request-1"}]})
        );
        // The devices are in flight: the next pod that needs two GPUs must use node-b.
        add(
            &mut p,
            ResourceKind::pod(),
            extended_pod("y", "example.com/gpu", 2),
        );
        let st = p.filter(&pod_ref("y"), &nodes);
        assert!(!st[0].is_success() && st[1].is_success(), "{st:?}");
        // Unreserve before anything was written gives the devices back and writes nothing.
        assert!(p.unreserve(&pr, "node-a").is_empty());
        let st = p.filter(&pod_ref("y"), &nodes);
        assert!(st.iter().all(Status::is_success), "{st:?}");
    }

    #[test]
    fn a_node_with_the_resource_as_allocatable_is_left_to_fit() {
        let mut p = cluster();
        map_gpu_class(&mut p);
        add(
            &mut p,
            ResourceKind::node(),
            json!({"metadata": {"name": "node-a", "labels": {"kubernetes.io/hostname": "node-a"}},
                   "status": {"allocatable": {"example.com/gpu": "8"}}}),
        );
        // More than node-a's DRA devices: only the device plugin can serve it there.
        add(
            &mut p,
            ResourceKind::pod(),
            extended_pod("x", "example.com/gpu", 3),
        );
        let pr = pod_ref("x");
        let nodes = ["node-a".to_string(), "node-b".to_string()];
        let st = p.filter(&pr, &nodes);
        assert!(st[0].is_success(), "{st:?}");
        assert_eq!(st[1].reasons[0], REASON_CANNOT_ALLOCATE);
        assert!(p.reserve(&pr, "node-a").unwrap().is_empty());
    }

    #[test]
    fn the_newest_class_backs_a_shared_extended_resource_name() {
        let mut p = cluster();
        for (name, created) in [
            ("a-old", "2026-01-01T00:00:00Z"),
            ("b-new", "2026-02-01T00:00:00Z"),
            ("c-new", "2026-02-01T00:00:00Z"),
        ] {
            add(
                &mut p,
                ResourceKind::device_class(),
                json!({"metadata": {"name": name, "creationTimestamp": created},
                       "spec": {"extendedResourceName": "example.com/gpu"}}),
            );
        }
        // Newest first, then the first name.
        assert_eq!(p.state.class_for_resource("example.com/gpu"), Some("b-new"));
        assert_eq!(
            p.state
                .class_for_resource("deviceclass.resource.kubernetes.io/a-old"),
            Some("a-old")
        );
        assert_eq!(p.state.class_for_resource("example.com/tpu"), None);
    }

    #[test]
    fn an_existing_special_claim_is_used_like_any_claim_and_the_pod_status_is_written() {
        let mut p = cluster();
        map_gpu_class(&mut p);
        add(
            &mut p,
            ResourceKind::pod(),
            extended_pod("x", "example.com/gpu", 1),
        );
        // An earlier attempt created the claim, and its later writes did not land.
        let name = extended::claim_name("x", "x-uid");
        let mut c = claim(&name, 1);
        c["metadata"]["annotations"] =
            json!({"resource.kubernetes.io/extended-resource-claim": "true"});
        c["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Pod", "name": "x", "uid": "x-uid", "controller": true}]);
        c["metadata"]["finalizers"] = json!([crate::state::FINALIZER]);
        c["spec"]["devices"]["requests"][0]["name"] = json!("container-0-request-1");
        add(&mut p, ResourceKind::resource_claim(), c);
        let pr = pod_ref("x");
        assert!(p.pre_filter(&pr).status.is_success());
        let intents = p.reserve(&pr, "node-a").unwrap();
        assert!(intents.iter().all(|i| i.patch_kind != PatchKind::Create));
        assert_eq!(intents.len(), 2, "{intents:#?}");
        assert_eq!(intents[0].target.uid, format!("{name}-uid"));
        let pod_status: Value = serde_json::from_str(&intents[1].body).unwrap();
        assert_eq!(
            pod_status["status"]["extendedResourceClaimStatus"]["resourceClaimName"],
            name
        );
    }

    #[test]
    fn an_assumed_special_claim_counts_its_shares_once() {
        let mut p = DraPlugin::new("{}").unwrap();
        add(
            &mut p,
            ResourceKind::device_class(),
            json!({"metadata": {"name": "nic"},
            "spec": {"extendedResourceName": "example.com/nic",
                     "selectors": [{"cel": {"expression": "device.driver == \"nic.example.com\""}}]}}),
        );
        add(
            &mut p,
            ResourceKind::node(),
            json!({"metadata": {"name": "node-a"}}),
        );
        add(
            &mut p,
            ResourceKind::resource_slice(),
            json!({"metadata": {"name": "nics"},
            "spec": {"driver": "nic.example.com", "nodeName": "node-a",
                     "pool": {"name": "nics", "generation": 1, "resourceSliceCount": 1},
                     "devices": [{"name": "nic-0", "allowMultipleAllocations": true,
                                  "capacity": {"bandwidth": {"value": "10G",
                                      "requestPolicy": {"default": "4G"}}}}]}}),
        );
        let nodes = ["node-a".to_string()];
        add(
            &mut p,
            ResourceKind::pod(),
            extended_pod("x", "example.com/nic", 1),
        );
        assert!(p.filter(&pod_ref("x"), &nodes)[0].is_success());
        let intents = p.reserve(&pod_ref("x"), "node-a").unwrap();
        // The host assumes the created claim with its status: it has no uid yet.
        let mut created: Value = serde_json::from_str(&intents[0].body).unwrap();
        let status: Value = serde_json::from_str(&intents[1].body).unwrap();
        created["status"] = status["status"].clone();
        assert_eq!(
            created["status"]["allocation"]["devices"]["results"][0]["consumedCapacity"],
            json!({"bandwidth": "4G"})
        );
        add(&mut p, ResourceKind::resource_claim(), created);
        // 4G of 10G taken once, not twice: another 4G share fits.
        add(
            &mut p,
            ResourceKind::pod(),
            extended_pod("y", "example.com/nic", 1),
        );
        let st = p.filter(&pod_ref("y"), &nodes);
        assert!(st[0].is_success(), "{st:?}");
    }
}
