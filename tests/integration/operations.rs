//! Running in a cluster, on the embedded API server: `wasm_scheduler::cluster::Runner` (what
//! `wasm-scheduler run` runs) with leader election, `/metrics` and the health endpoints scraped
//! over HTTP, Events, pods of other schedulers left alone, and every request the scheduler makes
//! checked against `deploy/rbac.yaml`.
//!
//! Requests are attributed to the scheduler's service account with `ApiServer::client_as`, and
//! the API server's request log is the ground truth for "bound exactly once" and "never
//! touched". Waits are on conditions with a timeout, never fixed sleeps.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use embedded_apiserver::{ApiServer, RequestRecord};
use integration_tests::{is_bound, named, node_yaml, pod_yaml, scheduled_condition, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_yaml_ng::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use wasm_scheduler::cluster::{Fence, Role, RunError, RunOptions, Runner};
use wasm_scheduler::config::SchedulerConfig;
use wasm_scheduler::plugins::Registry;

/// The user `deploy/rbac.yaml` binds.
const SA: &str = "system:serviceaccount:kube-system:wasm-scheduler";
const TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Short leader-election timings (lease 2s, renew deadline 1s, retry 200ms).
fn leader_config(lease: &str) -> SchedulerConfig {
    let mut c = SchedulerConfig::default();
    let le = &mut c.leader_election;
    le.leader_elect = true;
    le.resource_name = lease.into();
    le.resource_namespace = "kube-system".into();
    le.lease_duration = Duration::from_secs(2);
    le.renew_deadline = Duration::from_secs(1);
    le.retry_period = Duration::from_millis(200);
    c
}

/// One scheduler instance as a process would run it, with a kill switch.
struct Instance {
    role: watch::Receiver<Role>,
    endpoint: SocketAddr,
    identity: Option<String>,
    /// Cuts every request of the instance, leader election included (a dead process).
    kill: Fence,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), RunError>>,
}

impl Instance {
    async fn start(server: &ApiServer, user: &str, options: RunOptions) -> Instance {
        integration_tests::init_tracing();
        let kill = Fence::new();
        let client = kill.wrap(server.client_as(user));
        let mut options = options;
        options.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
        options.hot_swap = false;
        let runner = Runner::start(client, options)
            .await
            .expect("the runner starts");
        let (stop, stopped) = oneshot::channel::<()>();
        let (role, endpoint, identity) = (
            runner.role(),
            runner.endpoint().unwrap(),
            runner.identity().map(str::to_string),
        );
        let task = tokio::spawn(runner.run(async {
            let _ = stopped.await;
        }));
        Instance {
            role,
            endpoint,
            identity,
            kill,
            stop: Some(stop),
            task,
        }
    }

    async fn wait_role(&mut self, role: Role) {
        tokio::time::timeout(TIMEOUT, self.role.wait_for(|r| *r == role))
            .await
            .unwrap_or_else(|_| panic!("role {role:?} in time"))
            .expect("the runner is alive");
    }

    /// Like a killed process: no request leaves it any more, nothing is released.
    fn kill(self) {
        self.kill.close();
        self.task.abort();
    }

    /// SIGTERM: stop scheduling and release the lease.
    async fn shutdown(mut self) -> Result<(), RunError> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("stops in time")
            .expect("the task did not panic")
    }

    async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.endpoint, path).await
    }

    async fn metrics(&self) -> Metrics {
        let (code, body) = self.get("/metrics").await;
        assert_eq!(code, 200, "{body}");
        Metrics::parse(&body)
    }
}

/// A plain HTTP/1.0 GET (the endpoint closes the connection after answering).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a full response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    (code, body.to_string())
}

/// Waits until `f` returns `Some`, re-checking on every tick of `changes` (an API watch or a
/// poll of the endpoint); panics after [`TIMEOUT`] with `what`.
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, mut f: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        // Condition polling of an HTTP endpoint (nothing to watch there); short and bounded.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Parsed Prometheus text: samples by name, each with its labels.
struct Metrics(Vec<(String, BTreeMap<String, String>, f64)>);

