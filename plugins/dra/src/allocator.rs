//! The structured-parameters allocator: picks devices for a pod's unallocated claims on one node.
//!
//! It follows upstream `k8s.io/dynamic-resource-allocation/structured` (allocator.go) in what it
//! accepts:
//! - requests with `exactly` (device class selectors AND request selectors; `ExactCount` with
//!   `count`, or `All` = every matching device, at least one, none of them in use) and
//!   `firstAvailable` (subrequests tried in order; results are named `request/subrequest`);
//! - `matchAttribute` and `distinctAttribute` constraints across the requests they name (all
//!   requests when none are named; naming `req` covers its subrequests);
//! - at most [`MAX_DEVICES_PER_CLAIM`] devices per claim;
//! - devices of complete pools reachable from the node that are not allocated (or in flight) —
//!   unless the request asks for `adminAccess` — and whose `NoSchedule`/`NoExecute` taints are
//!   tolerated.
//!
//! The search is a depth-first backtracking over claims, requests, subrequests and devices in
//! inventory order, so the same state always gives the same devices. It is bounded by
//! [`SEARCH_BUDGET`] steps per node (upstream bounds it by a timeout instead).
//!
//! A CEL runtime error on a device (say, a missing attribute) makes that device not match; if
//! the claims then cannot be allocated, the first such error is part of the reason. Upstream
//! fails the whole Filter with an error instead; skipping the device keeps mixed fleets usable.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorTerm};
use k8s_openapi::api::resource::v1::{
    CapacityRequirements, DeviceClaim, DeviceSelector, DeviceTaint, DeviceToleration,
};

use crate::cel_env::{SelectorId, Selectors};
use crate::inventory::{AttrValue, Device, Inventory, Reach, RequestPolicy};
use crate::node_selector;

/// resource.k8s.io/v1 `AllocationResultsMaxSize`: devices one claim may get.
pub const MAX_DEVICES_PER_CLAIM: usize = 32;

/// Search steps allowed per node before giving up.
pub const SEARCH_BUDGET: usize = 20_000;

/// One allocated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceResult {
    /// The request name, `request/subrequest` for a `firstAvailable` request (shared with the
    /// plan, so a Filter over many nodes copies no strings).
    pub request: Arc<str>,
    /// Index into [`Inventory::devices`].
    pub device: u32,
    /// The request asked for admin access.
    pub admin_access: bool,
    /// For a device with `allowMultipleAllocations` (KEP-5075): what this allocation consumes
    /// of each entry of [`Device::capacity`].
    pub consumed: Option<Vec<i128>>,
}

/// What other claims and in-flight allocations hold, as the allocator asks it.
pub trait Usage {
    /// The device is allocated to some claim or in flight (shares of a device with
    /// `allowMultipleAllocations` do not count).
    fn in_use(&self, device: u32) -> bool;
    /// How much of entry `capacity` of [`Device::capacity`] the allocated and in-flight shares
    /// of a device with `allowMultipleAllocations` consume.
    fn consumed(&self, device: u32, capacity: usize) -> i128;
}

/// Whole devices only: the closure says which are in use; no capacity is consumed.
impl<F: Fn(u32) -> bool> Usage for F {
    fn in_use(&self, device: u32) -> bool {
        self(device)
    }
    fn consumed(&self, _device: u32, _capacity: usize) -> i128 {
        0
    }
}

/// The allocation of one claim on one node.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimAllocation {
    /// Devices, grouped by request in spec order.
    pub results: Vec<DeviceResult>,
    /// For each `firstAvailable` request: (chosen subrequest index, number of subrequests).
    pub subrequest_choices: Vec<(usize, usize)>,
}

impl ClaimAllocation {
    /// Where the claim can be used; `None` for devices usable from all nodes. Built on demand
    /// (at Reserve), not for every node Filter tries.
    pub fn node_selector(&self, inv: &Inventory) -> Option<NodeSelector> {
        allocation_node_selector(inv, &self.results)
    }
}

/// Why claims cannot be allocated on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocError {
    /// Details for users (CEL errors, pools being updated, budget exhausted); may be empty.
    pub details: Vec<String>,
}

/// A request alternative: an `exactly` request or one subrequest.
struct Alt {
    /// Name in results: `req` or `req/sub`.
    name: Arc<str>,
    selectors: Vec<SelectorId>,
    mode: Mode,
    admin_access: bool,
    tolerations: Vec<DeviceToleration>,
    /// `capacity.requests` (KEP-5075): (name as written, amount in nano-units).
    capacity: Vec<(String, i128)>,
}

#[derive(Clone, Copy)]
enum Mode {
    Exact(usize),
    All,
}

struct Request {
    alts: Vec<Alt>,
    first_available: bool,
}

enum ConstraintKind {
    Match,
    Distinct,
}

struct Constraint {
    attribute: String,
    requests: Vec<String>,
    kind: ConstraintKind,
    /// Match: the value and how many devices hold it; Distinct: the values taken.
    values: Vec<AttrValue>,
}

struct ClaimPlan {
    requests: Vec<Request>,
    /// Per request index: the fewest devices requests from there on need.
    min_rest: Vec<usize>,
    constraints: Vec<Constraint>,
}

