//! DRA end to end: the `DynamicResources` plugin (natively registered, and as a Wasm component)
//! in the real scheduler against the embedded API server. Every test ends with
//! [`check_dra_invariants`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use embedded_apiserver::ApiServer;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::resource::v1::ResourceClaim;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use wasm_scheduler::config::SchedulerConfig;
use wasm_scheduler::framework::ResourceKind;
use wasm_scheduler::metrics::Metrics;
use wasm_scheduler::plugins::Registry;
use wasm_scheduler::scheduler::{Scheduler, build};
use wasm_scheduler::wasm::NativeSdkPlugin;

const NS: &str = "demo";
const GPU: &str = "gpu.example.com";
const TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Invariants

/// The cluster-wide DRA invariants, checked against the API server:
/// 1. no device (driver/pool/device) is in two allocations (adminAccess results excepted);
/// 2. every bound pod that uses a claim is in the claim's `reservedFor`, and the claim's
///    allocation is usable from the pod's node;
/// 3. every `reservedFor` entry names a pod that exists and is bound, or is in flight (`in_flight`
///    holds uids of pods still in their binding cycle; empty once the scheduler is idle);
/// 4. every allocated claim has the `resource.kubernetes.io/delete-protection` finalizer, unless
///    a pod in its `reservedFor` is still in flight;
/// 5. no shared counter (KEP-4815 `sharedCounters` of a pool) is consumed beyond its value by
///    the allocated devices (adminAccess results excepted), whichever slices and claims they are in;
/// 6. consumable capacity (KEP-5075): only devices with `allowMultipleAllocations` are shared
///    (results with a `shareID`, unique per device), and the `consumedCapacity` of all their
///    shares never exceeds the device's capacity;
/// 7. binding conditions (KEP-5007): a bound pod's claims have every binding condition `True`
///    and no failure condition `True`; a claim whose binding never completed (conditions not
///    met) is not left allocated without a consumer — a failed or timed-out binding leaks
///    nothing;
/// 8. extended resources backed by DRA (KEP-5004): every special claim (annotation
///    `resource.kubernetes.io/extended-resource-claim`) is controlled by a pod that exists (none
///    leaks after its pod is deleted); an allocated one is reserved for that pod, and a bound
///    owner's `status.extendedResourceClaimStatus` names it (checked like any claim of the pod
///    by 2.); nothing is counted twice: a resource a pod gets from its special claim is not
///    one its node lists as allocatable, and on each node the pods' requests of a resource the
///    node lists (device plugin) stay within its allocatable.
///
/// # Errors
/// A message listing every violation.
pub async fn check_dra_invariants(
    client: &kube::Client,
    in_flight: &HashSet<String>,
) -> Result<(), String> {
    let claims: Vec<ResourceClaim> = Api::<ResourceClaim>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    let pods: Vec<Pod> = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    let mut problems = Vec::new();
    let mut owner: HashMap<(String, String, String), String> = HashMap::new();
    let mut shares: Vec<(DeviceId, &str, BTreeMap<String, String>)> = Vec::new();
    let mut by_key: HashMap<(String, String), &ResourceClaim> = HashMap::new();
    for c in &claims {
        let name = format!(
            "{}/{}",
            c.metadata.namespace.as_deref().unwrap_or(""),
            c.metadata.name.as_deref().unwrap_or("")
        );
        by_key.insert(
            (
                c.metadata.namespace.clone().unwrap_or_default(),
                c.metadata.name.clone().unwrap_or_default(),
            ),
            c,
        );
        let results = c
            .status
            .iter()
            .flat_map(|s| s.allocation.iter())
            .flat_map(|a| a.devices.iter())
            .flat_map(|d| d.results.iter().flatten());
        for r in results {
            if r.admin_access == Some(true) {
                continue;
            }
            let dev = (r.driver.clone(), r.pool.clone(), r.device.clone());
            if let Some(id) = &r.share_id {
                let consumed = r.consumed_capacity.iter().flatten();
                let consumed = consumed.map(|(n, q)| (n.clone(), q.0.clone())).collect();
                shares.push((dev, id.as_str(), consumed));
                continue;
            }
            if let Some(other) = owner.insert(dev.clone(), name.clone())
                && other != name
            {
                problems.push(format!(
                    "device {dev:?} is allocated to both {other} and {name}"
                ));
            }
        }
    }
    let slices = Api::<k8s_openapi::api::resource::v1::ResourceSlice>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    let shared_devices = shares.iter().map(|(d, _, _)| d).collect::<HashSet<_>>();
    problems.extend(counter_problems(
        &slices,
        owner.keys().chain(shared_devices),
    ));
    problems.extend(capacity_problems(&slices, &shares));
    let mut pod_by_uid: HashMap<&str, &Pod> = HashMap::new();
    for p in &pods {
        pod_by_uid.insert(p.metadata.uid.as_deref().unwrap_or(""), p);
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            continue;
        };
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        for name in pod_claim_names(p) {
            let pod_name = p.metadata.name.as_deref().unwrap_or("");
            let Some(c) = by_key.get(&(ns.clone(), name.clone())) else {
                problems.push(format!(
                    "bound pod {ns}/{pod_name} uses missing claim {name}"
                ));
                continue;
            };
            let status = c.status.clone().unwrap_or_default();
            let reserved = status
                .reserved_for
                .iter()
                .flatten()
                .any(|r| Some(r.uid.as_str()) == p.metadata.uid.as_deref());
            if !reserved {
                problems.push(format!(
                    "bound pod {ns}/{pod_name} is not in reservedFor of claim {name}"
                ));
            }
            if let Some(why) = binding_not_ready(c) {
                problems.push(format!(
                    "bound pod {ns}/{pod_name} uses claim {name} whose binding is not ready: {why}"
                ));
            }
            match status.allocation {
                None => problems.push(format!(
                    "bound pod {ns}/{pod_name} uses unallocated claim {name}"
                )),
                Some(a) => {
                    let ok = a.node_selector.as_ref().is_none_or(|s| {
                        s.node_selector_terms.iter().any(|t| {
                            t.match_fields.iter().flatten().all(|f| {
                                f.key == "metadata.name"
                                    && f.values.iter().flatten().any(|v| v == node)
                            })
                        })
                    });
                    if !ok {
                        problems.push(format!("claim {name} is allocated for another node than {node} of pod {pod_name}"));
                    }
                }
            }
        }
    }
    for c in &claims {
        let name = c.metadata.name.as_deref().unwrap_or("");
        let status = c.status.as_ref();
        let finalized = c
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "resource.kubernetes.io/delete-protection");
        // A joiner's status patch may land before the allocating pod's finalizer patch.
        let reservation_in_flight = status
            .iter()
            .flat_map(|s| s.reserved_for.iter().flatten())
            .any(|r| in_flight.contains(&r.uid));
        if status.is_some_and(|s| s.allocation.is_some()) && !finalized && !reservation_in_flight {
            problems.push(format!(
                "claim {name} is allocated without the delete-protection finalizer"
            ));
        }
        let unreserved = status.is_none_or(|s| s.reserved_for.iter().flatten().next().is_none());
        if unreserved
            && status.is_some_and(|s| s.allocation.is_some())
            && let Some(why) = binding_not_ready(c)
        {
            problems.push(format!(
                "claim {name} is allocated for nobody and its binding never completed ({why}): leaked"
            ));
        }
        for r in c
            .status
            .iter()
            .flat_map(|s| s.reserved_for.iter().flatten())
        {
            let bound = pod_by_uid
                .get(r.uid.as_str())
                .is_some_and(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some());
            if !bound && !in_flight.contains(&r.uid) {
                problems.push(format!(
                    "claim {name} is reserved for {} ({}), which is neither bound nor in flight",
                    r.name, r.uid
                ));
            }
        }
    }
    problems.extend(extended_problems(client, &claims, &pods, &pod_by_uid, in_flight).await?);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Invariant 8 of [`check_dra_invariants`].
async fn extended_problems(
    client: &kube::Client,
    claims: &[ResourceClaim],
    pods: &[Pod],
    pod_by_uid: &HashMap<&str, &Pod>,
    in_flight: &HashSet<String>,
) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    for c in claims {
        let special = c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("resource.kubernetes.io/extended-resource-claim"))
            .is_some_and(|v| v == "true");
        if !special {
            continue;
        }
        let name = c.metadata.name.as_deref().unwrap_or("");
        let owner = c
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true) && r.kind == "Pod");
        let Some(pod) = owner.and_then(|o| pod_by_uid.get(o.uid.as_str())) else {
            problems.push(format!(
                "claim for extended resources {name} has no owner pod: leaked"
            ));
            continue;
        };
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        let status = c.status.as_ref();
        let reserved = status
            .iter()
            .flat_map(|s| s.reserved_for.iter().flatten())
            .any(|r| r.uid == uid);
        if status.is_some_and(|s| s.allocation.is_some()) && !reserved && !in_flight.contains(uid) {
            problems.push(format!(
                "claim for extended resources {name} is allocated but not reserved for its pod"
            ));
        }
        let named = pod
            .status
            .as_ref()
            .and_then(|s| s.extended_resource_claim_status.as_ref())
            .is_some_and(|s| s.resource_claim_name == name);
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some();
        if bound && !named {
            problems.push(format!(
                "bound pod {} does not name its claim for extended resources {name}",
                pod.metadata.name.as_deref().unwrap_or("")
            ));
        }
    }
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    let allocatable = |node: &str, resource: &str| -> i64 {
        nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(node))
            .and_then(|n| n.status.as_ref()?.allocatable.as_ref()?.get(resource))
            .and_then(|q| q.0.parse().ok())
            .unwrap_or(0)
    };
    let mut used: BTreeMap<(String, String), i64> = BTreeMap::new();
    for p in pods {
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let mapped: HashSet<&str> = p
            .status
            .iter()
            .flat_map(|s| s.extended_resource_claim_status.iter())
            .flat_map(|s| s.request_mappings.iter())
            .map(|m| m.resource_name.as_str())
            .collect();
        for r in &mapped {
            if allocatable(&node, r) > 0 {
                problems.push(format!(
                    "pod {} gets {r} from DRA on node {node}, which offers it as allocatable: counted twice",
                    p.metadata.name.as_deref().unwrap_or("")
                ));
            }
        }
        let containers = p.spec.iter().flat_map(|s| s.containers.iter());
        for c in containers {
            let requests = c.resources.iter().flat_map(|r| r.requests.iter().flatten());
            for (r, q) in requests {
                if r.contains('/') && !mapped.contains(r.as_str()) {
                    *used.entry((node.clone(), r.clone())).or_default() +=
                        q.0.parse::<i64>().unwrap_or(0);
                }
            }
        }
    }
    for ((node, r), n) in used {
        let have = allocatable(&node, &r);
        if have > 0 && n > have {
            problems.push(format!(
                "node {node} has {have} {r} allocatable, its pods request {n}"
            ));
        }
    }
    Ok(problems)
}

