//! A [`Slot`] holds the instance that serves one configured plugin and replaces it atomically:
//! after a hot swap (new module) or a trap (same module, fresh instance).
//!
//! Replacing follows one path: start a new instance, check its metadata against the slot's
//! contract, replay the current cluster state into it, health-check it, then swap it in. Object
//! events that arrive meanwhile are recorded in a log and replayed to the new instance under the
//! lock that also guards event delivery, so none is lost. Scheduling cycles pin the instance
//! they started with (see the adapter), so a swap never splits a cycle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::{Mutex, MutexGuard};
use wasm_scheduler_sdk::{Metadata, ObjectEvent, Status};

use super::error::WasmError;
use super::instance::{Budget, CallError, Instance};
use super::module::Module;
use crate::framework::StateReplay;

/// Counters of one configured plugin, shared by all its slots.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Calls that trapped, hit the deadline or the memory cap.
    pub traps: AtomicU64,
    /// Calls stopped by the call deadline (counted in `traps` too).
    pub deadline_hits: AtomicU64,
    /// Time of calls into the guest by extension point.
    pub call_latency: super::metrics::CallLatency,
    /// Traps since the last successful call.
    pub consecutive_traps: AtomicU64,
    /// Instances replaced after a trap.
    pub respawns: AtomicU64,
    /// Outputs rejected by the output limits (wrong length, size, undeclared kind).
    pub rejected_outputs: AtomicU64,
    /// Successful hot swaps.
    pub reloads_ok: AtomicU64,
    /// Rejected hot swaps.
    pub reloads_failed: AtomicU64,
    /// The last trap or reload error.
    pub last_error: Mutex<Option<String>>,
}

/// What a slot was created with; the same for every instance it runs.
pub struct SlotConfig {
    /// The plugin's configured name.
    pub name: Arc<str>,
    /// Its args as JSON.
    pub args: String,
    /// Where to get the current state from.
    pub state: Arc<dyn StateReplay>,
    /// Time and memory per instance.
    pub budget: Budget,
    /// Counters shared by the plugin's slots.
    pub stats: Arc<PluginStats>,
}

/// The serving instance of one configured plugin, replaceable at any time.
pub struct Slot {
    cfg: SlotConfig,
    /// Extension points and subscriptions of the first instance; replacements must match, since
    /// the framework read them once.
    pub contract: Metadata,
    current: ArcSwap<Instance>,
    /// `Some` while a replacement is prepared: events to replay to it before the swap.
    log: Mutex<Option<Vec<ObjectEvent>>>,
    swap: Mutex<()>,
}

/// A new instance, prepared and health-checked, not yet serving. Dropping it abandons it.
pub struct Prepared<'a> {
    slot: &'a Slot,
    _swap: MutexGuard<'a, ()>,
    instance: Option<Instance>,
}

impl Slot {
    /// Starts the first instance of `module` and feeds it the current state.
    ///
    /// # Errors
    /// The step that failed: instantiate, init, metadata, replay or health.
    pub fn new(module: &Arc<Module>, cfg: SlotConfig) -> Result<Slot, WasmError> {
        let first = Instance::start(module, &cfg.args, cfg.budget)?;
        let contract = first.metadata.clone();
        let slot = Slot {
            cfg,
            contract,
            current: ArcSwap::from_pointee(first),
            log: Mutex::new(None),
            swap: Mutex::new(()),
        };
        let first = slot.current.load_full();
        let events = slot.cfg.state.replay(&slot.contract.subscriptions);
        first
            .replay(&events)
            .map_err(|e| WasmError::step(&slot.cfg.name, "replay", e.0))?;
        first
            .health()
            .map_err(|e| WasmError::step(&slot.cfg.name, "health", e.0))?;
        Ok(slot)
    }

    /// The plugin's configured name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Counters of the plugin.
    pub fn stats(&self) -> &Arc<PluginStats> {
        &self.cfg.stats
    }

    /// The serving instance. If it is poisoned, a fresh instance of the same module replaces it
    /// first; if that fails, the poisoned one is returned and its calls fail.
    pub fn current(&self) -> Arc<Instance> {
        let inst = self.current.load_full();
        if !inst.is_poisoned() {
            return inst;
        }
        self.respawn(&inst);
        self.current.load_full()
    }

    /// The serving instance without replacing a poisoned one.
    pub fn peek(&self) -> Arc<Instance> {
        self.current.load_full()
    }

    fn respawn(&self, poisoned: &Arc<Instance>) {
        let module = poisoned.module.clone();
        let Some(prepared) = self.prepare_if(&module, |cur| cur.id == poisoned.id) else {
            return;
        };
        match prepared.and_then(Prepared::commit) {
            Ok(id) => {
                self.cfg.stats.respawns.fetch_add(1, Ordering::Relaxed);
                tracing::info!(plugin = %self.cfg.name, old = poisoned.id, new = id, "replaced a trapped plugin instance");
            }
            Err(e) => {
                tracing::error!(plugin = %self.cfg.name, error = %e, "could not replace a trapped plugin instance");
                *self.cfg.stats.last_error.lock() = Some(e.to_string());
            }
        }
    }

