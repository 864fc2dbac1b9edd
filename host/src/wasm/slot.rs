//! A [`Slot`] holds the instance that serves one configured plugin and replaces it atomically:
//! after a hot swap (new module) or a trap (same module, fresh instance).
//!
//! Replacing follows one path: start a new instance, check its metadata against the slot's
//! contract, replay the current cluster state into it, health-check it, then swap it in. Object
//! events that arrive meanwhile are recorded in a log and replayed to the new instance under the
//! lock that also guards event delivery, so none is lost. Scheduling cycles pin the instance
//! they started with (see the adapter), so a swap never splits a cycle.
//!
//! A poison object (one whose `on_event` traps or runs past the deadline) would make every
//! replacement fail the same way during replay, so it is quarantined ([`Quarantine`]): named in
//! the log, never fed again, and a pod that is itself quarantined fails with that reason. When
//! a failed batch carried several objects, the replacement is fed those one by one with the
//! call deadline, which names the culprit. Replacements that fail anyway, and runs of traps
//! with no successful call in between, back off exponentially ([`RESTART_BACKOFF_INITIAL`] up
//! to [`RESTART_BACKOFF_MAX`]); meanwhile calls fail at once with a reason that says so.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::{Mutex, MutexGuard};
use wasm_scheduler_sdk::{EventAction, Metadata, ObjectEvent, Status};

use super::error::WasmError;
use super::instance::{Budget, CallError, Instance};
use super::module::Module;
use super::quarantine::{ObjectKey, Quarantine};
use super::sandbox::LogLimiter;
use crate::framework::StateReplay;

/// First wait before restarting a plugin whose replacement failed (or that keeps trapping).
pub const RESTART_BACKOFF_INITIAL: Duration = Duration::from_millis(500);
/// Longest wait between restarts.
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Traps in a row (no successful call between) that are answered by an immediate restart;
/// beyond them restarts back off.
pub const FREE_RESTARTS: u64 = 5;
/// Attempts of one restart that may each quarantine an object or find suspects and go again.
const ATTEMPTS_PER_RESTART: usize = 8;

/// The wait before the `n`-th restart in a row that backs off (n ≥ 1): doubling from
/// [`RESTART_BACKOFF_INITIAL`], at most [`RESTART_BACKOFF_MAX`].
pub fn restart_backoff(n: u64) -> Duration {
    let shift = n.saturating_sub(1).min(16) as u32;
    RESTART_BACKOFF_INITIAL
        .saturating_mul(1 << shift)
        .min(RESTART_BACKOFF_MAX)
}

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
    /// Replacements of a trapped instance that failed.
    pub respawn_failures: AtomicU64,
    /// The plugin's log budget (shared by its instances); counts dropped lines.
    pub logs: Arc<LogLimiter>,
    /// Objects the plugin is no longer fed.
    pub quarantine: Quarantine,
    /// Set while a trapped instance could not be replaced: why, and when the next try is.
    pub down: Mutex<Option<String>>,
}

