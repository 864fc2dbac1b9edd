//! Hot swap of a Wasm plugin while it serves: a new module is compiled, instantiated, fed the
//! current state, health-checked and swapped in between cycles; a module failing any step is
//! refused and the old one keeps serving. Triggered by `reload`, by the file changing on disk,
//! by the admin endpoint, and by SIGHUP. The last test swaps under a stream of pods.
//!
//! v1 is `plugins/node-label`; v2 is `tests/plugins/node-label-v2`, which also rejects nodes
//! labelled `maintenance=true`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use integration_tests::{TestCluster, is_bound, named, node_of};
use k8s_openapi::api::core::v1::Node;
use serde_json::json;
use wasm_scheduler::config::SchedulerConfig;
use wasm_scheduler::framework::{
    Code, CycleState, EventAction, ObjectEvent, Plugin, ResourceKind, Snapshot, StateReplay,
};
use wasm_scheduler::plugins::Registry;
use wasm_scheduler::wasm::{DEBOUNCE, WasmError, WasmPlugin, WasmPlugins};

use crate::wasm_plugins::{
    TestState, node, node_event, node_info, node_label_args, pod_info, settings, wasm_file,
};

/// A plugin file in a temp dir that tests overwrite, as an operator would (write + rename).
struct PluginFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl PluginFile {
    fn new(initial: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-label.wasm");
        std::fs::copy(initial, &path).unwrap();
        PluginFile { _dir: dir, path }
    }

    fn replace_with_bytes(&self, bytes: &[u8]) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    fn replace_with(&self, other: &Path) {
        self.replace_with_bytes(&std::fs::read(other).unwrap());
    }
}

fn v1() -> PathBuf {
    wasm_file("node_label_plugin")
}

fn v2() -> PathBuf {
    wasm_file("node_label_v2_plugin")
}

/// Nodes: `ok` (zone a), `maint` (zone a, under maintenance), `far` (zone c).
fn nodes() -> Vec<Node> {
    vec![
        node("ok", &[("zone", "a")]),
        node("maint", &[("zone", "a"), ("maintenance", "true")]),
        node("far", &[("zone", "c")]),
    ]
}

fn start(file: &PluginFile, state: Arc<dyn StateReplay>) -> (WasmPlugins, WasmPlugin) {
    let plugins = WasmPlugins::load(&settings(&[("NodeLabel", file.path.clone())])).unwrap();
    let plugin = plugins
        .create("NodeLabel", &node_label_args(), state)
        .unwrap();
    (plugins, plugin)
}

fn seeded_state() -> Arc<TestState> {
    let state = Arc::new(TestState::default());
    for n in nodes() {
        state.apply(node_event(EventAction::Added, &n));
    }
    state
}

/// Filter codes over [`nodes`] in a fresh cycle.
fn decisions(p: &WasmPlugin) -> Vec<Code> {
    let pod = pod_info("p");
    let mut cs = CycleState::default();
    p.pre_filter(&mut cs, &pod, &Snapshot::default());
    let infos: Vec<_> = nodes().iter().map(node_info).collect();
    p.filter(&cs, &pod, &infos).iter().map(|s| s.code).collect()
}

const V1: [Code; 3] = [
    Code::Success,
    Code::Success,
    Code::UnschedulableAndUnresolvable,
];
const V2: [Code; 3] = [
    Code::Success,
    Code::UnschedulableAndUnresolvable,
    Code::UnschedulableAndUnresolvable,
];

/// Polls `done` until it holds (a condition wait for background reloads).
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reload_swaps_in_the_new_module_and_its_decisions_are_visible() {
    let file = PluginFile::new(&v1());
    let (plugins, p) = start(&file, seeded_state());
    assert_eq!(decisions(&p), V1);

    file.replace_with(&v2());
    let outcome = plugins.reload("NodeLabel").unwrap();
    assert!(outcome.swapped);
    assert_eq!((outcome.version.as_str(), outcome.instances), ("2.0.0", 1));
    assert_ne!(outcome.sha256, outcome.previous_sha256);
    // The new instance got the current state (the nodes) before it served.
    assert_eq!(decisions(&p), V2);
    let st = plugins.status("NodeLabel").unwrap();
    assert_eq!(
        (st.reloads_ok, st.reloads_failed, st.sha256),
        (1, 0, outcome.sha256)
    );

    let again = plugins.reload("NodeLabel").unwrap();
    assert!(!again.swapped, "an unchanged file swaps nothing");
    assert_eq!(plugins.status("NodeLabel").unwrap().reloads_ok, 1);
}