/// A device: (driver, pool, device).
type DeviceId = (String, String, String);

/// Why a claim's allocation is not ready for binding (KEP-5007): a result's binding condition
/// that is not `True` in `status.devices`, or a failure condition that is; `None` when ready.
fn binding_not_ready(c: &ResourceClaim) -> Option<String> {
    let status = c.status.as_ref()?;
    let results = status
        .allocation
        .iter()
        .flat_map(|a| a.devices.iter())
        .flat_map(|d| d.results.iter().flatten());
    for r in results {
        let conditions = status
            .devices
            .iter()
            .flatten()
            .find(|d| d.driver == r.driver && d.pool == r.pool && d.device == r.device)
            .and_then(|d| d.conditions.clone())
            .unwrap_or_default();
        let is_true = |t: &str| {
            conditions
                .iter()
                .any(|c| c.type_ == t && c.status == "True")
        };
        if let Some(t) = r
            .binding_failure_conditions
            .iter()
            .flatten()
            .find(|t| is_true(t))
        {
            return Some(format!("failure condition {t} of {} is True", r.device));
        }
        if let Some(t) = r.binding_conditions.iter().flatten().find(|t| !is_true(t)) {
            return Some(format!("binding condition {t} of {} is not True", r.device));
        }
    }
    None
}

fn nanos(q: &str) -> i128 {
    kube_quantity::Quantity::parse_json(q).map_or(0, |q| q.nanos())
}

/// Invariant 6: the shares (device, shareID, consumedCapacity) of devices with
/// `allowMultipleAllocations`.
fn capacity_problems(
    slices: &[k8s_openapi::api::resource::v1::ResourceSlice],
    shares: &[(DeviceId, &str, BTreeMap<String, String>)],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut capacity: HashMap<DeviceId, (bool, BTreeMap<String, i128>)> = HashMap::new();
    for s in slices {
        for d in s.spec.devices.iter().flatten() {
            let caps = d.capacity.iter().flatten();
            let caps = caps.map(|(n, c)| (n.clone(), nanos(&c.value.0))).collect();
            let id = (
                s.spec.driver.clone(),
                s.spec.pool.name.clone(),
                d.name.clone(),
            );
            capacity.insert(id, (d.allow_multiple_allocations == Some(true), caps));
        }
    }
    let mut used: BTreeMap<(DeviceId, String), i128> = BTreeMap::new();
    let mut ids = HashSet::new();
    for (dev, id, consumed) in shares {
        if !ids.insert((dev.clone(), *id)) {
            problems.push(format!("device {dev:?} has two shares with shareID {id}"));
        }
        match capacity.get(dev) {
            Some((true, _)) => {}
            _ => problems.push(format!(
                "device {dev:?} is shared but does not allow multiple allocations"
            )),
        }
        for (name, q) in consumed {
            *used.entry((dev.clone(), name.clone())).or_default() += nanos(q);
        }
    }
    for ((dev, name), n) in used {
        let cap = capacity.get(&dev).and_then(|(_, c)| c.get(&name)).copied();
        if cap.is_none_or(|cap| n > cap) {
            problems.push(format!(
                "capacity {name} of device {dev:?} is consumed {n} nano-units, beyond {cap:?}"
            ));
        }
    }
    problems
}

/// Invariant 5: shared counters consumed by the allocated `devices` (driver, pool, device).
fn counter_problems<'a>(
    slices: &[k8s_openapi::api::resource::v1::ResourceSlice],
    devices: impl Iterator<Item = &'a DeviceId>,
) -> Vec<String> {
    let nanos = |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| nanos(&q.0);
    // (driver, pool, counter set, counter) → value; (driver, pool, device) → consumption.
    let mut capacity: HashMap<(String, String, String, String), i128> = HashMap::new();
    let mut consumes: HashMap<(String, String, String), Vec<((String, String), i128)>> =
        HashMap::new();
    for s in slices {
        let (driver, pool) = (&s.spec.driver, &s.spec.pool.name);
        for set in s.spec.shared_counters.iter().flatten() {
            for (name, c) in &set.counters {
                capacity.insert(
                    (driver.clone(), pool.clone(), set.name.clone(), name.clone()),
                    nanos(&c.value),
                );
            }
        }
        for d in s.spec.devices.iter().flatten() {
            let list = d
                .consumes_counters
                .iter()
                .flatten()
                .flat_map(|c| {
                    c.counters
                        .iter()
                        .map(|(name, v)| ((c.counter_set.clone(), name.clone()), nanos(&v.value)))
                })
                .collect();
            consumes.insert((driver.clone(), pool.clone(), d.name.clone()), list);
        }
    }
    let mut used: BTreeMap<(String, String, String, String), i128> = BTreeMap::new();
    for dev in devices {
        for ((set, counter), amount) in consumes.get(dev).into_iter().flatten() {
            *used
                .entry((dev.0.clone(), dev.1.clone(), set.clone(), counter.clone()))
                .or_default() += amount;
        }
    }
    used.into_iter()
        .filter_map(|(key, n)| {
            let cap = capacity.get(&key).copied().unwrap_or(0);
            (n > cap).then(|| {
                format!("counter {key:?} is consumed {n} nano-units beyond its value {cap}")
            })
        })
        .collect()
}

/// Claims a pod uses: named ones, and generated ones recorded in its status.
fn pod_claim_names(p: &Pod) -> Vec<String> {
    let statuses: HashMap<&str, Option<&str>> = p
        .status
        .iter()
        .flat_map(|s| s.resource_claim_statuses.iter().flatten())
        .map(|s| (s.name.as_str(), s.resource_claim_name.as_deref()))
        .collect();
    let extended = p
        .status
        .iter()
        .flat_map(|s| s.extended_resource_claim_status.iter())
        .map(|s| s.resource_claim_name.clone());
    p.spec
        .iter()
        .flat_map(|s| s.resource_claims.iter().flatten())
        .filter_map(
            |c| match (&c.resource_claim_name, &c.resource_claim_template_name) {
                (Some(n), _) => Some(n.clone()),
                (None, Some(_)) => statuses
                    .get(c.name.as_str())
                    .copied()
                    .flatten()
                    .map(str::to_owned),
                _ => None,
            },
        )
        .chain(extended)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Cluster helpers

/// How the plugin runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `DraPlugin` compiled into the host.
    Native,
    /// `dra_plugin.wasm` as a Wasm component.
    Wasm,
}

struct Cluster {
    server: ApiServer,
    client: kube::Client,
    sched: Scheduler,
}

impl Cluster {
    async fn start(mode: Mode, extra_config: &str) -> Cluster {
        Cluster::start_on(ApiServer::new(), mode, extra_config).await
    }

    async fn start_on(server: ApiServer, mode: Mode, extra_config: &str) -> Cluster {
        init_tracing();
        let client = server.client();
        let mut config_yaml = String::from(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n",
        );
        config_yaml.push_str(extra_config);
        let mut registry = Registry::with_builtins();
        match mode {
            Mode::Native => {
                registry
                    .register(
                        dra_plugin::NAME,
                        NativeSdkPlugin::<dra_plugin::DraPlugin>::factory(dra_plugin::NAME),
                    )
                    .expect("register DynamicResources");
            }
            Mode::Wasm => {
                let path = wasm_path();
                config_yaml.push_str(&format!(
                    "wasmPlugins:\n  - name: {}\n    path: {}\n",
                    dra_plugin::NAME,
                    path.display()
                ));
            }
        }
        let config = SchedulerConfig::from_yaml_str("dra-test.yaml", &config_yaml).expect("config");
        let sched = build(client.clone(), &config, registry, Arc::new(Metrics::new()))
            .await
            .expect("scheduler");
        Cluster {
            server,
            client,
            sched,
        }
    }

    async fn load(&self, docs: &[Value]) {
        let yaml: Vec<String> = docs.iter().map(|d| d.to_string()).collect();
        self.server
            .load_manifest_str("test", &yaml.join("\n---\n"))
            .await
            .expect("manifests load");
    }

    async fn idle(&self) {
        integration_tests::wait_idle(&self.sched, TIMEOUT).await;
    }

    async fn pods(&self) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), NS)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    async fn bound(&self) -> BTreeMap<String, String> {
        self.pods()
            .await
            .into_iter()
            .filter_map(|p| Some((p.metadata.name?, p.spec?.node_name?)))
            .collect()
    }

    async fn claim(&self, name: &str) -> ResourceClaim {
        Api::<ResourceClaim>::namespaced(self.client.clone(), NS)
            .get(name)
            .await
            .unwrap()
    }

    /// The claim a pod uses for its (only) pod claim.
    async fn claim_of(&self, pod: &str) -> ResourceClaim {
        let p = Api::<Pod>::namespaced(self.client.clone(), NS)
            .get(pod)
            .await
            .unwrap();
        let name = pod_claim_names(&p).pop().expect("pod has a claim");
        self.claim(&name).await
    }

    /// Waits until `n` pods of the namespace are bound.
    async fn wait_bound(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while self.bound().await.len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} pods not bound within {TIMEOUT:?}; outcomes: {:#?}",
                self.sched.outcomes()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn invariants(&self) {
        self.idle().await;
        check_dra_invariants(&self.client, &HashSet::new())
            .await
            .unwrap_or_else(|e| panic!("DRA invariants:\n{e}"));
    }

    /// The scheduler's last message for an unbound pod.
    fn message(&self, pod: &str) -> String {
        self.sched
            .outcomes()
            .into_iter()
            .find(|o| o.namespace == NS && o.name == pod)
            .and_then(|o| o.message)
            .unwrap_or_default()
    }
}

