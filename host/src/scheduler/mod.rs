//! The scheduler: a serial scheduling cycle and concurrent binding cycles, as upstream
//! `schedule_one.go`.
//!
//! 1. The scheduling loop (one OS thread) pops a pod, runs PreFilter, Filter over a sample of
//!    nodes, PostFilter when none fits, PreScore/Score, picks a node, **assumes** the pod and the
//!    Reserve plugins' patch intents in the cache, and runs Permit.
//! 2. A binding cycle per pod runs in the background: it waits on Permit, then the **PreBind
//!    executor** applies the pod's intents in order (bounded concurrency across pods), runs
//!    PreBind plugins, Bind and PostBind.
//! 3. Any failure after Reserve runs Unreserve in reverse order, applies the plugins'
//!    compensating intents, forgets the assumptions, and requeues the pod with backoff.
//!
//! Start with [`Scheduler::start`]; [`build`] makes one from a configuration file.

mod binding;
pub mod build;
mod diagnosis;
mod intents;
mod recorder;
mod schedule_one;
mod waiting;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kube::Client;
use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::cache::{Cache, CacheEvents};
use crate::framework::{
    BindContext, EventAction, Framework, Nominator, PodActivator, PodInfo, ResourceKind, Status,
};
use crate::metrics::Metrics;
use crate::queue::{PreEnqueueCheck, QueueConfig, SchedulingQueue};

pub use build::{BuildError, build, build_with};
pub use diagnosis::{Diagnosis, num_feasible_nodes_to_find, select_host};
pub use intents::{FIELD_MANAGER, IntentError, apply_intent, check_kinds};
pub use recorder::{NOTE_LENGTH_LIMIT, Recorder, truncate_message};
pub use waiting::{PermitVerdict, WaitingPods};

/// Tuning of the scheduler. Defaults as upstream where upstream has one.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// `percentageOfNodesToScore`; `None` (or 0) for the adaptive default.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Backoff and flush timing.
    pub queue: QueueConfig,
    /// Threads that run Filter over large node batches (at least 500 nodes at once).
    pub parallelism: usize,
    /// Binding cycles applying intents and binding at the same time.
    pub bind_concurrency: usize,
    /// Post Events and set the PodScheduled condition, as kube-scheduler does.
    pub record_events: bool,
    /// Hold the scheduling loop until [`Scheduler::resume`]: the cache watches and the queue
    /// fills, but nothing is scheduled (a leader-election standby, kept warm).
    pub start_paused: bool,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            percentage_of_nodes_to_score: None,
            queue: QueueConfig::default(),
            parallelism: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(16),
            bind_concurrency: 64,
            record_events: true,
            start_paused: false,
        }
    }
}

/// Errors starting the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Two profiles share a scheduler name.
    #[error("two profiles are named {0:?}")]
    DuplicateProfile(String),
    /// No profile at all.
    #[error("the configuration has no profiles")]
    NoProfiles,
    /// The scheduling loop thread could not start.
    #[error("starting the scheduling loop: {0}")]
    Thread(#[from] std::io::Error),
}

/// The latest outcome for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOutcome {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The node it was bound to.
    pub node: Option<String>,
    /// Why it is not bound (the last failure), if it is not.
    pub message: Option<String>,
    /// Scheduling attempts.
    pub attempts: u32,
}

/// State shared by the scheduling loop and the binding cycles.
pub(crate) struct Shared {
    rt: tokio::runtime::Handle,
    client: Client,
    cache: Arc<Cache>,
    queue: Arc<SchedulingQueue>,
    profiles: HashMap<String, Arc<Framework>>,
    options: SchedulerOptions,
    metrics: Arc<Metrics>,
    waiting: Arc<WaitingPods>,
    bind_limit: Arc<Semaphore>,
    recorder: Recorder,
    outcomes: Arc<Outcomes>,
    bindings: AtomicUsize,
    progress: Notify,
    bind_ctx: BindContext,
    /// CPUs available to the process, read once: `available_parallelism` reads cgroup files
    /// on every call.
    cores: usize,
    /// Pods nominated to nodes by preemption.
    nominator: Arc<Nominator>,
    /// The queue, as PostFilter plugins may reach it.
    activator: Arc<dyn PodActivator>,
    /// Notified after every watched change reached the plugins: PreBind calls that returned
    /// `Pending` are made again.
    objects_changed: Arc<Notify>,
}