#[test]
fn a_broken_module_is_rejected_at_its_step_and_the_old_one_keeps_serving() {
    let file = PluginFile::new(&v1());
    let (plugins, p) = start(&file, seeded_state());
    let cases: [(Vec<u8>, &str, &str); 4] = [
        (
            b"\0asm garbage".to_vec(),
            "compile",
            "plugin NodeLabel: compile failed",
        ),
        (
            std::fs::read(wasm_file("wrong_wit_plugin")).unwrap(),
            "wit-version",
            "component exports kube-scheduler:plugin/plugin-api@0.4.0, host supports 0.3.0, 0.2.0, 0.1.0",
        ),
        (
            std::fs::read(wasm_file("hostile_plugin")).unwrap(),
            "init",
            "plugin NodeLabel: init failed: Hostile args: unknown field",
        ),
        (
            std::fs::read(wasm_file("probe_plugin")).unwrap(),
            "metadata",
            "extension points changed from [Filter, Score] to [PreEnqueue, PreFilter",
        ),
    ];
    for (i, (bytes, step, message)) in cases.iter().enumerate() {
        file.replace_with_bytes(bytes);
        let err = plugins.reload("NodeLabel").unwrap_err();
        assert_eq!(err.step_name(), *step, "{err}");
        assert!(err.to_string().contains(message), "{err}");
        assert_eq!(
            decisions(&p),
            V1,
            "v1 still serves after the {step} failure"
        );
        let st = plugins.status("NodeLabel").unwrap();
        assert_eq!(st.reloads_failed, i as u64 + 1);
        assert_eq!(st.last_error.as_deref(), Some(err.to_string().as_str()));
    }
    file.replace_with(&v2());
    plugins.reload("NodeLabel").unwrap();
    assert_eq!(
        decisions(&p),
        V2,
        "a good module after broken ones is taken"
    );
}

#[test]
fn a_module_that_does_not_match_the_pinned_sha256_is_refused() {
    let file = PluginFile::new(&v1());
    let mut s = settings(&[("NodeLabel", file.path.clone())]);
    s.plugins[0].sha256 = Some(wasm_scheduler::wasm::sha256_hex(
        &std::fs::read(v1()).unwrap(),
    ));
    let plugins = WasmPlugins::load(&s).unwrap();
    let p = plugins
        .create("NodeLabel", &node_label_args(), seeded_state())
        .unwrap();
    file.replace_with(&v2());
    let err = plugins.reload("NodeLabel").unwrap_err();
    assert!(matches!(err, WasmError::HashMismatch { .. }), "{err}");
    assert_eq!(decisions(&p), V1);
}

#[test]
fn a_cycle_in_flight_finishes_on_the_instance_it_started_with() {
    let file = PluginFile::new(&v1());
    let (plugins, p) = start(&file, seeded_state());
    let pod = pod_info("p");
    let mut in_flight = CycleState::default();
    p.pre_filter(&mut in_flight, &pod, &Snapshot::default());

    file.replace_with(&v2());
    plugins.reload("NodeLabel").unwrap();

    let infos: Vec<_> = nodes().iter().map(node_info).collect();
    let codes = |cs: &CycleState| {
        p.filter(cs, &pod, &infos)
            .iter()
            .map(|s| s.code)
            .collect::<Vec<_>>()
    };
    assert_eq!(codes(&in_flight), V1, "the pinned cycle still sees v1");
    let mut next = CycleState::default();
    p.pre_filter(&mut next, &pod, &Snapshot::default());
    assert_eq!(codes(&next), V2, "the next cycle runs on v2");
}

/// State that, when replayed into a new instance, pushes one more event to the plugin as if it
/// arrived from the cluster while the new instance is prepared.
struct ChangesDuringReplay {
    inner: TestState,
    plugin: OnceLock<Weak<WasmPlugin>>,
    late: Mutex<Option<ObjectEvent>>,
}

impl StateReplay for ChangesDuringReplay {
    fn replay(&self, kinds: &[ResourceKind]) -> Vec<ObjectEvent> {
        let snapshot = self.inner.replay(kinds);
        if let (Some(event), Some(plugin)) = (
            self.late.lock().unwrap().take(),
            self.plugin.get().and_then(Weak::upgrade),
        ) {
            plugin.on_event(&self.inner.apply(event));
        }
        snapshot
    }
}