/// Polls a condition (every 20 ms, up to [`TIMEOUT`]).
async fn wait_for<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The Wasm build of the plugin (`scripts/setup dra-plugin`), in `CARGO_TARGET_DIR` if set.
fn wasm_path() -> std::path::PathBuf {
    crate::wasm_plugins::wasm_file("dra_plugin")
}

// ---------------------------------------------------------------------------------------------
// Object builders (JSON is YAML, so these go straight into load_manifest_str)

fn namespace() -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
           "status": {"capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                      "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"}}})
}

fn class(name: &str, expr: &str) -> Value {
    json!({"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": name},
           "spec": {"selectors": [{"cel": {"expression": expr}}]}})
}

fn gpu_class() -> Value {
    class(GPU, &format!("device.driver == \"{GPU}\""))
}

/// A node-local slice of `driver` with the given devices (`{"name": ..., "attributes": ..., "capacity": ...}`).
fn slice(name: &str, driver: &str, node: &str, devices: Vec<Value>) -> Value {
    json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": name},
           "spec": {"driver": driver, "nodeName": node, "pool": {"name": format!("{node}-{driver}"), "generation": 1, "resourceSliceCount": 1},
                    "devices": devices}})
}

/// `n` plain GPUs `gpu-0..n` on `node`.
fn gpus(node: &str, n: usize) -> Value {
    slice(
        &format!("{node}-gpus"),
        GPU,
        node,
        (0..n)
            .map(|i| json!({"name": format!("gpu-{i}")}))
            .collect(),
    )
}

fn claim(name: &str, requests: Value) -> Value {
    json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": name, "namespace": NS},
           "spec": {"devices": {"requests": requests}}})
}

fn exact(name: &str, class: &str, count: i64) -> Value {
    json!({"name": name, "exactly": {"deviceClassName": class, "allocationMode": "ExactCount", "count": count}})
}

fn template(name: &str, requests: Value) -> Value {
    json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate", "metadata": {"name": name, "namespace": NS},
           "spec": {"spec": {"devices": {"requests": requests}}}})
}

