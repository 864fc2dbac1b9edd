//! The scheduling queue (upstream `PriorityQueue`, kubernetes/pkg/scheduler/backend/queue).
//!
//! A pending pod is in exactly one place:
//! - **activeQ**: ready to be scheduled, ordered by priority (high first), then by the time it
//!   entered the queue;
//! - **backoffQ**: failed recently and waits out its backoff (1s doubling to 10s by default);
//! - **unschedulable pool**: rejected by plugins; it moves back when a cluster event one of those
//!   plugins registered (their `requeue_on`) happens, or after 5 minutes;
//! - **gated**: refused by a PreEnqueue plugin; re-checked on cluster events;
//! - **in flight**: popped and being scheduled or bound.
//!
//! Waiting is event driven: [`SchedulingQueue::pop`] sleeps on a [`Notify`] or until the next
//! backoff expiry, never polls.

mod queued_pod;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::framework::{ClusterEvent, Code, EventAction, PodInfo, ResourceKind, Status};

/// How often, at most, gated pods are re-checked while activeQ has work (see `on_event`).
const GATED_RECHECK_INTERVAL: Duration = Duration::from_millis(10);

pub use queued_pod::QueuedPodInfo;

/// Queue timing. Defaults as upstream (kubernetes/pkg/scheduler/apis/config/v1/defaults.go and
/// backend/queue/scheduling_queue.go).
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Backoff after the first failed attempt (`podInitialBackoffSeconds`, 1s).
    pub initial_backoff: Duration,
    /// Backoff cap (`podMaxBackoffSeconds`, 10s).
    pub max_backoff: Duration,
    /// Pods unschedulable for longer are retried anyway (`podMaxInUnschedulablePodsDuration`, 5 min).
    pub max_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(5 * 60),
        }
    }
}

/// Runs the PreEnqueue plugins of a pod's profile. `Err` names the refusing plugin.
pub trait PreEnqueueCheck: Send + Sync {
    /// `Ok` if the pod may enter the active queue.
    fn check(&self, pod: &PodInfo) -> Result<(), (String, Status)>;
}

/// How many pods are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// In activeQ.
    pub active: usize,
    /// In backoffQ.
    pub backoff: usize,
    /// In the unschedulable pool.
    pub unschedulable: usize,
    /// Refused by PreEnqueue.
    pub gated: usize,
    /// Popped and not yet done (scheduling or binding).
    pub in_flight: usize,
    /// Gated pods an event may have released, waiting for their coalesced PreEnqueue re-check
    /// (at the next pop). Also counted in `gated`.
    pub recheck_pending: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    Gated,
    InFlight,
}

impl Place {
    fn index(self) -> usize {
        match self {
            Place::Active => 0,
            Place::Backoff(_) => 1,
            Place::Unschedulable(_) => 2,
            Place::Gated => 3,
            Place::InFlight => 4,
        }
    }
}

struct Slot {
    info: QueuedPodInfo,
    place: Place,
    /// Identifies the slot's current heap entries; older entries are stale.
    seq: u64,
    /// The pod changed while in flight: retry it soon instead of parking it.
    updated_in_flight: bool,
}

type ActiveKey = (i32, Reverse<Instant>, Reverse<u64>);

#[derive(Default)]
struct State {
    pods: HashMap<String, Slot>,
    active: BinaryHeap<(ActiveKey, String)>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    unschedulable_order: VecDeque<(Instant, u64, String)>,
    counts: [usize; 5],
    seq: u64,
    /// Bumped by every cluster event some plugin cares about.
    move_cycle: u64,
    /// The distinct events since the last PreEnqueue re-check of gated pods. Recording the
    /// event, not every gated pod it may release, keeps an event O(1) however many pods wait
    /// (a burst of pods whose claims do not exist yet): the pods are matched at the re-check.
    stale_events: Vec<(ResourceKind, EventAction)>,
    /// When gated pods were last re-checked.
    last_gated_recheck: Option<Instant>,
    closed: bool,
}

/// Whether `plugin` registered for one of `events` (a plugin without hints wants them all).
fn interested(
    hints: &HashMap<String, Vec<ClusterEvent>>,
    plugin: &str,
    events: &[(ResourceKind, EventAction)],
) -> bool {
    match hints.get(plugin) {
        Some(registered) if !registered.is_empty() => registered.iter().any(|e| {
            events
                .iter()
                .any(|(resource, action)| e.resource == *resource && e.actions.contains(action))
        }),
        _ => true,
    }
}