/// Compiles a claim's requests against the device classes, once per scheduling cycle.
///
/// # Errors
/// As upstream PreFilter: "request X: device class Y does not exist", selector compilation
/// errors, unsupported allocation modes.
pub fn plan_claim(
    spec: &DeviceClaim,
    classes: &HashMap<String, Vec<String>>,
    selectors: &mut Selectors,
) -> Result<PlannedClaim, String> {
    let mut requests = Vec::new();
    for r in spec.requests.iter().flatten() {
        let mut alts = Vec::new();
        let first_available = r.first_available.is_some();
        if let Some(e) = &r.exactly {
            alts.push(make_alt(
                &r.name,
                None,
                &e.device_class_name,
                e.selectors.as_deref(),
                e.allocation_mode.as_deref(),
                e.count,
                e.admin_access.unwrap_or(false),
                e.tolerations.as_deref(),
                e.capacity.as_ref(),
                classes,
                selectors,
            )?);
        }
        for s in r.first_available.iter().flatten() {
            alts.push(make_alt(
                &r.name,
                Some(&s.name),
                &s.device_class_name,
                s.selectors.as_deref(),
                s.allocation_mode.as_deref(),
                s.count,
                false,
                s.tolerations.as_deref(),
                s.capacity.as_ref(),
                classes,
                selectors,
            )?);
        }
        if alts.is_empty() {
            return Err(format!(
                "request {}: neither exactly nor firstAvailable is set",
                r.name
            ));
        }
        requests.push(Request {
            alts,
            first_available,
        });
    }
    let constraints = spec
        .constraints
        .iter()
        .flatten()
        .filter_map(|c| {
            let (attribute, kind) = match (&c.match_attribute, &c.distinct_attribute) {
                (Some(a), _) => (a.clone(), ConstraintKind::Match),
                (None, Some(a)) => (a.clone(), ConstraintKind::Distinct),
                (None, None) => return None,
            };
            Some(Constraint {
                attribute,
                requests: c.requests.clone().unwrap_or_default(),
                kind,
                values: Vec::new(),
            })
        })
        .collect();
    let mut min_rest = vec![0; requests.len() + 1];
    for (i, r) in requests.iter().enumerate().rev() {
        let min = r.alts.iter().map(|a| match a.mode {
            Mode::Exact(n) => n,
            Mode::All => 1,
        });
        min_rest[i] = min_rest[i + 1] + min.min().unwrap_or(0);
    }
    Ok(PlannedClaim(ClaimPlan {
        requests,
        min_rest,
        constraints,
    }))
}

/// A claim compiled by [`plan_claim`], ready for [`allocate`].
pub struct PlannedClaim(ClaimPlan);

impl PlannedClaim {
    /// True if a request uses `firstAvailable` (only then do nodes score differently).
    pub fn has_first_available(&self) -> bool {
        self.0.requests.iter().any(|r| r.first_available)
    }

    /// The selectors (class and request) of each alternative: the shapes of what it asks for.
    pub fn alternatives(&self) -> impl Iterator<Item = &[SelectorId]> {
        self.0
            .requests
            .iter()
            .flat_map(|r| r.alts.iter().map(|a| a.selectors.as_slice()))
    }
}

#[allow(clippy::too_many_arguments)]
fn make_alt(
    request: &str,
    sub: Option<&str>,
    class: &str,
    request_selectors: Option<&[DeviceSelector]>,
    mode: Option<&str>,
    count: Option<i64>,
    admin_access: bool,
    tolerations: Option<&[DeviceToleration]>,
    capacity: Option<&CapacityRequirements>,
    classes: &HashMap<String, Vec<String>>,
    selectors: &mut Selectors,
) -> Result<Alt, String> {
    let name = match sub {
        Some(s) => format!("{request}/{s}"),
        None => request.to_owned(),
    };
    let class_selectors = classes
        .get(class)
        .ok_or_else(|| format!("request {name}: device class {class} does not exist"))?;
    let mut ids = Vec::new();
    for expr in class_selectors {
        ids.push(
            selectors
                .compile(expr)
                .map_err(|e| format!("class {class}: selector {expr:?}: {e}"))?,
        );
    }
    for s in request_selectors.into_iter().flatten() {
        if let Some(cel) = &s.cel {
            ids.push(
                selectors
                    .compile(&cel.expression)
                    .map_err(|e| format!("request {name}: selector {:?}: {e}", cel.expression))?,
            );
        }
    }
    let mode = match mode.unwrap_or("ExactCount") {
        "ExactCount" => Mode::Exact(count.unwrap_or(1).max(1) as usize),
        "All" => Mode::All,
        other => {
            return Err(format!(
                "request {name}: unsupported allocation mode {other}"
            ));
        }
    };
    Ok(Alt {
        name: name.into(),
        selectors: ids,
        mode,
        admin_access,
        tolerations: tolerations.map(<[_]>::to_vec).unwrap_or_default(),
        capacity: capacity
            .and_then(|c| c.requests.as_ref())
            .into_iter()
            .flatten()
            .map(|(n, q)| {
                let nanos = kube_quantity::Quantity::parse_json(&q.0).map_or(0, |q| q.nanos());
                (n.clone(), nanos)
            })
            .collect(),
    })
}

/// What allocating `device` for `alt` consumes of each entry of [`Device::capacity`], or
/// `None` if the device cannot serve it: it lacks a requested capacity, or the amount (after
/// the `requestPolicy`, see [`RequestPolicy::consumed`]) breaks the policy or exceeds the
/// capacity. Without capacity requests a shared device is consumed by its policies' defaults,
/// else whole (upstream `calculateConsumedCapacity`).
fn consumption(device: &Device, alt: &Alt) -> Option<Vec<i128>> {
    let mut requested: Vec<Option<i128>> = vec![None; device.capacity.len()];
    for (name, amount) in &alt.capacity {
        requested[device.capacity_index(name)?] = Some(*amount);
    }
    device
        .capacity
        .iter()
        .enumerate()
        .map(|(i, &(_, total))| {
            let policy = device.policies.get(i).and_then(Option::as_ref);
            let amount = RequestPolicy::consumed(policy, requested[i], total)?;
            (amount <= total).then_some(amount)
        })
        .collect()
}

/// Buffers the search reuses from node to node, so a Filter over many nodes does not allocate
/// per node. One per plugin instance is enough; [`allocate`] and [`fits`] clear what they use.
#[derive(Default)]
pub struct Scratch {
    /// Candidate lists: (claim, request, alternative) → range in `cand_buf`.
    cand_index: Vec<((usize, usize, usize), usize, usize)>,
    cand_buf: Vec<u32>,
    /// Devices picked so far.
    chosen: Vec<u32>,
    /// Per claim: picked devices as (request, alternative, device).
    picked: Vec<Vec<(usize, usize, u32)>>,
    /// Per claim, per request: the alternative chosen.
    choices: Vec<Vec<usize>>,
    /// What is left of each shared counter (KEP-4815) given devices in use and those picked so
    /// far, by counter id; only counters of reachable devices are filled in.
    counter_left: Vec<i128>,
    /// Per claim, parallel to `picked`: for a share of a device with `allowMultipleAllocations`,
    /// what it consumes and whether it consumed the device's counters (the first share does).
    shares: Vec<Vec<Option<(Vec<i128>, bool)>>>,
    /// Capacity consumed by the shares picked so far, per device.
    share_used: Vec<(u32, Vec<i128>)>,
}

