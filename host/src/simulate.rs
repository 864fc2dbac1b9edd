//! `simulate`: schedule the pods of some manifests on an embedded API server and report where
//! each went, without a cluster. The scheduler runs exactly as against a real cluster; the run
//! ends when it can make no more progress on its own.
//!
//! "No more progress" is [`Scheduler::is_idle`], or: everything else is quiet and every pod
//! still backing off failed its last two attempts with the same message while nothing in the
//! cluster changed in between (a plugin that always errors would otherwise be retried until
//! the timeout). Those pods are reported as still retrying.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use embedded_apiserver::{ApiServer, ManifestError};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject, ListParams};
use serde::Serialize;

use crate::cache::{PendingWork, api_resource};
use crate::config::{ConfigError, SchedulerConfig};
use crate::framework::ResourceKind;
use crate::metrics::Metrics;
use crate::plugins::Registry;
use crate::scheduler::{BuildError, Scheduler, build};

/// How often the run checks whether only stuck pods are left (it also wakes on idleness).
const SETTLE_POLL: Duration = Duration::from_millis(50);

/// Column width of a reason in the table when stdout is not a terminal.
pub const DEFAULT_REASON_WIDTH: usize = 100;

/// Errors of a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// A manifest file does not exist.
    #[error("manifest {0} does not exist")]
    MissingManifest(PathBuf),
    /// No manifest was given.
    #[error("no manifests given")]
    NoManifests,
    /// The configuration is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A manifest is invalid or refused by the API server.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The scheduler could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Reading the results back failed.
    #[error("reading results: {0}")]
    Api(#[from] kube::Error),
    /// The scheduler still had work when the timeout hit; carries the report at that point.
    #[error("the scheduler was still busy after {0:?}")]
    Timeout(Duration, Box<SimulationReport>),
    /// The run was stopped (Ctrl-C); carries the report at that point.
    #[error("interrupted")]
    Interrupted(Box<SimulationReport>),
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Manifest files (multi-document YAML).
    pub manifests: Vec<PathBuf>,
    /// The scheduler configuration (default: [`SchedulerConfig::default`]).
    pub config: SchedulerConfig,
    /// Give up after this long.
    pub timeout: Duration,
    /// Faults the embedded API server injects into the scheduler's requests (not into loading
    /// the manifests or reading the results).
    pub faults: Option<embedded_apiserver::FaultPlan>,
}

/// One pod's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodRow {
    /// `namespace/name`.
    pub pod: String,
    /// The node it is bound to.
    pub node: Option<String>,
    /// Why it is not bound (the full text; the table cuts it).
    pub reason: Option<String>,
    /// Scheduling attempts.
    pub attempts: u32,
    /// Still backing off when the run ended (failing the same way, or cut by the timeout).
    pub retrying: bool,
    /// When it was bound, from the scheduler's start.
    #[serde(rename = "boundAfterSeconds", serialize_with = "secs_opt")]
    pub bound_after: Option<Duration>,
    /// CPU (millicores) and memory (bytes) it requests.
    #[serde(skip)]
    pub requests: (i64, i64),
}

fn secs_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    d.map(|d| d.as_secs_f64()).serialize(s)
}

/// A node at the end of the run: what it offers and what its pods request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeUse {
    /// Node name.
    pub name: String,
    /// Allocatable CPU in millicores.
    pub cpu_allocatable: i64,
    /// Requested CPU in millicores.
    pub cpu_requested: i64,
    /// Allocatable memory in bytes.
    pub memory_allocatable: i64,
    /// Requested memory in bytes.
    pub memory_requested: i64,
    /// Pod capacity.
    pub pods_allocatable: i64,
    /// `namespace/name` of the pods bound to it.
    pub pods: Vec<String>,
}

/// A DRA device published in a ResourceSlice and, if allocated, the claim holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceUse {
    /// The node the slice belongs to (empty for slices not tied to one node).
    pub node: String,
    /// `driver/pool/device`.
    pub device: String,
    /// `namespace/name` of the claim allocated this device.
    pub claim: Option<String>,
    /// `namespace/name` of the pods in the claim's `reservedFor` (more than one: shared).
    pub reserved_for: Vec<String>,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Ending {
    /// Nothing could make progress any more.
    Settled,
    /// `--timeout` hit.
    Timeout,
    /// Stopped from outside (Ctrl-C).
    Interrupted,
}