/// Whether one of `events` may make a parked pod schedulable: one of the plugins that turned
/// it away is interested (a pod no plugin named is moved by any event).
fn wants(
    hints: &HashMap<String, Vec<ClusterEvent>>,
    slot: &Slot,
    events: &[(ResourceKind, EventAction)],
) -> bool {
    let plugins = &slot.info.unschedulable_plugins;
    plugins.is_empty() || plugins.iter().any(|p| interested(hints, p, events))
}

/// The scheduling queue. Cheap to share (`Arc`); all methods take `&self`.
pub struct SchedulingQueue {
    state: Mutex<State>,
    config: QueueConfig,
    hints: RwLock<HashMap<String, Vec<ClusterEvent>>>,
    pre_enqueue: RwLock<Option<Arc<dyn PreEnqueueCheck>>>,
    /// Wakes `pop`.
    wake: Notify,
    /// Signalled on every change (for idle detection).
    changed: Notify,
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> Self {
        SchedulingQueue {
            state: Mutex::new(State::default()),
            config,
            hints: RwLock::new(HashMap::new()),
            pre_enqueue: RwLock::new(None),
            wake: Notify::new(),
            changed: Notify::new(),
        }
    }

    /// Sets the queueing hints: per plugin, the events that can make a pod it rejected
    /// schedulable. A plugin with no hints (or unknown here) is moved by every event, as
    /// upstream treats plugins without `EventsToRegister`.
    pub fn set_hints(&self, hints: HashMap<String, Vec<ClusterEvent>>) {
        *self.hints.write() = hints;
    }

    /// Sets the PreEnqueue check run whenever a pod would enter activeQ.
    pub fn set_pre_enqueue(&self, check: Arc<dyn PreEnqueueCheck>) {
        *self.pre_enqueue.write() = Some(check);
    }