#[test]
fn events_that_arrive_while_a_module_is_prepared_reach_it() {
    let file = PluginFile::new(&v1());
    let state = Arc::new(ChangesDuringReplay {
        inner: TestState::default(),
        plugin: OnceLock::new(),
        late: Mutex::new(None),
    });
    for n in nodes() {
        state.inner.apply(node_event(EventAction::Added, &n));
    }
    let (plugins, p) = start(&file, state.clone());
    let p = Arc::new(p);
    state.plugin.set(Arc::downgrade(&p)).ok().unwrap();
    let late = node("late", &[("zone", "b")]);
    *state.late.lock().unwrap() = Some(node_event(EventAction::Added, &late));

    file.replace_with(&v2());
    plugins.reload("NodeLabel").unwrap();

    // The replayed snapshot did not hold `late`; only the event log can have taught v2 about it.
    let mut cs = CycleState::default();
    let pod = pod_info("p");
    p.pre_filter(&mut cs, &pod, &Snapshot::default());
    assert!(p.filter(&cs, &pod, &[node_info(&late)])[0].is_success());
}

#[test]
fn replacing_the_file_on_disk_triggers_a_reload() {
    let file = PluginFile::new(&v1());
    let (plugins, p) = start(&file, seeded_state());
    let _watcher = plugins.watch_files().unwrap();
    file.replace_with(&v2());
    wait_until("the watcher to reload", || {
        plugins.status("NodeLabel").unwrap().reloads_ok == 1
    });
    assert_eq!(decisions(&p), V2);
}