impl PluginStats {
    /// Why the plugin counts as failed, if it does: an object is quarantined (the plugin
    /// misses it), or a trapped instance could not be replaced.
    pub fn failure(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(down) = self.down.lock().clone() {
            parts.push(down);
        }
        let q = self.quarantine.list();
        if let Some(first) = q.first() {
            let more = match q.len() {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            };
            parts.push(format!("not fed {first}{more}"));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
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
    /// Objects of a failed multi-object batch: fed one at a time to the next instance.
    suspects: Mutex<BTreeSet<ObjectKey>>,
    restart: Mutex<Restart>,
}

/// The restart state of a slot.
#[derive(Debug, Default)]
struct Restart {
    /// Replacements in a row that failed.
    failures: u64,
    /// Traps since the last successful call.
    traps: u64,
    /// When the last trap or failed replacement happened.
    last: Option<Instant>,
}

impl Restart {
    /// Restarts in a row that count towards the backoff.
    fn strikes(&self) -> u64 {
        self.failures + self.traps.saturating_sub(FREE_RESTARTS)
    }

    /// When the next restart may run; `None`: now.
    fn not_before(&self) -> Option<Instant> {
        match (self.strikes(), self.last) {
            (0, _) | (_, None) => None,
            (n, Some(t)) => Some(t + restart_backoff(n)),
        }
    }
}

/// Why feeding state to a new instance failed, and whether the slot learnt something (an
/// object quarantined, suspects found) that makes another attempt worth it at once.
struct FeedError {
    error: WasmError,
    progress: bool,
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
        let first = Instance::start(module, &cfg.args, cfg.budget, cfg.stats.logs.clone())?;
        let contract = first.metadata.clone();
        let slot = Slot {
            cfg,
            contract,
            current: ArcSwap::from_pointee(first),
            log: Mutex::new(None),
            swap: Mutex::new(()),
            suspects: Mutex::new(BTreeSet::new()),
            restart: Mutex::new(Restart::default()),
        };
        let mut first = slot.current.load_full();
        for attempt in 1.. {
            match slot.feed(&first) {
                Ok(()) => break,
                Err(e) if e.progress && attempt < ATTEMPTS_PER_RESTART => {
                    first = Arc::new(Instance::start(
                        module,
                        &slot.cfg.args,
                        slot.cfg.budget,
                        slot.cfg.stats.logs.clone(),
                    )?);
                }
                Err(e) => return Err(e.error),
            }
        }
        slot.current.store(first);
        Ok(slot)
    }

    /// The plugin's configured name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The plugin's args as JSON.
    pub(crate) fn args(&self) -> &str {
        &self.cfg.args
    }

    /// Counters of the plugin.
    pub fn stats(&self) -> &Arc<PluginStats> {
        &self.cfg.stats
    }

    /// The serving instance. If it is poisoned, a fresh instance of the same module replaces it
    /// first (unless restarts are backing off); if that fails, the poisoned one is returned and
    /// its calls fail.
    pub fn current(&self) -> Arc<Instance> {
        let inst = self.current.load_full();
        if !inst.is_poisoned() {
            return inst;
        }
        if self
            .restart
            .lock()
            .not_before()
            .is_some_and(|t| Instant::now() < t)
        {
            return inst;
        }
        self.respawn(&inst);
        self.current.load_full()
    }

    /// Why the pod with this uid must not be scheduled by this plugin: it is quarantined.
    pub fn quarantined_pod(&self, uid: &str) -> Option<String> {
        let (key, reason) = self.cfg.stats.quarantine.pod(uid)?;
        Some(format!(
            "plugin {}: {key} is quarantined: {reason}; the plugin is no longer fed this object until it is deleted",
            self.cfg.name
        ))
    }

    /// Quarantines the object whose `on-event` failed on `inst`, when its failed batch held
    /// exactly one; else remembers the batch as suspects. True if something was learnt.
    fn attribute(&self, inst: &Instance) -> bool {
        let failed = inst.take_failed_objects();
        let reason = inst
            .poison_cause()
            .unwrap_or_else(|| "on-event failed".into());
        match failed.len() {
            0 => false,
            1 => self.quarantine(failed.into_iter().next().expect("one"), &reason),
            _ => {
                let q = &self.cfg.stats.quarantine;
                let mut suspects = self.suspects.lock();
                let before = suspects.len();
                suspects.extend(failed.into_iter().filter(|k| !q.contains(k)));
                suspects.len() > before
            }
        }
    }

    /// Stops feeding `key` to the plugin; logs it once. True if it was not quarantined yet.
    fn quarantine(&self, key: ObjectKey, reason: &str) -> bool {
        self.suspects.lock().remove(&key);
        let what = key.to_string();
        let new = self
            .cfg
            .stats
            .quarantine
            .insert(key, format!("on-event failed for it ({reason})"));
        if new {
            tracing::error!(plugin = %self.cfg.name, object = %what, reason, "plugin {}: quarantined {what}: its on-event failed ({reason}); the plugin is no longer fed this object until it is deleted", self.cfg.name);
        }
        new
    }

    /// Feeds the current state (without quarantined objects) to `inst` and health-checks it.
    /// Suspects go last, one at a time with the call deadline.
    fn feed(&self, inst: &Instance) -> Result<(), FeedError> {
        let name = &*self.cfg.name;
        let q = &self.cfg.stats.quarantine;
        let suspects = self.suspects.lock().clone();
        let mut events = self.cfg.state.replay(&self.contract.subscriptions);
        let mut single = Vec::new();
        if !q.is_empty() || !suspects.is_empty() {
            let mut kept = Vec::with_capacity(events.len());
            for ev in events {
                let key = ObjectKey::of(&ev.resource, &ev.object);
                if q.contains(&key) {
                    continue;
                }
                if suspects.contains(&key) {
                    single.push((key, ev));
                } else {
                    kept.push(ev);
                }
            }
            events = kept;
        }
        let fail = |e: CallError, progress: bool| FeedError {
            error: WasmError::step(name, "replay", e.message),
            progress,
        };
        if let Err(e) = inst.replay(&events) {
            let progress = self.attribute(inst);
            return Err(fail(e, progress));
        }
        for (key, ev) in single {
            if let Err(e) = inst.replay_one(&ev) {
                inst.take_failed_objects();
                self.quarantine(key, &e.message);
                return Err(fail(e, true));
            }
            self.suspects.lock().remove(&key);
        }
        inst.health().map_err(|e| FeedError {
            error: WasmError::step(name, "health", e.message),
            progress: false,
        })
    }

    /// The serving instance without replacing a poisoned one.
    pub fn peek(&self) -> Arc<Instance> {
        self.current.load_full()
    }

    fn respawn(&self, poisoned: &Arc<Instance>) {
        self.attribute(poisoned);
        let module = poisoned.module.clone();
        let Some(prepared) = self.prepare_if(&module, |cur| cur.id == poisoned.id) else {
            return;
        };
        let stats = &self.cfg.stats;
        match prepared.and_then(Prepared::commit) {
            Ok(id) => {
                stats.respawns.fetch_add(1, Ordering::Relaxed);
                self.restart.lock().failures = 0;
                *stats.down.lock() = None;
                tracing::info!(plugin = %self.cfg.name, old = poisoned.id, new = id, "replaced a trapped plugin instance");
            }
            Err(e) => {
                stats.respawn_failures.fetch_add(1, Ordering::Relaxed);
                let wait = {
                    let mut r = self.restart.lock();
                    r.failures += 1;
                    r.last = Some(Instant::now());
                    restart_backoff(r.strikes())
                };
                let msg = format!(
                    "plugin {}: could not restart after a trap ({e}); next attempt in {wait:?}",
                    self.cfg.name
                );
                tracing::error!(plugin = %self.cfg.name, error = %e, retry_in = ?wait, "could not replace a trapped plugin instance");
                *stats.last_error.lock() = Some(e.to_string());
                *stats.down.lock() = Some(msg);
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
        let q = &self.cfg.stats.quarantine;
        if !q.is_empty() {
            let key = ObjectKey::of(&event.resource, &event.object);
            if q.contains(&key) {
                if event.action == EventAction::Deleted && q.remove(&key) {
                    tracing::info!(plugin = %self.cfg.name, object = %key, "quarantined object deleted; quarantine lifted");
                }
                return;
            }
        }
        let mut log = self.log.lock();
        if let Some(log) = log.as_mut() {
            log.push(event.clone());
        }
        // Queued under the log lock: a replacement committed after this point gets the event
        // from the log; one committed before it is the instance loaded here.
        let inst = self.current.load_full();
        let started = std::time::Instant::now();
        let result = inst.push_event(event.clone());
        self.cfg
            .stats
            .call_latency
            .observe("on-event", started.elapsed());
        if let Err(e) = result {
            self.trapped("on-event", &e);
            drop(log);
            self.attribute(&inst);
        }
    }

    /// Counts and logs a failed call (the short reason, and the whole error with its wasm
    /// backtrace once, in the same line), and returns the error status for the pod.
    pub fn trapped(&self, point: &str, e: &CallError) -> Status {
        if e.is_unusable() {
            // The trap was counted and logged when it happened; say what the pod waits for.
            let wait = self
                .restart
                .lock()
                .not_before()
                .map(|t| t.saturating_duration_since(Instant::now()));
            let msg = match wait {
                Some(w) if !w.is_zero() => format!(
                    "plugin {}: {point}: {}; restarting after repeated failures in {w:.1?}",
                    self.cfg.name, e.message
                ),
                _ => format!("plugin {}: {point}: {}", self.cfg.name, e.message),
            };
            tracing::debug!(plugin = %self.cfg.name, point, "{msg}");
            return Status::error(msg);
        }
        let stats = &self.cfg.stats;
        stats.traps.fetch_add(1, Ordering::Relaxed);
        if e.is_deadline() {
            stats.deadline_hits.fetch_add(1, Ordering::Relaxed);
        }
        {
            let mut r = self.restart.lock();
            r.traps += 1;
            r.last = Some(Instant::now());
        }
        let streak = stats.consecutive_traps.fetch_add(1, Ordering::Relaxed) + 1;
        let msg = format!("plugin {}: {point}: {}", self.cfg.name, e.message);
        match &e.detail {
            Some(detail) => {
                tracing::warn!(plugin = %self.cfg.name, point, consecutive = streak, detail = %detail, "{msg}")
            }
            None => tracing::warn!(plugin = %self.cfg.name, point, consecutive = streak, "{msg}"),
        }
        *stats.last_error.lock() = Some(msg.clone());
        Status::error(msg)
    }

    /// Records a successful call (resets the trap streak).
    pub fn succeeded(&self) {
        let streak = &self.cfg.stats.consecutive_traps;
        if streak.load(Ordering::Relaxed) != 0 {
            streak.store(0, Ordering::Relaxed);
        }
        let mut r = self.restart.lock();
        if r.traps != 0 {
            r.traps = 0;
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
        let mut attempt = 1;
        loop {
            let inst = self.start_checked(module)?;
            match self.feed(&inst) {
                Ok(()) => return Ok(inst),
                Err(e) if e.progress && attempt < ATTEMPTS_PER_RESTART => attempt += 1,
                Err(e) => return Err(e.error),
            }
        }
    }

    /// Starts an instance of `module` and checks it against the slot's contract.
    fn start_checked(&self, module: &Arc<Module>) -> Result<Instance, WasmError> {
        let name = &*self.cfg.name;
        let inst = Instance::start(
            module,
            &self.cfg.args,
            self.cfg.budget,
            self.cfg.stats.logs.clone(),
        )?;
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
            .map_err(|e| WasmError::step(&slot.cfg.name, "replay", e.message))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_by_doubling_up_to_the_cap() {
        assert_eq!(restart_backoff(1), RESTART_BACKOFF_INITIAL);
        assert_eq!(restart_backoff(2), RESTART_BACKOFF_INITIAL * 2);
        assert_eq!(restart_backoff(4), RESTART_BACKOFF_INITIAL * 8);
        assert_eq!(restart_backoff(100), RESTART_BACKOFF_MAX);
    }

    #[test]
    fn a_few_traps_restart_at_once_and_more_back_off() {
        let mut r = Restart {
            traps: FREE_RESTARTS,
            last: Some(Instant::now()),
            ..Default::default()
        };
        assert_eq!(r.not_before(), None);
        r.traps += 1;
        let t = r.last.unwrap();
        assert_eq!(r.not_before(), Some(t + RESTART_BACKOFF_INITIAL));
        r.failures = 1;
        assert_eq!(r.not_before(), Some(t + RESTART_BACKOFF_INITIAL * 2));
    }
}