    /// Delivers an object event to the serving instance (and to the log of a replacement being
    /// prepared): at once if it is idle, else before its next call (see
    /// [`Instance::push_event`]). A trap poisons the instance; the replacement is fed the whole
    /// state anyway.
    pub fn on_event(&self, event: &ObjectEvent) {
        if !self.contract.subscriptions.contains(&event.resource) {
            return;
        }
        let mut log = self.log.lock();
        if let Some(log) = log.as_mut() {
            log.push(event.clone());
        }
        // Queued under the log lock: a replacement committed after this point gets the event
        // from the log; one committed before it is the instance loaded here.
        let inst = self.current.load_full();
        let started = std::time::Instant::now();
        let result = inst.push_event(super::convert::event_out(event));
        self.cfg
            .stats
            .call_latency
            .observe("on-event", started.elapsed());
        if let Err(e) = result {
            self.trapped("on-event", &e);
        }
    }

    /// Counts and logs a failed call, and returns the error status for the pod.
    pub fn trapped(&self, point: &str, e: &CallError) -> Status {
        let stats = &self.cfg.stats;
        stats.traps.fetch_add(1, Ordering::Relaxed);
        if e.is_deadline() {
            stats.deadline_hits.fetch_add(1, Ordering::Relaxed);
        }
        let streak = stats.consecutive_traps.fetch_add(1, Ordering::Relaxed) + 1;
        let msg = format!("plugin {}: {point}: {}", self.cfg.name, e.0);
        tracing::warn!(plugin = %self.cfg.name, point, consecutive = streak, "{msg}");
        *stats.last_error.lock() = Some(msg.clone());
        Status::error(msg)
    }

    /// Records a successful call (resets the trap streak).
    pub fn succeeded(&self) {
        let streak = &self.cfg.stats.consecutive_traps;
        if streak.load(Ordering::Relaxed) != 0 {
            streak.store(0, Ordering::Relaxed);
        }
    }

    /// Counts and logs an output that broke a limit, and returns the error status for the pod.
    pub fn rejected_output(&self, message: String) -> Status {
        self.cfg
            .stats
            .rejected_outputs
            .fetch_add(1, Ordering::Relaxed);
        let msg = format!("plugin {}: {message}", self.cfg.name);
        tracing::warn!(plugin = %self.cfg.name, "{msg}");
        Status::error(msg)
    }

    /// Prepares an instance of `module` to replace the serving one (hot swap). Holds the swap
    /// lock until the result is committed or dropped.
    ///
    /// # Errors
    /// The step that failed: instantiate, init, metadata, replay or health.
    pub fn prepare(&self, module: &Arc<Module>) -> Result<Prepared<'_>, WasmError> {
        self.prepare_if(module, |_| true)
            .expect("the condition always holds")
    }

    fn prepare_if(
        &self,
        module: &Arc<Module>,
        still_needed: impl FnOnce(&Instance) -> bool,
    ) -> Option<Result<Prepared<'_>, WasmError>> {
        let guard = self.swap.lock();
        if !still_needed(&self.current.load()) {
            return None;
        }
        *self.log.lock() = Some(Vec::new());
        let result = self.start_replacement(module);
        Some(match result {
            Ok(instance) => Ok(Prepared {
                slot: self,
                _swap: guard,
                instance: Some(instance),
            }),
            Err(e) => {
                *self.log.lock() = None;
                Err(e)
            }
        })
    }

    fn start_replacement(&self, module: &Arc<Module>) -> Result<Instance, WasmError> {
        let name = &*self.cfg.name;
        let inst = Instance::start(module, &self.cfg.args, self.cfg.budget)?;
        let (mut old_points, mut new_points) = (
            self.contract.extension_points.clone(),
            inst.metadata.extension_points.clone(),
        );
        old_points.sort();
        new_points.sort();
        if old_points != new_points {
            return Err(WasmError::step(
                name,
                "metadata",
                format!(
                    "extension points changed from {old_points:?} to {new_points:?}; restart the scheduler to change them"
                ),
            ));
        }
        let (mut old_subs, mut new_subs) = (
            self.contract.subscriptions.clone(),
            inst.metadata.subscriptions.clone(),
        );
        old_subs.sort();
        new_subs.sort();
        if old_subs != new_subs {
            return Err(WasmError::step(
                name,
                "metadata",
                format!(
                    "subscriptions changed from {old_subs:?} to {new_subs:?}; restart the scheduler to change them"
                ),
            ));
        }
        let events = self.cfg.state.replay(&self.contract.subscriptions);
        inst.replay(&events)
            .map_err(|e| WasmError::step(name, "replay", e.0))?;
        inst.health()
            .map_err(|e| WasmError::step(name, "health", e.0))?;
        Ok(inst)
    }
}

impl Prepared<'_> {
    /// The new instance's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.instance.as_ref().expect("not yet committed").metadata
    }

    /// Replays the events that arrived during preparation and swaps the instance in; returns its
    /// id. Event delivery waits meanwhile, so the new instance misses nothing.
    ///
    /// # Errors
    /// Step `replay` if the tail of events trapped; the old instance keeps serving.
    pub fn commit(mut self) -> Result<u64, WasmError> {
        let slot = self.slot;
        let instance = self.instance.take().expect("committed once");
        let mut log = slot.log.lock();
        let tail = log.take().unwrap_or_default();
        instance
            .replay(&tail)
            .map_err(|e| WasmError::step(&slot.cfg.name, "replay", e.0))?;
        let id = instance.id;
        slot.current.store(Arc::new(instance));
        Ok(id)
    }
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        // Abandoned or committed: either way no replacement is being prepared any more.
        // Event delivery never takes the swap lock we hold, so this cannot deadlock.
        *self.slot.log.lock() = None;
    }
}
