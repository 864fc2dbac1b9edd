//! One live instance of a plugin: its own store (memory cap, epoch deadline), the exported
//! functions, and the metadata it reported. An instance that trapped is *poisoned*: wasmtime
//! leaves its state unreliable, so it is never called again and its slot replaces it.
//!
//! Object events do not wait for a busy instance: [`Instance::push_event`] queues the event
//! and delivers the queue at once only if the instance is idle. Every call delivers what is
//! queued before it runs, so a call sees every event pushed before it started, exactly as if
//! delivery had been synchronous, while the watch threads that push events never block behind
//! a long Filter (they also serve the API server in-process).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use wasm_scheduler_sdk::{
    FieldSelection, Metadata, ObjectEvent, PatchIntent, PermitResult, PodRef, PostFilterResult,
    PreFilterResult, Status,
};
use wasmtime::Store;

use super::bindings::{v0_1, v0_2, v0_3};
use super::convert;
use super::engine::{self, deadline_ticks};
use super::error::{WasmError, chain};
use super::fields::Selection;
use super::module::{Module, Pre};
use super::node_index;
use super::quarantine::ObjectKey;
use super::sandbox::{HostState, LogLimiter};
use crate::framework::NodeInfo;

/// Events per `on-event` call when state is replayed into a new instance.
const REPLAY_BATCH: usize = 256;

/// Events per `on-event` call when queued events are delivered; each call has the call
/// deadline, so a batch stays small enough that a plugin spending a normal time per event
/// cannot hit it.
const QUEUE_BATCH: usize = 32;

/// Time and memory an instance may use.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Deadline of one extension point call.
    pub call: Duration,
    /// Deadline of instantiation, `init`, each replay batch, and `health`.
    pub setup: Duration,
    /// Cap on the instance's linear memory, in bytes.
    pub memory: usize,
}

/// A failed call. The instance is poisoned from then on.
#[derive(Debug, Clone)]
pub struct CallError {
    /// One short line for the pod's reason: what happened and the first frame of a trap.
    pub message: String,
    /// The whole error (cause chain and wasm backtrace) for the log; `None` when `message`
    /// says it all.
    pub detail: Option<String>,
}

impl CallError {
    fn new(message: impl Into<String>) -> Self {
        CallError {
            message: message.into(),
            detail: None,
        }
    }

    /// Whether the call was stopped by its deadline (`describe` names it first).
    pub fn is_deadline(&self) -> bool {
        self.message.starts_with(DEADLINE_EXCEEDED)
    }

