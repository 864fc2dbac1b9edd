use super::*;
use k8s_openapi::api::core::v1::Pod;

fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"priority": priority, "containers": [{"name": "c"}]}
    }))
    .unwrap();
    Arc::new(PodInfo::new(Arc::new(pod)))
}

fn node_added() -> (ResourceKind, EventAction) {
    (ResourceKind::node(), EventAction::Added)
}

fn queue_with_hints() -> SchedulingQueue {
    let q = SchedulingQueue::new(QueueConfig::default());
    q.set_hints(HashMap::from([
        (
            "NodeResourcesFit".to_string(),
            vec![ClusterEvent {
                resource: ResourceKind::node(),
                actions: vec![EventAction::Added],
            }],
        ),
        (
            "TaintToleration".to_string(),
            vec![ClusterEvent {
                resource: ResourceKind::node(),
                actions: vec![EventAction::Modified],
            }],
        ),
    ]));
    q
}

fn names(q: &SchedulingQueue, now: Instant) -> Vec<String> {
    std::iter::from_fn(|| q.try_pop_at(now))
        .map(|p| p.pod.key.name.clone())
        .collect()
}

#[test]
fn pops_higher_priority_first_then_oldest() {
    let q = SchedulingQueue::new(QueueConfig::default());
    let t = Instant::now();
    q.add_or_update_at(pod("low", 0), false, t);
    q.add_or_update_at(pod("high", 100), false, t + Duration::from_millis(1));
    q.add_or_update_at(pod("low-later", 0), false, t + Duration::from_millis(2));
    q.add_or_update_at(pod("mid", 50), false, t + Duration::from_millis(3));
    assert_eq!(names(&q, t), ["high", "mid", "low", "low-later"]);
    assert_eq!(q.stats().in_flight, 4);
}

#[test]
fn a_priority_update_reorders_the_active_queue() {
    let q = SchedulingQueue::new(QueueConfig::default());
    let t = Instant::now();
    q.add_or_update_at(pod("a", 0), false, t);
    q.add_or_update_at(pod("b", 0), false, t + Duration::from_millis(1));
    q.add_or_update_at(pod("b", 10), false, t + Duration::from_millis(2));
    assert_eq!(names(&q, t), ["b", "a"]);
}

#[test]
fn backoff_doubles_from_one_second_up_to_ten() {
    let q = SchedulingQueue::new(QueueConfig::default());
    let secs: Vec<u64> = (1..=6).map(|a| q.backoff_duration(a).as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
}

#[test]
fn an_error_sends_the_pod_to_backoff_until_it_expires() {
    let q = SchedulingQueue::new(QueueConfig::default());
    let t = Instant::now();
    q.add_or_update_at(pod("a", 0), false, t);
    let p = q.try_pop_at(t).unwrap();
    q.requeue_failed_at(&p, Code::Error, HashSet::new(), t);
    assert_eq!(q.stats().backoff, 1);
    assert!(q.try_pop_at(t + Duration::from_millis(999)).is_none());
    let p = q.try_pop_at(t + Duration::from_secs(1)).unwrap();
    assert_eq!(p.attempts, 2);
    // Second failure: 2s.
    let t2 = t + Duration::from_secs(1);
    q.requeue_failed_at(&p, Code::Error, HashSet::new(), t2);
    assert!(q.try_pop_at(t2 + Duration::from_millis(1999)).is_none());
    assert!(q.try_pop_at(t2 + Duration::from_secs(2)).is_some());
}

#[test]
fn an_unschedulable_pod_moves_only_on_an_event_its_plugin_registered() {
    let q = queue_with_hints();
    let t = Instant::now();
    q.add_or_update_at(pod("a", 0), false, t);
    let p = q.try_pop_at(t).unwrap();
    q.requeue_failed_at(
        &p,
        Code::Unschedulable,
        HashSet::from(["NodeResourcesFit".to_string()]),
        t,
    );
    assert_eq!(q.stats().unschedulable, 1);
    q.on_event_at(
        &ResourceKind::node(),
        EventAction::Modified,
        t + Duration::from_secs(20),
    );
    assert_eq!(
        q.stats().unschedulable,
        1,
        "Node/Modified is not registered by NodeResourcesFit"
    );
    let (kind, action) = node_added();
    q.on_event_at(&kind, action, t + Duration::from_secs(20));
    assert_eq!(names(&q, t + Duration::from_secs(20)), ["a"]);
}

#[test]
fn a_pod_moved_during_its_backoff_waits_in_backoff() {
    let q = queue_with_hints();
    let t = Instant::now();
    q.add_or_update_at(pod("a", 0), false, t);
    let p = q.try_pop_at(t).unwrap();
    q.requeue_failed_at(
        &p,
        Code::Unschedulable,
        HashSet::from(["NodeResourcesFit".to_string()]),
        t,
    );
    let (kind, action) = node_added();
    q.on_event_at(&kind, action, t + Duration::from_millis(10));
    assert_eq!(q.stats().backoff, 1);
    assert!(q.try_pop_at(t + Duration::from_millis(500)).is_none());
    assert!(q.try_pop_at(t + Duration::from_secs(1)).is_some());
}

#[test]
fn an_event_during_the_attempt_sends_the_pod_to_backoff_not_the_pool() {
    let q = queue_with_hints();
    let t = Instant::now();
    q.add_or_update_at(pod("a", 0), false, t);
    let p = q.try_pop_at(t).unwrap();
    let (kind, action) = node_added();
    q.on_event_at(&kind, action, t);
    q.requeue_failed_at(
        &p,
        Code::Unschedulable,
        HashSet::from(["NodeResourcesFit".to_string()]),
        t,
    );
    assert_eq!(
        q.stats(),
        QueueStats {
            backoff: 1,
            ..Default::default()
        }
    );
}

#[test]
fn unschedulable_pods_are_flushed_after_five_minutes() {
    let q = queue_with_hints();
    let t = Instant::now();
    q.add_or_update_at(pod("a", 0), false, t);
    let p = q.try_pop_at(t).unwrap();
    q.requeue_failed_at(
        &p,
        Code::Unschedulable,
        HashSet::from(["NodeResourcesFit".to_string()]),
        t,
    );
    assert!(q.try_pop_at(t + Duration::from_secs(299)).is_none());
    assert!(q.try_pop_at(t + Duration::from_secs(300)).is_some());
}

struct GateUnlessLabelled;
impl PreEnqueueCheck for GateUnlessLabelled {
    fn check(&self, pod: &PodInfo) -> Result<(), (String, Status)> {
        match pod
            .pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("ready"))
        {
            Some(_) => Ok(()),
            None => Err(("Gate".to_string(), Status::unresolvable("not ready"))),
        }
    }
}