/// The outcome of a simulation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimulationReport {
    /// Every pod, sorted by namespace and name.
    pub rows: Vec<PodRow>,
    /// From the scheduler's start to the end of the run (settling, timeout or interrupt).
    #[serde(rename = "elapsedSeconds", serialize_with = "secs")]
    pub elapsed: Duration,
    /// How the run ended.
    pub ending: Ending,
    /// Nodes and their use at the end.
    pub nodes: Vec<NodeUse>,
    /// DRA devices and who holds them.
    pub devices: Vec<DeviceUse>,
    /// Cumulative attempt-latency buckets: (upper bound in seconds, attempts at or below it).
    pub attempt_latency: Vec<(f64, u64)>,
    /// Final pods and resource claims as multi-document YAML.
    #[serde(skip)]
    pub objects_yaml: String,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl SimulationReport {
    /// Pods bound to a node.
    pub fn bound(&self) -> usize {
        self.rows.iter().filter(|r| r.node.is_some()).count()
    }

    /// Pods not bound.
    pub fn unbound(&self) -> usize {
        self.rows.len() - self.bound()
    }

    /// Pods still retrying when the run ended.
    pub fn retrying(&self) -> Vec<&str> {
        self.rows
            .iter()
            .filter(|r| r.retrying)
            .map(|r| r.pod.as_str())
            .collect()
    }

    /// The placing phase: from the scheduler's start to the last bind (`None` if nothing was
    /// bound). The wait for pods that cannot be placed comes after it.
    pub fn placing(&self) -> Option<Duration> {
        self.rows.iter().filter_map(|r| r.bound_after).max()
    }

    /// Bound pods per second of the placing phase.
    pub fn pods_per_second(&self) -> f64 {
        match self.placing() {
            Some(p) => self.bound() as f64 / p.as_secs_f64().max(1e-3),
            None => 0.0,
        }
    }

    /// The summary lines: counts, rate over the placing phase, time to settle, retrying pods.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} pods: {} bound, {} not bound",
            self.rows.len(),
            self.bound(),
            self.unbound()
        );
        match self.placing() {
            Some(p) => out.push_str(&format!(
                "; placed in {:.3}s ({:.0} pods/s)",
                p.as_secs_f64(),
                self.pods_per_second()
            )),
            None => out.push_str("; none placed"),
        }
        let end = match self.ending {
            Ending::Settled => "settled",
            Ending::Timeout => "timed out",
            Ending::Interrupted => "interrupted",
        };
        out.push_str(&format!(
            "; {end} after {:.3}s\n",
            self.elapsed.as_secs_f64()
        ));
        let retrying = self.retrying();
        if !retrying.is_empty() {
            out.push_str(&format!(
                "still retrying (failing the same way each time): {}\n",
                retrying.join(", ")
            ));
        }
        out
    }

    /// The table `POD  NODE OR REASON  ATTEMPTS` with reasons cut to `reason_width`
    /// characters, then the summary.
    pub fn table(&self, reason_width: usize) -> String {
        let reason_width = reason_width.max(20);
        let cells: Vec<(String, String, String)> = self
            .rows
            .iter()
            .map(|r| {
                let place = match (&r.node, &r.reason) {
                    (Some(n), _) => n.clone(),
                    (None, Some(reason)) => cut(reason, reason_width),
                    (None, None) => "<pending>".into(),
                };
                let attempts = if r.retrying {
                    format!("{} (retrying)", r.attempts)
                } else {
                    r.attempts.to_string()
                };
                (r.pod.clone(), place, attempts)
            })
            .collect();
        let w0 = cells.iter().map(|c| c.0.len()).max().unwrap_or(0).max(3);
        let w1 = cells
            .iter()
            .map(|c| c.1.chars().count())
            .max()
            .unwrap_or(0)
            .max(14);
        let mut out = format!("{:<w0$}  {:<w1$}  ATTEMPTS\n", "POD", "NODE OR REASON");
        for (a, b, c) in &cells {
            out.push_str(&format!("{a:<w0$}  {b:<w1$}  {c}\n"));
        }
        out.push('\n');
        out.push_str(&self.summary());
        out
    }
}

