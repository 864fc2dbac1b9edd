//! [`WasmPlugin`]: a Wasm component behind the framework's [`Plugin`] trait.
//!
//! Calls carry references only: the pod's namespace/name/uid and nodes (by name for WIT 0.1.0
//! components, by index since 0.2.0). Objects reach the
//! guest through [`Plugin::on_event`] pushes. The instance a scheduling cycle starts with is
//! pinned in its [`CycleState`] at PreFilter, and the instance that reserved a pod is kept until
//! its binding cycle ends, so a hot swap never splits a cycle and in-flight bindings finish on
//! the old instance.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::instance::{CallError, Instance};
use super::limits;
use super::native;
use super::slot::Slot;
use crate::framework::{
    ClusterEvent, CycleState, ExtensionPoint, NodeInfo, ObjectEvent, PatchIntent, PermitResult,
    Plugin, PodInfo, PostFilterResult, PreFilterResult, ResourceKind, Snapshot, Status,
};

/// What a scheduling cycle pinned: the instance that serves all of its calls.
struct Pin {
    instance: Arc<Instance>,
}

/// A Wasm plugin as the framework sees it.
pub struct WasmPlugin {
    slot: Arc<Slot>,
    pin_key: &'static str,
    points: Vec<ExtensionPoint>,
    /// Pods between Reserve and the end of their binding cycle → the instance that reserved.
    reserved: Mutex<HashMap<String, Arc<Instance>>>,
    /// `bindingTimeout` of the args (see [`Plugin::pre_bind_timeout`]).
    pre_bind_timeout: std::time::Duration,
}

impl WasmPlugin {
    /// Wraps a slot. The plugin takes part in PreFilter even if the guest does not implement it,
    /// to pin its instance for the cycle.
    pub fn new(slot: Arc<Slot>) -> Self {
        let mut points: Vec<ExtensionPoint> = slot
            .contract
            .extension_points
            .iter()
            .copied()
            .filter(|p| *p != ExtensionPoint::Bind)
            .collect();
        if !points.contains(&ExtensionPoint::PreFilter) {
            points.push(ExtensionPoint::PreFilter);
        }
        points.sort();
        points.dedup();
        let pin_key = pin_key(slot.name());
        let pre_bind_timeout = native::pre_bind_timeout(slot.args());
        WasmPlugin {
            pre_bind_timeout,
            slot,
            pin_key,
            points,
            reserved: Mutex::new(HashMap::new()),
        }
    }

    /// The slot serving this plugin (tests and status).
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }

    fn implements(&self, p: ExtensionPoint) -> bool {
        self.slot.contract.extension_points.contains(&p)
    }

    /// The pinned instance of this cycle (replaced if it trapped meanwhile), or the current one.
    fn instance(&self, state: Option<&CycleState>) -> Arc<Instance> {
        match state.and_then(|s| s.read::<Pin>(self.pin_key)) {
            Some(pin) if !pin.instance.is_poisoned() => pin.instance.clone(),
            _ => self.slot.current(),
        }
    }

    fn call<R>(
        &self,
        inst: &Instance,
        point: &'static str,
        f: impl FnOnce(&Instance) -> Result<R, CallError>,
    ) -> Result<R, Status> {
        let started = std::time::Instant::now();
        let result = f(inst);
        self.slot
            .stats()
            .call_latency
            .observe(point, started.elapsed());
        match result {
            Ok(r) => {
                self.slot.succeeded();
                Ok(r)
            }
            Err(e) => {
                let status = self.slot.trapped(point, &e);
                // Replace the poisoned instance now, so the next pod does not wait for it.
                self.slot.current();
                Err(status)
            }
        }
    }

    fn check(&self, point: &str, r: Result<(), String>) -> Result<(), Status> {
        r.map_err(|m| self.slot.rejected_output(format!("{point}: {m}")))
    }

    fn intents(
        &self,
        inst: &Instance,
        point: &'static str,
        v: Vec<PatchIntent>,
    ) -> Result<Vec<PatchIntent>, Status> {
        self.check(point, limits::intents(point, &v, &inst.metadata.patches))?;
        Ok(v)
    }
}

/// One `'static` CycleState key per plugin name, made once.
fn pin_key(name: &str) -> &'static str {
    static KEYS: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut keys = KEYS.get_or_init(Default::default).lock();
    keys.entry(name.to_string())
        .or_insert_with(|| Box::leak(format!("wasm-instance/{name}").into_boxed_str()))
}

impl Plugin for WasmPlugin {
    fn name(&self) -> &str {
        self.slot.name()
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        self.points.clone()
    }

    fn requeue_on(&self) -> Vec<ClusterEvent> {
        self.slot.peek().metadata.requeue_on.clone()
    }

    fn subscriptions(&self) -> Vec<ResourceKind> {
        self.slot.contract.subscriptions.clone()
    }

    fn patchable_kinds(&self) -> Vec<ResourceKind> {
        self.slot.peek().metadata.patches.clone()
    }

    fn on_event(&self, event: &ObjectEvent) {
        self.slot.on_event(event);
    }

