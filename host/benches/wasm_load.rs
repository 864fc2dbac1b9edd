//! What loading and hot-swapping a Wasm plugin costs, printed as README rows:
//!
//! - component sizes of the shipped plugins;
//! - load (read, compile or take from the cache, link) with a cold cache (tiered: until the
//!   baseline code serves; untiered: Cranelift first), a warm disk cache (a restart) and from
//!   memory (a swap back), median of 3;
//! - hot swap of a *changed* DRA module (new sha256, no cache entry): the file replaced on disk
//!   → the watcher's reload → the new module serving (baseline code), and → its optimized code
//!   serving, over `SWAPS` swaps while a thread runs scheduling cycles (PreFilter + Filter over
//!   500 nodes) on the plugin without pause; every cycle must succeed.
//!
//! Build the components first (`scripts/setup`), then
//! `cargo bench -p wasm-scheduler --bench wasm_load`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use wasm_scheduler::framework::{
    CycleState, EventAction, NodeInfo, ObjectEvent, Plugin, PodInfo, ResourceKind, Snapshot,
    StateReplay,
};
use wasm_scheduler::wasm::{PluginSource, Settings, Tier, WasmPlugins};

/// Hot swaps measured.
const SWAPS: usize = 12;

fn component(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join(format!("wasm32-wasip2/plugin/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup (it builds the plugins)",
        path.display()
    );
    path
}

fn settings(name: &str, path: &Path, cache: &Path) -> Settings {
    Settings {
        plugins: vec![PluginSource {
            name: name.into(),
            path: path.to_path_buf(),
            sha256: None,
        }],
        cache_dir: Some(cache.to_path_buf()),
        ..Settings::default()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// `bytes` with a custom section appended: the same code under a new sha256 (a "changed"
/// module that no cache knows).
fn variant(bytes: &[u8], n: usize) -> Vec<u8> {
    let name = b"wasm-load-bench";
    let payload = format!("variant {n} {:?}", Instant::now());
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(payload.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    let mut len = body.len();
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(&body);
    out
}

fn load_rows(name: &str, crate_name: &str) {
    let path = component(crate_name);
    let size = std::fs::metadata(&path).unwrap().len();
    let (mut tiered, mut cold, mut warm, mut memory) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(name, &path, dir.path());
        let t = Instant::now();
        let first = WasmPlugins::load(&s).unwrap();
        tiered.push(t.elapsed());
        assert_eq!(first.cache_stats().baseline_compiles, 1);
        assert!(first.wait_optimized(Duration::from_secs(300)));
        let untiered = Settings {
            tiering: false,
            cache_dir: Some(dir.path().join("untiered")),
            ..s.clone()
        };
        let t = Instant::now();
        let optimized = WasmPlugins::load(&untiered).unwrap();
        cold.push(t.elapsed());
        assert_eq!(optimized.cache_stats().misses, 1);
        let t = Instant::now();
        let restarted = WasmPlugins::load(&s).unwrap();
        warm.push(t.elapsed());
        assert_eq!(restarted.cache_stats().disk_hits, 1);
        // A swap back to a module this runtime knows: reload from a copy of the same bytes.
        let other = dir.path().join("other.wasm");
        std::fs::write(&other, variant(&std::fs::read(&path).unwrap(), 0)).unwrap();
        let copy = dir.path().join("plugin.wasm");
        std::fs::copy(&path, &copy).unwrap();
        let p = WasmPlugins::load(&settings(name, &copy, dir.path())).unwrap();
        std::fs::copy(&other, &copy).unwrap();
        p.reload(name).unwrap();
        assert!(p.wait_optimized(Duration::from_secs(300)));
        std::fs::copy(&path, &copy).unwrap();
        let t = Instant::now();
        assert!(p.reload(name).unwrap().swapped);
        memory.push(t.elapsed());
    }
    println!(
        "| {crate_name}.wasm | {:.2} MB | {} | {} | {} | {} |",
        size as f64 / 1e6,
        ms(median(tiered)),
        ms(median(cold)),
        ms(median(warm)),
        ms(median(memory))
    );
}

/// Objects of several kinds, replayed in order (kinds the plugin subscribed to).
struct Objects(Vec<ObjectEvent>);

impl StateReplay for Objects {
    fn replay(&self, kinds: &[ResourceKind]) -> Vec<ObjectEvent> {
        self.0
            .iter()
            .filter(|e| kinds.contains(&e.resource))
            .cloned()
            .collect()
    }
}

fn added(resource: ResourceKind, object: serde_json::Value) -> ObjectEvent {
    ObjectEvent {
        action: EventAction::Added,
        resource,
        object: object.to_string(),
    }
}

/// 500 nodes with 10 devices each, a DeviceClass with a CEL selector, a pod with one claim.
fn dra_cluster() -> (Arc<Objects>, Vec<Arc<NodeInfo>>, PodInfo) {
    const DRIVER: &str = "test-driver.cdi.k8s.io";
    let mut events = vec![added(
        ResourceKind::device_class(),
        json!({"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": "test-class"},
               "spec": {"selectors": [{"cel": {"expression": format!("device.driver == \"{DRIVER}\"")}}]}}),
    )];
    let mut infos = Vec::new();
    for i in 0..500 {
        let name = format!("node-{i}");
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
        events.push(added(ResourceKind::node(), node.clone()));
        infos.push(Arc::new(NodeInfo::new(Arc::new(
            serde_json::from_value(node).unwrap(),
        ))));
        let devices: Vec<_> = (0..10)
            .map(|d| json!({"name": format!("device-{d}"), "attributes": {"index": {"int": d}}}))
            .collect();
        events.push(added(
            ResourceKind::resource_slice(),
            json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": format!("slice-{i}")},
                   "spec": {"driver": DRIVER, "nodeName": name, "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
                            "devices": devices}}),
        ));
    }
    events.push(added(
        ResourceKind::resource_claim(),
        json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "claim-0", "namespace": "default", "uid": "claim-uid", "resourceVersion": "1"},
            "spec": {"devices": {"requests": [{"name": "req-0", "exactly": {"deviceClassName": "test-class"}}]}}}),
    ));
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "p-uid"},
        "spec": {"containers": [{"name": "c", "image": "pause", "resources": {"claims": [{"name": "r"}]}}],
                 "resourceClaims": [{"name": "r", "resourceClaimName": "claim-0"}]}});
    events.push(added(ResourceKind::pod(), pod.clone()));
    let pod = PodInfo::new(Arc::new(serde_json::from_value::<Pod>(pod).unwrap()));
    (Arc::new(Objects(events)), infos, pod)
}

