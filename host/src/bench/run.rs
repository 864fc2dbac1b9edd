//! One run of one workload in this process: an embedded API server, the objects created through
//! `kube::Client`, the scheduler built from the default configuration (with the DRA plugin
//! native or as Wasm), init pods scheduled, then the measured phase.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use embedded_apiserver::{ApiServer, FaultPlan};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::BenchError;
use super::create::{create_all, delete_pods};
use super::measure::{self, PointTime, Quantiles};
use super::objects::{self, INIT_NAMESPACE, PodClaim, TEST_NAMESPACE};
use super::workload::{PluginMode, RunSpec, Workload};
use crate::config::{DEFAULT_SCHEDULER_NAME, DYNAMIC_RESOURCES, SchedulerConfig, WasmPluginConfig};
use crate::metrics::{AttemptLabels, Metrics};
use crate::plugins::Registry;
use crate::scheduler::{Scheduler, build};

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// What ran.
    pub spec: RunSpec,
    /// Measured pods the scheduler bound.
    pub bound: usize,
    /// Measured pods there were.
    pub expected: usize,
    /// Wall time of the measured phase, from the first measured pod's create to the last bind.
    pub seconds: f64,
    /// `bound / seconds`.
    pub pods_per_second: f64,
    /// How long creating the measured pods took (they are created while the scheduler runs).
    pub create_seconds: f64,
    /// Nodes, DRA objects and init pods: created and scheduled before measuring.
    pub setup_seconds: f64,
    /// Scheduling attempt latency over the measured phase (engine histogram).
    pub attempts: Quantiles,
    /// Attempts per result over the measured phase.
    pub attempts_by_result: BTreeMap<String, u64>,
    /// Plugin time per extension point over the measured phase (sampled cycles only).
    pub point_times: Vec<PointTime>,
    /// One cycle in this many recorded plugin durations (attempts / PreFilter calls).
    pub plugin_sample_every: Option<f64>,
    /// Peak RSS of the whole process (API server, objects and scheduler), bytes.
    pub peak_rss_bytes: u64,
    /// CPU seconds of the process during the measured phase.
    pub cpu_seconds: f64,
    /// CPU seconds per thread name during the measured phase (live threads only).
    pub cpu_by_thread: BTreeMap<String, f64>,
    /// Pods in activeQ, averaged over samples every 20 ms of the measured phase (batch
    /// workloads): near 0 means the scheduling loop waits for pods to arrive from the watch.
    #[serde(default)]
    pub queue_active_mean: f64,
    /// The largest activeQ sample.
    #[serde(default)]
    pub queue_active_max: usize,
    /// Resident set size after each phase (objects created, scheduler synced, init pods
    /// scheduled, measured phase), bytes: shows what the API server holds versus the scheduler.
    #[serde(default)]
    pub rss_phases: Vec<(String, u64)>,
    /// Pods/s over the measured phase: (seconds since its start, rate over the window ending
    /// there), from the same samples as `queue_active_mean` (batch workloads).
    #[serde(default)]
    pub throughput: Vec<(f64, f64)>,
    /// The machine's 1-minute load average when the measured phase started.
    #[serde(default)]
    pub load_average: f64,
    /// API faults injected into the scheduler's requests during the measured phase.
    #[serde(default)]
    pub faults_injected: u64,
}

/// Whom the scheduler's requests are attributed to, so `--faults` hits them and not the harness.
const SCHEDULER_USER: &str = "system:kube-scheduler";

/// How often the activeQ length is sampled.
const QUEUE_SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// activeQ length samples.
#[derive(Default)]
struct QueueDepth {
    sum: f64,
    n: usize,
    max: usize,
    /// (when, pods bound so far) at each sample.
    bound: Vec<(Instant, u64)>,
}

impl QueueDepth {
    fn sample(&mut self, active: usize, bound: u64) {
        self.sum += active as f64;
        self.n += 1;
        self.max = self.max.max(active);
        self.bound.push((Instant::now(), bound));
    }

