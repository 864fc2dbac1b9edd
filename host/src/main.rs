//! `wasm-scheduler`: a Kubernetes scheduler whose plugins are WebAssembly components.
//!
//! - `simulate <manifests...>`: schedule the pods of manifests on an embedded API server and
//!   print where each went;
//! - `run`: schedule the pods of a real cluster (leader election, metrics, health);
//! - `serve [manifests...]`: run the embedded API server on loopback for `kubectl`;
//! - `bench`: the scheduler_perf-shaped benchmarks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use embedded_apiserver::{ApiServer, FaultPlan};

/// `--faults SPEC`.
fn parse_faults(spec: &str) -> Result<FaultPlan, String> {
    FaultPlan::parse(spec).map_err(|e| e.to_string())
}
use kube::config::{KubeConfigOptions, Kubeconfig};
use wasm_scheduler::cluster::{RunOptions, Runner};
use wasm_scheduler::config::{SchedulerConfig, parse_duration};
use wasm_scheduler::metrics::Metrics;
use wasm_scheduler::plugins::Registry;
use wasm_scheduler::scheduler::build;
use wasm_scheduler::simulate::{SimulateError, SimulateOptions, simulate_until};

/// `--version`: the program's version and the plugin WIT versions it loads.
fn long_version() -> String {
    use wasm_scheduler::wasm::bindings::{PACKAGE, VERSIONS};
    let versions: Vec<String> = VERSIONS.iter().map(|v| format!("{PACKAGE}@{v}")).collect();
    format!(
        "{}\nsupported plugin WIT: {}",
        env!("CARGO_PKG_VERSION"),
        versions.join(", ")
    )
}

#[derive(Parser)]
#[command(
    name = "wasm-scheduler",
    version,
    about = "A Kubernetes scheduler whose plugins are WebAssembly components"
)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

/// Logging flags (any subcommand). Without `--log-level` or `-v`, `RUST_LOG` decides.
#[derive(clap::Args)]
struct LogArgs {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level: error, warn, info, debug or trace (wins over RUST_LOG).
    #[arg(long, global = true)]
    log_level: Option<tracing::Level>,
    /// More logs: -v debug (every scheduling attempt), -vv trace.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (with the current spans' fields).
    Json,
}

/// The `run` flags that mirror kube-scheduler's; they override the configuration file.
#[derive(clap::Args)]
struct LeaderArgs {
    /// Campaign for a Lease before scheduling (`--leader-elect=false` to turn off).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    leader_elect: Option<bool>,
    /// Same as `--leader-elect=false`.
    #[arg(long, conflicts_with = "leader_elect")]
    no_leader_elect: bool,
    /// The Lease's name (default wasm-scheduler).
    #[arg(long)]
    leader_elect_resource_name: Option<String>,
    /// The Lease's namespace (default kube-system).
    #[arg(long)]
    leader_elect_resource_namespace: Option<String>,
    /// How long a standby waits after the last renewal it saw before taking over (default 15s).
    #[arg(long, value_parser = parse_duration)]
    leader_elect_lease_duration: Option<Duration>,
    /// How long the leader keeps retrying a renewal before it stops (default 10s).
    #[arg(long, value_parser = parse_duration)]
    leader_elect_renew_deadline: Option<Duration>,
    /// Wait between tries to acquire or renew (default 2s).
    #[arg(long, value_parser = parse_duration)]
    leader_elect_retry_period: Option<Duration>,
}

