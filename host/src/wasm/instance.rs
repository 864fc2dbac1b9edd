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
use wasm_scheduler_sdk::{Metadata, ObjectEvent};
use wasmtime::Store;

use super::bindings::{self, Guest};
use super::convert;
use super::engine::{self, deadline_ticks};
use super::error::{WasmError, chain};
use super::module::Module;
use super::sandbox::HostState;

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
pub struct CallError(pub String);

impl CallError {
    /// Whether the call was stopped by its deadline (`describe` names it first).
    pub fn is_deadline(&self) -> bool {
        self.0.starts_with(DEADLINE_EXCEEDED)
    }
}

/// How `describe` starts the message of a call stopped by its deadline.
const DEADLINE_EXCEEDED: &str = "deadline of ";

struct Live {
    store: Store<HostState>,
    plugin: bindings::Plugin,
}

/// A running instance of a module.
pub struct Instance {
    /// Unique per process, for logs and to tell instances apart.
    pub id: u64,
    /// The module it runs.
    pub module: Arc<Module>,
    /// What it reported from `metadata()` after `init`.
    pub metadata: Metadata,
    budget: Budget,
    live: Mutex<Live>,
    /// Events pushed while the instance was busy, delivered before its next call.
    queued: Mutex<Vec<bindings::wit::ObjectEvent>>,
    poisoned: AtomicBool,
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
    pub fn start(module: &Arc<Module>, args: &str, budget: Budget) -> Result<Instance, WasmError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let name = &*module.plugin;
        let mut store = Store::new(
            engine::engine(),
            HostState::new(module.plugin.clone(), budget.memory),
        );
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks(budget.setup));
        let plugin = module.pre.instantiate(&mut store).map_err(|e| {
            WasmError::step(
                name,
                "instantiate",
                describe(&e, &mut store, budget.setup, budget.memory),
            )
        })?;
        let api = plugin.kube_scheduler_plugin_plugin_api();
        match api.call_init(&mut store, args) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(WasmError::step(name, "init", message)),
            Err(e) => {
                return Err(WasmError::step(
                    name,
                    "init",
                    describe(&e, &mut store, budget.setup, budget.memory),
                ));
            }
        }
        store.set_epoch_deadline(deadline_ticks(budget.setup));
        let metadata = api
            .call_metadata(&mut store)
            .map(convert::metadata)
            .map_err(|e| {
                WasmError::step(
                    name,
                    "metadata",
                    describe(&e, &mut store, budget.setup, budget.memory),
                )
            })?;
        Ok(Instance {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            module: module.clone(),
            metadata,
            budget,
            live: Mutex::new(Live { store, plugin }),
            queued: Mutex::new(Vec::new()),
            poisoned: AtomicBool::new(false),
        })
    }

    /// True once a call trapped; the instance must not serve again.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Calls into the guest with the call deadline. Calls are serialized per instance.
    ///
    /// # Errors
    /// A trap, a deadline, the memory cap, or an earlier trap of this instance.
    pub fn call<R>(
        &self,
        f: impl FnOnce(&Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.call_within(self.budget.call, f)
    }

    fn call_within<R>(
        &self,
        deadline: Duration,
        f: impl FnOnce(&Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut live = self.live.lock();
        if self.is_poisoned() {
            return Err(CallError(
                "instance is unusable after an earlier trap".into(),
            ));
        }
        self.deliver_queued(&mut live)?;
        self.run(&mut live, deadline, f)
    }

    fn run<R>(
        &self,
        live: &mut Live,
        deadline: Duration,
        f: impl FnOnce(&Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let Live { store, plugin } = live;
        store.set_epoch_deadline(deadline_ticks(deadline));
        store.data_mut().last_error = None;
        f(plugin.kube_scheduler_plugin_plugin_api(), store).map_err(|e| {
            self.poisoned.store(true, Ordering::Release);
            CallError(describe(&e, store, deadline, self.budget.memory))
        })
    }

    /// Queues an object event; delivers the queue now if the instance is idle, else the next
    /// call (or the next push that finds it idle) does. Never waits for a running call.
    ///
    /// # Errors
    /// The delivery trapped (the instance is poisoned).
    pub fn push_event(&self, event: bindings::wit::ObjectEvent) -> Result<(), CallError> {
        if self.is_poisoned() {
            return Ok(()); // its replacement is fed the whole state
        }
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
            self.run(live, self.budget.call, |g, s| g.call_on_event(s, &batch))
                .map_err(|e| {
                    self.queued.lock().clear();
                    CallError(format!("{} (delivering queued object events)", e.0))
                })?;
        }
    }

    /// Pushes events in batches, each with the setup deadline (used for state replay).
    ///
    /// # Errors
    /// The first failed batch.
    pub fn replay(&self, events: &[ObjectEvent]) -> Result<(), CallError> {
        for chunk in events.chunks(REPLAY_BATCH) {
            let batch: Vec<_> = chunk.iter().map(convert::event_out).collect();
            self.call_within(self.budget.setup, |g, s| g.call_on_event(s, &batch))?;
        }
        Ok(())
    }

    /// Calls `health()` with the setup deadline.
    ///
    /// # Errors
    /// A trap, or a status other than success (as its message).
    pub fn health(&self) -> Result<(), CallError> {
        let st = self
            .call_within(self.budget.setup, |g, s| g.call_health(s))
            .map(convert::status)?;
        if st.is_success() {
            Ok(())
        } else {
            Err(CallError(format!(
                "health returned {:?}: {}",
                st.code,
                st.message()
            )))
        }
    }
}

/// A trap as one line: deadline and memory cap by name, plus the plugin's last error log line
/// (its panic message, when the SDK's panic hook logged one).
fn describe(
    e: &wasmtime::Error,
    store: &mut Store<HostState>,
    deadline: Duration,
    memory: usize,
) -> String {
    let mut msg = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!("{DEADLINE_EXCEEDED}{deadline:?} exceeded"),
        _ => {
            let text = chain(e);
            if text.contains("growing memory") || text.contains("memory minimum size") {
                format!("memory limit of {memory} bytes exceeded ({text})")
            } else {
                format!("trapped: {text}")
            }
        }
    };
    if let Some(last) = store.data_mut().last_error.take() {
        msg.push_str(" (plugin logged: ");
        msg.push_str(&last);
        msg.push(')');
    }
    msg
}
