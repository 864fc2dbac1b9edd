//! The shared harness of the integration tests: an embedded API server and a scheduler in
//! process, talking through `kube::Client` exactly as in production.
//!
//! ```no_run
//! # async fn t() {
//! use integration_tests::TestCluster;
//! let cluster = TestCluster::start().await;
//! cluster.apply("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n...").await;
//! let pods = cluster.wait_for_pods(|pods| pods.iter().all(integration_tests::is_bound)).await;
//! # }
//! ```
//!
//! Waits watch the API server and give up after [`TIMEOUT`]; nothing sleeps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use embedded_apiserver::ApiServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use wasm_scheduler::cache::Cache;
use wasm_scheduler::config::SchedulerConfig;
use wasm_scheduler::framework::Framework;
use wasm_scheduler::metrics::Metrics;
use wasm_scheduler::plugins::Registry;
use wasm_scheduler::scheduler::{PodOutcome, Scheduler, SchedulerOptions};

/// How long any wait may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// An embedded API server with a scheduler running against it.
pub struct TestCluster {
    /// The API server.
    pub server: ApiServer,
    /// A client of it (the scheduler has its own).
    pub client: Client,
    /// The scheduler.
    pub scheduler: Scheduler,
}

/// Turns on `RUST_LOG` logging once (for debugging a failing test).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

impl TestCluster {
    /// The default configuration (profile `default-scheduler` with the built-in plugins).
    pub async fn start() -> Self {
        Self::start_with(SchedulerConfig::default(), Registry::with_builtins()).await
    }

    /// A configuration and a registry (register test plugins in it first).
    ///
    /// # Panics
    /// If the configuration does not build.
    pub async fn start_with(config: SchedulerConfig, registry: Registry) -> Self {
        Self::start_on(ApiServer::new(), config, registry).await
    }

    /// Like [`TestCluster::start_with`] on an existing server (objects loaded before the
    /// scheduler starts are seen in its initial list).
    ///
    /// # Panics
    /// If the configuration does not build.
    pub async fn start_on(server: ApiServer, config: SchedulerConfig, registry: Registry) -> Self {
        init_tracing();
        let client = server.client();
        let scheduler = wasm_scheduler::scheduler::build(
            server.client(),
            &config,
            registry,
            Arc::new(Metrics::new()),
        )
        .await
        .expect("the scheduler configuration builds");
        TestCluster {
            server,
            client,
            scheduler,
        }
    }

    /// Profiles built by hand from the cache (for tests that assemble plugins themselves).
    pub async fn start_with_frameworks(
        options: SchedulerOptions,
        frameworks: impl FnOnce(&Arc<Cache>) -> Vec<Arc<Framework>>,
    ) -> Self {
        init_tracing();
        let server = ApiServer::new();
        let client = server.client();
        let cache = Cache::new();
        let profiles = frameworks(&cache);
        let scheduler = Scheduler::start(
            server.client(),
            cache,
            profiles,
            options,
            Arc::new(Metrics::new()),
        )
        .expect("the scheduler starts");
        TestCluster {
            server,
            client,
            scheduler,
        }
    }

    /// Creates the objects of a YAML manifest (multi-document), then waits until the
    /// scheduler's cache has every node the server has, so pods applied next never race their
    /// nodes (nodes and pods arrive on separate watches).
    ///
    /// # Panics
    /// If a document is invalid or refused.
    pub async fn apply(&self, yaml: &str) {
        self.server
            .load_manifest_str("test.yaml", yaml)
            .await
            .expect("manifest loads");
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&Default::default())
            .await
            .expect("nodes list")
            .items
            .len();
        tokio::time::timeout(
            TIMEOUT,
            self.scheduler
                .wait_until(|s| s.cache().node_count() == nodes),
        )
        .await
        .expect("the scheduler's cache saw the nodes");
    }

    /// Waits until `done` holds for all pods (of every namespace), re-checked on every watch
    /// event; returns them.
    ///
    /// # Panics
    /// After [`TIMEOUT`], with the pods' state.
    pub async fn wait_for_pods(&self, done: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
        wait_for(&self.client, TIMEOUT, done).await
    }

    /// Waits until the scheduler can make no more progress by itself.
    ///
    /// # Panics
    /// After [`TIMEOUT`].
    pub async fn wait_idle(&self) {
        wait_idle(&self.scheduler, TIMEOUT).await;
    }

    /// A pod by namespace and name.
    pub async fn pod(&self, namespace: &str, name: &str) -> Pod {
        Api::<Pod>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .expect("pod exists")
    }

    /// The scheduler's latest outcome for a pod.
    pub fn outcome(&self, namespace: &str, name: &str) -> Option<PodOutcome> {
        self.scheduler
            .outcomes()
            .into_iter()
            .find(|o| o.namespace == namespace && o.name == name)
    }
}

