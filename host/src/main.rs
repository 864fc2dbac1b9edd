//! `wasm-scheduler`: a Kubernetes scheduler whose plugins are WebAssembly components.
//!
//! - `simulate <manifests...>`: schedule the pods of manifests on an embedded API server and
//!   print where each went;
//! - `run`: schedule the pods of a real cluster;
//! - `serve [manifests...]`: run the embedded API server on loopback for `kubectl`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use embedded_apiserver::ApiServer;
use kube::config::{KubeConfigOptions, Kubeconfig};
use wasm_scheduler::config::SchedulerConfig;
use wasm_scheduler::endpoint::{self, EndpointState};
use wasm_scheduler::leader::LeaderElector;
use wasm_scheduler::metrics::Metrics;
use wasm_scheduler::plugins::Registry;
use wasm_scheduler::queue::SchedulingQueue;
use wasm_scheduler::scheduler::{Scheduler, build};
use wasm_scheduler::simulate::{SimulateError, SimulateOptions, simulate};

#[derive(Parser)]
#[command(
    name = "wasm-scheduler",
    version,
    about = "A Kubernetes scheduler whose plugins are WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
        /// Write the final pods and resource claims to this file as YAML.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Schedule the pods of a cluster, forever.
    Run {
        /// Kubeconfig file (default: in-cluster config, then $KUBECONFIG, then ~/.kube/config).
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// KubeSchedulerConfiguration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address of the `/metrics` and `/healthz` endpoint.
        #[arg(long, default_value = "0.0.0.0:10251")]
        metrics_addr: SocketAddr,
        /// Skip leader election even if the configuration enables it.
        #[arg(long)]
        no_leader_elect: bool,
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
    },
}

fn init_logging(default: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn load_config(path: Option<&Path>) -> Result<SchedulerConfig> {
    match path {
        Some(p) => Ok(SchedulerConfig::load(p)?),
        None => Ok(SchedulerConfig::default()),
    }
}

/// Errors are printed as one line with their causes (no backtrace), exit code 1.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Simulate {
            manifests,
            config,
            output,
            timeout,
        } => {
            init_logging("warn");
            run_simulate(manifests, config, output, timeout).await
        }
        Command::Run {
            kubeconfig,
            config,
            metrics_addr,
            no_leader_elect,
        } => {
            init_logging("info");
            run_cluster(kubeconfig, config, metrics_addr, no_leader_elect).await
        }
        Command::Serve {
            manifests,
            addr,
            schedule,
            config,
        } => {
            init_logging("info");
            run_serve(manifests, addr, schedule, config).await
        }
    }
}

async fn run_simulate(
    manifests: Vec<PathBuf>,
    config: Option<PathBuf>,
    output: Option<PathBuf>,
    timeout: u64,
) -> Result<()> {
    let config = load_config(config.as_deref())?;
    let opts = SimulateOptions {
        manifests,
        config,
        timeout: Duration::from_secs(timeout),
    };
    let report = match simulate(opts).await {
        Ok(r) => r,
        Err(SimulateError::Timeout(after, report)) => {
            print!("{}", report.table());
            bail!(
                "the scheduler was still busy after {after:?}; the table shows the state at that point"
            );
        }
        Err(e) => return Err(e.into()),
    };
    print!("{}", report.table());
    if let Some(path) = output {
        std::fs::write(&path, &report.objects_yaml)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("final objects written to {}", path.display());
    }
    Ok(())
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

/// Starts the Wasm admin endpoint, file watcher and SIGHUP reloader if Wasm plugins are loaded.
async fn start_hot_swap(
    scheduler: &Scheduler,
    config: &SchedulerConfig,
) -> Result<Option<wasm_scheduler::wasm::FileWatcher>> {
    let Some(wasm) = scheduler.wasm() else {
        return Ok(None);
    };
    if let Some(addr) = config.wasm.admin_addr {
        let admin = wasm_scheduler::wasm::serve_admin(wasm.clone(), addr).await?;
        tracing::info!(addr = %admin.addr, "Wasm admin endpoint (POST /plugins/NAME/reload)");
    }
    #[cfg(unix)]
    wasm_scheduler::wasm::spawn_sighup_reloader(wasm.clone())?;
    Ok(Some(wasm.watch_files()?))
}

async fn run_cluster(
    kubeconfig: Option<PathBuf>,
    config_path: Option<PathBuf>,
    metrics_addr: SocketAddr,
    no_leader_elect: bool,
) -> Result<()> {
    let config = load_config(config_path.as_deref())?;
    let kubeconfig = kubeconfig.or_else(|| config.client_connection.kubeconfig.clone());
    let client = client_for(kubeconfig.as_deref()).await?;
    let metrics = Arc::new(Metrics::new());
    let queue: Arc<OnceLock<Arc<SchedulingQueue>>> = Arc::new(OnceLock::new());
    let (m, q) = (metrics.clone(), queue.clone());
    let refresh = Arc::new(move || {
        if let Some(q) = q.get() {
            let s = q.stats();
            m.set_pending(s.active, s.backoff, s.unschedulable, s.gated);
        }
    });
    let (addr, _endpoint) = endpoint::serve(
        metrics_addr,
        EndpointState {
            metrics: metrics.clone(),
            refresh,
        },
    )
    .await
    .with_context(|| format!("binding the metrics endpoint to {metrics_addr}"))?;
    tracing::info!(%addr, "serving /metrics and /healthz");

    let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
    if config.leader_election.leader_elect && !no_leader_elect {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let identity = format!("{host}_{}", uuid::Uuid::new_v4());
        let elector = LeaderElector::new(client.clone(), config.leader_election.clone(), identity);
        elector.acquire().await;
        tokio::spawn(async move { elector.hold(lost_tx).await });
    }

    let scheduler = build(client, &config, Registry::with_builtins(), metrics).await?;
    let _ = queue.set(scheduler.queue().clone());
    let _watcher = start_hot_swap(&scheduler, &config).await?;
    tracing::info!(profiles = ?config.profiles.iter().map(|p| p.scheduler_name.as_str()).collect::<Vec<_>>(), "scheduling");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; stopping");
            scheduler.shutdown().await;
            Ok(())
        }
        _ = lost_rx.wait_for(|lost| *lost) => {
            scheduler.shutdown().await;
            bail!("lost the leader lease; exiting so a restart can campaign again")
        }
    }
}

async fn run_serve(
    manifests: Vec<PathBuf>,
    addr: SocketAddr,
    schedule: bool,
    config: Option<PathBuf>,
) -> Result<()> {
    let server = ApiServer::new();
    if let Some(missing) = manifests.iter().find(|p| !p.is_file()) {
        bail!("manifest {} does not exist", missing.display());
    }
    if !manifests.is_empty() {
        let report = server.load_manifests(&manifests).await?;
        println!("loaded {} objects", report.created.len());
    }
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
