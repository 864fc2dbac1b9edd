//! Plugins that misbehave on purpose (`tests/plugins/hostile`): an endless loop in Filter, a
//! memory bomb, a trap in Reserve, an intent for an undeclared kind, and oversized output. Each
//! fails only the pod it misbehaves for (pods named `evil*`) with an error naming the plugin;
//! the plugin keeps serving other pods from a fresh instance, and the scheduler keeps placing
//! them.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::{TestCluster, is_bound, named, scheduled_condition};
use serde_json::json;
use wasm_scheduler::config::SchedulerConfig;
use wasm_scheduler::framework::{Code, CycleState, Plugin, Snapshot};
use wasm_scheduler::plugins::Registry;
use wasm_scheduler::wasm::{WasmPlugin, WasmPlugins};

use crate::wasm_plugins::{TestState, node, node_info, pod_info, settings, wasm_file};

fn hostile(mode: &str) -> (WasmPlugins, WasmPlugin) {
    let mut s = settings(&[("Hostile", wasm_file("hostile_plugin"))]);
    s.call_timeout = Duration::from_millis(100);
    s.memory_limit_bytes = 32 << 20;
    let plugins = WasmPlugins::load(&s).unwrap();
    let p = plugins
        .create(
            "Hostile",
            &json!({"mode": mode}),
            Arc::new(TestState::default()),
        )
        .unwrap();
    (plugins, p)
}

/// Filter for one pod on two nodes, through PreFilter as the framework runs it.
fn filter(p: &WasmPlugin, pod: &str) -> Vec<wasm_scheduler::framework::Status> {
    let pod = pod_info(pod);
    let mut cs = CycleState::default();
    p.pre_filter(&mut cs, &pod, &Snapshot::default());
    p.filter(
        &cs,
        &pod,
        &[node_info(&node("n1", &[])), node_info(&node("n2", &[]))],
    )
}

fn reserve(
    p: &WasmPlugin,
    pod: &str,
) -> Result<Vec<wasm_scheduler::framework::PatchIntent>, wasm_scheduler::framework::Status> {
    let pod = pod_info(pod);
    let mut cs = CycleState::default();
    p.pre_filter(&mut cs, &pod, &Snapshot::default());
    p.reserve(&mut cs, &pod, "n1")
}

#[test]
fn an_endless_loop_in_filter_hits_the_deadline_and_fails_only_that_pod() {
    let (plugins, p) = hostile("loop");
    let started = std::time::Instant::now();
    let statuses = filter(&p, "evil-1");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(statuses.len(), 2);
    assert!(statuses.iter().all(|s| s.code == Code::Error));
    assert_eq!(
        statuses[0].message(),
        "plugin Hostile: filter: deadline of 100ms exceeded"
    );
    // A fresh instance serves the next pod.
    assert!(filter(&p, "good-1").iter().all(|s| s.is_success()));
    let st = plugins.status("Hostile").unwrap();
    assert_eq!((st.traps, st.respawns, st.consecutive_traps), (1, 1, 0));
}

#[test]
fn a_memory_bomb_hits_the_memory_cap_and_fails_only_that_pod() {
    let (plugins, p) = hostile("memory");
    let statuses = filter(&p, "evil-1");
    let msg = statuses[0].message();
    assert_eq!(statuses[0].code, Code::Error);
    assert!(
        msg.starts_with("plugin Hostile: filter: memory limit of 33554432 bytes exceeded"),
        "{msg}"
    );
    assert!(filter(&p, "good-1").iter().all(|s| s.is_success()));
    assert_eq!(plugins.status("Hostile").unwrap().traps, 1);
}

#[test]
fn a_trap_in_reserve_fails_that_pod_with_the_panic_message() {
    let (plugins, p) = hostile("trap");
    let err = reserve(&p, "evil-1").unwrap_err();
    assert_eq!(err.code, Code::Error);
    let msg = err.message();
    assert!(
        msg.starts_with("plugin Hostile: reserve: trapped: "),
        "{msg}"
    );
    assert!(
        msg.contains("hostile plugin: trap in reserve for evil-1"),
        "{msg}"
    );
    assert_eq!(reserve(&p, "good-1").unwrap(), vec![]);
    assert_eq!(plugins.status("Hostile").unwrap().respawns, 1);
}

