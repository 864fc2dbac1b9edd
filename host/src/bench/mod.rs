//! # Benchmarks shaped like Kubernetes scheduler_perf
//!
//! Each workload builds a cluster on the embedded API server through `kube::Client`, starts the
//! scheduler exactly as `wasm-scheduler run` does (watch → cache → queue → scheduling cycle →
//! binding cycle → API server), schedules the init pods, then measures the measured pods:
//! pods/s, scheduling-attempt latency quantiles, time per extension point, CPU per thread and
//! peak RSS. DRA workloads run with the `DynamicResources` plugin compiled in and as a Wasm
//! component, and the report gives the ratio.
//!
//! - [`Workload`] and [`Sizes`]: what runs ([`Workload::full_size`], [`Sizes::scaled`]);
//! - [`run()`]: one [`RunSpec`] in this process → [`RunResult`];
//! - [`main()`]: the command (`cargo bench -p wasm-scheduler --bench scheduler_perf`, or the
//!   binary's `bench` subcommand): options, one child process per run, the markdown report.
//!
//! ```no_run
//! use wasm_scheduler::bench::{PluginMode, RunSpec, Workload, run};
//! # async fn f() -> Result<(), wasm_scheduler::bench::BenchError> {
//! let spec = RunSpec {
//!     workload: Workload::SchedulingBasic,
//!     sizes: Workload::SchedulingBasic.full_size().scaled(0.1),
//!     mode: PluginMode::Native,
//!     faults: None,
//! };
//! let config = wasm_scheduler::config::SchedulerConfig::default();
//! let wasm = std::path::Path::new("target/wasm32-wasip2/plugin/dra_plugin.wasm");
//! let result = run(spec, &config, wasm).await?;
//! println!("{:.0} pods/s", result.pods_per_second);
//! # Ok(()) }
//! ```

mod cli;
mod create;
mod measure;
pub mod objects;
mod report;
mod run;
mod workload;

use std::path::PathBuf;

pub use cli::{Options, USAGE, main, target_dir};
pub use measure::{PointTime, Quantiles, histogram_quantile, peak_rss_bytes};
pub use report::{Failure, machine, markdown};
pub use run::{RunResult, run};
pub use workload::{ALL_WORKLOADS, PluginMode, RunSpec, Sizes, Workload};

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Bad command-line arguments (or `--help`): the message says what is wrong.
    #[error("{0}")]
    Usage(String),
    /// A generated object does not deserialize.
    #[error("invalid object {0}")]
    Object(String),
    /// The API server refused a request.
    #[error("{what}: {source}")]
    Api {
        /// The request.
        what: String,
        /// The error.
        source: kube::Error,
    },
    /// The scheduler does not build.
    #[error(transparent)]
    Build(#[from] crate::scheduler::BuildError),
    /// The DRA plugin component is not built.
    #[error("{} is missing: run `scripts/setup dra-plugin`", .0.display())]
    MissingWasm(PathBuf),
    /// A phase did not finish in time.
    #[error("{phase} did not finish: {done} of {expected} ({detail})")]
    Stalled {
        /// The phase.
        phase: String,
        /// How far it got.
        done: u64,
        /// Where it had to get.
        expected: u64,
        /// The queue's state and a failure message.
        detail: String,
    },
    /// A child process failed.
    #[error("child run: {0}")]
    Child(String),
    /// Starting the runtime or a process failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The `--quick`-style runs of every workload, smaller still, so the benchmarks cannot rot: each
/// must schedule all its measured pods through the real path and report what it measured.
#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::SchedulerConfig;

    fn tiny(workload: Workload) -> RunResult {
        tiny_with(workload, None)
    }

    fn tiny_with(workload: Workload, faults: Option<&str>) -> RunResult {
        let mut sizes = workload.full_size().scaled(0.02);
        if !sizes.duration.is_zero() {
            sizes.duration = Duration::from_millis(500);
        }
        let spec = RunSpec {
            workload,
            sizes,
            mode: PluginMode::Native,
            faults: faults.map(str::to_string),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let r = rt
            .block_on(run(
                spec,
                &SchedulerConfig::default(),
                Path::new("unused.wasm"),
            ))
            .unwrap_or_else(|e| panic!("{workload} failed: {e}"));
        assert_eq!(
            r.bound, r.expected,
            "{workload}: every measured pod is bound"
        );
        assert!(r.pods_per_second > 0.0);
        assert!(
            r.attempts.count >= r.expected as u64,
            "{workload}: {:?}",
            r.attempts
        );
        assert!(r.peak_rss_bytes > 0);
        let md = markdown(std::slice::from_ref(&r), &[], "test");
        assert!(md.contains(&format!("| {workload} |")), "{md}");
        r
    }

    #[test]
    fn scheduling_basic_binds_every_measured_pod() {
        let r = tiny(Workload::SchedulingBasic);
        assert_eq!((r.spec.sizes.nodes, r.expected), (100, 200));
    }

    #[test]
    fn claim_template_pods_get_devices() {
        let r = tiny(Workload::SchedulingWithResourceClaimTemplate);
        assert_eq!((r.spec.sizes.nodes, r.expected), (10, 50));
        assert!(
            r.point_times
                .iter()
                .any(|p| p.plugin == "DynamicResources" && p.point == "Filter"),
            "{:?}",
            r.point_times
        );
    }

    #[test]
    fn partitionable_template_pods_get_partitions() {
        let r = tiny(Workload::SchedulingWithResourceClaimTemplatePartitionable);
        assert_eq!((r.spec.sizes.nodes, r.expected), (10, 50));
    }

    #[test]
    fn shared_claims_are_scheduled() {
        let r = tiny(Workload::SchedulingWithSharedClaim);
        assert_eq!(r.expected, 20);
    }

    #[test]
    fn preemptors_evict_low_priority_pods_and_are_all_bound() {
        let r = tiny(Workload::PreemptionBasic);
        assert_eq!((r.spec.sizes.nodes, r.expected), (10, 10));
    }

    #[test]
    fn steady_state_keeps_scheduling_batches() {
        let r = tiny(Workload::SteadyStateDra);
        assert!(r.bound >= 10 && r.bound.is_multiple_of(10), "{}", r.bound);
    }

    #[test]
    fn with_faults_every_measured_pod_is_still_bound_and_the_faults_are_counted() {
        // A fifth of the scheduler's writes fail, some after taking effect; the harness's own
        // requests (creating and checking the pods) are spared.
        let r = tiny_with(
            Workload::SchedulingWithResourceClaimTemplate,
            Some("seed=5,write=0.1:503,write=0.05:drop,write=0.05:drop/handled"),
        );
        assert!(r.faults_injected > 0, "{}", r.faults_injected);
        let md = markdown(std::slice::from_ref(&r), &[], "test");
        assert!(md.contains("API faults injected"), "{md}");
    }
}