/// Allocates all `claims` together on `node` (no device twice), or says why not.
///
/// `in_use(index)` tells whether a device (by index into [`Inventory::devices`]) is allocated
/// to some claim or in flight. With `order` (a rank per device index, see
/// [`crate::placement`]), the candidates of each request are tried lowest rank first (then in
/// inventory order), so the least valuable devices that satisfy a request are taken first;
/// without, in inventory order.
///
/// # Errors
/// [`AllocError`] when no combination of devices satisfies every claim.
#[allow(clippy::too_many_arguments)]
pub fn allocate(
    inv: &Inventory,
    selectors: &mut Selectors,
    scratch: &mut Scratch,
    node: &str,
    labels: &BTreeMap<String, String>,
    claims: &mut [PlannedClaim],
    in_use: &dyn Usage,
    order: Option<&[u32]>,
) -> Result<Vec<ClaimAllocation>, AllocError> {
    solve(inv, selectors, scratch, node, labels, claims, in_use, order)?;
    Ok(claims
        .iter()
        .zip(&scratch.picked)
        .zip(&scratch.choices)
        .zip(&scratch.shares)
        .map(|(((plan, picked), choices), shares)| {
            let plan = &plan.0;
            ClaimAllocation {
                results: picked
                    .iter()
                    .zip(shares)
                    .map(|(&(ri, ai, d), share)| {
                        let alt = &plan.requests[ri].alts[ai];
                        DeviceResult {
                            request: alt.name.clone(),
                            device: d,
                            admin_access: alt.admin_access,
                            consumed: share.as_ref().map(|(amounts, _)| amounts.clone()),
                        }
                    })
                    .collect(),
                subrequest_choices: choices
                    .iter()
                    .zip(&plan.requests)
                    .filter(|(_, r)| r.first_available)
                    .map(|(&i, r)| (i, r.alts.len()))
                    .collect(),
            }
        })
        .collect())
}

/// Like [`allocate`], but only tells whether the claims fit on `node` (nothing is built). The
/// order candidates are tried in does not change whether they fit, so none is given.
///
/// # Errors
/// [`AllocError`] when no combination of devices satisfies every claim.
pub fn fits(
    inv: &Inventory,
    selectors: &mut Selectors,
    scratch: &mut Scratch,
    node: &str,
    labels: &BTreeMap<String, String>,
    claims: &mut [PlannedClaim],
    in_use: &dyn Usage,
) -> Result<(), AllocError> {
    solve(inv, selectors, scratch, node, labels, claims, in_use, None)
}

#[allow(clippy::too_many_arguments)]
fn solve(
    inv: &Inventory,
    selectors: &mut Selectors,
    scratch: &mut Scratch,
    node: &str,
    labels: &BTreeMap<String, String>,
    claims: &mut [PlannedClaim],
    in_use: &dyn Usage,
    order: Option<&[u32]>,
) -> Result<(), AllocError> {
    let reachable = reachable_devices(inv, node, labels);
    scratch.cand_index.clear();
    scratch.cand_buf.clear();
    scratch.chosen.clear();
    scratch.picked.resize_with(claims.len(), Vec::new);
    scratch.choices.resize_with(claims.len(), Vec::new);
    scratch.shares.resize_with(claims.len(), Vec::new);
    scratch.share_used.clear();
    for (ci, c) in claims.iter_mut().enumerate() {
        scratch.picked[ci].clear();
        scratch.shares[ci].clear();
        scratch.choices[ci].clear();
        scratch.choices[ci].resize(c.0.requests.len(), 0);
        for k in &mut c.0.constraints {
            k.values.clear();
        }
    }
    if !inv.counters.is_empty() {
        // Counters are consumed by every allocated or in-flight device, whichever claim has it.
        scratch.counter_left.clear();
        scratch.counter_left.resize(inv.counters.len(), i128::MIN);
        for &d in reachable.iter() {
            for &(id, _) in &inv.devices[d as usize].consumes {
                let left = &mut scratch.counter_left[id as usize];
                if *left != i128::MIN {
                    continue;
                }
                let used: i128 = inv.counter_consumers[id as usize]
                    .iter()
                    .filter(|&&c| in_use.in_use(c) || shared_in_use(inv, in_use, c))
                    .flat_map(|&c| &inv.devices[c as usize].consumes)
                    .filter(|(cid, _)| *cid == id)
                    .map(|(_, amount)| amount)
                    .sum();
                *left = inv.counters[id as usize] - used;
            }
        }
    }
    let mut search = Search {
        inv,
        selectors,
        reachable,
        in_use,
        order,
        s: scratch,
        steps: 0,
        errors: Vec::new(),
    };
    if search.solve_claim(claims, 0) {
        return Ok(());
    }
    let mut details = search.errors;
    if search.steps >= SEARCH_BUDGET {
        details.push(format!("gave up after {SEARCH_BUDGET} search steps"));
    }
    for p in &inv.unusable {
        if p.node.as_deref().is_none_or(|n| n == node) {
            details.push(format!(
                "resource pool {}/{} {}",
                p.driver, p.pool, p.reason
            ));
        }
    }
    Err(AllocError { details })
}

/// A device with `allowMultipleAllocations` that some share consumes (its counters are
/// consumed once, by the first share).
fn shared_in_use(inv: &Inventory, usage: &dyn Usage, d: u32) -> bool {
    let device = &inv.devices[d as usize];
    device.multi && (0..device.capacity.len()).any(|i| usage.consumed(d, i) > 0)
}

/// Devices usable from `node`, in inventory order. Borrowed when only node-local devices
/// exist (the common case: no copy per node).
fn reachable_devices<'a>(
    inv: &'a Inventory,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> Cow<'a, [u32]> {
    let local = inv.by_node.get(node).map(Vec::as_slice).unwrap_or_default();
    if inv.shared.is_empty() {
        return Cow::Borrowed(local);
    }
    let shared = inv
        .shared
        .iter()
        .copied()
        .filter(|&i| match &inv.devices[i as usize].reach {
            Reach::AllNodes => true,
            Reach::Selector(s) => node_selector::matches(s, node, labels),
            Reach::Node(n) => n == node,
        });
    let mut out: Vec<u32> = local.iter().copied().chain(shared).collect();
    out.sort_unstable();
    Cow::Owned(out)
}

