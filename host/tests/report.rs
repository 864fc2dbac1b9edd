//! The HTML reports rendered in a real headless Chromium (Debian's `chromium`, installed by
//! `scripts/setup`): the page loads without errors, the numbers on it are the run's, and a
//! screenshot is kept under `target/test-artifacts/` for a person to look at.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wasm_scheduler::bench::{PluginMode, RunSpec, Workload, run};
use wasm_scheduler::config::SchedulerConfig;
use wasm_scheduler::report::{bench_html, simulation_html};
use wasm_scheduler::simulate::{Ending, NodeUse, PodRow, SimulationReport};

const CHROMIUM: &str = "/usr/bin/chromium";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn artifacts() -> PathBuf {
    let d = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs headless Chromium on `page` with `extra` flags; returns (stdout, stderr).
fn chromium(page: &Path, extra: &[&str]) -> (String, String) {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: run scripts/setup (as root it installs Debian's chromium)"
    );
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            // Chromium waits this much virtual time for scripts before dumping or capturing.
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed: {stderr}");
    (stdout, stderr)
}

/// The DOM after scripts ran, checked for errors (console and the page's own error box).
fn rendered_dom(page: &Path) -> String {
    let (dom, stderr) = chromium(page, &["--dump-dom"]);
    let console_errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console_errors.is_empty(), "console: {console_errors:#?}");
    assert!(
        dom.contains("data-rendered=\"true\""),
        "the script did not finish: {dom}"
    );
    assert!(
        dom.contains("<div id=\"errors\" hidden=\"\"></div>"),
        "page errors: {dom}"
    );
    dom
}

fn screenshot(page: &Path, name: &str, height: u32) -> PathBuf {
    let shot = artifacts().join(name);
    let _ = std::fs::remove_file(&shot);
    chromium(
        page,
        &[
            &format!("--screenshot={}", shot.display()),
            &format!("--window-size=1400,{height}"),
        ],
    );
    assert!(shot.is_file(), "no screenshot at {}", shot.display());
    shot
}

