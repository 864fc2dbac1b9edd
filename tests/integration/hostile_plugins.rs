//! Plugins that misbehave on purpose (`tests/plugins/hostile`): an endless loop in Filter, a
//! memory bomb, a trap in Reserve, an intent for an undeclared kind, oversized output, a log
//! flood, a stack overflow, a 10 KB reason and an `on_event` that never returns. Each fails
//! only the pod it misbehaves for (pods named `evil*`) with a short error naming the plugin;
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

/// The endless loop gets a 100 ms deadline to hit; every other mode gets one a loaded machine
/// cannot reach first, so the failure seen is the one the mode provokes.
fn hostile(mode: &str) -> (WasmPlugins, WasmPlugin) {
    let deadline = if mode == "loop" { 100 } else { 10_000 };
    hostile_with(mode, Duration::from_millis(deadline))
}

fn hostile_with(mode: &str, call_timeout: Duration) -> (WasmPlugins, WasmPlugin) {
    let mut s = settings(&[("Hostile", wasm_file("hostile_plugin"))]);
    s.call_timeout = call_timeout;
    s.memory_limit_bytes = 32 << 20;
    let plugins = WasmPlugins::load(&s).unwrap();
    // Tier-up replaces instances too; let it finish so that a replacement after a trap can only
    // be the respawn these tests count (on a cold cache it raced one, under load).
    assert!(plugins.wait_optimized(Duration::from_secs(300)));
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
        msg.starts_with(
            "plugin Hostile: reserve: wasm trap: wasm `unreachable` instruction executed (at "
        ),
        "{msg}"
    );
    assert!(msg.contains("Hostile"), "the plugin's frame: {msg}");
    assert!(
        msg.contains("hostile plugin: trap in reserve for evil-1"),
        "{msg}"
    );
    assert!(
        !msg.contains('\n') && msg.len() < 600,
        "one short line: {msg}"
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
    // Over WIT 0.2.0 the SDK catches the wrong status count before the boundary (only failing
    // nodes cross it); the host refused the oversized intent body.
    assert_eq!(plugins.status("Hostile").unwrap().rejected_outputs, 1);
}

/// How a runaway recursion ends, whichever stack runs out first: the engine's native stack
/// (Cranelift's frames are large), or the guest's shadow stack in linear memory, whose pointer
/// then leaves the memory (Winch's baseline code, or a guest built with other settings).
const STACK_OVERFLOW: [&str; 2] = [
    "plugin Hostile: filter: wasm trap: call stack exhausted (at ",
    "plugin Hostile: filter: wasm trap: out of bounds memory access (at ",
];

#[test]
fn a_stack_overflow_fails_the_pod_with_one_short_line_naming_the_frame() {
    let (plugins, p) = hostile("stack");
    let statuses = filter(&p, "evil-1");
    let msg = statuses[0].message();
    assert_eq!(statuses[0].code, Code::Error);
    assert!(STACK_OVERFLOW.iter().any(|t| msg.starts_with(t)), "{msg}");
    assert!(msg.contains("recurse)"), "the innermost frame: {msg}");
    assert!(
        !msg.contains('\n') && msg.len() < 200,
        "one short line: {msg}"
    );
    assert!(filter(&p, "good-1").iter().all(|s| s.is_success()));
    assert_eq!(plugins.status("Hostile").unwrap().traps, 1);
}