/// One scheduling cycle (PreFilter + Filter over every node); the first status that is not a
/// success, if any.
fn cycle(plugin: &dyn Plugin, pod: &PodInfo, infos: &[Arc<NodeInfo>]) -> Option<String> {
    let mut cs = CycleState::default();
    let pre = plugin.pre_filter(&mut cs, pod, &Snapshot::default());
    if !pre.status.is_success() {
        return Some(format!("{:?}", pre.status));
    }
    plugin
        .filter(&cs, pod, infos)
        .into_iter()
        .find(|s| !s.is_success())
        .map(|s| format!("{s:?}"))
}

/// The DRA cycle on baseline and on optimized code: the first cycle of a new instance and the
/// median of 50 after it.
fn tier_rows() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = WasmPlugins::load(&settings(
        "DynamicResources",
        &component("dra_plugin"),
        dir.path(),
    ))
    .unwrap();
    let (state, infos, pod) = dra_cluster();
    let row = |tier: Tier| {
        let plugin = plugins
            .create("DynamicResources", &json!({}), state.clone())
            .unwrap();
        assert_eq!(plugins.status("DynamicResources").unwrap().tier, tier);
        let t = Instant::now();
        assert_eq!(cycle(&plugin, &pod, &infos), None);
        let first = t.elapsed();
        let runs: Vec<_> = (0..50)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(cycle(&plugin, &pod, &infos), None);
                t.elapsed()
            })
            .collect();
        println!(
            "| DRA PreFilter + Filter (500 nodes × 10 devices), {} code | first {} | median {} |",
            tier.as_str(),
            ms(first),
            ms(median(runs))
        );
    };
    row(Tier::Baseline);
    assert!(plugins.wait_optimized(Duration::from_secs(300)));
    row(Tier::Optimized);
}