    /// Whether the call never ran because the instance had trapped before.
    pub fn is_unusable(&self) -> bool {
        self.message.starts_with(UNUSABLE)
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// How `describe` starts the message of a call stopped by its deadline.
const DEADLINE_EXCEEDED: &str = "deadline of ";
/// How a call on a poisoned instance fails.
const UNUSABLE: &str = "instance is unusable after an earlier trap";
/// Longest part of a plugin's last error line (its panic message) kept in a reason.
const MAX_LOGGED_IN_REASON: usize = 300;

/// The component's exports, by the WIT version it was built against.
enum Api {
    V0_1(v0_1::Plugin),
    V0_2 {
        plugin: v0_2::Plugin,
        /// How many node indices the instance has heard through `nodes-added`.
        announced: u32,
    },
    V0_3 {
        plugin: v0_3::Plugin,
        /// As for 0.2.0.
        announced: u32,
    },
}

struct Live {
    store: Store<HostState>,
    api: Api,
}

/// Tells an instance of 0.2.0 or later the node names it has not heard yet (every index given
/// out so far), through `nodes_added(store, first, names)`.
fn announce(
    announced: &mut u32,
    store: &mut Store<HostState>,
    nodes_added: impl FnOnce(&mut Store<HostState>, u32, &[String]) -> wasmtime::Result<()>,
) -> wasmtime::Result<()> {
    if *announced < node_index::len() {
        let names = node_index::names_from(*announced);
        nodes_added(&mut *store, *announced, &names)?;
        *announced += names.len() as u32;
    }
    Ok(())
}

/// One call into `$live`'s exports whatever its WIT version: `$args = $make` builds the
/// arguments with that version's conversions `$c` (which may give out node indices), then
/// the instance hears any new node names, then `$call` runs with `$g` the exports and
/// `$store` the store, and converts its result to SDK types.
macro_rules! by_version {
    ($live:expr, |$g:ident, $c:ident, $store:ident| $args:ident = $make:expr => $call:expr) => {{
        let Live { store: $store, api } = $live;
        match api {
            Api::V0_1(p) => {
                #[allow(unused_imports)]
                use convert::v0_1 as $c;
                let $args = $make;
                let $g = p.kube_scheduler_plugin_plugin_api();
                $call
            }
            Api::V0_2 { plugin, announced } => {
                by_version!(@indexed v0_2, plugin, announced, |$g, $c, $store| $args = $make => $call)
            }
            Api::V0_3 { plugin, announced } => {
                by_version!(@indexed v0_3, plugin, announced, |$g, $c, $store| $args = $make => $call)
            }
        }
    }};
    // The versions with node indices: the instance hears new node names before the call.
    (@indexed $ver:ident, $p:ident, $announced:ident, |$g:ident, $c:ident, $store:ident| $args:ident = $make:expr => $call:expr) => {{
        #[allow(unused_imports)]
        use convert::$ver as $c;
        let $args = $make;
        let $g = $p.kube_scheduler_plugin_plugin_api();
        announce($announced, $store, |s, first, names| $g.call_nodes_added(s, first, names))?;
        $call
    }};
}

/// A running instance of a module.
pub struct Instance {
    /// Unique per process, for logs and to tell instances apart.
    pub id: u64,
    /// The module it runs.
    pub module: Arc<Module>,
    /// What it reported from `metadata()` after `init`.
    pub metadata: Metadata,
    /// The fields it reads (WIT 0.3.0), applied to every event it is pushed.
    selection: Selection,
    budget: Budget,
    live: Mutex<Live>,
    /// Events pushed while the instance was busy, delivered before its next call.
    queued: Mutex<Vec<ObjectEvent>>,
    poisoned: AtomicBool,
    /// Why it is poisoned (the short message of the failed call).
    cause: Mutex<Option<String>>,
    /// The objects of the `on-event` batch that failed, if that is what poisoned it.
    failed_objects: Mutex<Vec<ObjectKey>>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("id", &self.id)
            .field("module", &self.module.sha256)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Instantiates `module`, calls `init(args)` and reads `metadata()`.
    ///
    /// # Errors
    /// [`WasmError::Step`] with step `instantiate`, `init` or `metadata`.
    pub fn start(
        module: &Arc<Module>,
        args: &str,
        budget: Budget,
        logs: Arc<LogLimiter>,
    ) -> Result<Instance, WasmError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let name = &*module.plugin;
        let mut store = Store::new(
            engine::engine_for(module.tier),
            HostState::new(module.plugin.clone(), budget.memory, logs),
        );
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks(budget.setup));
        let fail = |step: &'static str, e: wasmtime::Error, store: &mut Store<HostState>| {
            WasmError::step(
                name,
                step,
                describe(&e, store, budget.setup, budget.memory).message,
            )
        };
        let api = match &module.pre {
            Pre::V0_1(pre) => pre.instantiate(&mut store).map(Api::V0_1),
            Pre::V0_2(pre) => pre.instantiate(&mut store).map(|plugin| Api::V0_2 {
                plugin,
                announced: 0,
            }),
            Pre::V0_3(pre) => pre.instantiate(&mut store).map(|plugin| Api::V0_3 {
                plugin,
                announced: 0,
            }),
        };
        let mut live = match api {
            Ok(api) => Live { store, api },
            Err(e) => return Err(fail("instantiate", e, &mut store)),
        };
        let init = (|live: &mut Live| -> wasmtime::Result<Result<(), String>> {
            by_version!(live, |g, _c, store| args = args => g.call_init(&mut *store, args))
        })(&mut live);
        match init {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(WasmError::step(name, "init", message)),
            Err(e) => return Err(fail("init", e, &mut live.store)),
        }
        live.store.set_epoch_deadline(deadline_ticks(budget.setup));
        let described = (|live: &mut Live| -> wasmtime::Result<(Metadata, Vec<FieldSelection>)> {
            by_version!(live, |g, c, store| _args = () => g.call_metadata(&mut *store).map(c::described))
        })(&mut live);
        let (metadata, fields) = match described {
            Ok(m) => m,
            Err(e) => return Err(fail("metadata", e, &mut live.store)),
        };
        let selection = Selection::new(&fields, &metadata.subscriptions)
            .map_err(|m| WasmError::step(name, "metadata", m))?;
        Ok(Instance {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            module: module.clone(),
            metadata,
            selection,
            budget,
            live: Mutex::new(live),
            queued: Mutex::new(Vec::new()),
            poisoned: AtomicBool::new(false),
            cause: Mutex::new(None),
            failed_objects: Mutex::new(Vec::new()),
        })
    }

    /// True once a call trapped; the instance must not serve again.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Why the instance is poisoned: the short message of the call that trapped.
    pub fn poison_cause(&self) -> Option<String> {
        self.cause.lock().clone()
    }

    /// The objects of the `on-event` batch whose failure poisoned the instance (empty if
    /// something else did), taken once.
    pub fn take_failed_objects(&self) -> Vec<ObjectKey> {
        std::mem::take(&mut *self.failed_objects.lock())
    }

    /// The deadline of extension point calls (and of one object event).
    pub fn call_deadline(&self) -> Duration {
        self.budget.call
    }

    /// Calls into the guest with the call deadline. Calls are serialized per instance.
    ///
    /// # Errors
    /// A trap, a deadline, the memory cap, or an earlier trap of this instance.
    fn call<R>(&self, f: impl FnOnce(&mut Live) -> wasmtime::Result<R>) -> Result<R, CallError> {
        self.call_within(self.budget.call, f)
    }

    fn call_within<R>(
        &self,
        deadline: Duration,
        f: impl FnOnce(&mut Live) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut live = self.live.lock();
        if self.is_poisoned() {
            return Err(CallError::new(match self.poison_cause() {
                Some(cause) => format!("{UNUSABLE} ({cause})"),
                None => UNUSABLE.to_string(),
            }));
        }
        self.deliver_queued(&mut live)?;
        self.run(&mut live, deadline, f)
    }

    fn run<R>(
        &self,
        live: &mut Live,
        deadline: Duration,
        f: impl FnOnce(&mut Live) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        live.store.set_epoch_deadline(deadline_ticks(deadline));
        live.store.data_mut().last_error = None;
        f(live).map_err(|e| {
            let err = describe(&e, &mut live.store, deadline, self.budget.memory);
            self.poison(&err.message);
            err
        })
    }

    /// PreEnqueue.
    pub fn pre_enqueue(&self, pod: &PodRef) -> Result<Status, CallError> {
        self.call(|live| {
            by_version!(live, |g, c, store| pod = c::pod_ref(pod)
                => g.call_pre_enqueue(&mut *store, &pod).map(c::status))
        })
    }

    /// PreFilter.
    pub fn pre_filter(&self, pod: &PodRef) -> Result<PreFilterResult, CallError> {
        self.call(|live| {
            by_version!(live, |g, c, store| pod = c::pod_ref(pod)
                => g.call_pre_filter(&mut *store, &pod).map(c::pre_filter))
        })
    }

    /// Filter over `nodes`: a status per node in order, or why the answer is broken.
    pub fn filter(
        &self,
        pod: &PodRef,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Result<Vec<Status>, String>, CallError> {
        self.call(|live| {
            by_version!(live, |g, c, store| args = (c::pod_ref(pod), c::nodes(nodes))
                => g.call_filter(&mut *store, &args.0, &args.1).map(|v| c::filtered(v, &args.1)))
        })
    }

    /// PostFilter with the rejected nodes and their statuses.
    pub fn post_filter(
        &self,
        pod: &PodRef,
        rejected: &[(String, Status)],
    ) -> Result<PostFilterResult, CallError> {
        self.call(|live| {
            by_version!(live, |g, c, store| args = (c::pod_ref(pod), c::rejected(rejected))
                => g.call_post_filter(&mut *store, &args.0, &args.1).map(c::post_filter))
        })
    }

    /// PreScore.
    pub fn pre_score(&self, pod: &PodRef, nodes: &[Arc<NodeInfo>]) -> Result<Status, CallError> {
        self.call(|live| {
            by_version!(live, |g, c, store| args = (c::pod_ref(pod), c::nodes(nodes))
                => g.call_pre_score(&mut *store, &args.0, &args.1).map(c::status))
        })
    }

    /// Score: a score per node, or the plugin's error status.
    pub fn score(
        &self,
        pod: &PodRef,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Result<Vec<i64>, Status>, CallError> {
        self.call(|live| {
            by_version!(live, |g, c, store| args = (c::pod_ref(pod), c::nodes(nodes))
                => g.call_score(&mut *store, &args.0, &args.1).map(|r| r.map_err(c::status)))
        })
    }

    /// Reserve: intents, or the plugin's error status.
    pub fn reserve(
        &self,
        pod: &PodRef,
        node: &str,
    ) -> Result<Result<Vec<PatchIntent>, Status>, CallError> {
        self.call(|live| {
            by_version!(live, |g, c, store| args = (c::pod_ref(pod), c::node(node))
                => g.call_reserve(&mut *store, &args.0, args.1)
                    .map(|r| r.map(c::intents).map_err(c::status)))
        })
    }

    /// Unreserve: compensating intents.
    pub fn unreserve(&self, pod: &PodRef, node: &str) -> Result<Vec<PatchIntent>, CallError> {
        self.call(|live| {
            by_version!(live, |g, c, store| args = (c::pod_ref(pod), c::node(node))
                => g.call_unreserve(&mut *store, &args.0, args.1).map(c::intents))
        })
    }

    /// Permit.
    pub fn permit(&self, pod: &PodRef, node: &str) -> Result<PermitResult, CallError> {
        self.call(|live| {
            by_version!(live, |g, c, store| args = (c::pod_ref(pod), c::node(node))
                => g.call_permit(&mut *store, &args.0, args.1).map(c::permit))
        })
    }

    /// PreBind: intents, or the plugin's error status.
    pub fn pre_bind(
        &self,
        pod: &PodRef,
        node: &str,
    ) -> Result<Result<Vec<PatchIntent>, Status>, CallError> {
        self.call(|live| {
            by_version!(live, |g, c, store| args = (c::pod_ref(pod), c::node(node))
                => g.call_pre_bind(&mut *store, &args.0, args.1)
                    .map(|r| r.map(c::intents).map_err(c::status)))
        })
    }

    /// PostBind.
    pub fn post_bind(&self, pod: &PodRef, node: &str) -> Result<(), CallError> {
        self.call(|live| {
            by_version!(live, |g, c, store| args = (c::pod_ref(pod), c::node(node))
                => g.call_post_bind(&mut *store, &args.0, args.1))
        })
    }

    fn poison(&self, cause: &str) {
        self.cause.lock().get_or_insert_with(|| cause.to_string());
        self.poisoned.store(true, Ordering::Release);
    }

    /// Delivers `batch` to `on-event`; on failure remembers which objects it carried and names
    /// the object when there was one.
    fn deliver(
        &self,
        live: &mut Live,
        deadline: Duration,
        batch: &[ObjectEvent],
    ) -> Result<(), CallError> {
        self.run(live, deadline, |live| {
            by_version!(live, |g, c, store| events = batch.iter().map(c::event_out).collect::<Vec<_>>()
                => g.call_on_event(&mut *store, &events))
        })
            .map_err(|mut e| {
                let keys: Vec<ObjectKey> =
                    batch.iter().map(|e| ObjectKey::of(&e.resource, &e.object)).collect();
                e.message = match keys.as_slice() {
                    [one] => format!("{} for {one}", e.message),
                    many => format!("{} for a batch of {} object events", e.message, many.len()),
                };
                *self.cause.lock() = Some(e.message.clone());
                *self.failed_objects.lock() = keys;
                e
            })
    }

    /// Queues an object event; delivers the queue now if the instance is idle, else the next
    /// call (or the next push that finds it idle) does. Never waits for a running call.
    ///
    /// # Errors
    /// The delivery trapped (the instance is poisoned).
    pub fn push_event(&self, event: ObjectEvent) -> Result<(), CallError> {
        if self.is_poisoned() {
            return Ok(()); // its replacement is fed the whole state
        }
        let Some(event) = self.selection.event(event) else {
            return Ok(()); // nothing it reads changed
        };
        self.queued.lock().push(event);
        match self.live.try_lock() {
            Some(mut live) if !self.is_poisoned() => self.deliver_queued(&mut live),
            _ => Ok(()),
        }
    }

    /// Delivers the queued events in order, in batches with the call deadline. Runs with `live`
    /// held, so two deliveries never interleave.
    fn deliver_queued(&self, live: &mut Live) -> Result<(), CallError> {
        loop {
            let batch: Vec<_> = {
                let mut q = self.queued.lock();
                if q.is_empty() {
                    return Ok(());
                }
                let n = q.len().min(QUEUE_BATCH);
                q.drain(..n).collect()
            };
            self.deliver(live, self.budget.call, &batch)
                .inspect_err(|_| {
                    self.queued.lock().clear();
                })?;
        }
    }

    /// Pushes events in batches, each with the setup deadline (used for state replay).
    ///
    /// # Errors
    /// The first failed batch; [`Instance::take_failed_objects`] then names its objects.
    pub fn replay(&self, events: &[ObjectEvent]) -> Result<(), CallError> {
        for chunk in events.chunks(REPLAY_BATCH) {
            self.replay_batch(self.budget.setup, chunk)?;
        }
        Ok(())
    }

    /// Pushes one event with the call deadline: how a suspect of an earlier failed batch is
    /// fed, so that a failure names exactly one object.
    ///
    /// # Errors
    /// The event trapped or ran past the call deadline.
    pub fn replay_one(&self, event: &ObjectEvent) -> Result<(), CallError> {
        self.replay_batch(self.budget.call, std::slice::from_ref(event))
    }

    fn replay_batch(&self, deadline: Duration, batch: &[ObjectEvent]) -> Result<(), CallError> {
        let mut live = self.live.lock();
        if self.is_poisoned() {
            return Err(CallError::new(UNUSABLE));
        }
        self.deliver_queued(&mut live)?;
        let batch = self.selection.events(batch);
        if batch.is_empty() {
            return Ok(());
        }
        self.deliver(&mut live, deadline, &batch)
    }

    /// Calls `health()` with the setup deadline.
    ///
    /// # Errors
    /// A trap, or a status other than success (as its message).
    pub fn health(&self) -> Result<(), CallError> {
        let st = self.call_within(self.budget.setup, |live| {
            by_version!(live, |g, c, store| _args = () => g.call_health(&mut *store).map(c::status))
        })?;
        if st.is_success() {
            Ok(())
        } else {
            Err(CallError::new(format!(
                "health returned {:?}: {}",
                st.code,
                st.message()
            )))
        }
    }
}

/// A failed call as one short line (deadline and memory cap by name; a trap by its kind and
/// the innermost frame of the plugin's own code; the plugin's last error log line, e.g. its
/// panic message), plus the whole error with its wasm backtrace as detail for the log.
fn describe(
    e: &wasmtime::Error,
    store: &mut Store<HostState>,
    deadline: Duration,
    memory: usize,
) -> CallError {
    let full = chain(e);
    let frame = e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(first_frame);
    let at = frame.map(|f| format!(" (at {f})")).unwrap_or_default();
    let mut message = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!("{DEADLINE_EXCEEDED}{deadline:?} exceeded"),
        trap => {
            if full.contains("growing memory") || full.contains("memory minimum size") {
                format!("memory limit of {memory} bytes exceeded{at}")
            } else if let Some(trap) = trap {
                // wasmtime words it `wasm trap: call stack exhausted`.
                format!("{trap}{at}")
            } else {
                format!("trapped: {}{at}", short_cause(e))
            }
        }
    };
    if let Some(last) = store.data_mut().last_error.take() {
        message.push_str(" (plugin logged: ");
        message.push_str(&one_line(&last, MAX_LOGGED_IN_REASON));
        message.push(')');
    }
    let detail = (full != message).then_some(full);
    CallError { message, detail }
}