/// As upstream `createNodeSelector`: a node-local device pins the claim to its node; otherwise
/// the requirements of the devices' single-term selectors are combined; devices for all nodes
/// add nothing.
fn allocation_node_selector(inv: &Inventory, results: &[DeviceResult]) -> Option<NodeSelector> {
    let mut term = NodeSelectorTerm::default();
    for r in results {
        match &inv.devices[r.device as usize].reach {
            Reach::Node(n) => return Some(node_selector::for_node(n)),
            Reach::Selector(sel) => {
                if let [t] = sel.node_selector_terms.as_slice() {
                    for f in t.match_fields.iter().flatten() {
                        let fields = term.match_fields.get_or_insert_with(Vec::new);
                        if !fields.contains(f) {
                            fields.push(f.clone());
                        }
                    }
                    for e in t.match_expressions.iter().flatten() {
                        let exprs = term.match_expressions.get_or_insert_with(Vec::new);
                        if !exprs.contains(e) {
                            exprs.push(e.clone());
                        }
                    }
                } else {
                    // Several terms cannot be intersected term by term; keep that selector.
                    return Some(sel.clone());
                }
            }
            Reach::AllNodes => {}
        }
    }
    (term.match_fields.is_some() || term.match_expressions.is_some()).then(|| NodeSelector {
        node_selector_terms: vec![term],
    })
}

struct Search<'a> {
    inv: &'a Inventory,
    selectors: &'a mut Selectors,
    reachable: Cow<'a, [u32]>,
    in_use: &'a dyn Usage,
    /// Rank per device: candidates are tried lowest first (see [`allocate`]).
    order: Option<&'a [u32]>,
    s: &'a mut Scratch,
    steps: usize,
    errors: Vec<String>,
}

