//! Runs every `tests/scenarios/*.yaml` through `simulate` (the same path as the CLI) and checks
//! where each pod went.
//!
//! A scenario file:
//!
//! ```yaml
//! description: what it shows
//! config: |              # optional KubeSchedulerConfiguration
//!   apiVersion: kubescheduler.config.k8s.io/v1
//!   kind: KubeSchedulerConfiguration
//! manifestFiles: [../../examples/basic-cluster.yaml]   # optional, relative to the scenario
//! manifests: |           # optional inline manifests
//!   apiVersion: v1
//!   kind: Node
//!   ...
//! expect:                # namespace/name: a node, `bound`, `unschedulable`, or a list of nodes
//!   default/web: node-1
//!   default/huge: unschedulable
//!   default/any: bound
//!   default/either: [node-1, node-2]
//! messages:              # optional: text the failure reason must contain
//!   default/huge: Insufficient cpu
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wasm_scheduler::config::SchedulerConfig;
use wasm_scheduler::simulate::{SimulateOptions, SimulationReport, simulate};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Scenario {
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    config: Option<String>,
    #[serde(default)]
    manifest_files: Vec<PathBuf>,
    #[serde(default)]
    manifests: Option<String>,
    expect: BTreeMap<String, Expectation>,
    #[serde(default)]
    messages: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Expectation {
    One(String),
    AnyOf(Vec<String>),
}

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// Checks one scenario; returns what did not match.
async fn run(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let scenario: Scenario =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dir = path.parent().unwrap();
    let config = match &scenario.config {
        Some(c) => {
            SchedulerConfig::from_yaml_str(&format!("{} config", path.display()), c).unwrap()
        }
        None => SchedulerConfig::default(),
    };
    let mut manifests: Vec<PathBuf> = scenario
        .manifest_files
        .iter()
        .map(|f| dir.join(f))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    if let Some(inline) = &scenario.manifests {
        let f = tmp.path().join("manifests.yaml");
        std::fs::write(&f, inline).unwrap();
        manifests.push(f);
    }
    let report = simulate(SimulateOptions {
        manifests,
        config,
        timeout: Duration::from_secs(60),
        faults: None,
    })
    .await
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    check(&scenario, &report)
}

fn check(scenario: &Scenario, report: &SimulationReport) -> Vec<String> {
    let mut problems = Vec::new();
    for (pod, want) in &scenario.expect {
        let Some(row) = report.rows.iter().find(|r| &r.pod == pod) else {
            problems.push(format!("{pod}: no such pod"));
            continue;
        };
        let got = row.node.clone().unwrap_or_else(|| "unschedulable".into());
        let ok = match want {
            Expectation::One(w) if w == "bound" => row.node.is_some(),
            Expectation::One(w) => *w == got,
            Expectation::AnyOf(nodes) => nodes.contains(&got),
        };
        if !ok {
            problems.push(format!(
                "{pod}: expected {}, got {got} ({})",
                describe(want),
                row.reason.as_deref().unwrap_or("bound")
            ));
        }
    }
    for (pod, text) in &scenario.messages {
        let reason = report
            .rows
            .iter()
            .find(|r| &r.pod == pod)
            .and_then(|r| r.reason.clone())
            .unwrap_or_default();
        if !reason.contains(text.as_str()) {
            problems.push(format!(
                "{pod}: reason {reason:?} does not contain {text:?}"
            ));
        }
    }
    problems
}

fn describe(e: &Expectation) -> String {
    match e {
        Expectation::One(s) => s.clone(),
        Expectation::AnyOf(v) => format!("one of {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_places_pods_as_expected() {
    integration_tests::init_tracing();
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no scenarios in {}",
        scenario_dir().display()
    );
    let mut failures = Vec::new();
    for f in &files {
        for p in run(f).await {
            failures.push(format!("{}: {p}", f.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