impl LeaderArgs {
    fn apply(self, config: &mut SchedulerConfig) {
        let le = &mut config.leader_election;
        if let Some(on) = self.leader_elect {
            le.leader_elect = on;
        }
        if self.no_leader_elect {
            le.leader_elect = false;
        }
        if let Some(v) = self.leader_elect_resource_name {
            le.resource_name = v;
        }
        if let Some(v) = self.leader_elect_resource_namespace {
            le.resource_namespace = v;
        }
        if let Some(v) = self.leader_elect_lease_duration {
            le.lease_duration = v;
        }
        if let Some(v) = self.leader_elect_renew_deadline {
            le.renew_deadline = v;
        }
        if let Some(v) = self.leader_elect_retry_period {
            le.retry_period = v;
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Schedule the pods of some manifests on an embedded API server and report the placements.
    Simulate {
        /// Manifest files (multi-document YAML): nodes, pods, DRA objects, ...
        #[arg(required = true)]
        manifests: Vec<PathBuf>,
        /// KubeSchedulerConfiguration file (default: one profile with the default plugins).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write the final pods and resource claims to this file as YAML (also on timeout
        /// and Ctrl-C).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// What stdout shows: a table and summary, or the whole result as YAML or JSON.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        output_format: OutputFormat,
        /// Write a self-contained HTML report (nodes, devices, pending pods, timeline).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Give up after this long: seconds, or a duration such as 90s, 2m, 500ms.
        #[arg(long, default_value = "60", value_parser = parse_timeout)]
        timeout: Duration,
        /// Inject API faults into the scheduler's requests, e.g. `seed=1,write=0.2:503` (README:
        /// Fault injection).
        #[arg(long, value_parser = parse_faults)]
        faults: Option<FaultPlan>,
    },
    /// Schedule the pods of a cluster until SIGINT/SIGTERM (exit 0) or the lease is lost (exit 1).
    Run {
        /// Kubeconfig file (default: in-cluster config, then $KUBECONFIG, then ~/.kube/config).
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// KubeSchedulerConfiguration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address of `/metrics`, `/healthz`, `/livez` and `/readyz`.
        #[arg(long, default_value = "0.0.0.0:10251")]
        metrics_addr: SocketAddr,
        #[command(flatten)]
        leader: LeaderArgs,
    },
    /// Run the embedded API server on loopback (for kubectl), optionally with the scheduler.
    Serve {
        /// Manifests to load first.
        manifests: Vec<PathBuf>,
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        /// Also run the scheduler against it.
        #[arg(long)]
        schedule: bool,
        /// KubeSchedulerConfiguration file (with --schedule).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Inject API faults into every request it serves, e.g. `seed=1,write=0.2:503`.
        #[arg(long, value_parser = parse_faults)]
        faults: Option<FaultPlan>,
    },
    /// Benchmarks shaped like Kubernetes scheduler_perf (`bench --help` for the options).
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Bench {
        /// Options of the benchmark command.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `simulate --output-format`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// A table of pods and a summary (reasons cut to the terminal width).
    Table,
    /// The whole result as YAML (full reasons).
    Yaml,
    /// The whole result as JSON (full reasons).
    Json,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => parse_duration(s),
    }
}

/// Sets up logging: `--log-level`/`-v` if given, else `RUST_LOG`, else `default`.
fn init_logging(args: &LogArgs, default: &str) {
    use tracing_subscriber::EnvFilter;
    let level = match (args.log_level, args.verbose) {
        (Some(l), _) => Some(l),
        (None, 0) => None,
        (None, 1) => Some(tracing::Level::DEBUG),
        (None, _) => Some(tracing::Level::TRACE),
    };
    let filter = match level {
        // The HTTP stack is very chatty below info; ask for it with RUST_LOG.
        Some(l) => EnvFilter::new(format!(
            "{l},hyper=info,hyper_util=info,h2=info,rustls=info,tower=info"
        )),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

fn load_config(path: Option<&Path>) -> Result<SchedulerConfig> {
    match path {
        Some(p) => Ok(SchedulerConfig::load(p)?),
        None => Ok(SchedulerConfig::default()),
    }
}

/// `--help` and `--version` print and exit 0; a usage error is one line on stderr, exit 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("error: invalid arguments");
    eprintln!("{first} (see --help)");
    ExitCode::from(2)
}

/// Errors are printed as one line with their causes (no backtrace), exit code 1.
fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    // `-V` and `--version` both print the WIT versions too (clap shows `long_version` for both
    // when only it is set).
    let version: &'static str = Box::leak(long_version().into_boxed_str());
    let matches = Cli::command()
        .version(version)
        .long_version(version)
        .try_get_matches();
    let cli = match matches.and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    if let Command::Bench { args } = &cli.command {
        // The benchmark runs its own runtimes and child processes.
        let code = wasm_scheduler::bench::main(&["bench".to_string()], args);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `run` and `simulate` exit at once when done (below).
    let is_run = matches!(cli.command, Command::Run { .. } | Command::Simulate { .. });
    let result = runtime.block_on(dispatch(cli));
    if let Err(e) = &result {
        eprintln!("error: {e:#}");
    }
    if is_run {
        // Like kube-scheduler: exit at once; background tasks (binding cycles, watches) of a
        // deposed leader must not linger while the runtime winds down, nor a plugin call that
        // made `simulate` time out.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(i32::from(result.is_err()));
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    let log = cli.log;
    match cli.command {
        Command::Simulate {
            manifests,
            config,
            output,
            output_format,
            report,
            timeout,
            faults,
        } => {
            init_logging(&log, "warn");
            run_simulate(
                manifests,
                config,
                output,
                output_format,
                report,
                timeout,
                faults,
            )
            .await
        }
        Command::Run {
            kubeconfig,
            config,
            metrics_addr,
            leader,
        } => {
            init_logging(&log, "info");
            run_cluster(kubeconfig, config, metrics_addr, leader).await
        }
        Command::Serve {
            manifests,
            addr,
            schedule,
            config,
            faults,
        } => {
            init_logging(&log, "info");
            run_serve(manifests, addr, schedule, config, faults).await
        }
        Command::Bench { .. } => unreachable!("handled before the runtime starts"),
    }
}

async fn run_simulate(
    manifests: Vec<PathBuf>,
    config: Option<PathBuf>,
    output: Option<PathBuf>,
    format: OutputFormat,
    report_path: Option<PathBuf>,
    timeout: Duration,
    faults: Option<FaultPlan>,
) -> Result<()> {
    let config = load_config(config.as_deref())?;
    let opts = SimulateOptions {
        manifests,
        config,
        timeout,
        faults,
    };
    let (report, failure) = match simulate_until(opts, shutdown_signal()).await {
        Ok(r) => (r, None),
        Err(SimulateError::Timeout(after, report)) => (
            *report,
            Some(format!(
                "the scheduler was still busy after {after:?}; the results show the state at that point"
            )),
        ),
        Err(SimulateError::Interrupted(report)) => (
            *report,
            Some("interrupted; the results show the state at that point".to_string()),
        ),
        Err(e) => return Err(e.into()),
    };
    // Files first: whatever happens to stdout, the results are kept.
    if let Some(path) = &output {
        std::fs::write(path, &report.objects_yaml)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &report_path {
        std::fs::write(path, wasm_scheduler::report::simulation_html(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    match format {
        OutputFormat::Table => {
            let width = reason_width(&report);
            print!("{}", report.table(width));
            if let Some(path) = &output {
                println!("final objects written to {}", path.display());
            }
            if let Some(path) = &report_path {
                println!("report written to {}", path.display());
            }
        }
        OutputFormat::Yaml => print!("{}", serde_yaml_ng::to_string(&report)?),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    match failure {
        Some(f) => bail!(f),
        None => Ok(()),
    }
}

/// The reason column's width: what is left of the terminal after the other columns, or a
/// fixed width when stdout is not a terminal.
fn reason_width(report: &wasm_scheduler::simulate::SimulationReport) -> usize {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return wasm_scheduler::simulate::DEFAULT_REASON_WIDTH;
    }
    let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size() else {
        return wasm_scheduler::simulate::DEFAULT_REASON_WIDTH;
    };
    let pod = report.rows.iter().map(|r| r.pod.len()).max().unwrap_or(3);
    // POD, two gaps, ATTEMPTS and " (retrying)".
    usize::from(w).saturating_sub(pod + 4 + 20).max(20)
}

async fn client_for(kubeconfig: Option<&Path>) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig given and none found (in-cluster or ~/.kube/config)")?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// SIGINT or SIGTERM (what Kubernetes sends a pod that is stopping).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("signal received; stopping");
}

async fn run_cluster(
    kubeconfig: Option<PathBuf>,
    config_path: Option<PathBuf>,
    metrics_addr: SocketAddr,
    leader: LeaderArgs,
) -> Result<()> {
    let mut config = load_config(config_path.as_deref())?;
    leader.apply(&mut config);
    let kubeconfig = kubeconfig.or_else(|| config.client_connection.kubeconfig.clone());
    let client = client_for(kubeconfig.as_deref()).await?;
    let mut options = RunOptions::new(config);
    options.metrics_addr = Some(metrics_addr);
    let runner = Runner::start(client, options).await?;
    runner.run(shutdown_signal()).await?;
    Ok(())
}

async fn run_serve(
    manifests: Vec<PathBuf>,
    addr: SocketAddr,
    schedule: bool,
    config: Option<PathBuf>,
    faults: Option<FaultPlan>,
) -> Result<()> {
    let server = ApiServer::new();
    if let Some(missing) = manifests.iter().find(|p| !p.is_file()) {
        bail!("manifest {} does not exist", missing.display());
    }
    if !manifests.is_empty() {
        let report = server.load_manifests(&manifests).await?;
        println!("loaded {} objects", report.created.len());
    }
    // After loading, so the manifests always land; every request served from here on may fail.
    server.set_faults(faults);
    let handle = server.serve(addr).await?;
    println!("API server listening on http://{}", handle.addr);
    println!("kubeconfig: {}", handle.kubeconfig_path.display());
    println!(
        "try: kubectl --kubeconfig {} get nodes,pods -A",
        handle.kubeconfig_path.display()
    );
    let scheduler = if schedule {
        let config = load_config(config.as_deref())?;
        let s = build(
            server.client(),
            &config,
            Registry::with_builtins(),
            Arc::new(Metrics::new()),
        )
        .await?;
        println!(
            "scheduler running (profiles: {})",
            config
                .profiles
                .iter()
                .map(|p| p.scheduler_name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Some(s)
    } else {
        None
    };
    tokio::signal::ctrl_c().await?;
    if let Some(s) = scheduler {
        s.shutdown().await;
    }
    drop(handle);
    Ok(())
}