/// Waits until `scheduler` is idle.
///
/// # Panics
/// After `timeout`, naming what kept it busy ([`Scheduler::busy`]).
pub async fn wait_idle(scheduler: &Scheduler, timeout: Duration) {
    if tokio::time::timeout(timeout, scheduler.wait_idle())
        .await
        .is_err()
    {
        panic!(
            "scheduler not idle within {timeout:?}: {:?}",
            scheduler.busy()
        );
    }
}

/// Waits until `done` holds for the pods seen by a watch through `client`.
///
/// # Panics
/// After `timeout`, listing each pod with its node.
pub async fn wait_for(
    client: &Client,
    timeout: Duration,
    done: impl Fn(&[Pod]) -> bool,
) -> Vec<Pod> {
    let api: Api<Pod> = Api::all(client.clone());
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
    let mut initial: BTreeMap<String, Pod> = BTreeMap::new();
    let mut listing = true;
    let result = tokio::time::timeout(timeout, async {
        while let Some(ev) = stream.next().await {
            match ev.expect("pod watch works") {
                Event::Init => {
                    listing = true;
                    initial.clear();
                }
                Event::InitApply(p) => {
                    initial.insert(key(&p), p);
                }
                Event::InitDone => {
                    listing = false;
                    pods = std::mem::take(&mut initial);
                }
                Event::Apply(p) => {
                    pods.insert(key(&p), p);
                }
                Event::Delete(p) => {
                    pods.remove(&key(&p));
                }
            }
            if !listing {
                let v: Vec<Pod> = pods.values().cloned().collect();
                if done(&v) {
                    return v;
                }
            }
        }
        unreachable!("a watch stream does not end")
    })
    .await;
    match result {
        Ok(v) => v,
        Err(_) => {
            let state: Vec<String> = pods
                .values()
                .map(|p| format!("{} -> {:?}", key(p), node_of(p)))
                .collect();
            panic!("timed out after {timeout:?} waiting for pods; they are: {state:#?}")
        }
    }
}

fn key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

/// The node a pod is bound to.
pub fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

/// Whether a pod is bound.
pub fn is_bound(p: &Pod) -> bool {
    node_of(p).is_some()
}

/// The pod with this name.
///
/// # Panics
/// If there is none.
pub fn named<'a>(pods: &'a [Pod], name: &str) -> &'a Pod {
    pods.iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("pod {name} exists"))
}

/// The `PodScheduled` condition's status, reason and message, if set.
pub fn scheduled_condition(p: &Pod) -> Option<(String, Option<String>, Option<String>)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// A node manifest with allocatable cpu, memory and pods, and optional labels and taints
/// (YAML flow maps/lists, e.g. `"{zone: a}"`, `"[{key: k, value: v, effect: NoSchedule}]"`).
pub fn node_yaml(name: &str, cpu: &str, memory: &str, labels: &str, taints: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {labels}}}\nspec: {{taints: {taints}}}\nstatus:\n  capacity: {{cpu: \"{cpu}\", memory: {memory}, pods: \"110\"}}\n  allocatable: {{cpu: \"{cpu}\", memory: {memory}, pods: \"110\"}}\n---\n"
    )
}

/// A node with 8 cpu and 16Gi in `zone`, with the hostname label the kubelet sets.
pub fn zone_node(name: &str, zone: &str) -> String {
    node_yaml(
        name,
        "8",
        "16Gi",
        &format!("{{topology.kubernetes.io/zone: {zone}, kubernetes.io/hostname: {name}}}"),
        "[]",
    )
}

/// A pod manifest in `default` requesting cpu and memory, with extra spec fields as YAML
/// flow-map entries (e.g. `"priority: 10, nodeSelector: {zone: a}"`).
pub fn pod_yaml(name: &str, cpu: &str, memory: &str, extra_spec: &str) -> String {
    let extra = if extra_spec.is_empty() {
        String::new()
    } else {
        format!(", {extra_spec}")
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\nspec: {{containers: [{{name: c, image: busybox, resources: {{requests: {{cpu: \"{cpu}\", memory: {memory}}}}}}}]{extra}}}\n---\n"
    )
}
