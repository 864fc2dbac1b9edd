//! The results as markdown: the summary table with upstream's thresholds and this project's
//! targets beside the measured numbers, the Wasm/native ratio, and per run where the time went.

use std::fmt::Write;

use super::run::RunResult;
use super::workload::{PluginMode, Workload};

/// Upstream scheduler_perf's threshold and typical rate for the matching test case, pods/s.
pub fn upstream(w: Workload) -> &'static str {
    match w {
        // SchedulingBasic/5000Nodes_10000Pods.
        Workload::SchedulingBasic => "≥ 680",
        // SchedulingWithResourceClaimTemplate/5000pods_500nodes_QueueingHintsEnabled.
        Workload::SchedulingWithResourceClaimTemplate => "≥ 56 (typ. ~70)",
        // SchedulingWithResourceClaimTemplatePartitionable/5000pods_500nodes has no threshold.
        Workload::SchedulingWithResourceClaimTemplatePartitionable => "—",
        Workload::SchedulingWithSharedClaim => "—",
        // SteadyStateClusterResourceClaimTemplate/half_500nodes_QueueingHintsEnabled.
        Workload::SteadyStateDra => "≥ 60 (typ. ~75)",
        // PreemptionBasic/500Nodes has no threshold upstream.
        Workload::PreemptionBasic => "—",
        // PreemptionAsync/5000Nodes.
        Workload::PreemptionAsync => "≥ 570",
        // TopologySpreading/5000Nodes and SchedulingPodAntiAffinity/5000Nodes: no threshold
        // recorded here.
        Workload::TopologySpreading | Workload::SchedulingPodAntiAffinity => "—",
    }
}

/// This project's target for the workload, pods/s, if it has one.
pub fn target(w: Workload) -> Option<f64> {
    match w {
        Workload::SchedulingBasic => Some(5000.0),
        Workload::SchedulingWithResourceClaimTemplate => Some(1000.0),
        _ => None,
    }
}

/// Peak RSS target for SchedulingBasic, MiB.
pub const BASIC_RSS_TARGET_MIB: f64 = 500.0;
/// Wasm may take at most this many times the native time.
pub const WASM_RATIO_TARGET: f64 = 1.15;

/// One line describing the machine: CPUs, model, memory.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!(
        "{cpus} CPUs ({model}), {mem_gib:.0} GiB RAM, {} {}, load average {load} when the report was written",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn check(ok: bool) -> &'static str {
    if ok { "✅" } else { "❌" }
}

/// A failed run: what and why.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The workload.
    pub workload: Workload,
    /// The plugin mode.
    pub mode: PluginMode,
    /// The error.
    pub error: String,
}

/// The whole report as markdown.
pub fn markdown(results: &[RunResult], failures: &[Failure], command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}. Command: `{command}`.\n", machine());
    out.push_str("| Workload | DRA plugin | Nodes | Init pods | Measured pods | Pods/s | Upstream scheduler_perf (pods/s) | Target (pods/s) | Attempt latency p50 / p90 / p99 (ms) | Peak RSS (MiB) |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n");
    for r in results {
        let w = r.spec.workload;
        let s = r.spec.sizes;
        let mode = match (w.uses_dra(), r.spec.faults.is_some()) {
            (true, false) => r.spec.mode.name().to_string(),
            (true, true) => format!("{}, {} API faults", r.spec.mode.name(), r.faults_injected),
            (false, false) => "native (no claims)".to_string(),
            (false, true) => format!("native (no claims), {} API faults", r.faults_injected),
        };
        let measured = if s.duration.is_zero() {
            format!("{}", r.expected)
        } else {
            format!(
                "{} over {:.0} s (batches of {})",
                r.bound, r.seconds, s.measure_pods
            )
        };
        let tgt = match target(w) {
            Some(t) => format!("≥ {t:.0} {}", check(r.pods_per_second >= t)),
            None => "—".into(),
        };
        let rss = mib(r.peak_rss_bytes);
        let rss_cell = if w == Workload::SchedulingBasic {
            format!("{rss:.0} {}", check(rss <= BASIC_RSS_TARGET_MIB))
        } else {
            format!("{rss:.0}")
        };
        let _ = writeln!(
            out,
            "| {w} | {mode} | {} | {} | {measured} | **{:.0}** | {} | {tgt} | {:.2} / {:.2} / {:.2} | {rss_cell} |",
            s.nodes,
            s.init_pods,
            r.pods_per_second,
            upstream(w),
            r.attempts.p50_ms,
            r.attempts.p90_ms,
            r.attempts.p99_ms,
        );
    }
    for f in failures {
        let _ = writeln!(
            out,
            "| {} | {} | | | | failed | {} | | {} | |",
            f.workload,
            f.mode.name(),
            upstream(f.workload),
            f.error.replace('|', "\\|")
        );
    }

    let pairs: Vec<(&RunResult, &RunResult)> = results
        .iter()
        .filter(|r| r.spec.mode == PluginMode::Native && r.spec.workload.uses_dra())
        .filter_map(|n| {
            results
                .iter()
                .find(|w| w.spec.mode == PluginMode::Wasm && w.spec.workload == n.spec.workload)
                .map(|w| (n, w))
        })
        .collect();
    if !pairs.is_empty() {
        out.push_str("\nWasm versus native (same DRA plugin source; time = 1 / throughput):\n\n");
        out.push_str("| Workload | Native pods/s | Wasm pods/s | Wasm / native time | Target |\n|---|---:|---:|---:|---|\n");
        for (n, w) in pairs {
            let ratio = n.pods_per_second / w.pods_per_second.max(1e-9);
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {ratio:.2}× | ≤ {WASM_RATIO_TARGET}× {} |",
                n.spec.workload,
                n.pods_per_second,
                w.pods_per_second,
                check(ratio <= WASM_RATIO_TARGET)
            );
        }
    }

    out.push_str("\nAttempt latency is the engine's `scheduler_scheduling_attempt_duration_seconds` (scheduling cycle + binding, upstream's definition and buckets: 1 ms, 2 ms, 4 ms, …; quantiles interpolated inside a bucket as `histogram_quantile` does). Peak RSS is the whole process: API server, all objects, watches and scheduler.\n");
    for r in results {
        out.push_str(&details(r));
    }
    out
}