#[test]
fn a_gated_pod_waits_until_an_update_lets_it_pass_pre_enqueue() {
    let q = SchedulingQueue::new(QueueConfig::default());
    q.set_pre_enqueue(Arc::new(GateUnlessLabelled));
    let t = Instant::now();
    q.add_or_update_at(pod("a", 0), false, t);
    assert_eq!(q.stats().gated, 1);
    assert!(q.try_pop_at(t).is_none());
    let (kind, action) = node_added();
    q.on_event_at(&kind, action, t);
    assert_eq!(q.stats().gated, 1, "still refused by PreEnqueue");
    let mut ready = (*pod("a", 0).pod).clone();
    ready.metadata.labels = Some([("ready".to_string(), "1".to_string())].into());
    q.add_or_update_at(Arc::new(PodInfo::new(Arc::new(ready))), true, t);
    assert_eq!(names(&q, t), ["a"]);
}

/// Counts PreEnqueue calls; passes pods whose name starts with "ok".
struct CountingGate(std::sync::atomic::AtomicUsize);

impl PreEnqueueCheck for CountingGate {
    fn check(&self, pod: &PodInfo) -> Result<(), (String, Status)> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if pod.key.name.starts_with("ok") {
            Ok(())
        } else {
            Err(("Gate".to_string(), Status::unresolvable("not yet")))
        }
    }
}