    /// Pods/s in about 40 windows from `start`.
    fn throughput(&self, start: Instant) -> Vec<(f64, f64)> {
        let Some(&(last, _)) = self.bound.last() else {
            return Vec::new();
        };
        let window = (last - start).as_secs_f64() / 40.0;
        let window = window.max(QUEUE_SAMPLE_EVERY.as_secs_f64());
        let (mut out, mut from) = (Vec::new(), (0.0, self.bound[0].1));
        for (i, &(at, n)) in self.bound.iter().enumerate() {
            let t = (at - start).as_secs_f64();
            let last = i + 1 == self.bound.len();
            if t - from.0 >= window || (last && t > from.0) {
                out.push((t, n.saturating_sub(from.1) as f64 / (t - from.0)));
                from = (t, n);
            }
        }
        out
    }

    fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum / self.n as f64
        }
    }
}

/// Progress lines go to stderr so that a parent process can read the result on stdout.
fn progress(spec: &RunSpec, msg: &str) {
    eprintln!("[{} {}] {msg}", spec.workload, spec.mode.name());
}

/// Bound pods according to the engine's `scheduler_schedule_attempts_total{result="scheduled"}`.
fn scheduled(metrics: &Metrics) -> u64 {
    let labels = AttemptLabels {
        result: "scheduled",
        profile: DEFAULT_SCHEDULER_NAME.to_string(),
    };
    metrics.schedule_attempts.get_or_create(&labels).get()
}