    fn pre_enqueue(&self, pod: &PodInfo) -> Status {
        if !self.implements(ExtensionPoint::PreEnqueue) {
            return Status::success();
        }
        let inst = self.slot.current();
        self.call(&inst, "pre-enqueue", |i| i.pre_enqueue(&pod.key))
            .unwrap_or_else(|st| st)
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> PreFilterResult {
        let instance = self.slot.current();
        let pin = Pin {
            instance: instance.clone(),
        };
        let result = if let Some(reason) = self.slot.quarantined_pod(&pod.key.uid) {
            // The plugin never saw this pod; its answers about it would mean nothing.
            PreFilterResult {
                status: Status::error(reason),
                node_names: None,
            }
        } else if self.implements(ExtensionPoint::PreFilter) {
            match self.call(&instance, "pre-filter", |i| i.pre_filter(&pod.key)) {
                Ok(r) => {
                    match self.check(
                        "pre-filter",
                        limits::reasons("pre-filter", std::iter::once(&r.status)),
                    ) {
                        Ok(()) => r,
                        Err(st) => PreFilterResult {
                            status: st,
                            node_names: None,
                        },
                    }
                }
                Err(st) => PreFilterResult {
                    status: st,
                    node_names: None,
                },
            }
        } else {
            PreFilterResult::default()
        };
        state.write(self.pin_key, pin);
        result
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
        if !self.implements(ExtensionPoint::Filter) {
            return vec![Status::success(); nodes.len()];
        }
        let inst = self.instance(Some(state));
        let out = self
            .call(&inst, "filter", |i| i.filter(&pod.key, nodes))
            .and_then(|v| {
                let v = v.map_err(|m| self.slot.rejected_output(format!("filter: {m}")))?;
                self.check("filter", limits::statuses("filter", &v, nodes.len()))
                    .map(|()| v)
            });
        // One error status per node: the framework fails the cycle with its message.
        out.unwrap_or_else(|st| vec![st; nodes.len()])
    }

    fn post_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        rejected: &[(String, Status)],
    ) -> PostFilterResult {
        if !self.implements(ExtensionPoint::PostFilter) {
            return PostFilterResult {
                status: Status::unschedulable("no change"),
                ..Default::default()
            };
        }
        let inst = self.instance(Some(state));
        let r = self
            .call(&inst, "post-filter", |i| i.post_filter(&pod.key, rejected))
            .and_then(|mut r| {
                let intents = std::mem::take(&mut r.intents);
                self.check(
                    "post-filter",
                    limits::intents("post-filter", &intents, &inst.metadata.patches),
                )?;
                r.intents = intents;
                Ok(r)
            });
        r.unwrap_or_else(|status| PostFilterResult {
            status,
            ..Default::default()
        })
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Status {
        if !self.implements(ExtensionPoint::PreScore) {
            return Status::success();
        }
        if native::skipped_pre_filter(state, self.name()) {
            return Status::skip();
        }
        let inst = self.instance(Some(state));
        self.call(&inst, "pre-score", |i| i.pre_score(&pod.key, nodes))
            .unwrap_or_else(|st| st)
    }

    fn score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        if !self.implements(ExtensionPoint::Score) {
            return Ok(vec![0; nodes.len()]);
        }
        let inst = self.instance(Some(state));
        let scores = self.call(&inst, "score", |i| i.score(&pod.key, nodes))??;
        self.check("score", limits::scores("score", &scores, nodes.len()))?;
        Ok(scores)
    }

    fn reserve(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> Result<Vec<PatchIntent>, Status> {
        if !self.implements(ExtensionPoint::Reserve) {
            return Ok(Vec::new());
        }
        let inst = self.instance(Some(state));
        let out = self.call(&inst, "reserve", |i| i.reserve(&pod.key, node))??;
        let intents = self.intents(&inst, "reserve", out)?;
        self.reserved.lock().insert(pod.key.uid.clone(), inst);
        Ok(intents)
    }

    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Vec<PatchIntent> {
        let reserved = self.reserved.lock().remove(&pod.key.uid);
        if !self.implements(ExtensionPoint::Reserve) {
            return Vec::new();
        }
        let inst = match reserved {
            Some(i) if !i.is_poisoned() => i,
            _ => self.instance(Some(state)),
        };
        // Unreserve cannot fail the pod further; a bad answer is logged and yields no intents.
        self.call(&inst, "unreserve", |i| i.unreserve(&pod.key, node))
            .and_then(|v| self.intents(&inst, "unreserve", v))
            .unwrap_or_default()
    }

    fn permit(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> PermitResult {
        if !self.implements(ExtensionPoint::Permit) {
            return PermitResult::default();
        }
        let inst = self.instance(Some(state));
        let r = self
            .call(&inst, "permit", |i| i.permit(&pod.key, node))
            .and_then(|r| {
                self.check("permit", limits::permit_uids(r.allow.len(), r.reject.len()))?;
                Ok(r)
            });
        r.unwrap_or_else(|status| PermitResult {
            status,
            ..Default::default()
        })
    }

    fn pre_bind_timeout(&self) -> std::time::Duration {
        self.pre_bind_timeout
    }

    fn pre_bind(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> Result<Vec<PatchIntent>, Status> {
        if !self.implements(ExtensionPoint::PreBind) {
            return Ok(Vec::new());
        }
        let inst = self.instance(Some(state));
        let out = self.call(&inst, "pre-bind", |i| i.pre_bind(&pod.key, node))??;
        self.intents(&inst, "pre-bind", out)
    }

    fn post_bind(&self, pod: &PodInfo, node: &str) {
        let reserved = self.reserved.lock().remove(&pod.key.uid);
        if !self.implements(ExtensionPoint::PostBind) {
            return;
        }
        let inst = match reserved {
            Some(i) if !i.is_poisoned() => i,
            _ => self.slot.current(),
        };
        let _ = self.call(&inst, "post-bind", |i| i.post_bind(&pod.key, node));
    }
}