#[test]
fn gated_pods_are_rechecked_once_per_interval_while_active_has_work() {
    let q = SchedulingQueue::new(QueueConfig::default());
    let gate = Arc::new(CountingGate(Default::default()));
    q.set_pre_enqueue(gate.clone());
    let calls = || gate.0.load(std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    for i in 0..100 {
        q.add_or_update_at(pod(&format!("gated-{i}"), 0), false, t);
    }
    q.add_or_update_at(pod("ok-busy", 0), false, t);
    assert_eq!((q.stats().gated, q.stats().active, calls()), (100, 1, 101));
    let (kind, action) = node_added();
    // 50 events while activeQ has work: one re-check at most per interval, none yet due
    // within the interval after the first.
    for _ in 0..50 {
        q.on_event_at(&kind, action, t);
    }
    assert_eq!(calls(), 201, "the first event re-checks, the next 49 wait");
    assert_eq!(q.stats().recheck_pending, 100);
    assert!(!q.settled(&q.state.lock()));
    // Past the interval, the next pop re-checks the pods once more.
    let later = t + GATED_RECHECK_INTERVAL;
    assert_eq!(names(&q, later), ["ok-busy"]);
    assert_eq!(calls(), 301);
    assert_eq!(q.stats().recheck_pending, 0);
    // With activeQ empty, an event re-checks at once.
    q.on_event_at(&kind, action, later);
    assert_eq!(calls(), 401);
    assert_eq!(q.stats().gated, 100);
}

#[test]
fn a_pod_deleted_while_in_flight_is_not_requeued() {
    let q = SchedulingQueue::new(QueueConfig::default());
    let t = Instant::now();
    q.add_or_update_at(pod("a", 0), false, t);
    let p = q.try_pop_at(t).unwrap();
    q.delete(&p.pod.key.uid);
    q.requeue_failed_at(&p, Code::Error, HashSet::new(), t);
    assert_eq!(q.stats(), QueueStats::default());
}

#[test]
fn a_status_only_update_does_not_move_an_unschedulable_pod() {
    let q = queue_with_hints();
    let t = Instant::now();
    q.add_or_update_at(pod("a", 0), false, t);
    let p = q.try_pop_at(t).unwrap();
    q.requeue_failed_at(
        &p,
        Code::Unschedulable,
        HashSet::from(["NodeResourcesFit".to_string()]),
        t,
    );
    q.add_or_update_at(pod("a", 0), false, t + Duration::from_secs(30));
    assert_eq!(q.stats().unschedulable, 1);
    q.add_or_update_at(pod("a", 0), true, t + Duration::from_secs(30));
    assert_eq!(q.stats().active, 1);
}

#[tokio::test(start_paused = true)]
async fn pop_sleeps_until_the_backoff_expires() {
    let q = Arc::new(SchedulingQueue::new(QueueConfig::default()));
    q.add_or_update(pod("a", 0), false);
    let p = q.pop().await.unwrap();
    let start = Instant::now();
    q.requeue_failed(&p, Code::Error, HashSet::new());
    let p = q.pop().await.unwrap();
    assert_eq!(p.attempts, 2);
    assert!(start.elapsed() >= Duration::from_secs(1));
}

/// A spec update that sends an unschedulable pod to backoff must wake a sleeping `pop`, which
/// would otherwise sleep until the pool's 5-minute flush (it once did: a flaky idle wait).
#[tokio::test]
async fn pop_wakes_for_a_backoff_an_update_started() {
    let q = Arc::new(SchedulingQueue::new(QueueConfig::default()));
    q.add_or_update(pod("a", 0), false);
    let p = q.pop().await.unwrap();
    q.requeue_failed(&p, Code::Unschedulable, HashSet::new());
    assert_eq!(q.stats().unschedulable, 1);
    let q2 = q.clone();
    let popper = tokio::spawn(async move { q2.pop().await.map(|p| p.attempts) });
    // One thread: the popper runs until it sleeps (only the 5-minute deadline ahead).
    tokio::task::yield_now().await;
    q.add_or_update(pod("a", 0), true);
    assert_eq!(
        q.stats().backoff,
        1,
        "the failure was just now: the update backs off"
    );
    let attempts = tokio::time::timeout(Duration::from_secs(60), popper)
        .await
        .expect("popped when the 1s backoff expired, not at the 5-minute flush")
        .unwrap();
    assert_eq!(attempts, Some(2));
}

#[tokio::test]
async fn pop_wakes_when_a_pod_is_added_and_stops_when_closed() {
    let q = Arc::new(SchedulingQueue::new(QueueConfig::default()));
    let q2 = q.clone();
    let popper = tokio::spawn(async move { q2.pop().await.map(|p| p.pod.key.name.clone()) });
    tokio::task::yield_now().await;
    q.add_or_update(pod("a", 0), false);
    assert_eq!(popper.await.unwrap().as_deref(), Some("a"));
    q.close();
    assert!(q.pop().await.is_none());
}

#[test]
fn gated_pods_are_rechecked_only_for_events_their_plugin_registered() {
    let q = SchedulingQueue::new(QueueConfig::default());
    q.set_hints(HashMap::from([(
        "Gate".to_string(),
        vec![ClusterEvent {
            resource: ResourceKind::node(),
            actions: vec![EventAction::Added],
        }],
    )]));
    let gate = Arc::new(CountingGate(Default::default()));
    q.set_pre_enqueue(gate.clone());
    let calls = || gate.0.load(std::sync::atomic::Ordering::Relaxed);
    let t = Instant::now();
    for i in 0..20 {
        q.add_or_update_at(pod(&format!("gated-{i}"), 0), false, t);
    }
    q.add_or_update_at(pod("ok-busy", 0), false, t);
    assert_eq!(calls(), 21);
    // Node updates do not interest the gate: nothing waits for a re-check, nothing re-runs.
    for _ in 0..30 {
        q.on_event_at(&ResourceKind::node(), EventAction::Modified, t);
    }
    assert_eq!((q.stats().recheck_pending, calls()), (0, 21));
    // A node added does: the first event past the interval re-checks all 20 at once; repeats
    // within the next interval are one pending re-check of the same 20, done at the next pop.
    let later = t + GATED_RECHECK_INTERVAL;
    for _ in 0..30 {
        q.on_event_at(&ResourceKind::node(), EventAction::Added, later);
    }
    assert_eq!((q.stats().recheck_pending, calls()), (20, 41));
    assert_eq!(names(&q, later + GATED_RECHECK_INTERVAL), ["ok-busy"]);
    assert_eq!((q.stats().recheck_pending, calls()), (0, 61));
    assert_eq!(q.stats().gated, 20);
}