impl Metrics {
    /// Parses the text exposition format (`# HELP`/`# TYPE` lines skipped).
    fn parse(text: &str) -> Metrics {
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("a number in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    (name.to_string(), parse_labels(body))
                }
            };
            out.push((name, labels, value));
        }
        Metrics(out)
    }

    /// The sum of the samples of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _, _)| n == name)
    }
}

fn parse_labels(body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("key=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        rest = after[end..].trim_start_matches(',');
    }
    labels
}

/// Successful bindings per pod name in the request log.
fn successful_bindings(records: &[RequestRecord], user: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in records {
        if r.user == user
            && r.verb == "create"
            && r.resource == "pods"
            && r.subresource.as_deref() == Some("binding")
            && (200..300).contains(&r.code)
        {
            *out.entry(r.name.clone().unwrap_or_default()).or_default() += 1;
        }
    }
    out
}

async fn events(client: &kube::Client, namespace: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .expect("events list")
        .items
}

fn regarding(e: &Event) -> &str {
    e.regarding
        .as_ref()
        .and_then(|r| r.name.as_deref())
        .unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Leader election

/// Two instances; the leader is killed (no lease release) in the middle of a stream of pods;
/// the standby takes over and every pod ends bound, each by exactly one successful binding.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_takes_over_from_a_killed_leader_and_no_pod_is_bound_twice() {
    let server = ApiServer::new();
    server.record_requests(true);
    let admin = server.client();
    let mut nodes = String::new();
    for i in 0..4 {
        nodes.push_str(&node_yaml(&format!("n{i}"), "32", "64Gi", "{}", "[]"));
    }
    server
        .load_manifest_str("nodes.yaml", &nodes)
        .await
        .unwrap();

    let mut a = Instance::start(&server, SA, RunOptions::new(leader_config("ha"))).await;
    a.wait_role(Role::Leader).await;
    let mut b = Instance::start(&server, SA, RunOptions::new(leader_config("ha"))).await;
    // A standby is healthy and, once its cache synced, ready (as kube-scheduler's standbys).
    eventually("the standby is ready", || async {
        (b.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(*b.role.borrow(), Role::Standby);
    assert_eq!(b.get("/healthz").await.0, 200);
    let bm = b.metrics().await;
    assert_eq!(
        bm.sum("leader_election_master_status", &[("name", "ha")]),
        0.0
    );

    // A steady stream of pods (one every 10 ms); the leader is killed once it bound 10 of
    // them, while the stream goes on and some of its binding cycles are still in flight.
    const PODS: usize = 80;
    let producer = {
        let server = server.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for i in 0..PODS {
                tick.tick().await;
                let yaml = pod_yaml(&format!("p{i:02}"), "100m", "64Mi", "");
                server.load_manifest_str("pod.yaml", &yaml).await.unwrap();
            }
        })
    };
    // Counted from the request log, not from the pods: a pod shows as bound before its binding
    // request is logged, so the log is what `killed_at` below cuts.
    eventually("the leader bound 10 pods", || async {
        (successful_bindings(&server.requests(), SA).len() >= 10).then_some(())
    })
    .await;
    let identity_b = b.identity.clone().unwrap();
    a.kill();
    let killed_at = server.requests().len();
    b.wait_role(Role::Leader).await;
    producer.await.unwrap();
    let pods = wait_for(&admin, TIMEOUT, |pods| {
        pods.len() == PODS && pods.iter().all(is_bound)
    })
    .await;
    assert_eq!(pods.len(), PODS);
    let by_a = successful_bindings(&server.requests()[..killed_at], SA);
    let by_b = successful_bindings(&server.requests()[killed_at..], SA);
    eprintln!(
        "takeover: the leader bound {} pods, the standby {}",
        by_a.len(),
        by_b.len()
    );
    assert!(by_a.len() >= 10 && !by_b.is_empty());

    let records = server.requests();
    let bound = successful_bindings(&records, SA);
    for p in &pods {
        let name = p.metadata.name.clone().unwrap();
        assert_eq!(bound.get(&name), Some(&1), "{name} bound once: {bound:?}");
    }
    let conflicts = records
        .iter()
        .filter(|r| r.subresource.as_deref() == Some("binding") && r.code == 409)
        .count();
    eprintln!(
        "takeover: {} successful bindings, {conflicts} refused with 409",
        bound.values().sum::<usize>()
    );

    let lease = Api::<Lease>::namespaced(admin.clone(), "kube-system")
        .get("ha")
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(identity_b.as_str()));
    assert_eq!(spec.lease_transitions, Some(1));
    let bm = b.metrics().await;
    assert_eq!(
        bm.sum("leader_election_master_status", &[("name", "ha")]),
        1.0
    );
    // The new leader reports every pod it bound.
    let scheduled_by_b = bm.sum(
        "scheduler_schedule_attempts_total",
        &[("result", "scheduled")],
    );
    assert!(scheduled_by_b >= 1.0, "the standby bound the rest");
    b.shutdown().await.unwrap();
}