/// The text of the element with this id (elements the report fills are plain text).
fn text_of(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let rest = &dom[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest[start..].find('<').unwrap() + start;
    rest[start..end].to_string()
}

/// How many `<tr>` the `<tbody>` of table `id` shows.
fn shown_rows(dom: &str, id: &str) -> usize {
    let at = dom
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table #{id}"));
    let body = &dom[at..];
    let body = &body[..body.find("</table>").unwrap()];
    body.matches("<tr>").count() - 1
}

#[test]
fn the_simulate_report_renders_without_errors_and_shows_the_runs_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.html");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dra-gpu-cluster.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_wasm-scheduler"))
        .arg("simulate")
        .arg(&example)
        .args(["--output-format", "json", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = run["rows"].as_array().unwrap();
    let bound = rows.iter().filter(|r| r["node"].is_string()).count();
    let held = run["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["claim"].is_string())
        .count();
    assert!(held > 0, "the example allocates devices: {run}");

    let dom = rendered_dom(&report);
    assert_eq!(text_of(&dom, "pods-total"), rows.len().to_string());
    assert_eq!(text_of(&dom, "pods-bound"), bound.to_string());
    assert_eq!(
        text_of(&dom, "pods-unbound"),
        (rows.len() - bound).to_string()
    );
    assert_eq!(
        text_of(&dom, "node-count"),
        run["nodes"].as_array().unwrap().len().to_string()
    );
    assert_eq!(text_of(&dom, "devices-held"), held.to_string());
    let attempts = run["attemptLatency"].as_array().unwrap().last().unwrap()[1].clone();
    assert_eq!(text_of(&dom, "attempt-count"), attempts.to_string());
    assert!(dom.contains("id=\"bind-chart\""), "no bind timeline");
    assert!(dom.contains("id=\"latency-chart\""), "no latency histogram");
    screenshot(&report, "simulate-report.png", 2200);
}

#[test]
fn the_simulate_report_stays_usable_with_5000_nodes() {
    let nodes: Vec<NodeUse> = (0..5000)
        .map(|i| NodeUse {
            name: format!("node-{i:04}"),
            cpu_allocatable: 32_000,
            cpu_requested: (i % 33) * 1000,
            memory_allocatable: 64 << 30,
            memory_requested: (i % 17) << 30,
            pods_allocatable: 110,
            pods: (0..4).map(|p| format!("default/pod-{i}-{p}")).collect(),
        })
        .collect();
    let rows: Vec<PodRow> = (0..20_000)
        .map(|i| PodRow {
            pod: format!("default/pod-{}-{}", i / 4, i % 4),
            node: Some(format!("node-{:04}", i / 4)),
            reason: None,
            attempts: 1,
            retrying: false,
            bound_after: Some(Duration::from_micros(500 * i as u64)),
            requests: (100, 1 << 20),
        })
        .chain((0..300).map(|i| PodRow {
            pod: format!("default/big-{i}"),
            node: None,
            reason: Some(format!(
                "0/5000 nodes are available: 5000 Insufficient cpu. {}",
                if i % 2 == 0 {
                    "preemption: not eligible"
                } else {
                    ""
                }
            )),
            attempts: 3,
            retrying: false,
            bound_after: None,
            requests: (64_000, 1 << 30),
        }))
        .collect();
    let report = SimulationReport {
        rows,
        elapsed: Duration::from_secs(12),
        ending: Ending::Settled,
        nodes,
        devices: Vec::new(),
        attempt_latency: vec![
            (0.001, 5000),
            (0.002, 19_000),
            (0.004, 20_300),
            (f64::INFINITY, 20_300),
        ],
        objects_yaml: String::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("big.html");
    std::fs::write(&page, simulation_html(&report)).unwrap();
    let dom = rendered_dom(&page);
    assert_eq!(text_of(&dom, "node-count"), "5,000");
    assert_eq!(text_of(&dom, "pods-bound"), "20,000");
    // One page of nodes and of pods, not 5000 rows.
    assert_eq!(shown_rows(&dom, "node-table"), 50);
    assert_eq!(shown_rows(&dom, "pod-table"), 50);
    assert!(text_of(&dom, "node-table-info").starts_with("5000 of 5000"));
    // Two reasons, grouped.
    assert_eq!(dom.matches("class=\"reason-group\"").count(), 2);
    screenshot(&page, "simulate-report-5000-nodes.png", 1600);
}

#[test]
fn the_bench_report_renders_without_errors_and_shows_pods_per_second() {
    let mut sizes = Workload::SchedulingBasic.full_size().scaled(0.02);
    sizes.duration = Duration::ZERO;
    let spec = RunSpec {
        workload: Workload::SchedulingBasic,
        sizes,
        mode: PluginMode::Native,
        faults: None,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt
        .block_on(run(
            spec,
            &SchedulerConfig::default(),
            Path::new("unused.wasm"),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bench.html");
    std::fs::write(
        &page,
        bench_html(std::slice::from_ref(&result), "bench --test"),
    )
    .unwrap();
    let dom = rendered_dom(&page);
    assert_eq!(text_of(&dom, "run-count"), "1");
    assert!(dom.contains("id=\"throughput-chart\""));
    assert!(
        !result.throughput.is_empty(),
        "the batch run sampled its binds"
    );
    assert!(dom.contains("id=\"over-time-0\""), "no pods/s over time");
    let rate = format!("{:.0}", result.pods_per_second);
    let shown = dom.contains(&format!(">{}<", group_thousands(&rate)));
    assert!(shown, "pods/s {rate} not on the page");
    screenshot(&page, "bench-report.png", 1200);
}

/// `12345` as `12,345` (what the page's `toLocaleString("en-US")` shows).
fn group_thousands(n: &str) -> String {
    let mut out = String::new();
    for (i, c) in n.chars().enumerate() {
        if i > 0 && (n.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
