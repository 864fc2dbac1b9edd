//! The benchmark command: picks workloads and sizes from arguments or environment variables,
//! runs each (workload, plugin mode) in its own process so peak RSS and allocator state are its
//! own, prints the markdown report and writes it to `target/bench-results.md`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::BenchError;
use super::report::{self, Failure};
use super::run::{RunResult, run};
use super::workload::{ALL_WORKLOADS, PluginMode, RunSpec, Workload};
use crate::config::SchedulerConfig;

/// The line prefix a child process prints its result after.
const RESULT_PREFIX: &str = "BENCH-RESULT ";

/// The usage text.
pub const USAGE: &str = "\
Scheduler benchmarks shaped like Kubernetes scheduler_perf, on the embedded API server.

Options (each also as an environment variable):
  --quick               1/10 of every size, 2 s steady state          (BENCH_QUICK=1)
  --scale <F>           multiply every size by F                       (BENCH_SCALE)
  --workload <A,B,..>   SchedulingBasic, SchedulingWithResourceClaimTemplate, (BENCH_WORKLOADS)
                        SchedulingWithResourceClaimTemplatePartitionable,
                        SchedulingWithSharedClaim, SteadyStateDRA,
                        PreemptionBasic, PreemptionAsync, TopologySpreading,
                        SchedulingPodAntiAffinity [default: all]
  --mode <native,wasm>  how the DynamicResources plugin runs           (BENCH_MODES)
  --wasm <PATH>         the DRA plugin component                       (BENCH_WASM)
                        [default: target/wasm32-wasip2/plugin/dra_plugin.wasm]
  --out <PATH>          where the markdown goes                        (BENCH_OUT)
                        [default: target/bench-results.md]
  --config <PATH>       a KubeSchedulerConfiguration file instead of the
                        defaults (e.g. to try parallelism)              (BENCH_CONFIG)
  --duration <SECONDS>  how long the steady state runs                 (BENCH_DURATION)
  --in-process          run every workload in this process (RSS is then cumulative)
  --report <PATH>       also write a self-contained HTML report        (BENCH_REPORT)
  --faults <SPEC>       inject API faults into the scheduler's requests (BENCH_FAULTS)
                        during the measured phase, e.g. seed=1,write=0.2:503
                        (README: Fault injection)
  -h, --help            this text
";

/// Parsed options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Size factor (1.0 = full size).
    pub scale: f64,
    /// Workloads to run, in order.
    pub workloads: Vec<Workload>,
    /// Plugin modes for the DRA workloads.
    pub modes: Vec<PluginMode>,
    /// The DRA plugin component.
    pub wasm: PathBuf,
    /// The markdown output file.
    pub out: PathBuf,
    /// A scheduler configuration file (default: the built-in defaults).
    pub config: Option<PathBuf>,
    /// Overrides the steady state's duration.
    pub duration: Option<std::time::Duration>,
    /// Run everything in this process.
    pub in_process: bool,
    /// Where the HTML report goes, if anywhere.
    pub report: Option<PathBuf>,
    /// Fault injection for the measured phases (validated text form).
    pub faults: Option<String>,
    /// Internal: run this one spec and print its result.
    pub child: Option<RunSpec>,
}

/// The workspace's target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn list<T: std::str::FromStr<Err = BenchError>>(s: &str) -> Result<Vec<T>, BenchError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim().parse())
        .collect()
}