/// A leader whose lease is taken stops at its next renewal: its client is fenced before
/// anything else is sent, `run` fails with `LostLease`, and later pods get no request from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_that_loses_its_lease_stops_before_sending_anything_more() {
    let server = ApiServer::new();
    server.record_requests(true);
    let admin = server.client();
    server
        .load_manifest_str("n.yaml", &node_yaml("n1", "32", "64Gi", "{}", "[]"))
        .await
        .unwrap();
    let mut a = Instance::start(&server, SA, RunOptions::new(leader_config("lost"))).await;
    a.wait_role(Role::Leader).await;
    server
        .load_manifest_str("p.yaml", &pod_yaml("before", "100m", "64Mi", ""))
        .await
        .unwrap();
    wait_for(&admin, TIMEOUT, |pods| pods.iter().all(is_bound)).await;

    // Another candidate takes the lease (as after a partition that outlasted the lease).
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "kube-system");
    let mut lease = leases.get("lost").await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("someone-else".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    leases
        .replace("lost", &PostParams::default(), &lease)
        .await
        .unwrap();
    a.wait_role(Role::Stopped).await;
    let stopped_at = server.requests().len();
    let result = tokio::time::timeout(TIMEOUT, a.task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(RunError::LostLease { ref lease }) if lease == "kube-system/lost"),
        "{result:?}"
    );

    server
        .load_manifest_str("p.yaml", &pod_yaml("after", "100m", "64Mi", ""))
        .await
        .unwrap();
    // Let the API server settle: a read through the admin client orders after any request the
    // deposed scheduler could still have had in flight.
    let after = Api::<Pod>::namespaced(admin.clone(), "default")
        .get("after")
        .await
        .unwrap();
    assert!(!is_bound(&after));
    let late: Vec<_> = server.requests()[stopped_at..]
        .iter()
        .filter(|r| r.user == SA && r.verb != "watch")
        .cloned()
        .collect();
    assert!(
        late.is_empty(),
        "requests after losing the lease: {late:#?}"
    );
}

/// On shutdown the leader releases the lease (holder cleared), and a standby takes over
/// without waiting for it to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_releases_the_lease_to_the_standby() {
    let server = ApiServer::new();
    let admin = server.client();
    let mut config = leader_config("handover");
    // A long lease: the handover must come from the release, not from expiry.
    config.leader_election.lease_duration = Duration::from_secs(600);
    config.leader_election.renew_deadline = Duration::from_secs(10);
    let mut a = Instance::start(&server, SA, RunOptions::new(config.clone())).await;
    a.wait_role(Role::Leader).await;
    let mut b = Instance::start(&server, SA, RunOptions::new(config)).await;
    b.wait_role(Role::Standby).await;
    a.shutdown().await.unwrap();
    b.wait_role(Role::Leader).await;
    let lease = Api::<Lease>::namespaced(admin, "kube-system")
        .get("handover")
        .await
        .unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity,
        b.identity.clone(),
        "the standby holds the lease"
    );
    b.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Metrics, events, health, other schedulers