/// The first line of `text`, cut to `width` characters with `…` when longer.
fn cut(text: &str, width: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let more = line.len() < text.trim_end().len();
    if line.chars().count() <= width && !more {
        return line.to_string();
    }
    let mut s: String = line.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Runs a simulation until it settles or `opts.timeout`.
///
/// # Errors
/// A missing or invalid manifest, a configuration that does not build, or a timeout (which
/// carries the report so far).
pub async fn simulate(opts: SimulateOptions) -> Result<SimulationReport, SimulateError> {
    simulate_until(opts, std::future::pending()).await
}

/// Runs a simulation until it settles, `opts.timeout`, or `stop` completes.
///
/// # Errors
/// As [`simulate`]; [`SimulateError::Interrupted`] when `stop` completed first (with the report
/// at that point).
pub async fn simulate_until(
    opts: SimulateOptions,
    stop: impl Future<Output = ()>,
) -> Result<SimulationReport, SimulateError> {
    if opts.manifests.is_empty() {
        return Err(SimulateError::NoManifests);
    }
    if let Some(missing) = opts.manifests.iter().find(|p| !p.is_file()) {
        return Err(SimulateError::MissingManifest(missing.clone()));
    }
    let server = ApiServer::new();
    server.load_manifests(&opts.manifests).await?;
    let client = server.client();
    let start = Instant::now();
    let start_ts = jiff::Timestamp::now();
    let metrics = Arc::new(Metrics::new());
    server.set_faults(opts.faults.clone());
    let scheduler = build(
        client.clone(),
        &opts.config,
        Registry::with_builtins(),
        metrics.clone(),
    )
    .await?;
    tracing::debug!("scheduler started");
    let progress = progress_bar(&client).await;
    let mut stuck = StuckPods::default();
    let deadline = tokio::time::sleep(opts.timeout);
    tokio::pin!(deadline, stop);
    let ending = loop {
        if let Some(p) = &progress {
            p.set_position(
                scheduler
                    .outcomes()
                    .iter()
                    .filter(|o| o.node.is_some())
                    .count() as u64,
            );
        }
        if scheduler.is_idle() {
            // Nothing backs off: no pod is retrying.
            stuck = StuckPods::default();
            break Ending::Settled;
        }
        if stuck.only_stuck_left(&scheduler) {
            break Ending::Settled;
        }
        tokio::select! {
            _ = scheduler.wait_idle() => {}
            _ = tokio::time::sleep(SETTLE_POLL) => {}
            _ = &mut deadline => break Ending::Timeout,
            _ = &mut stop => break Ending::Interrupted,
        }
    };
    let elapsed = start.elapsed();
    // The results are read back without faults.
    server.set_faults(None);
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    tracing::debug!(?elapsed, ?ending, "simulation ended");
    // Let the last events and conditions land so the output shows them.
    let flush = if ending == Ending::Settled { 5 } else { 2 };
    let _ = tokio::time::timeout(Duration::from_secs(flush), scheduler.flush_records()).await;

    let retrying: HashSet<String> = match ending {
        Ending::Settled => stuck.stuck_pods(),
        _ => stuck.backing_off(&scheduler),
    };
    let report = collect(
        &client, &scheduler, &metrics, retrying, start_ts, elapsed, ending,
    )
    .await?;
    if ending == Ending::Settled {
        scheduler.shutdown().await;
    } else {
        // A plugin call may still be running (that can be why the run did not settle); do not
        // wait for it. Dropping the scheduler closes its queue and watches.
        drop(scheduler);
    }
    match ending {
        Ending::Settled => Ok(report),
        Ending::Timeout => Err(SimulateError::Timeout(opts.timeout, Box::new(report))),
        Ending::Interrupted => Err(SimulateError::Interrupted(Box::new(report))),
    }
}

/// Pods at which a run counts as big enough to show progress.
const PROGRESS_MIN_PODS: usize = 1000;

/// A bar of bound pods on stderr, for big runs on a terminal only.
async fn progress_bar(client: &kube::Client) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .ok()?
        .items
        .len();
    if pods < PROGRESS_MIN_PODS {
        return None;
    }
    let style = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} pods bound [{elapsed_precise}, {per_sec}]",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    Some(indicatif::ProgressBar::new(pods as u64).with_style(style))
}