fn swap_rows() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(component("dra_plugin")).unwrap();
    let file = dir.path().join("dra.wasm");
    std::fs::write(&file, &original).unwrap();
    let plugins = WasmPlugins::load(&settings("DynamicResources", &file, dir.path())).unwrap();
    let (state, infos, pod) = dra_cluster();
    let plugin = plugins
        .create("DynamicResources", &json!({}), state)
        .unwrap();
    let _watcher = plugins.watch_files().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (cycles, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let scheduler = {
        let (stop, cycles, failed) = (stop.clone(), cycles.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut cs = CycleState::default();
                let pre = plugin.pre_filter(&mut cs, &pod, &Snapshot::default());
                let bad = if pre.status.is_success() {
                    plugin
                        .filter(&cs, &pod, &infos)
                        .into_iter()
                        .find(|s| !s.is_success())
                } else {
                    Some(pre.status)
                };
                if let Some(status) = bad {
                    if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("first failed cycle: {status:?}");
                    }
                }
                cycles.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let (mut serving, mut optimized) = (Vec::new(), Vec::new());
    for i in 1..=SWAPS {
        let bytes = variant(&original, i);
        let sha = wasm_scheduler::wasm::sha256_hex(&bytes);
        let tmp = dir.path().join("dra.wasm.tmp");
        std::fs::write(&tmp, &bytes).unwrap();
        let start = Instant::now();
        std::fs::rename(&tmp, &file).unwrap();
        let mut seen = None;
        loop {
            let st = plugins.status("DynamicResources").unwrap();
            if st.sha256 == sha {
                seen.get_or_insert_with(|| start.elapsed());
                if st.tier == Tier::Optimized {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "swap {i} never finished"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        optimized.push(start.elapsed());
        serving.push(seen.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    scheduler.join().unwrap();
    let st = plugins.status("DynamicResources").unwrap();
    for v in [&mut serving, &mut optimized] {
        v.sort();
    }
    let p50 = |v: &[Duration]| (ms(v[v.len() / 2]), ms(*v.last().unwrap()));
    println!(
        "| hot swap of a changed DRA module ({SWAPS} swaps under load): file replaced → new module serving | p50 {} | max {} | {} cycles, {} failed, {} reloads ok, {} failed |",
        p50(&serving).0,
        p50(&serving).1,
        cycles.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        st.reloads_ok,
        st.reloads_failed
    );
    println!(
        "| … → its optimized code serving | p50 {} | max {} | |",
        p50(&optimized).0,
        p50(&optimized).1
    );
}

fn main() {
    // `RUST_LOG=wasm_scheduler=info` shows each swap's compile/start split.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    // `cargo bench` passes `--bench`; a filter argument selects `load` or `swap`.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |what: &str| filter.is_empty() || filter.iter().any(|f| what.contains(f.as_str()));
    if run("load") {
        println!(
            "| component | size | load, cold cache (baseline code serving) | load, cold cache, untiered (optimized code) | load, warm disk cache | swap back (memory) |"
        );
        println!("|---|---|---|---|---|---|");
        load_rows("DynamicResources", "dra_plugin");
        load_rows("NodeLabel", "node_label_plugin");
    }
    if run("tier") {
        tier_rows();
    }
    if run("swap") {
        swap_rows();
    }
}