/// A scenario with scheduled, unschedulable, erroring (Wasm deadline) pods and a pod of
/// another scheduler; then `/metrics` is scraped over HTTP and every count is compared with what
/// the API server saw: bindings, Events, and the pod conditions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_events_and_health_match_what_happened() {
    let config = crate::hostile_plugins::hostile_config("loop", "{callTimeoutMs: 100}");
    let server = ApiServer::new();
    server.record_requests(true);
    let admin = server.client();
    // 3 nodes too small for `big`, 2 with a taint it does not tolerate. They exist before the
    // scheduler starts, so its initial list has them and no pod is tried on fewer nodes.
    let mut cluster = String::new();
    for i in 0..3 {
        cluster.push_str(&node_yaml(&format!("small-{i}"), "1", "4Gi", "{}", "[]"));
    }
    for i in 0..2 {
        cluster.push_str(&node_yaml(
            &format!("gpu-{i}"),
            "64",
            "256Gi",
            "{}",
            "[{key: dedicated, value: gpu, effect: NoSchedule}]",
        ));
    }
    server
        .load_manifest_str("nodes.yaml", &cluster)
        .await
        .unwrap();
    let mut options = RunOptions::new(config);
    options.registry = Registry::with_builtins();
    let inst = Instance::start(&server, SA, options).await;
    assert_eq!(
        *inst.role.borrow(),
        Role::Leader,
        "no election: leads at once"
    );
    let (code, body) = inst.get("/healthz?verbose").await;
    assert_eq!(code, 200);
    assert!(body.contains("[+]ping ok"), "{body}");
    eventually("the cache is synced", || async {
        (inst.get("/readyz").await.0 == 200).then_some(())
    })
    .await;

    let mut cluster = String::new();
    for i in 0..6 {
        cluster.push_str(&pod_yaml(&format!("web-{i}"), "100m", "64Mi", ""));
    }
    cluster.push_str(&pod_yaml("big", "2", "1Gi", ""));
    cluster.push_str(&pod_yaml("evil-1", "100m", "64Mi", ""));
    cluster.push_str(&pod_yaml(
        "foreign",
        "100m",
        "64Mi",
        "schedulerName: other-scheduler",
    ));
    server
        .load_manifest_str("pods.yaml", &cluster)
        .await
        .unwrap();

    wait_for(&admin, TIMEOUT, |pods| {
        let web_bound = pods
            .iter()
            .filter(|p| p.metadata.name.as_deref().unwrap().starts_with("web"))
            .filter(|p| is_bound(p))
            .count();
        let failed = |name: &str, text: &str| {
            pods.iter().any(|p| {
                p.metadata.name.as_deref() == Some(name)
                    && scheduled_condition(p)
                        .and_then(|c| c.2)
                        .is_some_and(|m| m.contains(text))
            })
        };
        web_bound == 6 && failed("big", "0/5 nodes are available") && failed("evil-1", "deadline")
    })
    .await;
    // The erroring pod would retry forever; remove it so the scheduler can go idle.
    Api::<Pod>::namespaced(admin.clone(), "default")
        .delete("evil-1", &DeleteParams::default())
        .await
        .unwrap();
    let runner_idle = eventually("the scheduler is idle", || async {
        let m = inst.metrics().await;
        let pending = m.sum("scheduler_pending_pods", &[("queue", "active")])
            + m.sum("scheduler_pending_pods", &[("queue", "backoff")]);
        (pending == 0.0 && m.sum("scheduler_pending_pods", &[("queue", "unschedulable")]) == 1.0)
            .then_some(m)
    })
    .await;
    drop(runner_idle);
    // Events are written in the background: wait until every attempt has its Event.
    let m = eventually("one Event per attempt", || {
        let admin = admin.clone();
        let inst = &inst;
        async move {
            let m = inst.metrics().await;
            let evs = events(&admin, "default").await;
            let attempts = m.sum("scheduler_schedule_attempts_total", &[]);
            (evs.len() as f64 == attempts).then_some(m)
        }
    })
    .await;
    let evs = events(&admin, "default").await;
    let pods = Api::<Pod>::namespaced(admin.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;

    // Scheduled: one attempt, one Scheduled Event and one successful binding per web pod.
    let records = server.requests();
    let bound = successful_bindings(&records, SA);
    assert_eq!(bound.len(), 6, "{bound:?}");
    let attempts = |result| {
        m.sum(
            "scheduler_schedule_attempts_total",
            &[("result", result), ("profile", "default-scheduler")],
        )
    };
    assert_eq!(attempts("scheduled"), 6.0);
    let scheduled_events: Vec<&Event> = evs
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Scheduled"))
        .collect();
    assert_eq!(scheduled_events.len(), 6);
    for p in pods.iter().filter(|p| is_bound(p)) {
        let name = p.metadata.name.as_deref().unwrap();
        let node = p.spec.as_ref().unwrap().node_name.as_deref().unwrap();
        let e = scheduled_events
            .iter()
            .find(|e| regarding(e) == name)
            .unwrap_or_else(|| panic!("a Scheduled event for {name}"));
        assert_eq!(
            e.note.as_deref(),
            Some(format!("Successfully assigned default/{name} to {node}").as_str())
        );
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.action.as_deref(), Some("Binding"));
        assert_eq!(e.reporting_controller.as_deref(), Some("default-scheduler"));
    }
    assert_eq!(
        m.sum(
            "scheduler_scheduling_attempt_duration_seconds_count",
            &[("result", "scheduled")]
        ),
        6.0
    );
    assert_eq!(
        m.sum(
            "scheduler_pod_scheduling_sli_duration_seconds_count",
            &[("attempts", "1")]
        ),
        6.0
    );
    assert_eq!(m.sum("scheduler_pod_scheduling_attempts_count", &[]), 6.0);

    // Unschedulable: as many attempts as FailedScheduling Events for `big`, with the upstream
    // message.
    let failed_events = |name: &str| -> Vec<&Event> {
        evs.iter()
            .filter(|e| e.reason.as_deref() == Some("FailedScheduling") && regarding(e) == name)
            .collect()
    };
    let big_events = failed_events("big");
    assert!(!big_events.is_empty());
    assert_eq!(attempts("unschedulable"), big_events.len() as f64);
    let note = big_events[0].note.clone().unwrap();
    // Upstream `FitError.Error()`: "<count> <reason>" strings sorted as strings, then the
    // PostFilter message.
    assert!(
        note.starts_with(
            "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu."
        ),
        "{note}"
    );
    assert_eq!(big_events[0].type_.as_deref(), Some("Warning"));
    assert_eq!(big_events[0].action.as_deref(), Some("Scheduling"));
    let big = named(&pods, "big");
    let (status, reason, message) = scheduled_condition(big).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("False", Some("Unschedulable"))
    );
    assert_eq!(message.as_deref(), Some(note.as_str()));
    assert_eq!(
        m.sum("scheduler_pending_pods", &[("queue", "unschedulable")]),
        1.0
    );

    // Errors: every `evil-1` attempt hit the Wasm deadline once, had one Event.
    let evil_events = failed_events("evil-1");
    assert!(!evil_events.is_empty());
    assert_eq!(attempts("error"), evil_events.len() as f64);
    let hostile = [("plugin", "Hostile")];
    assert_eq!(
        m.sum("scheduler_wasm_plugin_deadline_exceeded_total", &hostile),
        attempts("error")
    );
    assert_eq!(
        m.sum("scheduler_wasm_plugin_traps_total", &hostile),
        attempts("error")
    );
    assert_eq!(
        m.sum("scheduler_wasm_plugin_respawns_total", &hostile),
        attempts("error")
    );
    assert_eq!(m.sum("scheduler_wasm_plugin_loads_total", &hostile), 1.0);
    assert_eq!(
        m.sum(
            "scheduler_wasm_plugin_reloads_total",
            &[("plugin", "Hostile"), ("result", "success")]
        ),
        0.0
    );
    // At most one Filter call per attempt (one batch of nodes; none when the built-in
    // filters already rejected every node), all timed.
    let filter_calls = m.sum(
        "scheduler_wasm_plugin_call_duration_seconds_count",
        &[("plugin", "Hostile"), ("extension_point", "filter")],
    );
    assert!(filter_calls >= attempts("scheduled") + attempts("error"));
    assert!(filter_calls <= attempts("scheduled") + attempts("unschedulable") + attempts("error"));
    assert!(m.has("scheduler_wasm_plugin_call_duration_seconds_bucket"));

    // The other scheduler's pod: no request names it, no Event, no condition, not bound.
    let foreign = named(&pods, "foreign");
    assert!(!is_bound(foreign));
    assert!(scheduled_condition(foreign).is_none());
    assert!(evs.iter().all(|e| regarding(e) != "foreign"));
    let touching: Vec<_> = records
        .iter()
        .filter(|r| r.user == SA && r.name.as_deref() == Some("foreign"))
        .collect();
    assert!(touching.is_empty(), "{touching:#?}");
    assert!(failed_events("foreign").is_empty());

    let (code, body) = inst.get("/readyz?verbose").await;
    assert_eq!(code, 200);
    assert!(body.contains("[+]sched-handler-sync ok"), "{body}");
    inst.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// RBAC