/// Lets PostFilter plugins move pods back to the active queue.
struct QueueActivator(Arc<SchedulingQueue>);

impl PodActivator for QueueActivator {
    fn activate(&self, uid: &str) {
        self.0.activate(uid);
        // Background work of a plugin ended: idle waiters re-check.
        self.0.changed().notify_waiters();
    }
}

/// The latest outcome per pod uid. Deleted pods leave it (see [`CacheEvents::pod_deleted`]);
/// an outcome recorded just after its pod's deletion was seen is swept once the map has
/// doubled, so it stays bounded by the pods the cache knows.
struct Outcomes {
    cache: Arc<Cache>,
    map: Mutex<HashMap<String, PodOutcome>>,
    /// The map's size after the last sweep.
    swept_at: AtomicUsize,
}

/// Sweeps never run below this many outcomes.
const MIN_OUTCOMES_SWEEP: usize = 1024;

impl Outcomes {
    fn new(cache: Arc<Cache>) -> Self {
        Outcomes {
            cache,
            map: Mutex::new(HashMap::new()),
            swept_at: AtomicUsize::new(0),
        }
    }

    fn record(&self, uid: &str, outcome: PodOutcome) {
        let mut map = self.map.lock();
        map.insert(uid.to_string(), outcome);
        let limit = (2 * self.swept_at.load(Ordering::Relaxed)).max(MIN_OUTCOMES_SWEEP);
        if map.len() > limit {
            let known = self.cache.pod_uids();
            map.retain(|uid, _| known.contains(uid));
            self.swept_at.store(map.len(), Ordering::Relaxed);
        }
    }

    fn remove(&self, uid: &str) {
        self.map.lock().remove(uid);
    }
}

/// Feeds cache changes to the queue: pending pods of our profiles, and cluster events.
struct QueueFeeder {
    queue: Arc<SchedulingQueue>,
    waiting: Arc<WaitingPods>,
    profiles: HashSet<String>,
    outcomes: Arc<Outcomes>,
    nominator: Arc<Nominator>,
    /// See [`Shared::objects_changed`].
    objects_changed: Arc<Notify>,
}

impl CacheEvents for QueueFeeder {
    fn pending_pod(&self, pod: Arc<PodInfo>, spec_changed: bool) {
        if self.profiles.contains(pod.scheduler_name()) {
            // A nomination in the pod's status (ours, or from an earlier leader) holds its room;
            // a pod nominated in memory keeps its node while the status patch is on its way.
            match pod
                .pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.as_deref())
                .filter(|n| !n.is_empty())
            {
                Some(node) => self.nominator.add(pod.clone(), node),
                None => self.nominator.update(pod.clone()),
            }
            self.queue.add_or_update(pod, spec_changed);
        }
    }

    fn pod_gone(&self, uid: &str) {
        self.nominator.remove(uid);
        self.queue.delete(uid);
        // A binding cycle waiting in PreBind for this pod gives up.
        self.objects_changed.notify_waiters();
    }

    fn pod_deleted(&self, uid: &str) {
        self.outcomes.remove(uid);
    }

    fn cluster_event(&self, resource: &ResourceKind, action: EventAction) {
        self.queue.on_event(resource, action);
        // The change was delivered to the subscribed plugins before this call.
        self.objects_changed.notify_waiters();
    }
}

/// A waiting pod that is deleted is rejected (upstream rejects waiting pods on delete).
struct DeleteRejectsWaiting(Arc<QueueFeeder>);

impl CacheEvents for DeleteRejectsWaiting {
    fn pending_pod(&self, pod: Arc<PodInfo>, spec_changed: bool) {
        self.0.pending_pod(pod, spec_changed);
    }

    fn pod_gone(&self, uid: &str) {
        self.0
            .waiting
            .reject(uid, "", "pod was deleted while waiting at Permit");
        self.0.pod_gone(uid);
    }

    fn pod_deleted(&self, uid: &str) {
        self.0.pod_deleted(uid);
    }

    fn cluster_event(&self, resource: &ResourceKind, action: EventAction) {
        self.0.cluster_event(resource, action);
    }
}

/// Runs each profile's PreEnqueue plugins.
struct ProfilesPreEnqueue(HashMap<String, Arc<Framework>>);

impl PreEnqueueCheck for ProfilesPreEnqueue {
    fn check(&self, pod: &PodInfo) -> Result<(), (String, Status)> {
        match self.0.get(pod.scheduler_name()) {
            Some(f) => f.run_pre_enqueue(pod),
            None => Ok(()),
        }
    }
}