impl Options {
    /// Parses arguments (after the program name), with environment variables as defaults.
    /// `--bench`, which `cargo bench` passes, is ignored.
    ///
    /// # Errors
    /// [`BenchError::Usage`] for an unknown option or value; `--help` gives the usage text.
    pub fn parse(args: &[String]) -> Result<Options, BenchError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut o = Options {
            scale: if env("BENCH_QUICK").is_some_and(|v| v != "0") {
                0.1
            } else {
                1.0
            },
            workloads: ALL_WORKLOADS.to_vec(),
            modes: vec![PluginMode::Native, PluginMode::Wasm],
            wasm: target_dir().join("wasm32-wasip2/plugin/dra_plugin.wasm"),
            out: target_dir().join("bench-results.md"),
            config: None,
            duration: None,
            in_process: false,
            report: env("BENCH_REPORT").map(PathBuf::from),
            faults: env("BENCH_FAULTS"),
            child: None,
        };
        let seconds = |v: &str| -> Result<std::time::Duration, BenchError> {
            v.parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0)
                .map(std::time::Duration::from_secs_f64)
                .ok_or_else(|| {
                    BenchError::Usage(format!(
                        "duration {v:?} is not a positive number of seconds"
                    ))
                })
        };
        if let Some(v) = env("BENCH_SCALE") {
            o.scale = v
                .parse()
                .map_err(|_| BenchError::Usage(format!("BENCH_SCALE={v} is not a number")))?;
        }
        if let Some(v) = env("BENCH_WORKLOADS") {
            o.workloads = list(&v)?;
        }
        if let Some(v) = env("BENCH_MODES") {
            o.modes = list(&v)?;
        }
        if let Some(v) = env("BENCH_WASM") {
            o.wasm = v.into();
        }
        if let Some(v) = env("BENCH_OUT") {
            o.out = v.into();
        }
        if let Some(v) = env("BENCH_CONFIG") {
            o.config = Some(v.into());
        }
        if let Some(v) = env("BENCH_DURATION") {
            o.duration = Some(seconds(&v)?);
        }
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| BenchError::Usage(format!("{name} needs a value")))
            };
            match a.as_str() {
                "--bench" => {}
                "--quick" => o.scale = 0.1,
                "--in-process" => o.in_process = true,
                "--scale" => {
                    let v = value("--scale")?;
                    o.scale = v
                        .parse()
                        .map_err(|_| BenchError::Usage(format!("--scale {v} is not a number")))?;
                }
                "--workload" | "--workloads" => o.workloads = list(&value("--workload")?)?,
                "--mode" | "--modes" => o.modes = list(&value("--mode")?)?,
                "--wasm" => o.wasm = value("--wasm")?.into(),
                "--out" => o.out = value("--out")?.into(),
                "--report" => o.report = Some(value("--report")?.into()),
                "--faults" => o.faults = Some(value("--faults")?),
                "--config" => o.config = Some(value("--config")?.into()),
                "--duration" => o.duration = Some(seconds(&value("--duration")?)?),
                "--child" => {
                    let v = value("--child")?;
                    o.child = Some(
                        serde_json::from_str(&v)
                            .map_err(|e| BenchError::Usage(format!("--child: {e}")))?,
                    );
                }
                "-h" | "--help" => return Err(BenchError::Usage(USAGE.to_string())),
                other => {
                    return Err(BenchError::Usage(format!(
                        "unknown argument {other:?} (see `bench --help`)"
                    )));
                }
            }
        }
        if let Some(spec) = &o.faults {
            embedded_apiserver::FaultPlan::parse(spec)
                .map_err(|e| BenchError::Usage(e.to_string()))?;
        }
        if o.scale.is_nan() || o.scale <= 0.0 {
            return Err(BenchError::Usage("the scale must be above 0".into()));
        }
        Ok(o)
    }

    /// Every run: each workload at the chosen size, DRA workloads once per mode.
    pub fn runs(&self) -> Vec<RunSpec> {
        let mut v = Vec::new();
        for &workload in &self.workloads {
            let mut sizes = workload.full_size().scaled(self.scale);
            if let Some(d) = self.duration.filter(|_| !sizes.duration.is_zero()) {
                sizes.duration = d;
            }
            let modes: &[PluginMode] = if workload.uses_dra() {
                &self.modes
            } else {
                &[PluginMode::Native]
            };
            v.extend(modes.iter().map(|&mode| RunSpec {
                workload,
                sizes,
                mode,
                faults: self.faults.clone(),
            }));
        }
        v
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(BenchError::Io)
}

/// Runs one spec in a child process: `exe prefix.. --child <spec>`.
fn run_child(
    exe: &std::path::Path,
    prefix: &[String],
    spec: &RunSpec,
    o: &Options,
) -> Result<RunResult, BenchError> {
    let json = serde_json::to_string(spec).map_err(|e| BenchError::Child(e.to_string()))?;
    let mut cmd = Command::new(exe);
    cmd.args(prefix)
        .args(["--child", &json, "--wasm"])
        .arg(&o.wasm);
    if let Some(c) = &o.config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(BenchError::Io)?;
    let mut result = None;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            match line.strip_prefix(RESULT_PREFIX) {
                Some(r) => result = Some(r.to_string()),
                None => eprintln!("{line}"),
            }
        }
    }
    let status = child.wait().map_err(BenchError::Io)?;
    match result {
        Some(r) => serde_json::from_str::<Result<RunResult, String>>(&r)
            .map_err(|e| BenchError::Child(e.to_string()))?
            .map_err(BenchError::Child),
        None => Err(BenchError::Child(format!(
            "the run exited with {status} without a result"
        ))),
    }
}

