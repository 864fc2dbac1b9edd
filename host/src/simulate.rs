//! `simulate`: schedule the pods of some manifests on an embedded API server and report where
//! each went, without a cluster. The scheduler runs exactly as against a real cluster; the run
//! ends when it can make no more progress on its own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use embedded_apiserver::{ApiServer, ManifestError};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams};

use crate::cache::api_resource;
use crate::config::{ConfigError, SchedulerConfig};
use crate::framework::ResourceKind;
use crate::metrics::Metrics;
use crate::plugins::Registry;
use crate::scheduler::{BuildError, build};

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
    /// The scheduler still had work when the timeout hit.
    #[error("the scheduler was still busy after {0:?}")]
    Timeout(Duration, Box<SimulationReport>),
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
}

/// One pod's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRow {
    /// `namespace/name`.
    pub pod: String,
    /// The node it is bound to.
    pub node: Option<String>,
    /// Why it is not bound.
    pub reason: Option<String>,
    /// Scheduling attempts.
    pub attempts: u32,
}

/// The outcome of a simulation.
#[derive(Debug, Clone)]
pub struct SimulationReport {
    /// Every pod, sorted by namespace and name.
    pub rows: Vec<PodRow>,
    /// From the scheduler's start to idle.
    pub elapsed: Duration,
    /// Final pods and resource claims as multi-document YAML.
    pub objects_yaml: String,
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

    /// Bound pods per second of scheduling.
    pub fn pods_per_second(&self) -> f64 {
        self.bound() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The table `POD  NODE/REASON  ATTEMPTS` and a totals line.
    pub fn table(&self) -> String {
        let cells: Vec<(String, String, String)> = self
            .rows
            .iter()
            .map(|r| {
                let place = match (&r.node, &r.reason) {
                    (Some(n), _) => n.clone(),
                    (None, Some(reason)) => reason.clone(),
                    (None, None) => "<pending>".into(),
                };
                (r.pod.clone(), place, r.attempts.to_string())
            })
            .collect();
        let w0 = cells.iter().map(|c| c.0.len()).max().unwrap_or(0).max(3);
        let w1 = cells.iter().map(|c| c.1.len()).max().unwrap_or(0).max(14);
        let mut out = format!("{:<w0$}  {:<w1$}  ATTEMPTS\n", "POD", "NODE OR REASON");
        for (a, b, c) in &cells {
            out.push_str(&format!("{a:<w0$}  {b:<w1$}  {c}\n"));
        }
        out.push_str(&format!(
            "\n{} pods: {} bound, {} unschedulable in {:.3}s ({:.0} pods/s)\n",
            self.rows.len(),
            self.bound(),
            self.unbound(),
            self.elapsed.as_secs_f64(),
            self.pods_per_second()
        ));
        out
    }
}

/// Runs a simulation.
///
/// # Errors
/// A missing or invalid manifest, a configuration that does not build, or a timeout (which
/// carries the report so far).
pub async fn simulate(opts: SimulateOptions) -> Result<SimulationReport, SimulateError> {
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
    let scheduler = build(
        client.clone(),
        &opts.config,
        Registry::with_builtins(),
        Arc::new(Metrics::new()),
    )
    .await?;
    tracing::debug!("scheduler started");
    let finished = tokio::time::timeout(opts.timeout, scheduler.wait_idle())
        .await
        .is_ok();
    let elapsed = start.elapsed();
    tracing::debug!(?elapsed, finished, "scheduler idle");
    // Let the last events and conditions land so the output shows them.
    let _ = tokio::time::timeout(Duration::from_secs(5), scheduler.flush_records()).await;

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
    let mut rows: Vec<PodRow> = pods
        .items
        .iter()
        .map(|p| {
            let (ns, name) = (
                p.metadata.namespace.clone().unwrap_or_default(),
                p.metadata.name.clone().unwrap_or_default(),
            );
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
                    None => Some("not scheduled by this scheduler (spec.schedulerName)".into()),
                },
            };
            PodRow {
                pod: format!("{ns}/{name}"),
                node,
                reason,
                attempts: outcome.map_or(0, |o| o.attempts),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.pod.cmp(&b.pod));
    let objects_yaml = final_objects(&client, &pods.items).await?;
    scheduler.shutdown().await;
    let report = SimulationReport {
        rows,
        elapsed,
        objects_yaml,
    };
    if finished {
        Ok(report)
    } else {
        Err(SimulateError::Timeout(opts.timeout, Box::new(report)))
    }
}

/// Pods and ResourceClaims as multi-document YAML.
async fn final_objects(client: &kube::Client, pods: &[Pod]) -> Result<String, SimulateError> {
    let mut docs: Vec<serde_json::Value> = Vec::new();
    for p in pods {
        let mut v = serde_json::to_value(p).unwrap_or_default();
        v["apiVersion"] = "v1".into();
        v["kind"] = "Pod".into();
        docs.push(v);
    }
    let claim_kind = ResourceKind::resource_claim();
    let claims: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource(&claim_kind));
    // A cluster without the DRA API simply has no claims.
    if let Ok(list) = claims.list(&ListParams::default()).await {
        for c in list.items {
            let mut v = serde_json::to_value(&c).unwrap_or_default();
            v["apiVersion"] = claim_kind.api_version.clone().into();
            v["kind"] = claim_kind.kind.clone().into();
            docs.push(v);
        }
    }
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&d).unwrap_or_default());
    }
    Ok(out)
}