/// Collects everything a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_log_flood_writes_a_bounded_amount_and_counts_the_dropped_lines() {
    // As in tests/plugins/hostile (`FLOOD_LINES`, `FLOOD_LINE_BYTES`).
    const FLOOD_LINES: usize = 20_000;
    const FLOOD_LINE_BYTES: usize = 4096;
    use wasm_scheduler::wasm::sandbox::{LOG_BURST, LOG_LINES_PER_SEC, MAX_LOG_LINE};
    // A generous deadline: the flood itself must finish, only its output is limited.
    let (plugins, p) = hostile_with("logflood", Duration::from_secs(60));
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let started = std::time::Instant::now();
    let statuses = tracing::subscriber::with_default(subscriber, || filter(&p, "evil-1"));
    let elapsed = started.elapsed();
    assert!(statuses.iter().all(|s| s.is_success()), "{statuses:?}");

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let payload = "x".repeat(64);
    let written = text.lines().filter(|l| l.contains(&payload)).count();
    // At most the burst plus what the rate refilled while the call ran.
    let allowed =
        LOG_BURST as usize + (elapsed.as_secs_f64() * f64::from(LOG_LINES_PER_SEC)).ceil() as usize;
    assert!(written >= LOG_BURST as usize, "the burst passes: {written}");
    assert!(
        written <= allowed,
        "{written} lines written, {allowed} allowed in {elapsed:?}"
    );
    for line in text.lines().filter(|l| l.contains(&payload)) {
        assert!(
            line.len() < MAX_LOG_LINE + 200,
            "a line is cut: {} bytes",
            line.len()
        );
        assert!(line.contains(&format!(
            "{} of {FLOOD_LINE_BYTES} bytes cut",
            FLOOD_LINE_BYTES - MAX_LOG_LINE
        )));
    }
    assert!(
        text.len() < (allowed + 5) * (MAX_LOG_LINE + 200),
        "{} bytes written for {written} lines",
        text.len()
    );
    // One summary line each time dropping starts: once, plus once more for every time the rate
    // refilled and lines got through again (only on a slow, loaded machine).
    let resumed = text.matches("logs again;").count();
    assert_eq!(
        text.matches("exceeded its log rate limit").count(),
        1 + resumed,
        "one summary line when dropping starts"
    );
    let st = plugins.status("Hostile").unwrap();
    assert_eq!(st.log_lines_dropped as usize, FLOOD_LINES - written);
    let metrics = wasm_scheduler::metrics::Metrics::new();
    metrics.register_more(|r| plugins.register_metrics(r));
    let m = metrics.encode();
    let sample = format!(
        "scheduler_wasm_plugin_log_lines_dropped_total{{plugin=\"Hostile\"}} {}",
        FLOOD_LINES - written
    );
    assert!(m.contains(&sample), "{m}");
}

/// A configuration with the hostile plugin in `mode` at every extension point next to the
/// built-ins, the given `wasmRuntime` settings (YAML) and leader election off.
pub(crate) fn hostile_config(mode: &str, runtime: &str) -> SchedulerConfig {
    let yaml = format!(
        r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection: {{leaderElect: false}}
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
wasmRuntime: {runtime}
"#,
        wasm_file("hostile_plugin").display()
    );
    SchedulerConfig::from_yaml_str("hostile.yaml", &yaml).unwrap()
}