impl Search<'_> {
    fn solve_claim(&mut self, plans: &mut [PlannedClaim], ci: usize) -> bool {
        if ci == plans.len() {
            return true;
        }
        self.solve_request(plans, ci, 0)
    }

    fn solve_request(&mut self, plans: &mut [PlannedClaim], ci: usize, ri: usize) -> bool {
        if ri == plans[ci].0.requests.len() {
            return self.solve_claim(plans, ci + 1);
        }
        for ai in 0..plans[ci].0.requests[ri].alts.len() {
            self.s.choices[ci][ri] = ai;
            let cands = self.candidates(plans, ci, ri, ai);
            let mode = plans[ci].0.requests[ri].alts[ai].mode;
            let ok = match mode {
                Mode::Exact(n) => self.pick(plans, (ci, ri, ai), cands, n, cands.0),
                Mode::All => self.pick_all(plans, (ci, ri, ai), cands),
            };
            if ok {
                return true;
            }
            if self.steps >= SEARCH_BUDGET {
                return false;
            }
        }
        false
    }

    /// Picks `remaining` devices from `cand_buf[start..cands.1]` (backtracking).
    fn pick(
        &mut self,
        plans: &mut [PlannedClaim],
        (ci, ri, ai): (usize, usize, usize),
        cands: (usize, usize),
        remaining: usize,
        start: usize,
    ) -> bool {
        if remaining == 0 {
            return self.solve_request(plans, ci, ri + 1);
        }
        let plan = &plans[ci].0;
        if self.s.picked[ci].len() + remaining + plan.min_rest[ri + 1] > MAX_DEVICES_PER_CLAIM {
            return false;
        }
        let admin = plan.requests[ri].alts[ai].admin_access;
        let inv = self.inv;
        let shareable = |d: u32| !admin && inv.devices[d as usize].multi;
        for i in start..cands.1 {
            // Too few devices left, unless one can be shared again.
            if cands.1 - i < remaining && !self.s.cand_buf[i..cands.1].iter().any(|&d| shareable(d))
            {
                break;
            }
            self.steps += 1;
            if self.steps >= SEARCH_BUDGET {
                return false;
            }
            let d = self.s.cand_buf[i];
            if self.taken(d, admin) {
                continue;
            }
            if !self.push(plans, (ci, ri, ai), d) {
                continue;
            }
            // As upstream, a device with `allowMultipleAllocations` may serve the same request
            // more than once (another share, while its capacity lasts).
            let next = if shareable(d) { i } else { i + 1 };
            if self.pick(plans, (ci, ri, ai), cands, remaining - 1, next) {
                return true;
            }
            self.pop(plans, ci);
        }
        false
    }

    fn pick_all(
        &mut self,
        plans: &mut [PlannedClaim],
        (ci, ri, ai): (usize, usize, usize),
        cands: (usize, usize),
    ) -> bool {
        let plan = &plans[ci].0;
        let admin = plan.requests[ri].alts[ai].admin_access;
        let n = cands.1 - cands.0;
        if n == 0 || self.s.picked[ci].len() + n + plan.min_rest[ri + 1] > MAX_DEVICES_PER_CLAIM {
            return false;
        }
        // Upstream: an incomplete pool could hide matching devices, so All cannot be satisfied.
        let mut pushed = 0;
        let mut ok = true;
        for i in cands.0..cands.1 {
            let d = self.s.cand_buf[i];
            self.steps += 1;
            if self.taken(d, admin) || !self.push(plans, (ci, ri, ai), d) {
                ok = false;
                break;
            }
            pushed += 1;
        }
        if ok && self.solve_request(plans, ci, ri + 1) {
            return true;
        }
        for _ in 0..pushed {
            self.pop(plans, ci);
        }
        false
    }

    /// Whether `d` is unavailable: picked already in this search or in use elsewhere (unless
    /// for admin access). A device with `allowMultipleAllocations` is never taken whole; its
    /// capacity decides, in [`Search::push`].
    fn taken(&self, d: u32, admin: bool) -> bool {
        if self.inv.devices[d as usize].multi {
            return false;
        }
        self.s.chosen.contains(&d) || (!admin && self.in_use.in_use(d))
    }

    /// For a share of device `d` (with `allowMultipleAllocations`): what it consumes, if that
    /// fits beside the other shares, and whether it is the first share (which consumes the
    /// device's counters). `None`: no room.
    fn share(&self, d: u32, alt: &Alt) -> Option<(Vec<i128>, bool)> {
        let device = &self.inv.devices[d as usize];
        let amounts = consumption(device, alt)?;
        let mine = self.s.share_used.iter().find(|(x, _)| *x == d);
        let mut first = mine.is_none();
        for (i, &(_, total)) in device.capacity.iter().enumerate() {
            let others = self.in_use.consumed(d, i);
            first &= others == 0;
            let picked = mine.map_or(0, |(_, used)| used[i]);
            if others + picked + amounts[i] > total {
                return None;
            }
        }
        Some((amounts, first))
    }

    /// Adds `d` to claim `ci` if the claim's constraints (and, for a shared device, its
    /// capacity) allow it.
    fn push(
        &mut self,
        plans: &mut [PlannedClaim],
        (ci, ri, ai): (usize, usize, usize),
        d: u32,
    ) -> bool {
        let device = &self.inv.devices[d as usize];
        let admin = plans[ci].0.requests[ri].alts[ai].admin_access;
        let share = if device.multi && !admin {
            match self.share(d, &plans[ci].0.requests[ri].alts[ai]) {
                Some(s) => Some(s),
                None => return false,
            }
        } else {
            None
        };
        let plan = &mut plans[ci].0;
        // An admin-access allocation does not consume the device, nor its counters; shares of
        // a device consume its counters once.
        let consumes =
            !admin && !device.consumes.is_empty() && share.as_ref().is_none_or(|(_, first)| *first);
        if consumes
            && device
                .consumes
                .iter()
                .any(|&(id, amount)| self.s.counter_left[id as usize] < amount)
        {
            return false;
        }
        if !plan.constraints.is_empty() {
            let names = plans_alt_names(&plan.requests[ri].alts[ai].name);
            for c in &plan.constraints {
                if !applies_names(c, &names) {
                    continue;
                }
                let Some(v) = device.attributes.get(&c.attribute) else {
                    return false;
                };
                let ok = match c.kind {
                    ConstraintKind::Match => c.values.first().is_none_or(|x| x == v),
                    ConstraintKind::Distinct => !c.values.contains(v),
                };
                if !ok {
                    return false;
                }
            }
            let name = plan.requests[ri].alts[ai].name.clone();
            for c in plan.constraints.iter_mut() {
                if applies_names(c, &plans_alt_names(&name)) {
                    c.values.push(device.attributes[&c.attribute].clone());
                }
            }
        }
        if consumes {
            for &(id, amount) in &device.consumes {
                self.s.counter_left[id as usize] -= amount;
            }
        }
        if let Some((amounts, _)) = &share {
            match self.s.share_used.iter_mut().find(|(x, _)| *x == d) {
                Some((_, used)) => used.iter_mut().zip(amounts).for_each(|(u, a)| *u += a),
                None => self.s.share_used.push((d, amounts.clone())),
            }
        }
        self.s.chosen.push(d);
        self.s.picked[ci].push((ri, ai, d));
        self.s.shares[ci].push(share);
        true
    }

    fn pop(&mut self, plans: &mut [PlannedClaim], ci: usize) {
        let (ri, ai, d) = self.s.picked[ci].pop().expect("pop after push");
        let share = self.s.shares[ci].pop().flatten();
        self.s.chosen.pop();
        let plan = &mut plans[ci].0;
        let counted = share.as_ref().is_none_or(|(_, first)| *first);
        if !plan.requests[ri].alts[ai].admin_access && counted {
            for &(id, amount) in &self.inv.devices[d as usize].consumes {
                self.s.counter_left[id as usize] += amount;
            }
        }
        if let Some((amounts, _)) = share
            && let Some(pos) = self.s.share_used.iter().position(|(x, _)| *x == d)
        {
            let used = &mut self.s.share_used[pos].1;
            used.iter_mut().zip(&amounts).for_each(|(u, a)| *u -= a);
            if used.iter().all(|&u| u == 0) {
                self.s.share_used.swap_remove(pos);
            }
        }
        if plan.constraints.is_empty() {
            return;
        }
        let name = plan.requests[ri].alts[ai].name.clone();
        for c in plan.constraints.iter_mut() {
            if applies_names(c, &plans_alt_names(&name)) {
                c.values.pop();
            }
        }
    }

    /// Reachable devices matching alternative `ai` of request `ri` of claim `ci`, as a range
    /// of `cand_buf`.
    fn candidates(
        &mut self,
        plans: &[PlannedClaim],
        ci: usize,
        ri: usize,
        ai: usize,
    ) -> (usize, usize) {
        if let Some(&(_, start, end)) = self
            .s
            .cand_index
            .iter()
            .find(|(k, _, _)| *k == (ci, ri, ai))
        {
            return (start, end);
        }
        let alt = &plans[ci].0.requests[ri].alts[ai];
        let start = self.s.cand_buf.len();
        for &d in self.reachable.iter() {
            let device = &self.inv.devices[d as usize];
            if !tolerates(&alt.tolerations, &device.taints) {
                continue;
            }
            let cel = match &device.cel {
                Ok(c) => c,
                Err(e) => {
                    note(
                        &mut self.errors,
                        format!(
                            "device {}/{}/{}: {e}",
                            device.driver, device.pool, device.name
                        ),
                    );
                    continue;
                }
            };
            let mut all = true;
            for &s in &alt.selectors {
                match self.selectors.matches(s, d, cel) {
                    Ok(true) => {}
                    Ok(false) => {
                        all = false;
                        break;
                    }
                    Err(e) => {
                        note(&mut self.errors, format!("request {}: {e}", alt.name));
                        all = false;
                        break;
                    }
                }
            }
            // Capacity requests (KEP-5075) a device cannot serve at all rule it out here; whether
            // a share still fits beside others is decided when it is picked.
            let capacity_ok =
                (alt.capacity.is_empty() && !device.multi) || consumption(device, alt).is_some();
            if all && capacity_ok {
                self.s.cand_buf.push(d);
            }
        }
        let end = self.s.cand_buf.len();
        // Devices with binding conditions (KEP-5007) come last, as upstream tries pools
        // without them first: binding then need not wait for a driver.
        let inv = self.inv;
        let waits = |d: u32| !inv.devices[d as usize].binding_conditions.is_empty();
        if let Some(order) = self.order {
            let rank = |d: u32| order.get(d as usize).copied().unwrap_or(u32::MAX);
            self.s.cand_buf[start..end].sort_by_key(|&d| (waits(d), rank(d), d));
        } else if self.s.cand_buf[start..end].iter().any(|&d| waits(d)) {
            self.s.cand_buf[start..end].sort_by_key(|&d| (waits(d), d));
        }
        self.s.cand_index.push(((ci, ri, ai), start, end));
        (start, end)
    }
}
fn note(errors: &mut Vec<String>, e: String) {
    if errors.len() < 3 && !errors.contains(&e) {
        errors.push(e);
    }
}