/// Tracks pods that keep failing the same way while the cluster does not change.
#[derive(Default)]
struct StuckPods {
    /// Per pod (`namespace/name`).
    pods: HashMap<String, Failures>,
}

/// A pod's failed attempts since the cluster last changed.
#[derive(Default)]
struct Failures {
    /// Attempts when last seen.
    attempts: u32,
    /// The cluster fingerprint the messages were seen under.
    fingerprint: u64,
    /// Distinct messages seen under it.
    messages: Vec<String>,
    /// The latest message had been seen before under the same fingerprint: a repeat (this also
    /// catches a plugin that alternates between two errors, e.g. a trap and then "instance
    /// unusable").
    stuck: bool,
}

impl StuckPods {
    /// True when nothing but pods backing off after repeated identical failures is left.
    fn only_stuck_left(&mut self, scheduler: &Scheduler) -> bool {
        let q = scheduler.queue().stats();
        let cache = scheduler.cache();
        if q.backoff == 0
            || q.active != 0
            || q.in_flight != 0
            || q.recheck_pending != 0
            || scheduler.waiting_pods() != 0
            || !cache.is_synced()
            || cache.pending_work() != PendingWork::default()
        {
            return false;
        }
        let fingerprint = cluster_fingerprint(scheduler);
        let parked: HashSet<(String, String)> = scheduler
            .queue()
            .parked()
            .into_iter()
            .map(|q| (q.pod.key.namespace.clone(), q.pod.key.name.clone()))
            .collect();
        let mut backing_off = 0;
        let mut all_stuck = true;
        for o in scheduler.outcomes() {
            if o.node.is_some() || parked.contains(&(o.namespace.clone(), o.name.clone())) {
                continue;
            }
            backing_off += 1;
            let f = self
                .pods
                .entry(format!("{}/{}", o.namespace, o.name))
                .or_default();
            if f.fingerprint != fingerprint {
                // The cluster changed since those failures: the next attempt may differ.
                *f = Failures {
                    attempts: f.attempts,
                    fingerprint,
                    ..Failures::default()
                };
            }
            if o.attempts > f.attempts {
                let message = o.message.unwrap_or_default();
                f.attempts = o.attempts;
                f.stuck = f.messages.contains(&message);
                if !f.stuck {
                    f.messages.push(message);
                }
            }
            all_stuck &= f.stuck;
        }
        all_stuck && backing_off >= q.backoff
    }