/// Runs the scheduler with the hostile plugin in `mode` next to the built-ins, creates five good
/// pods and one evil one, and checks that the good ones are bound and the evil one carries the
/// plugin's error; returns the cluster and the evil pod's condition message.
async fn scheduler_keeps_placing_other_pods(mode: &str, expected: &str) -> (TestCluster, String) {
    // As in `hostile`: only the endless loop may hit the deadline.
    let timeout_ms = if mode == "loop" { 100 } else { 10_000 };
    let config = hostile_config(
        mode,
        &format!("{{callTimeoutMs: {timeout_ms}, memoryLimitBytes: 33554432}}"),
    );
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
                    && scheduled_condition(p).and_then(|c| c.2).is_some_and(|m| {
                        m.contains("plugin Hostile") || m.contains("hostile reason")
                    })
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
    (cluster, message)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_keeps_placing_pods_next_to_a_stack_overflow() {
    let (_cluster, message) = scheduler_keeps_placing_other_pods("stack", "(at ").await;
    assert!(
        STACK_OVERFLOW.iter().any(|t| message.contains(t)),
        "{message}"
    );
    assert!(!message.contains('\n') && message.len() < 300, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_reason_is_capped_in_the_condition_and_the_event() {
    use k8s_openapi::api::events::v1::Event;
    use wasm_scheduler::scheduler::NOTE_LENGTH_LIMIT;
    let (cluster, message) =
        scheduler_keeps_placing_other_pods("longreason", "hostile reason yyyy").await;
    assert!(message.len() <= NOTE_LENGTH_LIMIT, "{}", message.len());
    assert!(message.ends_with("y ..."), "{message}");
    let events: kube::Api<Event> = kube::Api::namespaced(cluster.client.clone(), "default");
    let list = events.list(&Default::default()).await.unwrap();
    let notes: Vec<String> = list
        .items
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some("FailedScheduling")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("evil-1")
        })
        .filter_map(|e| e.note.clone())
        .collect();
    assert!(!notes.is_empty(), "a FailedScheduling event for evil-1");
    for note in notes {
        assert!(note.len() <= NOTE_LENGTH_LIMIT, "{}", note.len());
        assert!(note.ends_with(" ..."), "{note}");
    }
}

/// A plain HTTP/1.0 GET of the scheduler's endpoint.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_quarantined_and_the_plugin_keeps_serving_other_pods() {
    use wasm_scheduler::cluster::{RunOptions, Runner};
    integration_tests::init_tracing();
    let config = hostile_config("poison", "{callTimeoutMs: 100}");
    let server = embedded_apiserver::ApiServer::new();
    let mut options = RunOptions::new(config);
    options.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    options.hot_swap = false;
    let runner = Runner::start(server.client(), options).await.unwrap();
    let endpoint = runner.endpoint().unwrap();
    let wasm = runner.scheduler().wasm().unwrap().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(runner.run(async {
        let _ = stopped.await;
    }));
    let client = server.client();
    let started = std::time::Instant::now();
    let mut manifest = integration_tests::node_yaml("n1", "32", "64Gi", "{}", "[]");
    manifest.push_str(&integration_tests::pod_yaml("evil-1", "100m", "64Mi", ""));
    for i in 0..5 {
        manifest.push_str(&integration_tests::pod_yaml(
            &format!("good-{i}"),
            "100m",
            "64Mi",
            "",
        ));
    }
    server
        .load_manifest_str("pods.yaml", &manifest)
        .await
        .unwrap();

    let pods = integration_tests::wait_for(&client, integration_tests::TIMEOUT, |pods| {
        let good: Vec<_> = pods
            .iter()
            .filter(|p| p.metadata.name.as_deref().unwrap().starts_with("good"))
            .collect();
        let evil_told = pods.iter().any(|p| {
            p.metadata.name.as_deref() == Some("evil-1")
                && scheduled_condition(p)
                    .and_then(|c| c.2)
                    .is_some_and(|m| m.contains("quarantined"))
        });
        good.len() == 5 && good.iter().all(|p| is_bound(p)) && evil_told
    })
    .await;
    let window = started.elapsed();
    let evil = named(&pods, "evil-1");
    assert!(!is_bound(evil));
    let message = scheduled_condition(evil).unwrap().2.unwrap();
    assert!(
        message.contains("plugin Hostile: Pod default/evil-1 is quarantined: on-event failed for it (deadline of 100ms exceeded for Pod default/evil-1)"),
        "{message}"
    );

    let st = wasm.status("Hostile").unwrap();
    assert_eq!(st.quarantined.len(), 1, "{:?}", st.quarantined);
    assert!(
        st.quarantined[0].starts_with("Pod default/evil-1: "),
        "{:?}",
        st.quarantined
    );
    // One replacement after the hang; none failed, so nothing spun.
    assert!(st.respawns <= 2, "{} respawns in {window:?}", st.respawns);
    assert_eq!(st.respawn_failures, 0);
    assert!(st.deadline_hits <= 2, "{} deadline hits", st.deadline_hits);

    let (code, body) = http_get(endpoint, "/readyz?verbose").await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("[-]wasm-plugin-Hostile failed: not fed Pod default/evil-1"),
        "{body}"
    );
    let (_, metrics) = http_get(endpoint, "/metrics").await;
    assert!(
        metrics.contains("scheduler_wasm_plugin_failed{plugin=\"Hostile\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scheduler_wasm_plugin_quarantined_objects{plugin=\"Hostile\"} 1"),
        "{metrics}"
    );

    // Deleting the object lifts the quarantine; the plugin is ready again.
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), "default");
    api.delete("evil-1", &Default::default()).await.unwrap();
    integration_tests::wait_for(&client, integration_tests::TIMEOUT, |pods| {
        pods.iter()
            .all(|p| p.metadata.name.as_deref() != Some("evil-1"))
    })
    .await;
    let deadline = std::time::Instant::now() + integration_tests::TIMEOUT;
    loop {
        if wasm.status("Hostile").unwrap().quarantined.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the quarantine is lifted"
        );
        // Polled: the scheduler's cache sees the deletion on its own watch.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, body) = http_get(endpoint, "/readyz?verbose").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("[+]wasm-plugin-Hostile ok"), "{body}");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