/// One rule of a (Cluster)Role, and the namespace it is limited to (a Role's).
#[derive(Debug)]
struct Rule {
    namespace: Option<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    resource_names: Vec<String>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .map(|x| x.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The rules bound to the service account in `deploy/rbac.yaml`.
fn rbac_rules() -> Vec<Rule> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/rbac.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect();
    let kind = |d: &Value| d["kind"].as_str().unwrap_or("").to_string();
    let name = |d: &Value| d["metadata"]["name"].as_str().unwrap_or("").to_string();
    // Roles reachable from a binding whose subject is the service account.
    let mut bound: BTreeSet<(String, String, Option<String>)> = BTreeSet::new();
    for d in &docs {
        let k = kind(d);
        if k != "ClusterRoleBinding" && k != "RoleBinding" {
            continue;
        }
        let subjects = d["subjects"].as_sequence().unwrap();
        let ours = subjects.iter().any(|s| {
            s["kind"].as_str() == Some("ServiceAccount")
                && s["name"].as_str() == Some("wasm-scheduler")
                && s["namespace"].as_str() == Some("kube-system")
        });
        if ours {
            let ns = (k == "RoleBinding")
                .then(|| d["metadata"]["namespace"].as_str().unwrap().to_string());
            bound.insert((
                d["roleRef"]["kind"].as_str().unwrap().to_string(),
                d["roleRef"]["name"].as_str().unwrap().to_string(),
                ns,
            ));
        }
    }
    assert!(
        docs.iter().any(|d| kind(d) == "ServiceAccount"
            && name(d) == "wasm-scheduler"
            && d["metadata"]["namespace"].as_str() == Some("kube-system")),
        "rbac.yaml has the ServiceAccount"
    );
    let mut rules = Vec::new();
    for (role_kind, role_name, binding_ns) in bound {
        let role = docs
            .iter()
            .find(|d| kind(d) == role_kind && name(d) == role_name)
            .unwrap_or_else(|| panic!("{role_kind} {role_name} exists"));
        for r in role["rules"].as_sequence().unwrap() {
            rules.push(Rule {
                namespace: binding_ns.clone(),
                api_groups: strings(r, "apiGroups"),
                resources: strings(r, "resources"),
                verbs: strings(r, "verbs"),
                resource_names: strings(r, "resourceNames"),
            });
        }
    }
    rules
}

/// The resource as RBAC names it: `pods/binding` for a subresource.
fn rbac_resource(r: &RequestRecord) -> String {
    match &r.subresource {
        Some(s) => format!("{}/{}", r.resource, s),
        None => r.resource.clone(),
    }
}

/// Whether `rule` allows `r` (RBAC's `RuleAllows`; `create` never matches `resourceNames`).
fn allows(rule: &Rule, r: &RequestRecord) -> bool {
    let any = |v: &[String], x: &str| v.iter().any(|e| e == "*" || e == x);
    if let Some(ns) = &rule.namespace
        && r.namespace.as_deref() != Some(ns.as_str())
    {
        return false;
    }
    let names_ok = rule.resource_names.is_empty()
        || r.name
            .as_deref()
            .is_some_and(|n| rule.resource_names.iter().any(|x| x == n));
    any(&rule.verbs, &r.verb)
        && any(&rule.api_groups, &r.api_group)
        && any(&rule.resources, &rbac_resource(r))
        && names_ok
}

/// The DRA example (claims from templates, a shared claim, an unsatisfiable pod), with leader
/// election, Events and conditions, run as the service account; every request it made must be
/// allowed by `deploy/rbac.yaml`, and every verb the file grants must have been used.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_request_is_allowed_by_deploy_rbac_and_every_rule_is_used() {
    let rules = rbac_rules();
    let server = ApiServer::new();
    server.record_requests(true);
    let admin = server.client();
    let mut config = leader_config("wasm-scheduler");
    config.profiles[0].scheduler_name = "default-scheduler".into();
    let mut a = Instance::start(&server, SA, RunOptions::new(config.clone())).await;
    a.wait_role(Role::Leader).await;
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/dra-gpu-cluster.yaml"
    );
    server
        .load_manifests(&[example.into()])
        .await
        .expect("the example loads");
    // Everything but the unsatisfiable pod is bound, and that one has its condition.
    wait_for(&admin, TIMEOUT, |pods| {
        let unbound: Vec<&Pod> = pods.iter().filter(|p| !is_bound(p)).collect();
        !pods.is_empty()
            && unbound.len() == 1
            && scheduled_condition(unbound[0]).is_some_and(|c| c.0 == "False")
    })
    .await;
    // Preemption: a budget is watched, a victim is marked and deleted, the preemptor nominated.
    let preemption = r#"
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: low}
value: 1
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 100
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: other, namespace: default}
spec: {maxUnavailable: 1, selector: {matchLabels: {app: other}}}
---
apiVersion: v1
kind: Node
metadata: {name: tiny, labels: {pool: tiny}}
status: {allocatable: {cpu: "1", memory: 1Gi, pods: "10"}}
---
apiVersion: v1
kind: Pod
metadata: {name: victim, namespace: default}
spec:
  nodeName: tiny
  priorityClassName: low
  terminationGracePeriodSeconds: 0
  containers: [{name: c, image: busybox, resources: {requests: {cpu: "1"}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: preemptor, namespace: default}
spec:
  priorityClassName: high
  nodeSelector: {pool: tiny}
  containers: [{name: c, image: busybox, resources: {requests: {cpu: "1"}}}]
"#;
    server
        .load_manifest_str("preemption.yaml", preemption)
        .await
        .expect("the preemption manifest loads");
    wait_for(&admin, TIMEOUT, |pods| {
        pods.iter()
            .any(|p| p.metadata.name.as_deref() == Some("preemptor") && is_bound(p))
    })
    .await;
    // Extended resources backed by DRA: the pod's special claim is created.
    let extended = r#"
apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: ext.example.com}
spec:
  extendedResourceName: example.com/ext-gpu
  selectors: [{cel: {expression: 'device.driver == "ext.example.com"'}}]
---
apiVersion: v1
kind: Node
metadata: {name: node-ext, labels: {kubernetes.io/hostname: node-ext}}
status: {allocatable: {cpu: "4", memory: 8Gi, pods: "10"}}
---
apiVersion: resource.k8s.io/v1
kind: ResourceSlice
metadata: {name: node-ext-slice}
spec:
  driver: ext.example.com
  nodeName: node-ext
  pool: {name: node-ext, generation: 1, resourceSliceCount: 1}
  devices: [{name: dev-0}, {name: dev-1}]
---
apiVersion: v1
kind: Pod
metadata: {name: ext-user, namespace: default}
spec:
  containers:
  - name: c
    image: busybox
    resources:
      requests: {example.com/ext-gpu: "1"}
      limits: {example.com/ext-gpu: "1"}
"#;
    server
        .load_manifest_str("extended.yaml", extended)
        .await
        .expect("the extended-resource manifest loads");
    wait_for(&admin, TIMEOUT, |pods| {
        pods.iter()
            .any(|p| p.metadata.name.as_deref() == Some("ext-user") && is_bound(p))
    })
    .await;
    a.shutdown().await.unwrap();

    let records: Vec<RequestRecord> = server
        .requests()
        .into_iter()
        .filter(|r| r.user == SA)
        .collect();
    assert!(!records.is_empty());
    let denied: Vec<String> = records
        .iter()
        .filter(|r| !rules.iter().any(|rule| allows(rule, r)))
        .map(|r| {
            format!(
                "{} {}/{} {} ns={:?} name={:?} -> {}",
                r.verb,
                r.api_group,
                r.api_version,
                rbac_resource(r),
                r.namespace,
                r.name,
                r.code
            )
        })
        .collect();
    assert!(
        denied.is_empty(),
        "requests outside deploy/rbac.yaml:\n{}",
        denied.join("\n")
    );

    // Every (group, resource, verb) the file grants was used by this scenario.
    let mut unused = Vec::new();
    for rule in &rules {
        for group in &rule.api_groups {
            for resource in &rule.resources {
                for verb in &rule.verbs {
                    let used = records.iter().any(|r| {
                        &r.api_group == group && &rbac_resource(r) == resource && &r.verb == verb
                    });
                    if !used {
                        unused.push(format!("{verb} {group}/{resource}"));
                    }
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "rules in deploy/rbac.yaml nothing used: {unused:?}"
    );
    let used: BTreeSet<String> = records
        .iter()
        .map(|r| format!("{} {}/{}", r.verb, r.api_group, rbac_resource(r)))
        .collect();
    eprintln!("requests by {SA}: {used:#?}");
    let per_kind: HashMap<String, usize> = records.iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(rbac_resource(r)).or_default() += 1;
        m
    });
    eprintln!("request counts: {per_kind:?}");
}

/// `deploy/scheduler.yaml`: its configuration parses, schedules `wasm-scheduler` pods, loads
/// the DRA plugin from the image, campaigns for the Lease `deploy/rbac.yaml` grants, and the
/// Deployment runs as that service account with the health endpoints as probes.
#[test]
fn the_deployment_manifests_agree_with_each_other() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/scheduler.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect();
    let find = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("a {kind}"))
    };
    let config_yaml = find("ConfigMap")["data"]["config.yaml"].as_str().unwrap();
    let config = SchedulerConfig::from_yaml_str("/etc/wasm-scheduler/config.yaml", config_yaml)
        .expect("the deployed configuration is valid");
    assert!(config.profile("wasm-scheduler").is_some());
    assert!(
        config.profile("default-scheduler").is_none(),
        "kube-scheduler keeps its pods"
    );
    let le = &config.leader_election;
    assert!(le.leader_elect);
    assert_eq!(le.resource_namespace, "kube-system");
    assert!(wasm_scheduler::leader::validate(le).is_ok());
    assert!(
        config
            .wasm
            .plugins
            .iter()
            .any(|p| p.name == "DynamicResources" && p.path.ends_with("dra_plugin.wasm"))
    );

    let rbac = rbac_rules();
    let lease_names: Vec<&String> = rbac
        .iter()
        .filter(|r| r.resources.iter().any(|x| x == "leases"))
        .flat_map(|r| r.resource_names.iter())
        .collect();
    assert_eq!(lease_names, [&le.resource_name], "the Role names the Lease");

    let pod = &find("Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"].as_str(), Some("wasm-scheduler"));
    let c = &pod["containers"][0];
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[0], "run");
    assert!(args.contains(&"--config=/etc/wasm-scheduler/config.yaml"));
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    assert!(mounts.contains(&"/etc/wasm-scheduler"));
    assert!(
        mounts.contains(&"/plugins/extra"),
        "a place for .wasm plugins"
    );
    let cache_dir = config.wasm.cache_dir.as_ref().unwrap();
    assert!(
        mounts.iter().any(|m| cache_dir.starts_with(m)),
        "the compiled-module cache is writable (read-only root filesystem)"
    );
}