/// A running scheduler. Dropping it stops the scheduling loop and the watches.
pub struct Scheduler {
    shared: Arc<Shared>,
    wasm: Option<crate::wasm::WasmPlugins>,
    loop_thread: Option<std::thread::JoinHandle<()>>,
    cache_task: JoinHandle<()>,
    /// `true` lets the loop run (see [`SchedulerOptions::start_paused`]); dropped on shutdown.
    go: Option<tokio::sync::watch::Sender<bool>>,
}

impl Scheduler {
    /// Starts watching through `client` and scheduling pods whose `spec.schedulerName` names one
    /// of `profiles`. Must be called inside a Tokio runtime. The cache must be the one the
    /// profiles' plugins were created with (their `StateReplay`).
    ///
    /// # Errors
    /// No profiles, duplicate profile names, or the loop thread cannot start.
    pub fn start(
        client: Client,
        cache: Arc<Cache>,
        profiles: Vec<Arc<Framework>>,
        options: SchedulerOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Scheduler, SchedulerError> {
        if profiles.is_empty() {
            return Err(SchedulerError::NoProfiles);
        }
        let mut by_name = HashMap::new();
        let mut plugins = Vec::new();
        let mut hints: HashMap<String, Vec<crate::framework::ClusterEvent>> = HashMap::new();
        for f in profiles {
            for p in f.plugins() {
                if !plugins.iter().any(|q| Arc::ptr_eq(q, p)) {
                    plugins.push(p.clone());
                }
            }
            for (name, events) in f.requeue_hints() {
                hints.entry(name).or_default().extend(events);
            }
            if by_name.insert(f.name().to_string(), f.clone()).is_some() {
                return Err(SchedulerError::DuplicateProfile(f.name().to_string()));
            }
        }
        let queue = Arc::new(SchedulingQueue::new(options.queue.clone()));
        queue.set_hints(hints);
        queue.set_pre_enqueue(Arc::new(ProfilesPreEnqueue(by_name.clone())));
        let waiting = Arc::new(WaitingPods::default());
        let outcomes = Arc::new(Outcomes::new(cache.clone()));
        let nominator = Nominator::new();
        let objects_changed = Arc::new(Notify::new());
        cache.set_subscribers(&plugins);
        cache.set_handler(Arc::new(DeleteRejectsWaiting(Arc::new(QueueFeeder {
            queue: queue.clone(),
            waiting: waiting.clone(),
            profiles: by_name.keys().cloned().collect(),
            outcomes: outcomes.clone(),
            nominator: nominator.clone(),
            objects_changed: objects_changed.clone(),
        }))));
        let instance = format!(
            "{}-{}",
            by_name
                .keys()
                .next()
                .map(String::as_str)
                .unwrap_or("scheduler"),
            std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into())
        );
        let recorder = if options.record_events {
            Recorder::start(client.clone(), instance)
        } else {
            Recorder::disabled()
        };
        let rt = tokio::runtime::Handle::current();
        let (go, mut go_rx) = tokio::sync::watch::channel(!options.start_paused);
        let shared = Arc::new(Shared {
            rt: rt.clone(),
            bind_ctx: BindContext {
                client: client.clone(),
            },
            client: client.clone(),
            cache: cache.clone(),
            queue: queue.clone(),
            profiles: by_name,
            bind_limit: Arc::new(Semaphore::new(options.bind_concurrency.max(1))),
            options,
            metrics,
            waiting,
            recorder,
            outcomes,
            bindings: AtomicUsize::new(0),
            progress: Notify::new(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            nominator,
            activator: Arc::new(QueueActivator(queue.clone())),
            objects_changed,
        });
        let cache_task = cache.start(client);
        let s = shared.clone();
        // The loop waits on the queue with its own small runtime, so it never depends on the
        // caller's runtime being alive (binding cycles still run on the caller's runtime).
        let local = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let loop_thread = std::thread::Builder::new()
            .name("scheduling-loop".into())
            .spawn(move || {
                local.block_on(s.cache.wait_synced());
                // Paused: wait for resume(); a dropped sender means shutdown.
                if local.block_on(go_rx.wait_for(|go| *go)).is_err() {
                    return;
                }
                s.run_loop(&local);
            })?;
        Ok(Scheduler {
            shared,
            wasm: None,
            loop_thread: Some(loop_thread),
            cache_task,
            go: Some(go),
        })
    }

    /// Lets a scheduler started with [`SchedulerOptions::start_paused`] schedule.
    pub fn resume(&self) {
        if let Some(go) = &self.go {
            go.send_replace(true);
        }
    }

    /// The Wasm plugins loaded by [`build`] (for hot swap and status), if any.
    pub fn wasm(&self) -> Option<&crate::wasm::WasmPlugins> {
        self.wasm.as_ref()
    }

    /// The scheduling queue.
    pub fn queue(&self) -> &Arc<SchedulingQueue> {
        &self.shared.queue
    }

    /// The cluster cache.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.shared.cache
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Updates the pending-pods gauges (call before encoding metrics).
    pub fn refresh_metrics(&self) {
        let q = self.shared.queue.stats();
        self.shared
            .metrics
            .set_pending(q.active, q.backoff, q.unschedulable, q.gated);
    }

    /// True when nothing can make progress on its own: the cache is synced, no pod is active,
    /// backing off, being scheduled or bound, or waiting at Permit, every assumption was
    /// confirmed by the watch, and no plugin has API work in flight (preemption's evictions).
    /// Pods left are unschedulable until a cluster event.
    pub fn is_idle(&self) -> bool {
        self.busy().is_empty()
    }

    /// What keeps the scheduler from being idle (empty when [`Scheduler::is_idle`]), e.g.
    /// `["backoff: 1", "assumed intents: 2"]`: for timeouts that say what was still going on.
    pub fn busy(&self) -> Vec<String> {
        let s = &self.shared;
        let q = s.queue.stats();
        let work = s.cache.pending_work();
        let counts = [
            ("active", q.active),
            ("backoff", q.backoff),
            ("in flight", q.in_flight),
            ("gated awaiting re-check", q.recheck_pending),
            ("binding cycles", s.bindings.load(Ordering::Acquire)),
            ("waiting at Permit", s.waiting.len()),
            ("assumed pods", work.assumed_pods),
            ("assumed intents", work.assumed_intents),
        ];
        let mut busy: Vec<String> = (!s.cache.is_synced())
            .then(|| "cache not synced".to_string())
            .into_iter()
            .chain(
                counts
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(what, n)| format!("{what}: {n}")),
            )
            .collect();
        for f in s.profiles.values() {
            for p in f.plugins() {
                let n = p.background_work();
                if n > 0 {
                    busy.push(format!("{} background work: {n}", p.name()));
                }
            }
        }
        busy
    }