fn pod_with(name: &str, claim_ref: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
           "spec": {"resourceClaims": [claim_ref],
                    "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"claims": [{"name": "dev"}]}}]}})
}

fn pod_using_claim(name: &str, claim: &str) -> Value {
    pod_with(name, json!({"name": "dev", "resourceClaimName": claim}))
}

fn pod_using_template(name: &str, template: &str) -> Value {
    pod_with(
        name,
        json!({"name": "dev", "resourceClaimTemplateName": template}),
    )
}

/// `(request, device)` of a claim's allocation.
fn results(c: &ResourceClaim) -> Vec<(String, String)> {
    c.status
        .iter()
        .flat_map(|s| s.allocation.iter())
        .flat_map(|a| a.devices.iter())
        .flat_map(|d| d.results.iter().flatten())
        .map(|r| (r.request.clone(), r.device.clone()))
        .collect()
}

fn reserved_uids(c: &ResourceClaim) -> HashSet<String> {
    c.status
        .iter()
        .flat_map(|s| s.reserved_for.iter().flatten())
        .map(|r| r.uid.clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

async fn claims_from_templates_are_allocated_one_device_each(mode: Mode) {
    let c = Cluster::start(mode, "").await;
    let mut docs = vec![
        namespace(),
        node("node-a"),
        node("node-b"),
        gpu_class(),
        gpus("node-a", 2),
        gpus("node-b", 2),
    ];
    docs.push(template("one-gpu", json!([exact("gpu", GPU, 1)])));
    docs.extend((0..4).map(|i| pod_using_template(&format!("p{i}"), "one-gpu")));
    c.load(&docs).await;
    c.wait_bound(4).await;
    let mut devices = HashSet::new();
    for i in 0..4 {
        let claim = c.claim_of(&format!("p{i}")).await;
        let r = results(&claim);
        assert_eq!(r.len(), 1, "{r:?}");
        let alloc = claim.status.as_ref().unwrap().allocation.as_ref().unwrap();
        let node = &alloc.node_selector.as_ref().unwrap().node_selector_terms[0]
            .match_fields
            .as_ref()
            .unwrap()[0]
            .values
            .as_ref()
            .unwrap()[0];
        devices.insert((node.clone(), r[0].1.clone()));
        assert!(
            claim
                .metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == "resource.kubernetes.io/delete-protection")
        );
        assert_eq!(c.bound().await[&format!("p{i}")], *node);
    }
    assert_eq!(devices.len(), 4, "four distinct devices");
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_for_claims_from_templates() {
    claims_from_templates_are_allocated_one_device_each(Mode::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_for_claims_from_templates_as_wasm_component() {
    claims_from_templates_are_allocated_one_device_each(Mode::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_when_50_pods_share_one_claim() {
    let c = Cluster::start(Mode::Native, "").await;
    let mut docs = vec![
        namespace(),
        node("node-a"),
        node("node-b"),
        gpu_class(),
        gpus("node-a", 1),
        gpus("node-b", 1),
    ];
    docs.push(claim("shared", json!([exact("gpu", GPU, 1)])));
    docs.extend((0..50).map(|i| pod_using_claim(&format!("p{i:02}"), "shared")));
    c.load(&docs).await;
    c.wait_bound(50).await;
    c.idle().await;
    let claim = c.claim("shared").await;
    let pod_uids: HashSet<String> = c
        .pods()
        .await
        .into_iter()
        .filter_map(|p| p.metadata.uid)
        .collect();
    assert_eq!(
        reserved_uids(&claim),
        pod_uids,
        "reservedFor lists exactly the 50 pods"
    );
    assert_eq!(results(&claim).len(), 1);
    let nodes: HashSet<String> = c.bound().await.into_values().collect();
    assert_eq!(nodes.len(), 1, "all pods follow the claim's node");
    c.invariants().await;
}

/// `(finalizer patches, status patches)` the scheduler sent to claims in `records`.
fn claim_writes(records: &[embedded_apiserver::RequestRecord]) -> (usize, usize) {
    let writes = records.iter().filter(|r| {
        r.resource == "resourceclaims" && !matches!(r.verb.as_str(), "get" | "list" | "watch")
    });
    writes.fold((0, 0), |(main, status), r| match r.subresource.as_deref() {
        None => (main + 1, status),
        Some(_) => (main, status + 1),
    })
}

/// 20 claims shared by 10 pods each: one finalizer write per claim, one status write per pod;
/// then a pod joining an allocated, finalized claim costs exactly one claim write.
async fn shared_claims_get_one_finalizer_write_each(mode: Mode) {
    let c = Cluster::start(mode, "").await;
    c.server.record_requests(true);
    let mut docs = vec![namespace(), gpu_class()];
    for n in 0..4 {
        docs.push(node(&format!("node-{n}")));
        docs.push(gpus(&format!("node-{n}"), 5));
    }
    for k in 0..20 {
        docs.push(claim(
            &format!("claim-{k:02}"),
            json!([exact("gpu", GPU, 1)]),
        ));
        docs.extend(
            (0..10).map(|i| pod_using_claim(&format!("p{k:02}-{i}"), &format!("claim-{k:02}"))),
        );
    }
    c.load(&docs).await;
    c.wait_bound(200).await;
    c.idle().await;
    let (finalizers, statuses) = claim_writes(&c.server.requests());
    assert_eq!(
        finalizers, 20,
        "one delete-protection finalizer patch per claim"
    );
    assert_eq!(statuses, 200, "one status patch per pod");
    for k in 0..20 {
        let claim = c.claim(&format!("claim-{k:02}")).await;
        assert_eq!(
            claim.metadata.finalizers.as_deref(),
            Some(&["resource.kubernetes.io/delete-protection".to_string()][..])
        );
        assert_eq!(reserved_uids(&claim).len(), 10);
    }
    let before = c.server.requests().len();
    c.load(&[pod_using_claim("late", "claim-07")]).await;
    c.wait_bound(201).await;
    c.idle().await;
    assert_eq!(
        claim_writes(&c.server.requests()[before..]),
        (0, 1),
        "joining an allocated, finalized claim is one status patch"
    );
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_claims_get_one_finalizer_write_each_not_one_per_pod() {
    shared_claims_get_one_finalizer_write_each(Mode::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_claims_get_one_finalizer_write_each_as_wasm_component() {
    shared_claims_get_one_finalizer_write_each(Mode::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_when_pods_outnumber_devices_until_a_slice_adds_more() {
    let c = Cluster::start(Mode::Native, "").await;
    let mut docs = vec![
        namespace(),
        node("node-a"),
        node("node-b"),
        node("node-c"),
        gpu_class(),
        gpus("node-a", 2),
        gpus("node-b", 1),
    ];
    docs.push(template("one-gpu", json!([exact("gpu", GPU, 1)])));
    docs.extend((0..5).map(|i| pod_using_template(&format!("p{i}"), "one-gpu")));
    c.load(&docs).await;
    c.wait_bound(3).await;
    c.idle().await;
    assert_eq!(c.bound().await.len(), 3);
    let unbound: Vec<String> = c
        .pods()
        .await
        .into_iter()
        .filter(|p| p.spec.as_ref().unwrap().node_name.is_none())
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(unbound.len(), 2);
    for p in &unbound {
        let m = c.message(p);
        assert!(m.contains("cannot allocate all claims"), "{p}: {m}");
    }
    c.invariants().await;
    // A driver publishes two more devices on node-c: the waiting pods get them.
    c.load(&[gpus("node-c", 2)]).await;
    c.wait_bound(5).await;
    for p in &unbound {
        assert_eq!(c.bound().await[p], "node-c");
    }
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_cel_selectors_on_attributes_and_capacity() {
    let c = Cluster::start(Mode::Native, "").await;
    let dev = |name: &str, model: &str, mem: &str, version: &str| {
        json!({"name": name, "attributes": {"model": {"string": model}, "driverVersion": {"version": version}},
               "capacity": {"memory": {"value": mem}}})
    };
    let docs = vec![
        namespace(),
        node("node-a"),
        node("node-b"),
        gpu_class(),
        class(
            "large.gpu.example.com",
            &format!(
                "device.driver == \"{GPU}\" && device.capacity[\"{GPU}\"].memory.compareTo(quantity(\"40Gi\")) >= 0"
            ),
        ),
        slice(
            "a",
            GPU,
            "node-a",
            vec![
                dev("gpu-0", "L4", "24Gi", "1.1.0"),
                dev("gpu-1", "A100", "40Gi", "1.1.0"),
            ],
        ),
        slice(
            "b",
            GPU,
            "node-b",
            vec![
                dev("gpu-0", "H100", "80Gi", "1.2.3"),
                dev("gpu-1", "H100", "80Gi", "1.3.0"),
            ],
        ),
        claim("large", json!([exact("gpu", "large.gpu.example.com", 1)])),
        claim(
            "h100-new-driver",
            json!([{"name": "gpu", "exactly": {"deviceClassName": GPU, "selectors": [
            {"cel": {"expression": format!("device.attributes[\"{GPU}\"].model == \"H100\" && device.attributes[\"{GPU}\"].driverVersion.isGreaterThan(semver(\"1.2.5\"))")}}]}}]),
        ),
        claim(
            "l4",
            json!([{"name": "gpu", "exactly": {"deviceClassName": GPU, "selectors": [
            {"cel": {"expression": format!("device.capacity[\"{GPU}\"].memory.isLessThan(quantity(\"30Gi\"))")}}]}}]),
        ),
        claim(
            "nothing",
            json!([{"name": "gpu", "exactly": {"deviceClassName": GPU, "selectors": [
            {"cel": {"expression": format!("device.attributes[\"{GPU}\"].model == \"TPU\"")}}]}}]),
        ),
        pod_using_claim("large", "large"),
        pod_using_claim("h100-new-driver", "h100-new-driver"),
        pod_using_claim("l4", "l4"),
        pod_using_claim("nothing", "nothing"),
    ];
    c.load(&docs).await;
    c.wait_bound(3).await;
    c.idle().await;
    let bound = c.bound().await;
    assert_eq!(
        results(&c.claim("h100-new-driver").await),
        [("gpu".to_string(), "gpu-1".to_string())]
    );
    assert_eq!(bound["h100-new-driver"], "node-b");
    assert_eq!(
        results(&c.claim("l4").await),
        [("gpu".to_string(), "gpu-0".to_string())]
    );
    assert_eq!(bound["l4"], "node-a");
    // 40Gi (A100 on node-a) or 80Gi (node-b gpu-0) qualify; never the 24Gi L4.
    let large = (
        bound["large"].clone(),
        results(&c.claim("large").await)[0].1.clone(),
    );
    assert!(
        large == ("node-a".into(), "gpu-1".into()) || large == ("node-b".into(), "gpu-0".into()),
        "{large:?}"
    );
    assert!(!bound.contains_key("nothing"));
    assert!(
        c.message("nothing").contains("cannot allocate all claims"),
        "{}",
        c.message("nothing")
    );
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_all_allocation_mode() {
    let c = Cluster::start(Mode::Native, "").await;
    let all = |name: &str| json!([{"name": name, "exactly": {"deviceClassName": GPU, "allocationMode": "All"}}]);
    let docs = vec![
        namespace(),
        node("node-a"),
        node("node-b"),
        gpu_class(),
        gpus("node-a", 3),
        gpus("node-b", 2),
        claim("all-1", all("gpus")),
        claim("all-2", all("gpus")),
        claim("all-3", all("gpus")),
        pod_using_claim("p1", "all-1"),
        pod_using_claim("p2", "all-2"),
        pod_using_claim("p3", "all-3"),
    ];
    c.load(&docs).await;
    c.wait_bound(2).await;
    c.idle().await;
    let bound = c.bound().await;
    assert_eq!(
        bound.len(),
        2,
        "each node's devices go to one All claim: {bound:?}"
    );
    let mut sizes: Vec<usize> = Vec::new();
    for (pod, node) in &bound {
        let r = results(&c.claim(&format!("all-{}", &pod[1..])).await);
        sizes.push(r.len());
        assert_eq!(r.len(), if node == "node-a" { 3 } else { 2 });
    }
    sizes.sort();
    assert_eq!(sizes, [2, 3]);
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_match_attribute_across_two_requests() {
    let c = Cluster::start(Mode::Native, "").await;
    let numa = |name: &str, n: i64| json!({"name": name, "attributes": {"numa.example.com/node": {"int": n}}});
    let nic = "nic.example.com";
    let docs = vec![
        namespace(),
        node("node-a"),
        gpu_class(),
        class(nic, &format!("device.driver == \"{nic}\"")),
        slice(
            "a-gpus",
            GPU,
            "node-a",
            vec![numa("gpu-0", 0), numa("gpu-1", 1)],
        ),
        slice(
            "a-nics",
            nic,
            "node-a",
            vec![numa("nic-0", 1), numa("nic-1", 0)],
        ),
        json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": {"name": "aligned", "namespace": NS},
               "spec": {"devices": {"requests": [exact("gpu", GPU, 1), exact("nic", nic, 1)],
                        "constraints": [{"matchAttribute": "numa.example.com/node", "requests": ["gpu", "nic"]}]}}}),
        pod_using_claim("p", "aligned"),
    ];
    c.load(&docs).await;
    c.wait_bound(1).await;
    let r = results(&c.claim("aligned").await);
    assert_eq!(
        r,
        [
            ("gpu".to_string(), "gpu-0".to_string()),
            ("nic".to_string(), "nic-1".to_string())
        ],
        "both on NUMA node 0"
    );
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_first_available_subrequests() {
    let c = Cluster::start(Mode::Native, "").await;
    let fa = json!([{"name": "gpu", "firstAvailable": [
        {"name": "two", "deviceClassName": GPU, "count": 2},
        {"name": "one", "deviceClassName": GPU, "count": 1}]}]);
    let docs = vec![
        namespace(),
        node("node-a"),
        gpu_class(),
        gpus("node-a", 3),
        claim("first", fa.clone()),
        pod_using_claim("first", "first"),
    ];
    c.load(&docs).await;
    c.wait_bound(1).await;
    let r = results(&c.claim("first").await);
    assert_eq!(
        r.iter().map(|(req, _)| req.as_str()).collect::<Vec<_>>(),
        ["gpu/two", "gpu/two"]
    );
    // One GPU is left: the next claim falls back to its second subrequest.
    c.load(&[claim("second", fa), pod_using_claim("second", "second")])
        .await;
    c.wait_bound(2).await;
    assert_eq!(
        results(&c.claim("second").await),
        [("gpu/one".to_string(), "gpu-2".to_string())]
    );
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_for_is_capped_at_256_pods() {
    let c = Cluster::start(Mode::Native, "").await;
    let mut docs = vec![
        namespace(),
        node("node-a"),
        gpu_class(),
        gpus("node-a", 1),
        claim("shared", json!([exact("gpu", GPU, 1)])),
    ];
    docs.extend((0..257).map(|i| pod_using_claim(&format!("p{i:03}"), "shared")));
    c.load(&docs).await;
    c.wait_bound(256).await;
    c.invariants().await;
    let bound = c.bound().await;
    assert_eq!(
        bound.len(),
        256,
        "outcomes: {:#?}",
        c.sched
            .outcomes()
            .iter()
            .filter(|o| o.attempts > 1)
            .collect::<Vec<_>>()
    );
    let left: Vec<String> = c
        .pods()
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .filter(|n| !bound.contains_key(n))
        .collect();
    assert_eq!(left.len(), 1);
    assert!(
        c.message(&left[0]).contains("resourceclaim in use"),
        "{}",
        c.message(&left[0])
    );
    assert_eq!(reserved_uids(&c.claim("shared").await).len(), 256);
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_when_the_claim_is_replaced_between_reserve_and_prebind() {
    // GangPermit holds the pod at Permit (after Reserve, before PreBind) until a second member
    // of its group exists.
    let config = "profiles:\n  - schedulerName: default-scheduler\n    plugins:\n      permit:\n        enabled: [{name: GangPermit}]\n    pluginConfig:\n      - name: GangPermit\n        args: {minMember: 2, timeoutSeconds: 120}\n";
    let c = Cluster::start(Mode::Native, config).await;
    let mut p1 = pod_using_claim("p1", "c");
    p1["metadata"]["labels"] = json!({"pod-group": "g"});
    c.load(&[
        namespace(),
        node("node-a"),
        gpu_class(),
        gpus("node-a", 2),
        claim("c", json!([exact("gpu", GPU, 1)])),
        p1,
    ])
    .await;
    let claims = Api::<ResourceClaim>::namespaced(c.client.clone(), NS);
    let old_uid = claims.get("c").await.unwrap().metadata.uid.unwrap();
    let p1_uid = Api::<Pod>::namespaced(c.client.clone(), NS)
        .get("p1")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    // Wait until the scheduler assumed the reservation (Reserve ran; PreBind has not).
    wait_for(|| async {
        c.sched
            .cache()
            .object(&ResourceKind::resource_claim(), Some(NS), "c")
            .is_some_and(|o| {
                o["status"]["reservedFor"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|e| e["uid"] == p1_uid.as_str()))
            })
    })
    .await;
    assert!(
        reserved_uids(&claims.get("c").await.unwrap()).is_empty(),
        "nothing written before PreBind"
    );
    // Replace the claim: same name, new uid.
    claims.delete("c", &DeleteParams::default()).await.unwrap();
    let new: ResourceClaim =
        serde_json::from_value(claim("c", json!([exact("gpu", GPU, 1)]))).unwrap();
    let new_uid = claims
        .create(&PostParams::default(), &new)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    assert_ne!(old_uid, new_uid);
    // The second gang member lets p1 through Permit: its patches carry the old uid and fail, Unreserve
    // runs, and the next attempt uses the new claim.
    let p2 = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p2", "namespace": NS, "labels": {"pod-group": "g"}},
                        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}});
    c.load(&[p2]).await;
    c.wait_bound(2).await;
    c.idle().await;
    let claim_now = claims.get("c").await.unwrap();
    assert_eq!(claim_now.metadata.uid.as_deref(), Some(new_uid.as_str()));
    assert_eq!(reserved_uids(&claim_now), HashSet::from([p1_uid]));
    assert_eq!(results(&claim_now).len(), 1);
    let p1 = c
        .sched
        .outcomes()
        .into_iter()
        .find(|o| o.name == "p1")
        .unwrap();
    assert!(
        p1.attempts >= 2,
        "the first binding cycle must fail on the uid guard: {p1:?}"
    );
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_for_the_gpu_cluster_example() {
    let c = Cluster::start(Mode::Native, "").await;
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dra-gpu-cluster.yaml");
    c.server
        .load_manifests(&[path])
        .await
        .expect("example loads");
    c.wait_bound(8).await;
    c.idle().await;
    let bound = c.bound().await;
    for p in [
        "train-0", "train-1", "train-2", "train-3", "infer-0", "infer-1", "infer-2", "notebook",
    ] {
        assert!(bound.contains_key(p), "{p} not bound: {}", c.message(p));
    }
    assert!(!bound.contains_key("too-big"));
    assert!(
        c.message("too-big").contains("cannot allocate all claims"),
        "{}",
        c.message("too-big")
    );
    for t in ["train-0", "train-1", "train-2", "train-3"] {
        assert_ne!(bound[t], "node-c", "{t} needs a 40Gi+ GPU");
    }
    let shared = c.claim("shared-gpus").await;
    assert_eq!(reserved_uids(&shared).len(), 3);
    let infer_nodes: HashSet<&String> = ["infer-0", "infer-1", "infer-2"]
        .iter()
        .map(|p| &bound[*p])
        .collect();
    assert_eq!(infer_nodes.len(), 1);
    c.invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Chaos: API faults on writes and cut watches

/// One chaos run: 500 pods (300 with claims from a template, 200 sharing 20 claims) on 40 nodes
/// with 10 GPUs each, while 20% of the scheduler's writes fail (500, 503, 504, 429, a dropped
/// connection, or a dropped connection after the write took effect) and every watch is cut after
/// 300 ms with a watch history so short that re-watches often get 410 Gone.
/// Returns (bound pods, injected faults).
async fn chaos_run(seed: u64) -> (usize, u64) {
    const NODES: usize = 40;
    const TEMPLATE_PODS: usize = 300;
    const SHARED_CLAIMS: usize = 20;
    const PODS_PER_CLAIM: usize = 10;
    let server = ApiServer::with_config(embedded_apiserver::Config { watch_history: 64 });
    let c = Cluster::start_on(server, Mode::Native, "").await;
    let plan = embedded_apiserver::FaultPlan::parse(&format!(
        "seed={seed},write=0.04:500,write=0.04:503,write=0.03:504,write=0.03:429/1s,\
         write=0.03:drop,write=0.04:drop/handled,watch=1:cut/300ms,read=0.05:delay/5ms"
    ))
    .unwrap();
    c.server.set_faults(Some(plan));

    let mut docs = vec![namespace(), gpu_class()];
    for n in 0..NODES {
        docs.push(node(&format!("node-{n}")));
        docs.push(gpus(&format!("node-{n}"), 10));
    }
    docs.push(template("one-gpu", json!([exact("gpu", GPU, 1)])));
    for i in 0..SHARED_CLAIMS {
        docs.push(claim(&format!("shared-{i}"), json!([exact("gpu", GPU, 1)])));
    }
    c.load(&docs).await;
    // Pods arrive in batches while the faults are on.
    let mut pods = Vec::new();
    for i in 0..TEMPLATE_PODS {
        pods.push(pod_using_template(&format!("t-{i:03}"), "one-gpu"));
    }
    for i in 0..SHARED_CLAIMS * PODS_PER_CLAIM {
        let claim = format!("shared-{}", i % SHARED_CLAIMS);
        pods.push(pod_using_claim(&format!("s-{i:03}"), &claim));
    }
    for batch in pods.chunks(50) {
        c.load(batch).await;
    }
    let total = pods.len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while c.bound().await.len() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "seed {seed}: only {} of {total} pods bound under faults",
            c.bound().await.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let injected = c.server.injected_faults();
    // Once the faults stop, nothing is left over: no assumed pod or intent, no reservation for
    // a pod that is not bound, no allocation nobody uses, no device in two claims.
    c.server.set_faults(None);
    c.idle().await;
    wait_for(|| async {
        let w = c.sched.cache().pending_work();
        w.assumed_pods == 0 && w.assumed_intents == 0
    })
    .await;
    c.invariants().await;
    let claims: Vec<ResourceClaim> = Api::<ResourceClaim>::namespaced(c.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    for cl in &claims {
        let allocated = cl.status.as_ref().is_some_and(|s| s.allocation.is_some());
        assert!(
            !allocated || !reserved_uids(cl).is_empty(),
            "seed {seed}: claim {:?} is allocated but nobody uses it",
            cl.metadata.name
        );
    }
    let bound = c.bound().await.len();
    c.sched.shutdown().await;
    (bound, injected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_binds_every_pod_and_leaks_nothing_under_api_faults_and_cut_watches() {
    let first = chaos_run(7).await;
    eprintln!(
        "chaos seed 7: {} pods bound, {} faults injected",
        first.0, first.1
    );
    assert_eq!(first.0, 500);
    assert!(first.1 > 50, "faults were injected: {}", first.1);
    // The same seed again: the same result.
    let second = chaos_run(7).await;
    eprintln!(
        "chaos seed 7 again: {} pods bound, {} faults injected",
        second.0, second.1
    );
    assert_eq!(second.0, first.0);
}

// ---------------------------------------------------------------------------------------------
// Partitionable devices (KEP-4815): shared counters, in their own slice of the pool

/// One partitionable GPU per node: a counter slice (`memory: 80Gi`) and a device slice of the
/// same pool with the whole GPU, two halves and four quarters consuming that counter.
fn partitionable_gpu(node: &str) -> Vec<Value> {
    let pool = json!({"name": format!("{node}-gpu"), "generation": 1, "resourceSliceCount": 2});
    let device = |name: &str, profile: &str, memory: &str| {
        json!({"name": name, "attributes": {"profile": {"string": profile}},
               "capacity": {"memory": {"value": memory}},
               "consumesCounters": [{"counterSet": "gpu-0", "counters": {"memory": {"value": memory}}}]})
    };
    let mut devices = vec![device("gpu-0", "whole", "80Gi")];
    devices.extend((0..2).map(|i| device(&format!("gpu-0-half-{i}"), "half", "40Gi")));
    devices.extend((0..4).map(|i| device(&format!("gpu-0-quarter-{i}"), "quarter", "20Gi")));
    vec![
        json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": format!("{node}-gpu-counters")},
               "spec": {"driver": GPU, "nodeName": node, "pool": pool,
                        "sharedCounters": [{"name": "gpu-0", "counters": {"memory": {"value": "80Gi"}}}]}}),
        json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": format!("{node}-gpu-devices")},
               "spec": {"driver": GPU, "nodeName": node, "pool": pool, "devices": devices}}),
    ]
}

/// A template for one device of a profile (`whole`, `half`, `quarter`).
fn profile_template(name: &str, profile: &str) -> Value {
    template(
        name,
        json!([{"name": "gpu", "exactly": {"deviceClassName": GPU, "allocationMode": "ExactCount", "count": 1,
                 "selectors": [{"cel": {"expression": format!("device.attributes[\"{GPU}\"].profile == \"{profile}\"")}}]}}]),
    )
}

/// 10 pods want a quarter GPU at once (a burst of in-flight reservations) on two nodes with one
/// partitionable GPU each: exactly 8 fit, the counters are never exceeded, and then neither a
/// half nor a whole GPU is left; when quarters are freed on a node, a half fits there again.
async fn partitions_share_counters(mode: Mode) {
    let c = Cluster::start(mode, "").await;
    let mut docs = vec![namespace(), gpu_class(), node("node-a"), node("node-b")];
    docs.extend(partitionable_gpu("node-a"));
    docs.extend(partitionable_gpu("node-b"));
    docs.push(profile_template("quarter", "quarter"));
    docs.push(profile_template("half", "half"));
    docs.extend((0..10).map(|i| pod_using_template(&format!("q{i}"), "quarter")));
    c.load(&docs).await;
    c.wait_bound(8).await;
    c.invariants().await;
    assert_eq!(c.bound().await.len(), 8, "4 quarters of 80Gi per GPU");
    let per_node: BTreeMap<String, usize> =
        c.bound()
            .await
            .into_values()
            .fold(BTreeMap::new(), |mut m, n| {
                *m.entry(n).or_default() += 1;
                m
            });
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [4, 4]);
    let bound = c.bound().await;
    let waiting: Vec<String> = (0..10)
        .map(|i| format!("q{i}"))
        .filter(|p| !bound.contains_key(p))
        .collect();
    assert_eq!(waiting.len(), 2);
    for p in &waiting {
        assert!(
            c.message(p).contains("cannot allocate all claims"),
            "{p}: {}",
            c.message(p)
        );
    }
    c.load(&[pod_using_template("h0", "half")]).await;
    c.idle().await;
    assert!(
        !c.bound().await.contains_key("h0"),
        "no counter left for a half"
    );
    // Free two quarters on node-a: now exactly one half fits, there.
    let on_a: Vec<String> = c
        .bound()
        .await
        .into_iter()
        .filter(|(name, n)| n == "node-a" && name.starts_with('q'))
        .map(|(name, _)| name)
        .take(2)
        .collect();
    let pods = Api::<Pod>::namespaced(c.client.clone(), NS);
    for name in &on_a {
        // No kubelet here: end the grace period at once.
        pods.delete(name, &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }
    // Either the half or the two waiting quarters take what was freed.
    wait_for(|| async {
        let bound = c.bound().await;
        bound.get("h0").map(String::as_str) == Some("node-a")
            || waiting.iter().all(|p| bound.contains_key(p))
    })
    .await;
    c.invariants().await;
    let bound = c.bound().await;
    let on_node_a = bound.values().filter(|n| *n == "node-a").count();
    assert!(
        on_node_a <= 4,
        "never more than the counters allow on node-a: {bound:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitionable_devices_never_exceed_shared_counters() {
    partitions_share_counters(Mode::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitionable_devices_never_exceed_shared_counters_as_wasm_component() {
    partitions_share_counters(Mode::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_for_the_partitionable_gpu_example() {
    let c = Cluster::start(Mode::Native, "").await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/dra-partitionable-gpu.yaml");
    c.server
        .load_manifests(&[path])
        .await
        .expect("example loads");
    // Bound means their claims are allocated and reserved: no binding cycle is left.
    c.wait_bound(3).await;
    // The counter is used up: the whole GPU, though unallocated, does not fit.
    c.load(&[pod_using_template("whole", "whole-gpu")]).await;
    wait_for(|| async { c.message("whole").contains("cannot allocate all claims") }).await;
    let bound = c.bound().await;
    for p in ["quarter-0", "quarter-1", "half"] {
        assert!(bound.contains_key(p), "{p} not bound: {}", c.message(p));
    }
    assert!(
        !bound.contains_key("whole"),
        "no counter left for the whole GPU"
    );
    assert!(
        c.message("whole").contains("cannot allocate all claims"),
        "{}",
        c.message("whole")
    );
    check_dra_invariants(&c.client, &HashSet::new())
        .await
        .unwrap_or_else(|e| panic!("DRA invariants:\n{e}"));
}

// ---------------------------------------------------------------------------------------------
// Placement that keeps scarce devices free

/// GPUs `gpu-0..` on `node` with these memory sizes, in this slice order.
fn gpus_with_memory(node: &str, memory: &[&str]) -> Value {
    let devices = memory
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"name": format!("gpu-{i}"), "capacity": {"memory": {"value": m}}}))
        .collect();
    slice(&format!("{node}-gpus"), GPU, node, devices)
}

/// A template for one GPU with at least 80Gi.
fn big_gpu_template() -> Value {
    let big = format!("device.capacity[\"{GPU}\"].memory.compareTo(quantity(\"80Gi\")) >= 0");
    template(
        "big-gpu",
        json!([{"name": "gpu", "exactly": {"deviceClassName": GPU, "allocationMode": "ExactCount", "count": 1,
                 "selectors": [{"cel": {"expression": big}}]}}]),
    )
}

/// Six 40Gi and six 80Gi GPUs on three nodes — node-a: four 40Gi; node-b: two 80Gi listed
/// before two 40Gi; node-c: four 80Gi — and twelve pods created at once: six that take any GPU
/// (listed first) and six that need 80Gi. All twelve fit only if no generic pod takes an 80Gi
/// GPU. In slice order the generic pods on node-b would take its 80Gi GPUs, and a node choice
/// blind to devices sends generic pods to node-c (a tie broken at random): then big pods stay
/// pending. Placement takes the 40Gi GPUs inside a node, and Score prefers nodes that have them.
async fn generic_requests_leave_the_special_devices_free(mode: Mode) {
    let c = Cluster::start(mode, "").await;
    let mut docs = vec![
        namespace(),
        gpu_class(),
        node("node-a"),
        node("node-b"),
        node("node-c"),
        gpus_with_memory("node-a", &["40Gi"; 4]),
        gpus_with_memory("node-b", &["80Gi", "80Gi", "40Gi", "40Gi"]),
        gpus_with_memory("node-c", &["80Gi"; 4]),
        template("any-gpu", json!([exact("gpu", GPU, 1)])),
        big_gpu_template(),
    ];
    docs.extend((0..6).map(|i| pod_using_template(&format!("any-{i}"), "any-gpu")));
    docs.extend((0..6).map(|i| pod_using_template(&format!("big-{i}"), "big-gpu")));
    c.load(&docs).await;
    c.wait_bound(12).await;
    c.invariants().await;
    let bound = c.bound().await;
    for i in 0..6 {
        let pod = format!("any-{i}");
        let device = results(&c.claim_of(&pod).await)[0].1.clone();
        let node = bound[&pod].as_str();
        assert!(
            node == "node-a" || (node == "node-b" && (device == "gpu-2" || device == "gpu-3")),
            "{pod} took {node}/{device}, an 80Gi GPU"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_requests_leave_scarce_devices_free() {
    generic_requests_leave_the_special_devices_free(Mode::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_requests_leave_scarce_devices_free_as_wasm_component() {
    generic_requests_leave_the_special_devices_free(Mode::Wasm).await;
}

/// One node, an 80Gi GPU listed before a 40Gi one. A generic pod is bound first, and only
/// then is a pod that needs 80Gi created: the generic pod must have left the 80Gi GPU free,
/// known as special from the template alone (in slice order it would take it, and the second
/// pod would never fit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_choice_inside_a_node_keeps_the_special_device_for_later_pods() {
    let c = Cluster::start(Mode::Native, "").await;
    c.load(&[
        namespace(),
        gpu_class(),
        node("node-a"),
        gpus_with_memory("node-a", &["80Gi", "40Gi"]),
        template("any-gpu", json!([exact("gpu", GPU, 1)])),
        big_gpu_template(),
        pod_using_template("any", "any-gpu"),
    ])
    .await;
    c.wait_bound(1).await;
    assert_eq!(results(&c.claim_of("any").await)[0].1, "gpu-1");
    c.load(&[pod_using_template("big", "big-gpu")]).await;
    c.wait_bound(2).await;
    assert_eq!(results(&c.claim_of("big").await)[0].1, "gpu-0");
    c.invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Consumable capacity (KEP-5075): devices with `allowMultipleAllocations` shared by claims

const NIC: &str = "nic.example.com";

/// `node`'s NIC `nic-0`, shared by claims: 10G of bandwidth, 1G by default, 1G to 8G in 1G steps.
fn shared_nic(node: &str) -> Value {
    slice(
        &format!("{node}-nics"),
        NIC,
        node,
        vec![json!({"name": "nic-0", "allowMultipleAllocations": true,
            "capacity": {"bandwidth": {"value": "10G", "requestPolicy": {
                "default": "1G", "validRange": {"min": "1G", "max": "8G", "step": "1G"}}}}})],
    )
}

/// A template for a share of a NIC, asking for `bandwidth` (or nothing: the default).
fn bandwidth_template(name: &str, bandwidth: Option<&str>) -> Value {
    let mut exactly = json!({"deviceClassName": NIC, "allocationMode": "ExactCount", "count": 1});
    if let Some(b) = bandwidth {
        exactly["capacity"] = json!({"requests": {"bandwidth": b}});
    }
    template(name, json!([{"name": "nic", "exactly": exactly}]))
}

/// `(device, shareID, consumed bandwidth)` of a claim's first result.
fn share(c: &ResourceClaim) -> (String, Option<String>, Option<String>) {
    let r = &c
        .status
        .as_ref()
        .unwrap()
        .allocation
        .as_ref()
        .unwrap()
        .devices
        .as_ref()
        .unwrap()
        .results
        .as_ref()
        .unwrap()[0];
    let bandwidth = r
        .consumed_capacity
        .as_ref()
        .and_then(|m| m.get("bandwidth"))
        .map(|q| q.0.clone());
    (r.device.clone(), r.share_id.clone(), bandwidth)
}

/// Eight pods at once (a burst of in-flight shares) each ask for 2500M, rounded up to 3G, of
/// two nodes' shared 10G NICs: exactly six fit, three per node, each with its own share of
/// `nic-0`; the capacity is never exceeded. Deleting one frees its 3G for a waiting pod.
async fn shares_never_exceed_capacity(mode: Mode) {
    let c = Cluster::start(mode, "").await;
    let mut docs = vec![
        namespace(),
        class(NIC, &format!("device.driver == \"{NIC}\"")),
        node("node-a"),
        node("node-b"),
        shared_nic("node-a"),
        shared_nic("node-b"),
        bandwidth_template("web", Some("2500M")),
    ];
    docs.extend((0..8).map(|i| pod_using_template(&format!("w{i}"), "web")));
    c.load(&docs).await;
    c.wait_bound(6).await;
    c.invariants().await;
    let bound = c.bound().await;
    assert_eq!(bound.len(), 6, "3 × 3G of 10G per NIC: {bound:?}");
    for n in ["node-a", "node-b"] {
        assert_eq!(bound.values().filter(|x| *x == n).count(), 3, "{bound:?}");
    }
    let mut ids = HashSet::new();
    for p in bound.keys() {
        let (device, id, bandwidth) = share(&c.claim_of(p).await);
        assert_eq!(device, "nic-0");
        assert_eq!(
            bandwidth.as_deref(),
            Some("3G"),
            "2500M rounded up to a 1G step"
        );
        assert!(ids.insert(id.expect("a shareID")), "shareIDs are distinct");
    }
    let waiting: Vec<String> = (0..8)
        .map(|i| format!("w{i}"))
        .filter(|p| !bound.contains_key(p))
        .collect();
    for p in &waiting {
        assert!(
            c.message(p).contains("cannot allocate all claims"),
            "{p}: {}",
            c.message(p)
        );
    }
    let gone = bound.keys().next().unwrap().clone();
    Api::<Pod>::namespaced(c.client.clone(), NS)
        .delete(&gone, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_for(|| async {
        let b = c.bound().await;
        !b.contains_key(&gone) && waiting.iter().any(|p| b.contains_key(p))
    })
    .await;
    c.invariants().await;
    assert_eq!(c.bound().await.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumable_capacity_is_never_exceeded() {
    shares_never_exceed_capacity(Mode::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumable_capacity_is_never_exceeded_as_wasm_component() {
    shares_never_exceed_capacity(Mode::Wasm).await;
}

/// One request for two 3G shares, selecting by `device.allowMultipleAllocations`: as upstream,
/// both shares come from the same NIC (two results, distinct `shareID`s, the API server accepts
/// them); a second such pod needs 6G of the 4G left and waits.
async fn one_request_takes_two_shares(mode: Mode) {
    let c = Cluster::start(mode, "").await;
    let pair = json!([{"name": "nic", "exactly": {"deviceClassName": NIC, "allocationMode": "ExactCount", "count": 2,
        "selectors": [{"cel": {"expression": "device.allowMultipleAllocations"}}],
        "capacity": {"requests": {"bandwidth": "3G"}}}}]);
    c.load(&[
        namespace(),
        class(NIC, &format!("device.driver == \"{NIC}\"")),
        node("node-a"),
        shared_nic("node-a"),
        template("pair", pair),
        pod_using_template("q0", "pair"),
    ])
    .await;
    c.wait_bound(1).await;
    let claim = c.claim_of("q0").await;
    let results = claim
        .status
        .unwrap()
        .allocation
        .unwrap()
        .devices
        .unwrap()
        .results
        .unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.device == "nic-0"));
    assert_ne!(results[0].share_id, results[1].share_id);
    c.load(&[pod_using_template("q1", "pair")]).await;
    wait_for(|| async { c.message("q1").contains("cannot allocate all claims") }).await;
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_takes_two_shares_of_one_device() {
    one_request_takes_two_shares(Mode::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_takes_two_shares_of_one_device_as_wasm_component() {
    one_request_takes_two_shares(Mode::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_for_the_consumable_capacity_example() {
    let c = Cluster::start(Mode::Native, "").await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/dra-consumable-capacity.yaml");
    c.server
        .load_manifests(&[path])
        .await
        .expect("example loads");
    c.wait_bound(4).await;
    wait_for(|| async { c.message("huge").contains("cannot allocate all claims") }).await;
    for (p, want) in [
        ("web-0", "3G"),
        ("web-1", "3G"),
        ("web-2", "3G"),
        ("logger", "1G"),
    ] {
        assert_eq!(share(&c.claim_of(p).await).2.as_deref(), Some(want), "{p}");
    }
    assert!(!c.bound().await.contains_key("huge"));
    c.invariants().await;
}

// ---------------------------------------------------------------------------------------------
// Binding conditions (KEP-5007)

const ATTACHED: &str = "example.com/attached";
const ATTACH_FAILED: &str = "example.com/attach-failed";

/// A fabric pool reachable from all nodes: one device that a controller must attach before
/// the pod may bind, and whose allocation is pinned to the chosen node.
fn fabric_slice() -> Value {
    json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": "fabric"},
           "spec": {"driver": GPU, "allNodes": true, "pool": {"name": "fabric", "generation": 1, "resourceSliceCount": 1},
                    "devices": [{"name": "fabric-0", "bindsToNode": true,
                                 "bindingConditions": [ATTACHED], "bindingFailureConditions": [ATTACH_FAILED]}]}})
}

fn condition(type_: &str, status: &str, reason: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": format!("{reason} by the test"),
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

fn allocated(c: &ResourceClaim) -> bool {
    c.status.as_ref().is_some_and(|s| s.allocation.is_some())
}

fn device_statuses(c: &ResourceClaim) -> usize {
    c.status
        .as_ref()
        .and_then(|s| s.devices.as_ref())
        .map_or(0, Vec::len)
}

impl Cluster {
    /// Writes the fabric device's conditions into the claim's status, as its driver would.
    async fn set_device_conditions(&self, claim: &str, conditions: Vec<Value>) -> ResourceClaim {
        let patch = json!({"status": {"devices": [{"driver": GPU, "pool": "fabric", "device": "fabric-0",
                                                    "conditions": conditions}]}});
        Api::<ResourceClaim>::namespaced(self.client.clone(), NS)
            .patch_status(
                claim,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect("driver status write")
    }

    /// Watches the claim (from its current version, or `after`) until `done` holds for a
    /// version of it, so states that last only between two writes are seen too.
    async fn watch_claim_until(
        &self,
        name: &str,
        after: Option<&ResourceClaim>,
        done: impl Fn(&ResourceClaim) -> bool,
    ) -> ResourceClaim {
        use futures::{StreamExt, TryStreamExt};
        let api = Api::<ResourceClaim>::namespaced(self.client.clone(), NS);
        let start = match after {
            Some(c) => c.clone(),
            None => api.get(name).await.unwrap(),
        };
        if after.is_none() && done(&start) {
            return start;
        }
        let rv = start.metadata.resource_version.clone().unwrap();
        let wp = kube::api::WatchParams::default().fields(&format!("metadata.name={name}"));
        let mut events = api.watch(&wp, &rv).await.unwrap().boxed();
        tokio::time::timeout(TIMEOUT, async {
            while let Some(ev) = events.try_next().await.unwrap() {
                if let kube::api::WatchEvent::Added(c) | kube::api::WatchEvent::Modified(c) = ev
                    && done(&c)
                {
                    return c;
                }
            }
            panic!("the watch of claim {name} ended");
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "claim {name} did not reach the state within {TIMEOUT:?}; outcomes: {:#?}",
                self.sched.outcomes()
            )
        })
    }

    async fn start_fabric(mode: Mode, config: &str) -> Cluster {
        let c = Cluster::start(mode, config).await;
        c.load(&[
            namespace(),
            node("node-a"),
            node("node-b"),
            gpu_class(),
            fabric_slice(),
            claim("c1", json!([exact("gpu", GPU, 1)])),
            pod_using_claim("p1", "c1"),
        ])
        .await;
        c
    }
}

/// The pod is reserved and its device allocated (so a controller can attach it), but bound
/// only once the driver reports every binding condition `True`.
async fn binding_conditions_hold_the_pod_until_they_are_true(mode: Mode) {
    let c = Cluster::start_fabric(mode, "").await;
    let waiting = c
        .watch_claim_until("c1", None, |cl| {
            allocated(cl) && !reserved_uids(cl).is_empty()
        })
        .await;
    let alloc = waiting
        .status
        .as_ref()
        .unwrap()
        .allocation
        .as_ref()
        .unwrap();
    let result = &alloc.devices.as_ref().unwrap().results.as_ref().unwrap()[0];
    assert_eq!(
        result.binding_conditions.as_deref(),
        Some(&[ATTACHED.to_string()][..])
    );
    assert_eq!(
        result.binding_failure_conditions.as_deref(),
        Some(&[ATTACH_FAILED.to_string()][..])
    );
    // bindsToNode: the allocation names exactly the node the pod will be bound to.
    let term = &alloc.node_selector.as_ref().unwrap().node_selector_terms[0];
    let chosen = term.match_fields.as_ref().unwrap()[0]
        .values
        .as_ref()
        .unwrap()[0]
        .clone();
    // Nothing binds the pod before the conditions are true.
    assert!(c.bound().await.is_empty());
    c.set_device_conditions("c1", vec![condition(ATTACHED, "False", "Attaching")])
        .await;
    assert!(c.bound().await.is_empty());
    c.set_device_conditions("c1", vec![condition(ATTACHED, "True", "Attached")])
        .await;
    c.wait_bound(1).await;
    assert_eq!(c.bound().await["p1"], chosen);
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_conditions_hold_the_pod_until_a_driver_sets_them_true() {
    binding_conditions_hold_the_pod_until_they_are_true(Mode::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_conditions_hold_the_pod_until_a_driver_sets_them_true_as_wasm_component() {
    binding_conditions_hold_the_pod_until_they_are_true(Mode::Wasm).await;
}

/// A failure condition: the pod is unreserved and the claim deallocated (device status
/// cleared), the pod is retried, allocated again, and binds once the device attaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_failure_condition_deallocates_and_the_pod_is_retried() {
    let c = Cluster::start_fabric(Mode::Native, "").await;
    c.watch_claim_until("c1", None, |cl| {
        allocated(cl) && !reserved_uids(cl).is_empty()
    })
    .await;
    let failed = c
        .set_device_conditions("c1", vec![condition(ATTACH_FAILED, "True", "NoPath")])
        .await;
    let freed = c
        .watch_claim_until("c1", Some(&failed), |cl| !allocated(cl))
        .await;
    assert!(
        reserved_uids(&freed).is_empty(),
        "unreserved before deallocation"
    );
    assert_eq!(
        device_statuses(&freed),
        0,
        "device status cleared with the allocation"
    );
    wait_for(|| async {
        c.message("p1")
            .contains("device binding failed: claim=c1, reason=NoPath")
    })
    .await;
    // The retry allocates again (with a fresh device status) and waits again.
    let again = c
        .watch_claim_until("c1", Some(&freed), |cl| {
            allocated(cl) && !reserved_uids(cl).is_empty()
        })
        .await;
    assert_eq!(device_statuses(&again), 0);
    assert!(c.bound().await.is_empty());
    c.set_device_conditions("c1", vec![condition(ATTACHED, "True", "Attached")])
        .await;
    c.wait_bound(1).await;
    c.invariants().await;
}

/// With a short `bindingTimeout`, a device that never attaches times the binding out: the
/// claim is unreserved and deallocated; once the pod is deleted nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_timeout_unreserves_and_deallocates_and_leaks_nothing() {
    let config = "profiles:\n  - schedulerName: default-scheduler\n    pluginConfig:\n      - name: DynamicResources\n        args: {bindingTimeout: 1s}\n";
    let c = Cluster::start_fabric(Mode::Native, config).await;
    let waiting = c
        .watch_claim_until("c1", None, |cl| {
            allocated(cl) && !reserved_uids(cl).is_empty()
        })
        .await;
    let freed = c
        .watch_claim_until("c1", Some(&waiting), |cl| !allocated(cl))
        .await;
    assert!(reserved_uids(&freed).is_empty());
    wait_for(|| async { c.message("p1").contains("timed out after 1s") }).await;
    assert!(c.bound().await.is_empty());
    // The pod keeps being retried and timing out; deleting it ends that, wherever it is.
    Api::<Pod>::namespaced(c.client.clone(), NS)
        .delete("p1", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    c.idle().await;
    let claim = c.claim("c1").await;
    assert!(!allocated(&claim), "{:?}", claim.status);
    assert!(reserved_uids(&claim).is_empty());
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_for_the_binding_conditions_example() {
    let c = Cluster::start(Mode::Native, "").await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/dra-binding-conditions.yaml");
    c.server
        .load_manifests(&[path])
        .await
        .expect("example loads");
    c.wait_bound(1).await;
    assert_eq!(results(&c.claim("local-gpu").await)[0].1, "gpu-0");
    c.watch_claim_until("fabric-gpu", None, |cl| {
        allocated(cl) && !reserved_uids(cl).is_empty()
    })
    .await;
    assert_eq!(results(&c.claim("fabric-gpu").await)[0].1, "fabric-0");
    assert_eq!(c.bound().await.len(), 1, "trainer waits for the attachment");
    c.set_device_conditions("fabric-gpu", vec![condition(ATTACHED, "True", "Attached")])
        .await;
    c.wait_bound(2).await;
    assert_eq!(c.bound().await["trainer"], "node-a");
    c.invariants().await;
}

// ---------------------------------------------------------------------------------------------
// DeviceTaintRules (KEP-5055, resource.k8s.io/v1beta2)

const BROKEN: &str = "example.com/broken";

/// A rule tainting `device` of `node`'s GPU pool with `BROKEN` and `effect`.
fn taint_rule(name: &str, node: &str, device: &str, effect: &str) -> Value {
    json!({"apiVersion": "resource.k8s.io/v1beta2", "kind": "DeviceTaintRule", "metadata": {"name": name},
           "spec": {"deviceSelector": {"driver": GPU, "pool": format!("{node}-{GPU}"), "device": device},
                    "taint": {"key": BROKEN, "value": "fan", "effect": effect}}})
}

/// The one device of a pod's claim.
async fn device_of(c: &Cluster, pod: &str) -> String {
    let r = results(&c.claim_of(pod).await);
    assert_eq!(r.len(), 1, "{pod}: {r:?}");
    r[0].1.clone()
}

/// Three GPUs, two of them tainted by rules (NoSchedule and NoExecute): plain pods get only the
/// untainted one and the second waits; a pod whose request tolerates the taint gets a tainted
/// GPU; deleting the rule of the other tainted GPU frees it for the waiting pod.
async fn taint_rules_keep_pods_off_tainted_devices(mode: Mode) {
    let c = Cluster::start(mode, "").await;
    let tolerating = json!([{"name": "gpu", "exactly": {"deviceClassName": GPU, "allocationMode": "ExactCount", "count": 1,
        "tolerations": [{"key": BROKEN, "operator": "Exists"}]}}]);
    c.load(&[
        namespace(),
        node("node-a"),
        gpu_class(),
        taint_rule("gpu-0-broken", "node-a", "gpu-0", "NoSchedule"),
        taint_rule("gpu-1-broken", "node-a", "gpu-1", "NoExecute"),
        // Informational only: does not keep pods off gpu-2.
        taint_rule("gpu-2-watched", "node-a", "gpu-2", "None"),
        gpus("node-a", 3),
        template("one-gpu", json!([exact("gpu", GPU, 1)])),
        template("tolerant-gpu", tolerating),
        pod_using_template("p0", "one-gpu"),
        pod_using_template("p1", "one-gpu"),
    ])
    .await;
    c.wait_bound(1).await;
    let bound = c.bound().await;
    let (plain, waiting) = if bound.contains_key("p0") {
        ("p0", "p1")
    } else {
        ("p1", "p0")
    };
    assert_eq!(device_of(&c, plain).await, "gpu-2");
    wait_for(|| async { c.message(waiting).contains("cannot allocate all claims") }).await;

    c.load(&[pod_using_template("t", "tolerant-gpu")]).await;
    wait_for(|| async { c.bound().await.contains_key("t") }).await;
    let taken = device_of(&c, "t").await;
    assert!(taken == "gpu-0" || taken == "gpu-1", "{taken}");
    assert!(!c.bound().await.contains_key(waiting));

    let free = if taken == "gpu-0" { "gpu-1" } else { "gpu-0" };
    let rules: Api<k8s_openapi::api::resource::v1beta2::DeviceTaintRule> =
        Api::all(c.client.clone());
    rules
        .delete(&format!("{free}-broken"), &DeleteParams::default())
        .await
        .unwrap();
    wait_for(|| async { c.bound().await.contains_key(waiting) }).await;
    assert_eq!(device_of(&c, waiting).await, free);
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_taint_rules_keep_pods_off_tainted_devices_unless_tolerated() {
    taint_rules_keep_pods_off_tainted_devices(Mode::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_taint_rules_keep_pods_off_tainted_devices_unless_tolerated_as_wasm_component() {
    taint_rules_keep_pods_off_tainted_devices(Mode::Wasm).await;
}

// ---------------------------------------------------------------------------------------------
// Extended resources backed by DRA (KEP-5004)

fn gpu_class_for(resource: &str) -> Value {
    let mut c = gpu_class();
    c["spec"]["extendedResourceName"] = json!(resource);
    c
}

/// A pod whose container asks for `resources` (name → count), as requests and limits.
fn pod_requesting(name: &str, resources: &[(&str, i64)]) -> Value {
    let list: serde_json::Map<String, Value> = resources
        .iter()
        .map(|(r, n)| (r.to_string(), json!(n.to_string())))
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
           "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": list, "limits": list}}]}})
}

/// A node whose device plugin offers `n` of `resource`.
fn device_plugin_node(name: &str, resource: &str, n: i64) -> Value {
    let mut v = node(name);
    v["status"]["capacity"][resource] = json!(n.to_string());
    v["status"]["allocatable"][resource] = json!(n.to_string());
    v
}

async fn pod(c: &Cluster, name: &str) -> Pod {
    Api::<Pod>::namespaced(c.client.clone(), NS)
        .get(name)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_resource_request_gets_a_special_claim_that_goes_with_its_pod() {
    special_claim_goes_with_its_pod(Mode::Native).await;
}

/// The same through the Wasm component: the create intent crosses the WIT boundary (0.2.0 and later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_wasm_an_extended_resource_request_gets_a_special_claim_too() {
    special_claim_goes_with_its_pod(Mode::Wasm).await;
}

async fn special_claim_goes_with_its_pod(mode: Mode) {
    let c = Cluster::start(mode, "").await;
    c.load(&[
        namespace(),
        node("node-a"),
        gpu_class_for("example.com/gpu"),
        gpus("node-a", 3),
        pod_requesting("trainer", &[("example.com/gpu", 2)]),
        // The implicit name of the class works too.
        pod_requesting(
            "notebook",
            &[("deviceclass.resource.kubernetes.io/gpu.example.com", 1)],
        ),
    ])
    .await;
    c.wait_bound(2).await;
    c.invariants().await;
    let p = pod(&c, "trainer").await;
    let status = p.status.unwrap().extended_resource_claim_status.unwrap();
    let uid = p.metadata.uid.unwrap();
    let claim = c.claim(&status.resource_claim_name).await;
    assert!(
        status
            .resource_claim_name
            .starts_with("trainer-extended-resources-")
    );
    assert_eq!(
        claim.metadata.annotations.as_ref().unwrap()["resource.kubernetes.io/extended-resource-claim"],
        "true"
    );
    let owner = &claim.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Pod", uid.as_str(), Some(true))
    );
    let requests = claim
        .spec
        .devices
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].name, "container-0-request-0");
    let exactly = requests[0].exactly.as_ref().unwrap();
    assert_eq!(
        (exactly.device_class_name.as_str(), exactly.count),
        (GPU, Some(2))
    );
    let r = results(&claim);
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r.iter().all(|(req, _)| req == "container-0-request-0"));
    assert_eq!(reserved_uids(&claim), HashSet::from([uid.clone()]));
    let mapping = &status.request_mappings[0];
    assert_eq!(
        (
            mapping.container_name.as_str(),
            mapping.resource_name.as_str(),
            mapping.request_name.as_str()
        ),
        ("c", "example.com/gpu", "container-0-request-0")
    );
    // Three GPUs, three taken: the two pods' claims share none.
    let notebook = c.claim_of("notebook").await;
    assert_eq!(results(&notebook).len(), 1);
    // The pod goes, and its claim with it (the resourceclaim controller's work).
    Api::<Pod>::namespaced(c.client.clone(), NS)
        .delete("trainer", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let claims = Api::<ResourceClaim>::namespaced(c.client.clone(), NS);
    let name = status.resource_claim_name.clone();
    wait_for(|| {
        let (claims, name) = (claims.clone(), name.clone());
        async move { claims.get_opt(&name).await.unwrap().is_none() }
    })
    .await;
    c.invariants().await;
}

/// A pod that arrives before the DeviceClass mapping its extended resource is rejected by
/// NodeResourcesFit; the class's arrival must requeue it (no node would ever list the resource).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_came_before_its_device_class_is_placed_once_the_class_maps_its_resource() {
    let c = Cluster::start(Mode::Native, "").await;
    c.load(&[
        namespace(),
        node("node-a"),
        gpus("node-a", 1),
        pod_requesting("early", &[("example.com/gpu", 1)]),
    ])
    .await;
    wait_for(|| async { c.message("early").contains("Insufficient example.com/gpu") }).await;
    c.load(&[gpu_class_for("example.com/gpu")]).await;
    c.wait_bound(1).await;
    c.invariants().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_plugin_node_is_used_through_fit_and_too_big_requests_stay_pending() {
    let c = Cluster::start(Mode::Native, "").await;
    c.load(&[
        namespace(),
        // DRA offers one GPU here; the device plugin node offers four.
        node("node-dra"),
        gpus("node-dra", 1),
        device_plugin_node("node-dp", "example.com/gpu", 4),
        gpu_class_for("example.com/gpu"),
        pod_requesting("needs-two", &[("example.com/gpu", 2)]),
    ])
    .await;
    c.wait_bound(1).await;
    c.idle().await;
    assert_eq!(c.bound().await["needs-two"], "node-dp");
    let p = pod(&c, "needs-two").await;
    assert!(p.status.unwrap().extended_resource_claim_status.is_none());
    let claims = Api::<ResourceClaim>::namespaced(c.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(
        claims.is_empty(),
        "no special claim on a device plugin node"
    );
    // Two more fill the device plugin node; then one more only DRA can serve, and one too big
    // for either.
    c.load(&[pod_requesting("two-more", &[("example.com/gpu", 2)])])
        .await;
    c.wait_bound(2).await;
    c.load(&[pod_requesting("one-dra", &[("example.com/gpu", 1)])])
        .await;
    c.wait_bound(3).await;
    c.idle().await;
    let bound = c.bound().await;
    assert_eq!(bound["two-more"], "node-dp");
    assert_eq!(bound["one-dra"], "node-dra");
    c.load(&[pod_requesting("too-big", &[("example.com/gpu", 5)])])
        .await;
    wait_for(|| async { !c.message("too-big").is_empty() }).await;
    assert!(!c.bound().await.contains_key("too-big"));
    let msg = c.message("too-big");
    assert!(msg.contains("cannot allocate all claims"), "{msg}");
    assert!(msg.contains("Insufficient example.com/gpu"), "{msg}");
    c.invariants().await;
}