    fn stuck_pods(&self) -> HashSet<String> {
        self.pods
            .iter()
            .filter(|(_, f)| f.stuck)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Pods with a failed attempt that are neither bound nor parked (backing off or in flight).
    fn backing_off(&self, scheduler: &Scheduler) -> HashSet<String> {
        let parked: HashSet<(String, String)> = scheduler
            .queue()
            .parked()
            .into_iter()
            .map(|q| (q.pod.key.namespace.clone(), q.pod.key.name.clone()))
            .collect();
        scheduler
            .outcomes()
            .into_iter()
            .filter(|o| {
                o.node.is_none() && !parked.contains(&(o.namespace.clone(), o.name.clone()))
            })
            .map(|o| format!("{}/{}", o.namespace, o.name))
            .collect()
    }
}

/// Changes whenever a node gains or loses a pod, a pod comes or goes, or the content of an
/// object a plugin watches (claims, slices, ...) changes. Only read while nothing is assumed, so
/// a failed attempt's assume-and-forget (or a write and its compensation) leaves it unchanged.
fn cluster_fingerprint(scheduler: &Scheduler) -> u64 {
    let cache = scheduler.cache();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for n in &cache.snapshot().nodes {
        n.name.hash(&mut h);
        n.pods.len().hash(&mut h);
    }
    cache.pods().len().hash(&mut h);
    // A sum of per-object hashes: the stores need not list objects in a stable order.
    let mut objects = 0u64;
    for kind in cache.tracked_kinds() {
        for o in cache.objects(&kind) {
            let mut oh = std::collections::hash_map::DefaultHasher::new();
            o["metadata"]["namespace"].as_str().hash(&mut oh);
            o["metadata"]["name"].as_str().hash(&mut oh);
            o["spec"].to_string().hash(&mut oh);
            o["status"].to_string().hash(&mut oh);
            objects = objects.wrapping_add(oh.finish());
        }
    }
    objects.hash(&mut h);
    h.finish()
}

/// Reads the results back from the API server and the scheduler.
async fn collect(
    client: &kube::Client,
    scheduler: &Scheduler,
    metrics: &Metrics,
    retrying: HashSet<String>,
    start_ts: jiff::Timestamp,
    elapsed: Duration,
    ending: Ending,
) -> Result<SimulationReport, SimulateError> {
    let outcomes = scheduler.outcomes();
    let gated: Vec<(String, String)> = scheduler
        .queue()
        .parked()
        .into_iter()
        .filter_map(|q| q.gated_by.map(|g| (q.pod.key.uid.clone(), g)))
        .collect();
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let bind_times = bind_times(client, start_ts).await;
    let mut rows: Vec<PodRow> = pods
        .items
        .iter()
        .map(|p| {
            let (ns, name) = (
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default(),
            );
            let key = format!("{ns}/{name}");
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let outcome = outcomes
                .iter()
                .find(|o| o.namespace == ns && o.name == name);
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
            let reason = match (&node, outcome) {
                (Some(_), _) => None,
                (None, Some(o)) => o.message.clone(),
                (None, None) => match gated.iter().find(|(u, _)| *u == uid) {
                    Some((_, plugin)) => Some(format!("waiting for PreEnqueue plugin {plugin}")),
                    None if ending != Ending::Settled => Some(
                        "no attempt finished before the run ended (queued or being scheduled)"
                            .into(),
                    ),
                    None => Some("not scheduled by this scheduler (spec.schedulerName)".into()),
                },
            };
            let info = crate::framework::PodInfo::new(Arc::new(p.clone()));
            PodRow {
                retrying: node.is_none() && retrying.contains(&key),
                // The Event is written just after the bind; never past the end of the run.
                bound_after: node
                    .as_ref()
                    .and_then(|_| bind_times.get(&key).map(|t| (*t).min(elapsed))),
                pod: key,
                node,
                reason,
                attempts: outcome.map_or(0, |o| o.attempts),
                requests: (info.requests.milli_cpu, info.requests.memory),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.pod.cmp(&b.pod));
    let nodes = node_use(client, &rows).await?;
    let (devices, claims) = device_use(client).await;
    let objects_yaml = final_objects(&pods.items, claims);
    Ok(SimulationReport {
        rows,
        elapsed,
        ending,
        nodes,
        devices,
        attempt_latency: attempt_buckets(metrics),
        objects_yaml,
    })
}

/// When each pod was bound, from its `Scheduled` Event (eventTime has microseconds).
async fn bind_times(client: &kube::Client, start: jiff::Timestamp) -> HashMap<String, Duration> {
    let mut out = HashMap::new();
    let Ok(list) = Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await
    else {
        return out;
    };
    for e in list.items {
        if e.reason.as_deref() != Some("Scheduled") {
            continue;
        }
        let (Some(t), Some(r)) = (e.event_time, e.regarding) else {
            continue;
        };
        let key = format!(
            "{}/{}",
            r.namespace.unwrap_or_default(),
            r.name.unwrap_or_default()
        );
        let after = t.0.duration_since(start);
        let after = Duration::try_from(after).unwrap_or_default();
        out.insert(key, after);
    }
    out
}

async fn node_use(client: &kube::Client, rows: &[PodRow]) -> Result<Vec<NodeUse>, SimulateError> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let mut by_node: BTreeMap<&str, Vec<&PodRow>> = BTreeMap::new();
    for r in rows {
        if let Some(n) = &r.node {
            by_node.entry(n.as_str()).or_default().push(r);
        }
    }
    let mut out: Vec<NodeUse> = nodes
        .items
        .iter()
        .map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            let alloc = crate::plugins::node_allocatable(n);
            let pods = by_node.get(name.as_str()).cloned().unwrap_or_default();
            NodeUse {
                cpu_allocatable: alloc.milli_cpu,
                cpu_requested: pods.iter().map(|p| p.requests.0).sum(),
                memory_allocatable: alloc.memory,
                memory_requested: pods.iter().map(|p| p.requests.1).sum(),
                pods_allocatable: alloc.allowed_pods,
                pods: pods.iter().map(|p| p.pod.clone()).collect(),
                name,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Devices of every ResourceSlice with the claim allocated each, and the claims as JSON.
async fn device_use(client: &kube::Client) -> (Vec<DeviceUse>, Vec<serde_json::Value>) {
    let claim_kind = ResourceKind::resource_claim();
    let claims: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource(&claim_kind));
    // A cluster without the DRA API simply has no claims.
    let claims: Vec<serde_json::Value> = match claims.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(c).unwrap_or_default();
                v["apiVersion"] = claim_kind.api_version.clone().into();
                v["kind"] = claim_kind.kind.clone().into();
                v
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    // (driver, pool, device) -> (claim, reservedFor)
    let mut held: HashMap<(String, String, String), (String, Vec<String>)> = HashMap::new();
    for c in &claims {
        let ns = c["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = format!(
            "{ns}/{}",
            c["metadata"]["name"].as_str().unwrap_or_default()
        );
        let reserved: Vec<String> = c["status"]["reservedFor"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| format!("{ns}/{}", r["name"].as_str().unwrap_or_default()))
            .collect();
        for r in c["status"]["allocation"]["devices"]["results"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            held.insert(
                (s("driver"), s("pool"), s("device")),
                (name.clone(), reserved.clone()),
            );
        }
    }
    let slice_kind = ResourceKind::resource_slice();
    let slices: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource(&slice_kind));
    let mut devices = Vec::new();
    if let Ok(list) = slices.list(&ListParams::default()).await {
        for s in list.items {
            let spec = &s.data["spec"];
            let driver = spec["driver"].as_str().unwrap_or_default();
            let pool = spec["pool"]["name"].as_str().unwrap_or_default();
            let node = spec["nodeName"].as_str().unwrap_or_default();
            for d in spec["devices"].as_array().into_iter().flatten() {
                let dev = d["name"].as_str().unwrap_or_default();
                let holder = held.get(&(driver.to_string(), pool.to_string(), dev.to_string()));
                devices.push(DeviceUse {
                    node: node.to_string(),
                    device: format!("{driver}/{pool}/{dev}"),
                    claim: holder.map(|h| h.0.clone()),
                    reserved_for: holder.map(|h| h.1.clone()).unwrap_or_default(),
                });
            }
        }
    }
    devices.sort_by(|a, b| (&a.node, &a.device).cmp(&(&b.node, &b.device)));
    (devices, claims)
}

/// Cumulative buckets of `scheduler_scheduling_attempt_duration_seconds` over all labels.
fn attempt_buckets(metrics: &Metrics) -> Vec<(f64, u64)> {
    let mut r = prometheus_client::registry::Registry::default();
    r.register("attempt", "", metrics.attempt_duration.clone());
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &r);
    let mut buckets: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("attempt_bucket{")) {
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(le) = head.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let upper = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        let count = value.parse::<f64>().unwrap_or(0.0) as u64;
        let e = buckets.entry(upper.to_bits()).or_insert((upper, 0));
        e.1 += count;
    }
    let mut v: Vec<(f64, u64)> = buckets.into_values().collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Pods and ResourceClaims as multi-document YAML.
fn final_objects(pods: &[Pod], claims: Vec<serde_json::Value>) -> String {
    let mut docs: Vec<serde_json::Value> = Vec::new();
    for p in pods {
        let mut v = serde_json::to_value(p).unwrap_or_default();
        v["apiVersion"] = "v1".into();
        v["kind"] = "Pod".into();
        docs.push(v);
    }
    docs.extend(claims);
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&d).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_cut_to_the_width_with_an_ellipsis() {
        let long = "x".repeat(5000);
        let c = cut(&long, 40);
        assert_eq!(c.chars().count(), 40);
        assert!(c.ends_with('…'));
        assert_eq!(cut("short", 40), "short");
        assert_eq!(cut("first line\nbacktrace", 40), "first line…");
    }
}