/// Builds the DRA plugin component if a Wasm run needs it and it is missing.
fn ensure_wasm(o: &Options) {
    if o.wasm.is_file() || !o.runs().iter().any(|r| r.mode == PluginMode::Wasm) {
        return;
    }
    eprintln!("{} is missing; building it", o.wasm.display());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        // As `scripts/setup dra-plugin`: the `plugin` profile, as a cdylib only.
        .args([
            "rustc",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
            "-p",
            "dra-plugin",
            "--lib",
            "--crate-type",
            "cdylib",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("building dra-plugin for wasm32-wasip2 failed; the Wasm runs will fail");
    }
}

/// Runs the benchmark command. `prefix` is what re-runs this command in a child process
/// (e.g. `["bench"]` for `wasm-scheduler bench`; empty for the `cargo bench` target).
/// Returns the process exit code: 0 when every run finished, 1 otherwise, 2 for bad usage.
pub fn main(prefix: &[String], args: &[String]) -> i32 {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return 0;
    }
    let o = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let base = match &o.config {
        Some(path) => match SchedulerConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        },
        None => SchedulerConfig::default(),
    };
    if let Some(spec) = o.child {
        let result = runtime()
            .and_then(|rt| rt.block_on(run(spec, &base, &o.wasm)))
            .map_err(|e| e.to_string());
        let ok = result.is_ok();
        match serde_json::to_string(&result) {
            Ok(json) => println!("{RESULT_PREFIX}{json}"),
            Err(e) => eprintln!("cannot encode the result: {e}"),
        }
        return if ok { 0 } else { 1 };
    }
    ensure_wasm(&o);
    let exe = std::env::current_exe();
    let rt = if o.in_process { runtime().ok() } else { None };
    let (mut results, mut failures) = (Vec::new(), Vec::new());
    let runs = o.runs();
    // Drawn only when stderr is a terminal (indicatif hides it otherwise).
    let progress = indicatif::ProgressBar::new(runs.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] run {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress.enable_steady_tick(std::time::Duration::from_millis(200));
    for spec in runs {
        progress.set_message(format!("{} ({})", spec.workload, spec.mode.name()));
        progress.suspend(|| {
            eprintln!(
                "== {} ({}): {:?}",
                spec.workload,
                spec.mode.name(),
                spec.sizes
            )
        });
        let r = match (&rt, &exe) {
            (Some(rt), _) => rt.block_on(run(spec.clone(), &base, &o.wasm)),
            (None, Ok(exe)) => run_child(exe, prefix, &spec, &o),
            (None, Err(e)) => Err(BenchError::Child(format!("cannot find this program: {e}"))),
        };
        progress.inc(1);
        match r {
            Ok(r) => results.push(r),
            Err(e) => {
                progress
                    .suspend(|| eprintln!("{} ({}) failed: {e}", spec.workload, spec.mode.name()));
                failures.push(Failure {
                    workload: spec.workload,
                    mode: spec.mode,
                    error: e.to_string(),
                });
            }
        }
    }
    progress.finish_and_clear();
    let shown: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    let command = format!("{} {}", prefix.join(" "), shown.join(" "))
        .trim()
        .to_string();
    let command = if command.is_empty() {
        "cargo bench -p wasm-scheduler --bench scheduler_perf".to_string()
    } else {
        command
    };
    let md = report::markdown(&results, &failures, &command);
    println!("{md}");
    if let Some(dir) = o.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&o.out, &md) {
        Ok(()) => eprintln!("wrote {}", o.out.display()),
        Err(e) => eprintln!("cannot write {}: {e}", o.out.display()),
    }
    if let Some(path) = &o.report {
        match std::fs::write(path, crate::report::bench_html(&results, &command)) {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
    if failures.is_empty() { 0 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn usage_names_every_workload() {
        for w in ALL_WORKLOADS {
            let listed = USAGE
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| word == w.name());
            assert!(listed, "--help does not list {}", w.name());
        }
    }

    #[test]
    fn quick_dra_runs_twice_and_basic_once() {
        let o = Options::parse(&args(&[
            "--bench",
            "--quick",
            "--workload",
            "SchedulingBasic,SteadyStateDRA",
        ]))
        .unwrap();
        let runs = o.runs();
        assert_eq!(runs.len(), 3);
        assert_eq!(runs[0].sizes.nodes, 500);
        assert_eq!(runs[1].mode, PluginMode::Native);
        assert_eq!(runs[2].mode, PluginMode::Wasm);
    }

    #[test]
    fn errors_when_an_argument_is_unknown() {
        assert!(matches!(
            Options::parse(&args(&["--nope"])),
            Err(BenchError::Usage(_))
        ));
        assert!(matches!(
            Options::parse(&args(&["--workload", "Nope"])),
            Err(BenchError::Usage(_))
        ));
        assert!(matches!(
            Options::parse(&args(&["--scale", "0"])),
            Err(BenchError::Usage(_))
        ));
    }
}