    /// Signalled when the queue settles: nothing active, backing off or in flight (and on
    /// close). Waking waiters on every change would cost a context switch per pod.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    fn settled(&self, s: &State) -> bool {
        // active + backoff + in flight, and no gated pod waiting for its re-check
        s.counts[0] + s.counts[1] + s.counts[4] == 0 && self.recheck_pending(s) == 0
    }

    /// Gated pods that an event since the last re-check may have released.
    fn recheck_pending(&self, s: &State) -> usize {
        if s.stale_events.is_empty() || s.counts[3] == 0 {
            return 0;
        }
        let hints = self.hints.read();
        s.pods
            .values()
            .filter(|slot| slot.place == Place::Gated && wants(&hints, slot, &s.stale_events))
            .count()
    }

    fn notify_if(&self, settled: bool) {
        if settled {
            self.changed.notify_waiters();
        }
    }

    /// Current counts.
    pub fn stats(&self) -> QueueStats {
        let s = self.state.lock();
        QueueStats {
            active: s.counts[0],
            backoff: s.counts[1],
            unschedulable: s.counts[2],
            gated: s.counts[3],
            in_flight: s.counts[4],
            recheck_pending: self.recheck_pending(&s),
        }
    }

    /// Stops the queue: `pop` returns `None` from now on.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_one();
        self.changed.notify_waiters();
    }

    /// The backoff for a pod after `attempts` failed attempts: initial doubled per attempt,
    /// capped (upstream `calculateBackoffDuration`).
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.config.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d > self.config.max_backoff {
                return self.config.max_backoff;
            }
        }
        d.min(self.config.max_backoff)
    }

    /// Adds a pending pod, or updates it if known. `spec_changed` says whether the update may
    /// make it schedulable (upstream ignores status-only updates).
    pub fn add_or_update(&self, pod: Arc<PodInfo>, spec_changed: bool) {
        self.add_or_update_at(pod, spec_changed, Instant::now());
    }

    fn add_or_update_at(&self, pod: Arc<PodInfo>, spec_changed: bool, now: Instant) {
        let uid = pod.key.uid.clone();
        let mut s = self.state.lock();
        let Some(slot) = s.pods.get_mut(&uid) else {
            let info = QueuedPodInfo::new(pod, now);
            s.seq += 1;
            let seq = s.seq;
            s.pods.insert(
                uid.clone(),
                Slot {
                    info,
                    place: Place::InFlight,
                    seq,
                    updated_in_flight: false,
                },
            );
            s.counts[Place::InFlight.index()] += 1;
            self.enter_active(&mut s, &uid, now);
            let settled = self.settled(&s);
            drop(s);
            self.notify_if(settled);
            return;
        };
        let priority_changed = slot.info.pod.priority() != pod.priority();
        slot.info.pod = pod;
        match slot.place {
            Place::InFlight => slot.updated_in_flight |= spec_changed,
            Place::Active if priority_changed => {
                let (key, uid) = Self::active_entry(&mut s, &uid);
                s.active.push((key, uid));
            }
            Place::Unschedulable(_) | Place::Gated if spec_changed => {
                self.move_out(&mut s, &uid, now);
            }
            _ => {}
        }
        let settled = self.settled(&s);
        drop(s);
        self.notify_if(settled);
    }

    /// Forgets a pod (deleted, or bound by someone else).
    pub fn delete(&self, uid: &str) {
        let mut s = self.state.lock();
        if let Some(slot) = s.pods.remove(uid) {
            s.counts[slot.place.index()] -= 1;
            let settled = self.settled(&s);
            drop(s);
            self.notify_if(settled);
        }
    }

    /// Moves a parked pod (unschedulable, backing off or gated) to activeQ through its
    /// PreEnqueue plugins, ignoring its backoff (upstream `Activate`). Pods in activeQ or in
    /// flight, and unknown pods, are left alone.
    pub fn activate(&self, uid: &str) {
        let mut s = self.state.lock();
        let parked = matches!(
            s.pods.get(uid).map(|slot| slot.place),
            Some(Place::Unschedulable(_) | Place::Backoff(_) | Place::Gated)
        );
        if !parked {
            return;
        }
        self.enter_active(&mut s, uid, Instant::now());
        let settled = self.settled(&s);
        drop(s);
        self.wake.notify_one();
        self.notify_if(settled);
    }

    /// Whether the queue holds the pod (anywhere, including in flight).
    pub fn contains(&self, uid: &str) -> bool {
        self.state.lock().pods.contains_key(uid)
    }

    /// Waits for the next pod to schedule. `None` once the queue is closed.
    pub async fn pop(&self) -> Option<QueuedPodInfo> {
        loop {
            let deadline = {
                let mut s = self.state.lock();
                if s.closed {
                    return None;
                }
                let now = Instant::now();
                let popped = self.try_pop_locked(&mut s, now);
                // Also when nothing was popped: the flush may have settled the queue (a
                // coalesced re-check of gated pods).
                let settled = self.settled(&s);
                if let Some(p) = popped {
                    drop(s);
                    self.notify_if(settled);
                    return Some(p);
                }
                self.notify_if(settled);
                self.next_deadline(&s)
            };
            match deadline {
                Some(d) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep_until(d) => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    /// Pops at a given time without waiting (tests and draining).
    pub fn try_pop_at(&self, now: Instant) -> Option<QueuedPodInfo> {
        let mut s = self.state.lock();
        self.try_pop_locked(&mut s, now)
    }

    fn try_pop_locked(&self, s: &mut State, now: Instant) -> Option<QueuedPodInfo> {
        self.flush(s, now);
        while let Some(((_, _, Reverse(seq)), uid)) = s.active.pop() {
            // Entries are never removed from the heap in place; stale ones (the pod moved, or
            // was re-pushed with a new priority) are skipped here.
            let valid = matches!(s.pods.get(&uid), Some(slot) if slot.place == Place::Active && slot.seq == seq);
            if !valid {
                continue;
            }
            let move_cycle = s.move_cycle;
            Self::set_place(s, &uid, Place::InFlight);
            let slot = s.pods.get_mut(&uid).expect("checked above");
            slot.updated_in_flight = false;
            slot.info.attempts += 1;
            slot.info.initial_attempt.get_or_insert(now);
            slot.info.popped_at_cycle = move_cycle;
            return Some(slot.info.clone());
        }
        None
    }

    /// After a failed attempt: the pod goes to backoffQ (errors, or a relevant event happened
    /// while it was in flight) or to the unschedulable pool, remembering which plugins rejected
    /// it. Ignored if the pod was deleted meanwhile.
    pub fn requeue_failed(&self, info: &QueuedPodInfo, code: Code, plugins: HashSet<String>) {
        self.requeue_failed_at(info, code, plugins, Instant::now());
    }

    fn requeue_failed_at(
        &self,
        info: &QueuedPodInfo,
        code: Code,
        plugins: HashSet<String>,
        now: Instant,
    ) {
        let uid = &info.pod.key.uid;
        let mut s = self.state.lock();
        let move_cycle = s.move_cycle;
        let Some(slot) = s.pods.get_mut(uid) else {
            return;
        };
        if slot.place != Place::InFlight {
            return;
        }
        slot.info.attempts = slot.info.attempts.max(info.attempts);
        slot.info.unschedulable_plugins = plugins;
        slot.info.timestamp = now;
        let retry_soon =
            code == Code::Error || slot.updated_in_flight || move_cycle > info.popped_at_cycle;
        let attempts = slot.info.attempts;
        let place = if retry_soon {
            Place::Backoff(now + self.backoff_duration(attempts))
        } else {
            Place::Unschedulable(now)
        };
        self.place(&mut s, uid, place);
        let settled = self.settled(&s);
        drop(s);
        self.wake.notify_one();
        self.notify_if(settled);
    }

    /// The pod was bound: it leaves the queue.
    pub fn done(&self, uid: &str) {
        self.delete(uid);
    }

    /// A cluster event: unschedulable and gated pods rejected by a plugin that registered it
    /// move to activeQ (or backoffQ while still backing off).
    pub fn on_event(&self, resource: &ResourceKind, action: EventAction) {
        self.on_event_at(resource, action, Instant::now());
    }

    fn on_event_at(&self, resource: &ResourceKind, action: EventAction, now: Instant) {
        let event = [(resource.clone(), action)];
        // Lock order: state, then hints (never held while taking state).
        let mut s = self.state.lock();
        let hints = self.hints.read();
        // Cheap exit: no plugin cares about this event and no pod waits for "any event".
        if hints.is_empty() || hints.keys().any(|p| interested(&hints, p, &event)) {
            s.move_cycle += 1;
        }
        // counts: 2 unschedulable, 3 gated
        if s.counts[2] + s.counts[3] == 0 {
            return;
        }
        let mut to_move = Vec::new();
        if s.counts[2] > 0 {
            for (uid, slot) in &s.pods {
                if matches!(slot.place, Place::Unschedulable(_)) && wants(&hints, slot, &event) {
                    to_move.push(uid.clone());
                }
            }
        }
        drop(hints);
        for uid in &to_move {
            self.move_out(&mut s, uid, now);
        }
        // Re-running PreEnqueue for every gated pod on every event is quadratic when many pods
        // wait for their objects (a burst of claims from templates). The re-checks are coalesced:
        // at once while activeQ is empty, else at most every GATED_RECHECK_INTERVAL, at a pop.
        if s.counts[3] > 0 && !s.stale_events.contains(&event[0]) {
            let [e] = event;
            s.stale_events.push(e);
        }
        self.recheck_gated(&mut s, now);
        let settled = self.settled(&s);
        drop(s);
        self.wake.notify_one();
        self.notify_if(settled);
    }

    /// Re-runs PreEnqueue for the gated pods events may have released, if activeQ is empty or
    /// the last re-check is older than [`GATED_RECHECK_INTERVAL`].
    fn recheck_gated(&self, s: &mut State, now: Instant) {
        if s.stale_events.is_empty() {
            return;
        }
        let due = s.counts[0] == 0
            || s.last_gated_recheck
                .is_none_or(|at| now.saturating_duration_since(at) >= GATED_RECHECK_INTERVAL);
        if !due {
            return;
        }
        s.last_gated_recheck = Some(now);
        let events = std::mem::take(&mut s.stale_events);
        let released: Vec<String> = {
            let hints = self.hints.read();
            s.pods
                .iter()
                .filter(|(_, slot)| slot.place == Place::Gated && wants(&hints, slot, &events))
                .map(|(uid, _)| uid.clone())
                .collect()
        };
        for uid in released {
            self.move_out(s, &uid, now);
        }
    }

    /// Moves a parked pod back: to backoffQ if its backoff has not expired, else to activeQ.
    fn move_out(&self, s: &mut State, uid: &str, now: Instant) {
        let Some(slot) = s.pods.get(uid) else { return };
        let expiry = slot.info.timestamp + self.backoff_duration(slot.info.attempts);
        if slot.info.attempts > 0 && expiry > now {
            self.place(s, uid, Place::Backoff(expiry));
        } else {
            self.enter_active(s, uid, now);
        }
    }

    /// Runs PreEnqueue, then puts the pod in activeQ or gates it.
    fn enter_active(&self, s: &mut State, uid: &str, now: Instant) {
        let check = self.pre_enqueue.read().clone();
        let verdict = match (&check, s.pods.get(uid)) {
            (Some(c), Some(slot)) => c.check(&slot.info.pod),
            _ => Ok(()),
        };
        match verdict {
            Ok(()) => {
                if let Some(slot) = s.pods.get_mut(uid) {
                    slot.info.gated_by = None;
                    slot.info.timestamp = now;
                }
                self.place(s, uid, Place::Active);
                self.wake.notify_one();
            }
            Err((plugin, _status)) => {
                if let Some(slot) = s.pods.get_mut(uid) {
                    slot.info.unschedulable_plugins = HashSet::from([plugin.clone()]);
                    slot.info.gated_by = Some(plugin);
                }
                self.place(s, uid, Place::Gated);
            }
        }
    }

    fn active_entry(s: &mut State, uid: &str) -> (ActiveKey, String) {
        s.seq += 1;
        let seq = s.seq;
        let slot = s.pods.get_mut(uid).expect("slot exists");
        slot.seq = seq;
        (
            (
                slot.info.pod.priority(),
                Reverse(slot.info.timestamp),
                Reverse(seq),
            ),
            uid.to_string(),
        )
    }

    fn set_place(s: &mut State, uid: &str, place: Place) {
        let slot = s.pods.get_mut(uid).expect("slot exists");
        let old = slot.place;
        slot.place = place;
        s.counts[old.index()] -= 1;
        s.counts[place.index()] += 1;
    }

    /// Moves a pod to `place` and indexes it there.
    fn place(&self, s: &mut State, uid: &str, place: Place) {
        Self::set_place(s, uid, place);
        match place {
            Place::Active => {
                let e = Self::active_entry(s, uid);
                s.active.push(e);
            }
            Place::Backoff(at) => {
                s.seq += 1;
                let seq = s.seq;
                s.pods.get_mut(uid).expect("slot exists").seq = seq;
                s.backoff.push(Reverse((at, seq, uid.to_string())));
                // `pop` may be asleep until a later deadline (or none): it must see this one.
                self.wake.notify_one();
            }
            Place::Unschedulable(since) => {
                s.seq += 1;
                let seq = s.seq;
                s.pods.get_mut(uid).expect("slot exists").seq = seq;
                s.unschedulable_order
                    .push_back((since, seq, uid.to_string()));
            }
            Place::Gated | Place::InFlight => {}
        }
    }

    /// Moves expired backoffs to activeQ and long-unschedulable pods out of the pool.
    fn flush(&self, s: &mut State, now: Instant) {
        self.recheck_gated(s, now);
        while let Some(Reverse((at, seq, _))) = s.backoff.peek() {
            if *at > now {
                break;
            }
            let (seq, uid) = (*seq, s.backoff.pop().expect("peeked").0.2);
            if matches!(s.pods.get(&uid), Some(slot) if slot.seq == seq && matches!(slot.place, Place::Backoff(_)))
            {
                self.enter_active(s, &uid, now);
            }
        }
        while let Some((since, seq, _)) = s.unschedulable_order.front() {
            if *since + self.config.max_unschedulable > now {
                break;
            }
            let (seq, uid) = (*seq, s.unschedulable_order.pop_front().expect("peeked").2);
            if matches!(s.pods.get(&uid), Some(slot) if slot.seq == seq && matches!(slot.place, Place::Unschedulable(_)))
            {
                self.move_out(s, &uid, now);
            }
        }
    }

    fn next_deadline(&self, s: &State) -> Option<Instant> {
        let backoff = s.backoff.peek().map(|Reverse((at, _, _))| *at);
        let unsched = s
            .unschedulable_order
            .front()
            .map(|(since, _, _)| *since + self.config.max_unschedulable);
        match (backoff, unsched) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Pods in the unschedulable pool or gated, with the plugins that rejected them.
    pub fn parked(&self) -> Vec<QueuedPodInfo> {
        let s = self.state.lock();
        s.pods
            .values()
            .filter(|slot| matches!(slot.place, Place::Unschedulable(_) | Place::Gated))
            .map(|slot| slot.info.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