/// Where the time of one run went.
fn details(r: &RunResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n#### {} ({}): {} pods in {:.2} s; creating them took {:.2} s; setup {:.1} s; attempts {:?}\n",
        r.spec.workload,
        r.spec.mode.name(),
        r.bound,
        r.seconds,
        r.create_seconds,
        r.setup_seconds,
        r.attempts_by_result
    );
    let every = r.plugin_sample_every.unwrap_or(1.0);
    let _ = writeln!(
        out,
        "Time per extension point (`scheduler_plugin_execution_duration_seconds`, recorded for 1 cycle in {every:.0}; share = recorded time × {every:.0} / measured wall time):\n"
    );
    out.push_str("| Extension point | Plugin | Calls recorded | Mean per call (µs) | Share of wall time |\n|---|---|---:|---:|---:|\n");
    for p in r.point_times.iter().filter(|p| p.calls > 0) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1}% |",
            p.point,
            p.plugin,
            p.calls,
            p.seconds / p.calls as f64 * 1e6,
            p.seconds * every / r.seconds.max(1e-9) * 100.0
        );
    }
    if r.point_times.is_empty() {
        out.push_str("| (none recorded) | | | | |\n");
    }
    if r.spec.sizes.duration.is_zero() {
        let _ = writeln!(
            out,
            "\nactiveQ during the measured phase: {:.0} pods on average, {} at most (sampled every 20 ms).",
            r.queue_active_mean, r.queue_active_max
        );
    }
    if !r.rss_phases.is_empty() {
        let phases: Vec<String> = r
            .rss_phases
            .iter()
            .map(|(p, b)| format!("{p}: {:.0} MiB", mib(*b)))
            .collect();
        let _ = writeln!(
            out,
            "\nRSS after each phase: {}; peak {:.0} MiB.",
            phases.join(", "),
            mib(r.peak_rss_bytes)
        );
    }
    let _ = writeln!(
        out,
        "\nLoad average when the measured phase started: {:.2}.",
        r.load_average
    );
    if let Some(faults) = &r.spec.faults {
        let _ = writeln!(
            out,
            "\nAPI faults injected into the scheduler's requests during the measured phase: {} (`{faults}`).",
            r.faults_injected
        );
    }
    let _ = writeln!(
        out,
        "\nCPU during the measured phase: {:.2} s of {:.2} s wall ({:.0}% of one core); by thread:\n",
        r.cpu_seconds,
        r.seconds,
        r.cpu_seconds / r.seconds.max(1e-9) * 100.0
    );
    out.push_str("| Thread | CPU s | Share of process CPU |\n|---|---:|---:|\n");
    let mut threads: Vec<(&String, &f64)> = r.cpu_by_thread.iter().collect();
    threads.sort_by(|a, b| b.1.total_cmp(a.1));
    let live: f64 = threads.iter().map(|t| *t.1).sum();
    for (name, secs) in threads {
        let _ = writeln!(
            out,
            "| {name} | {secs:.2} | {:.0}% |",
            secs / r.cpu_seconds.max(1e-9) * 100.0
        );
    }
    let exited = (r.cpu_seconds - live).max(0.0);
    if exited > 0.005 {
        let _ = writeln!(
            out,
            "| (threads that exited, e.g. parallel Filter) | {exited:.2} | {:.0}% |",
            exited / r.cpu_seconds.max(1e-9) * 100.0
        );
    }
    out
}