#[test]
fn repeated_traps_are_counted_in_status_and_metrics() {
    let (plugins, p) = hostile("trap");
    for i in 0..3 {
        assert!(reserve(&p, &format!("evil-{i}")).is_err());
    }
    let st = plugins.status("Hostile").unwrap();
    assert_eq!((st.traps, st.consecutive_traps, st.respawns), (3, 3, 3));
    assert!(st.last_error.unwrap().contains("evil-2"));
    let metrics = wasm_scheduler::metrics::Metrics::new();
    metrics.register_more(|r| plugins.register_metrics(r));
    let text = metrics.encode();
    assert!(
        text.contains("scheduler_wasm_plugin_traps_total{plugin=\"Hostile\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("scheduler_wasm_plugin_respawns_total{plugin=\"Hostile\"} 3"),
        "{text}"
    );
    assert!(reserve(&p, "good").is_ok());
    assert_eq!(plugins.status("Hostile").unwrap().consecutive_traps, 0);
}

#[test]
fn an_intent_for_an_undeclared_kind_fails_that_pod() {
    let (plugins, p) = hostile("undeclared");
    let msg = reserve(&p, "evil-1").unwrap_err().message();
    assert_eq!(
        msg,
        "plugin Hostile: reserve: reserve returned a patch intent for v1 Node \"n1\", a kind the plugin did not declare in metadata.patches"
    );
    assert!(reserve(&p, "good-1").is_ok());
    let st = plugins.status("Hostile").unwrap();
    assert_eq!((st.traps, st.rejected_outputs), (0, 1));
}

#[test]
fn oversized_output_fails_that_pod() {
    let (plugins, p) = hostile("oversized");
    let statuses = filter(&p, "evil-1");
    assert_eq!(statuses.len(), 2, "the adapter answers one status per node");
    assert_eq!(
        statuses[0].message(),
        "plugin Hostile: filter: filter returned 3 statuses for 2 nodes"
    );
    let msg = reserve(&p, "evil-2").unwrap_err().message();
    assert!(
        msg.starts_with("plugin Hostile: reserve: reserve returned 2097"),
        "{msg}"
    );
    assert!(
        msg.ends_with("bytes of patch bodies, limit 1048576"),
        "{msg}"
    );
    assert!(filter(&p, "good").iter().all(|s| s.is_success()));
    assert_eq!(plugins.status("Hostile").unwrap().rejected_outputs, 2);
}

/// Runs the scheduler with the hostile plugin in `mode` next to the built-ins, creates five good
/// pods and one evil one, and checks that the good ones are bound and the evil one carries the
/// plugin's error.
async fn scheduler_keeps_placing_other_pods(mode: &str, expected: &str) {
    let yaml = format!(
        r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
  - schedulerName: default-scheduler
    plugins:
      multiPoint:
        enabled: [{{name: Hostile}}]
    pluginConfig:
      - name: Hostile
        args: {{mode: {mode}}}
wasmPlugins:
  - name: Hostile
    path: {}
wasmRuntime: {{callTimeoutMs: 100, memoryLimitBytes: 33554432}}
"#,
        wasm_file("hostile_plugin").display()
    );
    let config = SchedulerConfig::from_yaml_str("hostile.yaml", &yaml).unwrap();
    let cluster = TestCluster::start_with(config, Registry::with_builtins()).await;
    cluster
        .apply(&integration_tests::node_yaml(
            "n1", "32", "64Gi", "{}", "[]",
        ))
        .await;
    let mut pods = vec![integration_tests::pod_yaml("evil-1", "100m", "64Mi", "")];
    pods.extend(
        (0..5).map(|i| integration_tests::pod_yaml(&format!("good-{i}"), "100m", "64Mi", "")),
    );
    cluster.apply(&pods.concat()).await;
    let pods = cluster
        .wait_for_pods(|pods| {
            let good = pods
                .iter()
                .filter(|p| p.metadata.name.as_deref().unwrap().starts_with("good"));
            let evil_failed = pods.iter().any(|p| {
                p.metadata.name.as_deref() == Some("evil-1")
                    && scheduled_condition(p)
                        .and_then(|c| c.2)
                        .is_some_and(|m| m.contains("plugin Hostile"))
            });
            pods.len() == 6
                && good.clone().count() == 5
                && good.into_iter().all(is_bound)
                && evil_failed
        })
        .await;
    let evil = named(&pods, "evil-1");
    assert!(!is_bound(evil));
    let (status, _, message) = scheduled_condition(evil).unwrap();
    assert_eq!(status, "False");
    let message = message.unwrap();
    assert!(message.contains(expected), "{mode}: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_keeps_placing_pods_next_to_an_endless_loop() {
    scheduler_keeps_placing_other_pods(
        "loop",
        "plugin Hostile: filter: deadline of 100ms exceeded",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_keeps_placing_pods_next_to_a_memory_bomb() {
    scheduler_keeps_placing_other_pods(
        "memory",
        "plugin Hostile: filter: memory limit of 33554432 bytes exceeded",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_keeps_placing_pods_next_to_a_trap_in_reserve() {
    scheduler_keeps_placing_other_pods("trap", "hostile plugin: trap in reserve for evil-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_keeps_placing_pods_next_to_an_undeclared_intent() {
    scheduler_keeps_placing_other_pods("undeclared", "a kind the plugin did not declare").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_keeps_placing_pods_next_to_oversized_output() {
    scheduler_keeps_placing_other_pods("oversized", "filter returned 2 statuses for 1 nodes").await;
}