#[test]
fn a_busy_folder_does_not_starve_the_watcher() {
    let file = PluginFile::new(&v1());
    let (plugins, p) = start(&file, seeded_state());
    let _watcher = plugins.watch_files().unwrap();
    // A log next to the plugin, read and appended every 20 ms, far more often than the debounce.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = {
        let log = file.path.with_file_name("plugin.log");
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            while !stop.load(Ordering::Relaxed) {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
                writeln!(f, "line").unwrap();
                drop(f);
                let _ = std::fs::read(&log).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let changed = Instant::now();
    file.replace_with(&v2());
    wait_until("the watcher to reload in a busy folder", || {
        plugins.status("NodeLabel").unwrap().reloads_ok == 1
    });
    let latency = changed.elapsed();
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    eprintln!("busy folder: file replaced -> swapped in {latency:?}");
    assert_eq!(decisions(&p), V2);
    let st = plugins.status("NodeLabel").unwrap();
    assert_eq!((st.reloads_ok, st.reloads_failed), (1, 0));
}

/// Lays out a ConfigMap volume as the kubelet's atomic writer does: the data in a timestamped
/// directory, `..data` a symlink to it, and `plugin.wasm -> ..data/plugin.wasm`.
#[cfg(unix)]
fn configmap_volume(dir: &Path, generation: &str, wasm: &Path) {
    let data = dir.join(format!("..{generation}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::copy(wasm, data.join("plugin.wasm")).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{generation}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("plugin.wasm");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/plugin.wasm", &link).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn a_configmap_volume_update_reloads_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    configmap_volume(dir.path(), "2026_12_04_06_00_00.1", &v1());
    let plugins =
        WasmPlugins::load(&settings(&[("NodeLabel", dir.path().join("plugin.wasm"))])).unwrap();
    let p = plugins
        .create("NodeLabel", &node_label_args(), seeded_state())
        .unwrap();
    let _watcher = plugins.watch_files().unwrap();
    assert_eq!(decisions(&p), V1);

    // The update: a new generation, `..data` swapped onto it, the old one removed. No event
    // names `plugin.wasm`.
    configmap_volume(dir.path(), "2026_12_04_06_05_00.2", &v2());
    std::fs::remove_dir_all(dir.path().join("..2026_12_04_06_00_00.1")).unwrap();
    wait_until("the ConfigMap swap to reload", || {
        plugins.status("NodeLabel").unwrap().reloads_ok == 1
    });
    assert_eq!(decisions(&p), V2);

    // A later swap to the same content (a kubelet resync) swaps nothing whenever its reload
    // runs: the sha256 is unchanged. Give the watcher time to handle it.
    configmap_volume(dir.path(), "2026_12_04_06_10_00.3", &v2());
    std::thread::sleep(DEBOUNCE * 2);
    let st = plugins.status("NodeLabel").unwrap();
    assert_eq!(
        (st.reloads_ok, st.reloads_failed),
        (1, 0),
        "exactly one reload"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_every_plugin() {
    let file = PluginFile::new(&v1());
    let (plugins, p) = start(&file, seeded_state());
    let _task = wasm_scheduler::wasm::spawn_sighup_reloader(plugins.clone()).unwrap();
    file.replace_with(&v2());
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let check = plugins.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("SIGHUP to reload", || {
            check.status("NodeLabel").unwrap().reloads_ok == 1
        })
    })
    .await
    .unwrap();
    assert_eq!(decisions(&p), V2);
}

/// A bare HTTP/1.1 request; returns the status code and body.
async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let code = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (
        code,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_reloads_on_request() {
    let file = PluginFile::new(&v1());
    let (plugins, p) = start(&file, seeded_state());
    let admin = wasm_scheduler::wasm::serve_admin(plugins.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    let (code, body) = http(admin.addr, "POST", "/plugins/Nope/reload").await;
    assert_eq!(
        (code, body["error"].as_str()),
        (404, Some("no Wasm plugin named \"Nope\" is configured"))
    );

    file.replace_with_bytes(b"not wasm");
    let (code, body) = http(admin.addr, "POST", "/plugins/NodeLabel/reload").await;
    assert_eq!((code, body["step"].as_str()), (422, Some("compile")));

    file.replace_with(&v2());
    let (code, body) = http(admin.addr, "POST", "/plugins/NodeLabel/reload").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (body["swapped"].as_bool(), body["version"].as_str()),
        (Some(true), Some("2.0.0"))
    );
    assert_eq!(decisions(&p), V2);

    let (code, body) = http(admin.addr, "GET", "/plugins").await;
    assert_eq!(code, 200);
    assert_eq!(body[0]["name"], json!("NodeLabel"));
    assert_eq!(
        (
            body[0]["reloads_ok"].as_u64(),
            body[0]["reloads_failed"].as_u64()
        ),
        (Some(1), Some(1))
    );
    admin.task.abort();
}

fn stream_config(wasm: &Path) -> SchedulerConfig {
    let yaml = format!(
        r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
  - schedulerName: default-scheduler
    plugins:
      multiPoint:
        enabled: [{{name: NodeLabel}}]
    pluginConfig:
      - name: NodeLabel
        args: {{require: [{{key: zone, operator: In, values: [a]}}], prefer: [{{key: disk, value: ssd}}]}}
wasmPlugins:
  - name: NodeLabel
    path: {}
"#,
        wasm.display()
    );
    SchedulerConfig::from_yaml_str("stream.yaml", &yaml).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_swap_under_a_stream_of_pods_fails_no_cycle() {
    let file = PluginFile::new(&v1());
    let cluster =
        TestCluster::start_with(stream_config(&file.path), Registry::with_builtins()).await;
    // v1 prefers the SSD node; v2 refuses it because it is under maintenance.
    let nodes = [
        integration_tests::node_yaml("plain", "64", "256Gi", "{zone: a}", "[]"),
        integration_tests::node_yaml(
            "ssd",
            "64",
            "256Gi",
            "{zone: a, disk: ssd, maintenance: \"true\"}",
            "[]",
        ),
        integration_tests::node_yaml("elsewhere", "64", "256Gi", "{zone: c, disk: ssd}", "[]"),
    ];
    cluster.apply(&nodes.concat()).await;
    let pod = |i: usize| integration_tests::pod_yaml(&format!("p{i:03}"), "50m", "32Mi", "");

    let before: Vec<String> = (0..20).map(pod).collect();
    cluster.apply(&before.concat()).await;
    let pods = cluster
        .wait_for_pods(|ps| ps.len() == 20 && ps.iter().all(is_bound))
        .await;
    assert!(
        pods.iter().all(|p| node_of(p) == Some("ssd")),
        "v1 puts every pod on the SSD node"
    );

    // Keep creating pods while the module is swapped.
    let created = Arc::new(AtomicUsize::new(20));
    let stream = {
        let server = cluster.server.clone();
        let created = created.clone();
        tokio::spawn(async move {
            for i in 20..120 {
                server
                    .load_manifest_str("stream.yaml", &pod(i))
                    .await
                    .unwrap();
                created.store(i + 1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };
    while created.load(Ordering::SeqCst) < 40 {
        tokio::task::yield_now().await;
    }
    file.replace_with(&v2());
    let plugins = cluster.scheduler.wasm().unwrap().clone();
    let outcome = tokio::task::spawn_blocking(move || plugins.reload("NodeLabel"))
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.swapped);
    let after_swap = created.load(Ordering::SeqCst);
    stream.await.unwrap();

    let pods = cluster
        .wait_for_pods(|ps| ps.len() == 120 && ps.iter().all(is_bound))
        .await;
    for i in after_swap..120 {
        let name = format!("p{i:03}");
        assert_eq!(
            node_of(named(&pods, &name)),
            Some("plain"),
            "{name} was created after the swap"
        );
    }
    // The first batch may have raced the nodes into the cache; the stream came later.
    for i in 20..120 {
        let name = format!("p{i:03}");
        let o = cluster.outcome("default", &name).expect("scheduled");
        assert_eq!(
            o.attempts, 1,
            "{name} needed {} attempts: {:?}",
            o.attempts, o.message
        );
    }
    let st = cluster
        .scheduler
        .wasm()
        .unwrap()
        .status("NodeLabel")
        .unwrap();
    assert_eq!((st.traps, st.reloads_ok, st.reloads_failed), (0, 1, 0));
}