/// The names a constraint's `requests` may use for a result named `name`: the request, and the
/// full `req/sub` name for a subrequest.
fn plans_alt_names(name: &str) -> [&str; 2] {
    match name.split_once('/') {
        Some((parent, _)) => [parent, name],
        None => [name, name],
    }
}

fn applies_names(c: &Constraint, names: &[&str; 2]) -> bool {
    c.requests.is_empty() || c.requests.iter().any(|r| r == names[0] || r == names[1])
}

/// As core/v1 toleration matching, for device taints.
fn tolerates(tolerations: &[DeviceToleration], taints: &[DeviceTaint]) -> bool {
    taints.iter().all(|t| {
        tolerations.iter().any(|tol| {
            let key_ok = tol
                .key
                .as_deref()
                .is_none_or(|k| k.is_empty() || k == t.key);
            let effect_ok = tol
                .effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == t.effect);
            let value_ok = match tol.operator.as_deref().unwrap_or("Equal") {
                "Exists" => true,
                _ => tol.value.as_deref().unwrap_or("") == t.value.as_deref().unwrap_or(""),
            };
            key_ok && effect_ok && value_ok
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::tests::slice;
    use k8s_openapi::api::resource::v1::{
        CELDeviceSelector, DeviceConstraint, DeviceRequest, DeviceSubRequest, ExactDeviceRequest,
        ResourceSliceSpec,
    };
    use serde_json::json;

    fn classes() -> HashMap<String, Vec<String>> {
        [
            (
                "gpu".to_string(),
                vec![r#"device.driver == "gpu.example.com""#.to_string()],
            ),
            (
                "nic".to_string(),
                vec![r#"device.driver == "nic.example.com""#.to_string()],
            ),
        ]
        .into()
    }

    fn exact(name: &str, class: &str, count: i64) -> DeviceRequest {
        DeviceRequest {
            name: name.into(),
            exactly: Some(ExactDeviceRequest {
                device_class_name: class.into(),
                allocation_mode: Some("ExactCount".into()),
                count: Some(count),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn all(name: &str, class: &str) -> DeviceRequest {
        DeviceRequest {
            name: name.into(),
            exactly: Some(ExactDeviceRequest {
                device_class_name: class.into(),
                allocation_mode: Some("All".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with_selector(mut r: DeviceRequest, expr: &str) -> DeviceRequest {
        r.exactly.as_mut().unwrap().selectors = Some(vec![DeviceSelector {
            cel: Some(CELDeviceSelector {
                expression: expr.into(),
            }),
        }]);
        r
    }

    fn claim(requests: Vec<DeviceRequest>) -> DeviceClaim {
        DeviceClaim {
            requests: Some(requests),
            ..Default::default()
        }
    }

    struct Fixture {
        inv: Inventory,
        sel: Selectors,
        used: Vec<u32>,
        /// Shared by every call, as the plugin shares one across nodes and pods.
        scratch: Scratch,
    }

    impl Fixture {
        fn new(slices: &[ResourceSliceSpec]) -> Fixture {
            let named: Vec<(String, &ResourceSliceSpec)> = slices
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("s{i}"), s))
                .collect();
            let inv = Inventory::build(named.iter().map(|(n, s)| (n.as_str(), *s)));
            Fixture {
                inv,
                sel: Selectors::new(),
                used: Vec::new(),
                scratch: Scratch::default(),
            }
        }

        fn alloc(
            &mut self,
            node: &str,
            claims: &[DeviceClaim],
        ) -> Result<Vec<Vec<(String, String)>>, AllocError> {
            let mut planned: Vec<PlannedClaim> = claims
                .iter()
                .map(|c| plan_claim(c, &classes(), &mut self.sel).unwrap())
                .collect();
            let used = self.used.clone();
            let in_use = move |i: u32| used.contains(&i);
            let r = allocate(
                &self.inv,
                &mut self.sel,
                &mut self.scratch,
                node,
                &BTreeMap::new(),
                &mut planned,
                &in_use,
                None,
            )?;
            Ok(r.iter()
                .map(|c| {
                    c.results
                        .iter()
                        .map(|d| {
                            (
                                d.request.to_string(),
                                self.inv.devices[d.device as usize].name.clone(),
                            )
                        })
                        .collect()
                })
                .collect())
        }

        fn take(&mut self, name: &str) {
            let i = self
                .inv
                .devices
                .iter()
                .position(|d| d.name == name)
                .unwrap();
            self.used.push(i as u32);
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn gpus(node: &str, n: usize) -> ResourceSliceSpec {
        let names: Vec<String> = (0..n).map(|i| format!("{node}-gpu-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        slice("gpu.example.com", node, node, 1, 1, &refs)
    }

    /// A partitionable GPU (KEP-4815): the counter set in one slice, the whole GPU and its two
    /// halves in another slice of the same pool.
    fn partitionable_gpu(node: &str) -> Vec<ResourceSliceSpec> {
        let pool = json!({"name": node, "generation": 1, "resourceSliceCount": 2});
        let consumes = |mem: &str| json!([{"counterSet": "gpu-0-counters", "counters": {"memory": {"value": mem}}}]);
        [
            json!({"driver": "gpu.example.com", "nodeName": node, "pool": pool,
                   "sharedCounters": [{"name": "gpu-0-counters", "counters": {"memory": {"value": "80Gi"}}}]}),
            json!({"driver": "gpu.example.com", "nodeName": node, "pool": pool, "devices": [
                {"name": "gpu-0", "consumesCounters": consumes("80Gi")},
                {"name": "gpu-0-half-0", "consumesCounters": consumes("40Gi")},
                {"name": "gpu-0-half-1", "consumesCounters": consumes("40960Mi")}]}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect()
    }

    #[test]
    fn partitions_never_exceed_their_shared_counters() {
        let mut f = Fixture::new(&partitionable_gpu("a"));
        let one = || claim(vec![exact("gpu", "gpu", 1)]);
        assert_eq!(
            f.alloc("a", &[one()]).unwrap()[0],
            pairs(&[("gpu", "gpu-0")])
        );
        // Two devices in one claim: the whole GPU leaves nothing, so the two halves.
        assert_eq!(
            f.alloc("a", &[claim(vec![exact("gpu", "gpu", 2)])])
                .unwrap()[0],
            pairs(&[("gpu", "gpu-0-half-0"), ("gpu", "gpu-0-half-1")])
        );
        // Across claims of one pod, the same.
        let r = f.alloc("a", &[one(), one()]).unwrap();
        assert_eq!(r[0], pairs(&[("gpu", "gpu-0-half-0")]));
        assert_eq!(r[1], pairs(&[("gpu", "gpu-0-half-1")]));
        assert!(f.alloc("a", &[one(), one(), one()]).is_err());
        // A half in use (by another claim, or in flight) leaves room for the other half only.
        f.take("gpu-0-half-0");
        assert_eq!(
            f.alloc("a", &[one()]).unwrap()[0],
            pairs(&[("gpu", "gpu-0-half-1")])
        );
        f.take("gpu-0-half-1");
        assert!(
            f.alloc("a", &[one()]).is_err(),
            "the whole GPU needs all 80Gi"
        );
    }

    #[test]
    fn devices_consuming_an_undefined_counter_set_are_not_allocatable() {
        let mut slices = partitionable_gpu("a");
        slices[0].shared_counters = None;
        slices[0].pool.resource_slice_count = 2;
        let mut f = Fixture::new(&slices);
        assert!(
            f.alloc("a", &[claim(vec![exact("gpu", "gpu", 1)])])
                .is_err()
        );
    }

    #[test]
    fn allocates_exact_count_in_inventory_order_skipping_used_devices() {
        let mut f = Fixture::new(&[gpus("a", 4)]);
        f.take("a-gpu-0");
        let r = f
            .alloc("a", &[claim(vec![exact("gpu", "gpu", 2)])])
            .unwrap();
        assert_eq!(r[0], pairs(&[("gpu", "a-gpu-1"), ("gpu", "a-gpu-2")]));
    }

    #[test]
    fn an_order_tries_low_ranks_first() {
        let mut f = Fixture::new(&[gpus("a", 3)]);
        let mut planned =
            plan_claim(&claim(vec![exact("gpu", "gpu", 2)]), &classes(), &mut f.sel).unwrap();
        let r = allocate(
            &f.inv,
            &mut f.sel,
            &mut Scratch::default(),
            "a",
            &BTreeMap::new(),
            std::slice::from_mut(&mut planned),
            &|_: u32| false,
            Some(&[2, 0, 1]),
        )
        .unwrap();
        let names: Vec<&str> = r[0]
            .results
            .iter()
            .map(|d| f.inv.devices[d.device as usize].name.as_str())
            .collect();
        assert_eq!(names, ["a-gpu-1", "a-gpu-2"]);
    }

    #[test]
    fn does_not_reach_devices_of_other_nodes() {
        let mut f = Fixture::new(&[gpus("a", 1), gpus("b", 1)]);
        assert!(
            f.alloc("c", &[claim(vec![exact("gpu", "gpu", 1)])])
                .is_err()
        );
        assert_eq!(
            f.alloc("b", &[claim(vec![exact("gpu", "gpu", 1)])])
                .unwrap()[0],
            pairs(&[("gpu", "b-gpu-0")])
        );
    }

    #[test]
    fn allocates_several_claims_without_sharing_devices() {
        let mut f = Fixture::new(&[gpus("a", 2)]);
        let c = claim(vec![exact("gpu", "gpu", 1)]);
        let r = f.alloc("a", &[c.clone(), c.clone()]).unwrap();
        assert_eq!(r[0], pairs(&[("gpu", "a-gpu-0")]));
        assert_eq!(r[1], pairs(&[("gpu", "a-gpu-1")]));
        assert!(f.alloc("a", &[c.clone(), c.clone(), c]).is_err());
    }

    #[test]
    fn all_mode_takes_every_matching_device_and_fails_if_one_is_used() {
        let mut f = Fixture::new(&[gpus("a", 3)]);
        let c = claim(vec![all("gpus", "gpu")]);
        assert_eq!(f.alloc("a", std::slice::from_ref(&c)).unwrap()[0].len(), 3);
        f.take("a-gpu-2");
        assert!(f.alloc("a", &[c]).is_err());
        assert!(
            f.alloc("b", &[claim(vec![all("gpus", "gpu")])]).is_err(),
            "All needs at least one device"
        );
    }

    #[test]
    fn all_mode_respects_request_selectors() {
        let mut f = Fixture::new(&[gpus("a", 4)]);
        let c = claim(vec![with_selector(
            all("gpus", "gpu"),
            r#"device.attributes["gpu.example.com"].index < 2"#,
        )]);
        assert_eq!(
            f.alloc("a", &[c]).unwrap()[0],
            pairs(&[("gpus", "a-gpu-0"), ("gpus", "a-gpu-1")])
        );
    }

    #[test]
    fn caps_a_claim_at_32_devices() {
        let mut f = Fixture::new(&[gpus("a", 40)]);
        assert_eq!(
            f.alloc("a", &[claim(vec![exact("gpu", "gpu", 32)])])
                .unwrap()[0]
                .len(),
            32
        );
        assert!(
            f.alloc("a", &[claim(vec![exact("gpu", "gpu", 33)])])
                .is_err()
        );
        assert!(
            f.alloc(
                "a",
                &[claim(vec![exact("x", "gpu", 20), exact("y", "gpu", 13)])]
            )
            .is_err()
        );
        assert!(
            f.alloc("a", &[claim(vec![all("gpus", "gpu")])]).is_err(),
            "40 matching devices exceed 32"
        );
    }

    #[test]
    fn first_available_tries_subrequests_in_order() {
        let mut f = Fixture::new(&[gpus("a", 2)]);
        let req = DeviceRequest {
            name: "gpu".into(),
            first_available: Some(vec![
                DeviceSubRequest {
                    name: "big".into(),
                    device_class_name: "gpu".into(),
                    count: Some(4),
                    ..Default::default()
                },
                DeviceSubRequest {
                    name: "small".into(),
                    device_class_name: "gpu".into(),
                    count: Some(2),
                    ..Default::default()
                },
                DeviceSubRequest {
                    name: "tiny".into(),
                    device_class_name: "gpu".into(),
                    count: Some(1),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let c = claim(vec![req]);
        let mut planned = plan_claim(&c, &classes(), &mut f.sel).unwrap();
        let r = allocate(
            &f.inv,
            &mut f.sel,
            &mut Scratch::default(),
            "a",
            &BTreeMap::new(),
            std::slice::from_mut(&mut planned),
            &|_: u32| false,
            None,
        )
        .unwrap();
        assert_eq!(
            r[0].results.iter().map(|d| &*d.request).collect::<Vec<_>>(),
            ["gpu/small", "gpu/small"]
        );
        assert_eq!(r[0].subrequest_choices, [(1, 3)]);
        f.take("a-gpu-0");
        assert_eq!(
            f.alloc("a", &[c]).unwrap()[0],
            pairs(&[("gpu/tiny", "a-gpu-1")])
        );
    }

    #[test]
    fn match_attribute_keeps_two_requests_on_equal_values() {
        // NICs and GPUs on two NUMA nodes; only numa 1 has both free.
        let numa = |s: &mut ResourceSliceSpec, values: &[i64]| {
            for (d, v) in s.devices.as_mut().unwrap().iter_mut().zip(values) {
                d.attributes.as_mut().unwrap().insert(
                    "numa.example.com/node".into(),
                    k8s_openapi::api::resource::v1::DeviceAttribute {
                        int: Some(*v),
                        ..Default::default()
                    },
                );
            }
        };
        let mut g = slice("gpu.example.com", "a", "a-gpu", 1, 1, &["gpu-0", "gpu-1"]);
        numa(&mut g, &[0, 1]);
        let mut n = slice("nic.example.com", "a", "a-nic", 1, 1, &["nic-0", "nic-1"]);
        numa(&mut n, &[1, 0]);
        let mut f = Fixture::new(&[g, n]);
        let mut c = claim(vec![exact("gpu", "gpu", 1), exact("nic", "nic", 1)]);
        c.constraints = Some(vec![DeviceConstraint {
            match_attribute: Some("numa.example.com/node".into()),
            requests: Some(vec!["gpu".into(), "nic".into()]),
            ..Default::default()
        }]);
        // gpu-0 (numa 0) pairs with nic-1 (numa 0).
        assert_eq!(
            f.alloc("a", std::slice::from_ref(&c)).unwrap()[0],
            pairs(&[("gpu", "gpu-0"), ("nic", "nic-1")])
        );
        f.take("nic-1");
        // Backtracks: gpu-1 (numa 1) with nic-0 (numa 1).
        assert_eq!(
            f.alloc("a", std::slice::from_ref(&c)).unwrap()[0],
            pairs(&[("gpu", "gpu-1"), ("nic", "nic-0")])
        );
        f.take("gpu-1");
        assert!(f.alloc("a", &[c]).is_err());
    }

    #[test]
    fn match_attribute_fails_for_devices_without_the_attribute() {
        let mut f = Fixture::new(&[gpus("a", 2)]);
        let mut c = claim(vec![exact("gpu", "gpu", 2)]);
        c.constraints = Some(vec![DeviceConstraint {
            match_attribute: Some("gpu.example.com/missing".into()),
            ..Default::default()
        }]);
        assert!(f.alloc("a", &[c]).is_err());
    }

    #[test]
    fn distinct_attribute_needs_different_values() {
        let mut f = Fixture::new(&[gpus("a", 3)]);
        let mut c = claim(vec![exact("gpu", "gpu", 3)]);
        c.constraints = Some(vec![DeviceConstraint {
            distinct_attribute: Some("gpu.example.com/index".into()),
            ..Default::default()
        }]);
        assert_eq!(f.alloc("a", &[c]).unwrap()[0].len(), 3);
    }

    #[test]
    fn cel_runtime_errors_skip_the_device_and_are_reported() {
        let mut f = Fixture::new(&[gpus("a", 2)]);
        let c = claim(vec![with_selector(
            exact("gpu", "gpu", 1),
            r#"device.attributes["gpu.example.com"].model == "x""#,
        )]);
        let err = f.alloc("a", &[c]).unwrap_err();
        assert!(
            err.details[0].to_lowercase().contains("no such key: model"),
            "{err:?}"
        );
    }

    #[test]
    fn errors_on_unknown_device_class() {
        let mut sel = Selectors::new();
        let err = plan_claim(&claim(vec![exact("gpu", "tpu", 1)]), &classes(), &mut sel)
            .err()
            .unwrap();
        assert_eq!(err, "request gpu: device class tpu does not exist");
    }

    #[test]
    fn node_local_devices_pin_the_allocation_to_the_node() {
        let mut f = Fixture::new(&[gpus("a", 1)]);
        let mut planned =
            plan_claim(&claim(vec![exact("gpu", "gpu", 1)]), &classes(), &mut f.sel).unwrap();
        let r = allocate(
            &f.inv,
            &mut f.sel,
            &mut Scratch::default(),
            "a",
            &BTreeMap::new(),
            std::slice::from_mut(&mut planned),
            &|_: u32| false,
            None,
        )
        .unwrap();
        assert_eq!(
            r[0].node_selector(&f.inv),
            Some(node_selector::for_node("a"))
        );
    }

    #[test]
    fn devices_for_all_nodes_need_no_node_selector() {
        let mut s = gpus("x", 1);
        s.node_name = None;
        s.all_nodes = Some(true);
        let mut f = Fixture::new(&[s]);
        let mut planned =
            plan_claim(&claim(vec![exact("gpu", "gpu", 1)]), &classes(), &mut f.sel).unwrap();
        let r = allocate(
            &f.inv,
            &mut f.sel,
            &mut Scratch::default(),
            "any",
            &BTreeMap::new(),
            std::slice::from_mut(&mut planned),
            &|_: u32| false,
            None,
        )
        .unwrap();
        assert_eq!(r[0].node_selector(&f.inv), None);
    }

    #[test]
    fn incomplete_pools_are_reported() {
        let s = slice("gpu.example.com", "a", "a", 1, 2, &["gpu-0"]);
        let mut f = Fixture::new(&[s]);
        let err = f
            .alloc("a", &[claim(vec![exact("gpu", "gpu", 1)])])
            .unwrap_err();
        assert!(
            err.details
                .iter()
                .any(|d| d.contains("is currently being updated")),
            "{err:?}"
        );
    }
}