    /// Waits until [`Scheduler::is_idle`].
    pub async fn wait_idle(&self) {
        self.wait_until(Scheduler::is_idle).await;
    }

    /// Waits until `done` holds. It is re-checked when the queue settles, the cache syncs,
    /// settles its assumptions or gains or loses a node, the last binding cycle ends, or a
    /// pod starts waiting at Permit: predicates over those states wake reliably.
    pub async fn wait_until(&self, done: impl Fn(&Scheduler) -> bool) {
        let s = &self.shared;
        loop {
            let (a, b, c) = (
                s.queue.changed().notified(),
                s.cache.changed().notified(),
                s.progress.notified(),
            );
            tokio::pin!(a, b, c);
            a.as_mut().enable();
            b.as_mut().enable();
            c.as_mut().enable();
            if done(self) {
                return;
            }
            tokio::select! {
                _ = a => {}
                _ = b => {}
                _ = c => {}
            }
        }
    }

    /// Pods waiting at Permit.
    pub fn waiting_pods(&self) -> usize {
        self.shared.waiting.len()
    }

    /// Waits until every event and condition write was sent.
    pub async fn flush_records(&self) {
        self.shared.recorder.flush().await;
    }

    /// The latest outcome of every pod the scheduler tried, sorted by namespace and name.
    pub fn outcomes(&self) -> Vec<PodOutcome> {
        let mut v: Vec<PodOutcome> = self.shared.outcomes.map.lock().values().cloned().collect();
        v.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        v
    }

    /// Stops scheduling and watching; waits for the loop to end (bindings in flight finish in
    /// the background).
    pub async fn shutdown(mut self) {
        self.go = None;
        self.shared.queue.close();
        self.cache_task.abort();
        if let Some(t) = self.loop_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.queue.close();
        self.cache_task.abort();
    }
}