/// The error's causes without the multi-line backtrace, each on its first line only.
fn short_cause(e: &wasmtime::Error) -> String {
    let parts: Vec<String> = e
        .chain()
        .map(|c| c.to_string())
        .filter(|c| !c.starts_with("error while executing at wasm backtrace"))
        .map(|c| one_line(&c, MAX_LOGGED_IN_REASON))
        .collect();
    parts.join(": ")
}

/// `s` on one line (line breaks become spaces), cut to about `max` bytes.
fn one_line(s: &str, max: usize) -> String {
    let mut out: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(" …");
    }
    out
}

/// Prefixes of functions of the Rust runtime, the allocator and the bindings glue: a trap
/// inside them (a panic, an allocation failure) is reported at the plugin's frame that called
/// them.
const RUNTIME_FRAMES: &[&str] = &[
    "core::",
    "std::",
    "alloc::",
    "<core::",
    "<std::",
    "<alloc::",
    "__rust",
    "__rdl",
    "__rg_",
    "rust_panic",
    "rust_begin_unwind",
    "dlmalloc",
    "<dlmalloc",
    "wit_bindgen",
    "<wit_bindgen",
    "cabi_",
    "abort",
    "wasm_scheduler_sdk::",
    "<wasm_scheduler_sdk::",
];

/// The innermost frame of the plugin's own code (else the innermost frame), demangled and
/// without its hash.
fn first_frame(bt: &wasmtime::WasmBacktrace) -> Option<String> {
    let names: Vec<String> = bt
        .frames()
        .iter()
        .map(|f| match f.func_name() {
            Some(n) => format!("{:#}", rustc_demangle::demangle(n)),
            None => format!("wasm function {}", f.func_index()),
        })
        .collect();
    names
        .iter()
        .find(|n| !RUNTIME_FRAMES.iter().any(|p| n.starts_with(p)))
        .or(names.first())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_lines_and_cuts_long_text() {
        assert_eq!(
            one_line("panicked at a.rs:1:2:\nboom", 100),
            "panicked at a.rs:1:2: boom"
        );
        assert_eq!(one_line(&"x".repeat(10), 4), "xxxx …");
    }
}