/// How often a wait looks at the engine's counters. Polling, rather than
/// [`Scheduler::wait_until`], keeps the harness from being woken on every cache change and
/// stealing the scheduling loop's CPU; it adds at most this much to a measured phase.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Waits until the engine has bound `target` pods in all, sampling activeQ's length into
/// `depth` every [`QUEUE_SAMPLE_EVERY`]; fails after `timeout` with what the queue holds and why
/// the last pod failed.
async fn wait_scheduled(
    scheduler: &Scheduler,
    metrics: &Metrics,
    target: u64,
    timeout: Duration,
    phase: &str,
    mut depth: Option<&mut QueueDepth>,
) -> Result<(), BenchError> {
    let start = Instant::now();
    let mut next_sample = start;
    while scheduled(metrics) < target {
        if start.elapsed() > timeout {
            let q = scheduler.queue().stats();
            let why = scheduler
                .outcomes()
                .into_iter()
                .find_map(|o| o.message)
                .unwrap_or_default();
            return Err(BenchError::Stalled {
                phase: phase.to_string(),
                done: scheduled(metrics),
                expected: target,
                detail: format!(
                    "queue: {} active, {} backoff, {} unschedulable, {} gated, {} in flight; a failure: {why}",
                    q.active, q.backoff, q.unschedulable, q.gated, q.in_flight
                ),
            });
        }
        if let Some(d) = depth.as_deref_mut()
            && Instant::now() >= next_sample
        {
            d.sample(scheduler.queue().stats().active, scheduled(metrics));
            next_sample += QUEUE_SAMPLE_EVERY;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    Ok(())
}

/// Generous deadline for scheduling `pods` pods (never under two minutes).
fn deadline(pods: usize) -> Duration {
    Duration::from_secs(120).max(Duration::from_millis(pods as u64 * 20))
}

/// The measured phase's deadline: preemptors take two cycles each and a dry run over a tenth
/// of the nodes, so at 5000 nodes on 2 cores they need more than 20 ms a pod.
fn measure_deadline(spec: &RunSpec, pods: usize) -> Duration {
    if spec.workload.preempts() {
        deadline(pods).max(Duration::from_millis(pods as u64 * 100))
    } else {
        deadline(pods)
    }
}

/// The pods of one phase and, for shared claims, the claims they use.
fn pods(spec: &RunSpec, namespace: &str, prefix: &str, count: usize) -> (Vec<Value>, Vec<Value>) {
    let s = spec.sizes;
    let mut claims = Vec::new();
    if spec.workload.preempts() {
        let high = namespace == TEST_NAMESPACE;
        let pods = (0..count)
            .map(|i| objects::priority_pod(namespace, &format!("{prefix}-{i}"), high))
            .collect();
        return (pods, claims);
    }
    if matches!(
        spec.workload,
        Workload::TopologySpreading | Workload::SchedulingPodAntiAffinity
    ) {
        let spread = spec.workload == Workload::TopologySpreading;
        let pods = (0..count)
            .map(|i| objects::placed_pod(namespace, &format!("{prefix}-{i}"), spread))
            .collect();
        return (pods, claims);
    }
    let pods = (0..count)
        .map(|i| {
            let name = format!("{prefix}-{i}");
            match s.pods_per_claim {
                0 => objects::pod(namespace, &name, PodClaim::None),
                1 => objects::pod(namespace, &name, PodClaim::Template),
                n => {
                    let claim = format!("shared-{}", i / n);
                    if i % n == 0 {
                        claims.push(objects::claim(namespace, &claim));
                    }
                    objects::pod(namespace, &name, PodClaim::Shared(&claim))
                }
            }
        })
        .collect();
    (pods, claims)
}

/// The scheduler configuration: `base`, plus the Wasm build of the DRA plugin in place of the
/// native one in Wasm mode (compiled once into a cache under the target directory).
fn config(
    spec: &RunSpec,
    base: &SchedulerConfig,
    wasm: &Path,
) -> Result<SchedulerConfig, BenchError> {
    let mut config = base.clone();
    if spec.mode == PluginMode::Wasm {
        if config.wasm.cache_dir.is_none() {
            config.wasm.cache_dir = Some(super::target_dir().join("bench-wasm-cache"));
        }
        if !wasm.is_file() {
            return Err(BenchError::MissingWasm(wasm.to_path_buf()));
        }
        config.wasm.plugins.push(WasmPluginConfig {
            name: DYNAMIC_RESOURCES.to_string(),
            path: wasm.to_path_buf(),
            sha256: None,
        });
    }
    Ok(config)
}

/// Runs one workload in this process with the scheduler configuration `base` (usually
/// [`SchedulerConfig::default`]; `wasm` is the DRA plugin component for [`PluginMode::Wasm`]).
/// Must be called inside a multi-threaded Tokio runtime.
///
/// # Errors
/// An object the API server refuses, a scheduler that does not build, or a phase that does not
/// finish in time.
pub async fn run(
    spec: RunSpec,
    base: &SchedulerConfig,
    wasm: &Path,
) -> Result<RunResult, BenchError> {
    let s = spec.sizes;
    let setup_start = Instant::now();
    let server = ApiServer::new();
    let client = server.client();

    // The cluster: namespaces, nodes, and the DRA driver's slices, class and templates.
    create_all(
        &client,
        vec![
            objects::namespace(INIT_NAMESPACE),
            objects::namespace(TEST_NAMESPACE),
        ],
    )
    .await?;
    let mut cluster: Vec<Value> = if spec.workload == Workload::TopologySpreading {
        (0..s.nodes).map(objects::zoned_node).collect()
    } else {
        (0..s.nodes).map(objects::node).collect()
    };
    if s.devices_per_node > 0 {
        cluster.push(objects::device_class());
        if spec.workload.partitionable() {
            cluster.extend(
                (0..s.nodes).flat_map(|i| objects::partitionable_slices(i, s.devices_per_node)),
            );
        } else {
            cluster.extend((0..s.nodes).map(|i| objects::resource_slice(i, s.devices_per_node)));
        }
    }
    if spec.workload.preempts() {
        cluster.extend(objects::priority_classes());
    }
    if s.pods_per_claim == 1 {
        cluster.push(objects::claim_template(INIT_NAMESPACE));
        cluster.push(objects::claim_template(TEST_NAMESPACE));
    }
    create_all(&client, cluster).await?;
    let mut rss_phases = Vec::new();
    let mut rss =
        |phase: &str| rss_phases.push((phase.to_string(), measure::rss_bytes().unwrap_or(0)));
    rss("cluster objects on the API server");

    let metrics = Arc::new(Metrics::new());
    let scheduler = build(
        server.client_as(SCHEDULER_USER),
        &config(&spec, base, wasm)?,
        Registry::with_builtins(),
        metrics.clone(),
    )
    .await?;
    let nodes = s.nodes;
    tokio::time::timeout(
        deadline(nodes),
        scheduler.wait_until(|sc| sc.cache().is_synced() && sc.cache().node_count() == nodes),
    )
    .await
    .map_err(|_| BenchError::Stalled {
        phase: "cache sync".into(),
        done: scheduler.cache().node_count() as u64,
        expected: nodes as u64,
        detail: "nodes in the scheduler's cache".into(),
    })?;
    progress(
        &spec,
        &format!(
            "{} nodes synced in {:.1}s",
            nodes,
            setup_start.elapsed().as_secs_f64()
        ),
    );
    rss("scheduler started and synced");

    let (init_pods, init_claims) = pods(&spec, INIT_NAMESPACE, "init", s.init_pods);
    create_all(&client, init_claims).await?;
    create_all(&client, init_pods).await?;
    wait_scheduled(
        &scheduler,
        &metrics,
        s.init_pods as u64,
        deadline(s.init_pods),
        "init pods",
        None,
    )
    .await?;
    let setup_seconds = setup_start.elapsed().as_secs_f64();
    progress(
        &spec,
        &format!(
            "{} init pods scheduled; setup took {setup_seconds:.1}s",
            s.init_pods
        ),
    );
    rss("init pods scheduled");
    // A component no cache knew serves baseline code while Cranelift compiles it on another
    // thread; measure the code a running scheduler settles on, without that compile's CPU.
    if let Some(wasm) = scheduler.wasm() {
        let wasm = wasm.clone();
        let settled =
            tokio::task::spawn_blocking(move || wasm.wait_optimized(Duration::from_secs(300)))
                .await
                .unwrap_or(false);
        if !settled {
            progress(
                &spec,
                "optimized code not ready after 300s; measuring baseline code",
            );
        }
    }
    let load_average = measure::load_average().unwrap_or(0.0);

    // The measured phase.
    let base = scheduled(&metrics);
    measure::reset(&metrics);
    if let Some(text) = &spec.faults {
        let mut plan = FaultPlan::parse(text).map_err(|e| BenchError::Usage(e.to_string()))?;
        // The harness's own requests (creating the measured pods, checking them) stay clean.
        if plan.users.is_empty() {
            plan.users.push(SCHEDULER_USER.to_string());
        }
        server.set_faults(Some(plan));
    }
    let (cpu0, threads0) = measure::cpu_seconds();
    let mut depth = QueueDepth::default();
    let start = Instant::now();
    let (expected, create_seconds) = if s.duration.is_zero() {
        measure_batch(&spec, &client, &scheduler, &metrics, base, &mut depth).await?
    } else {
        measure_steady(&spec, &client, &scheduler, &metrics, base).await?
    };
    let seconds = start.elapsed().as_secs_f64();
    let (cpu1, threads1) = measure::cpu_seconds();
    let bound = (scheduled(&metrics) - base) as usize;
    let faults_injected = server.injected_faults();
    server.set_faults(None);
    rss("measured pods scheduled");
    // Read before verifying: the verification's pod list is the harness's, not the scheduler's.
    let peak_rss_bytes = measure::peak_rss_bytes().unwrap_or(0);
    if s.duration.is_zero() {
        verify_bound(&client, expected).await?;
    }

    let (attempts, attempts_by_result) = measure::attempt_quantiles(&metrics);
    let point_times = measure::point_times(&metrics);
    let pre_filter_calls = point_times
        .iter()
        .filter(|p| p.point == "PreFilter")
        .map(|p| p.calls)
        .max()
        .unwrap_or(0);
    let total_attempts: u64 = attempts_by_result.values().sum();
    let cpu_by_thread = threads1
        .into_iter()
        .map(|(name, secs)| {
            let before = threads0.get(&name).copied().unwrap_or(0.0);
            (name, (secs - before).max(0.0))
        })
        .filter(|(_, secs)| *secs > 0.0)
        .collect();
    scheduler.shutdown().await;
    let result = RunResult {
        spec,
        bound,
        expected,
        seconds,
        pods_per_second: bound as f64 / seconds.max(1e-9),
        create_seconds,
        setup_seconds,
        attempts,
        attempts_by_result,
        point_times,
        plugin_sample_every: (pre_filter_calls > 0)
            .then(|| total_attempts as f64 / pre_filter_calls as f64),
        peak_rss_bytes,
        cpu_seconds: cpu1 - cpu0,
        cpu_by_thread,
        queue_active_mean: depth.mean(),
        queue_active_max: depth.max,
        throughput: depth.throughput(start),
        rss_phases,
        load_average,
        faults_injected,
    };
    progress(
        &result.spec,
        &format!(
            "{} pods in {:.2}s: {:.0} pods/s",
            bound, seconds, result.pods_per_second
        ),
    );
    Ok(result)
}

/// Creates every measured pod while the scheduler runs and waits until all are bound.
/// Returns the pod count and how long creating them took.
async fn measure_batch(
    spec: &RunSpec,
    client: &Client,
    scheduler: &Scheduler,
    metrics: &Metrics,
    base: u64,
    depth: &mut QueueDepth,
) -> Result<(usize, f64), BenchError> {
    let count = spec.sizes.measure_pods;
    let (test_pods, test_claims) = pods(spec, TEST_NAMESPACE, "pod", count);
    // Shared claims exist before their pods, as a user would create them.
    create_all(client, test_claims).await?;
    let start = Instant::now();
    let creator = {
        let client = client.clone();
        tokio::spawn(async move {
            let r = create_all(&client, test_pods).await;
            (r, start.elapsed().as_secs_f64())
        })
    };
    wait_scheduled(
        scheduler,
        metrics,
        base + count as u64,
        measure_deadline(spec, count),
        "measured pods",
        Some(depth),
    )
    .await?;
    let (created, create_seconds) = creator
        .await
        .map_err(|e| BenchError::Object(format!("pod creator: {e}")))?;
    created?;
    Ok((count, create_seconds))
}

/// The steady state: batches of `measure_pods` pods are created, scheduled and deleted until the
/// duration is over. Returns the pods scheduled and the time spent creating them.
async fn measure_steady(
    spec: &RunSpec,
    client: &Client,
    scheduler: &Scheduler,
    metrics: &Metrics,
    base: u64,
) -> Result<(usize, f64), BenchError> {
    let (batch, duration) = (spec.sizes.measure_pods, spec.sizes.duration);
    let start = Instant::now();
    let mut create_seconds = 0.0;
    let mut done = 0usize;
    let mut round = 0usize;
    while start.elapsed() < duration {
        let (pods, _) = pods(spec, TEST_NAMESPACE, &format!("steady-{round}"), batch);
        let names: Vec<String> = (0..batch).map(|i| format!("steady-{round}-{i}")).collect();
        let t = Instant::now();
        create_all(client, pods).await?;
        create_seconds += t.elapsed().as_secs_f64();
        done += batch;
        // Each batch waits on its own bindings, so wake on every change rather than poll.
        let target = base + done as u64;
        if tokio::time::timeout(
            deadline(batch),
            scheduler.wait_until(|_| scheduled(metrics) >= target),
        )
        .await
        .is_err()
        {
            // Let the polling wait report what is stuck.
            wait_scheduled(
                scheduler,
                metrics,
                target,
                Duration::ZERO,
                "steady-state pods",
                None,
            )
            .await?;
        }
        delete_pods(client, TEST_NAMESPACE, &names).await?;
        round += 1;
    }
    Ok((done, create_seconds))
}

/// Checks on the API server that every measured pod has a node.
async fn verify_bound(client: &Client, expected: usize) -> Result<(), BenchError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|source| BenchError::Api {
            what: "listing pods".into(),
            source,
        })?;
    let bound = list
        .items
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
        .count();
    if bound == expected {
        Ok(())
    } else {
        Err(BenchError::Stalled {
            phase: "verification".into(),
            done: bound as u64,
            expected: expected as u64,
            detail: "measured pods with spec.nodeName on the API server".into(),
        })
    }
}
