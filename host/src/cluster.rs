//! `wasm-scheduler run` as a library: leader election, the scheduler, the HTTP endpoint and hot
//! swap, wired as kube-scheduler does it, so tests can run several instances against one API
//! server.
//!
//! 1. [`Runner::start`] serves `/metrics`, `/healthz`, `/livez` and `/readyz`, loads the
//!    configuration's plugins and starts the scheduler **paused** when leader election is on:
//!    its cache watches and its queue fills, so a standby is warm (and ready, as upstream's
//!    standbys are) but sends nothing but reads.
//! 2. [`Runner::run`] campaigns for the lease, then lets the scheduler go. When the lease is lost
//!    the scheduler's client is **fenced** at once, inside the renew loop: every later request
//!    fails before it is sent, so no binding, claim patch or event leaves a deposed leader, and
//!    `run` returns [`RunError::LostLease`] (the binary exits 1, like kube-scheduler, and its
//!    restart campaigns again). On shutdown it stops scheduling, fences, and releases the lease
//!    so a standby takes over at its next retry.
//!
//! The scheduler only ever takes pods whose `spec.schedulerName` names one of its profiles; the
//! cache never hands it others.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use kube::Client;
use kube::client::Body;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::Cache;
use crate::config::SchedulerConfig;
use crate::endpoint::{self, Check, EndpointState};
use crate::leader::{self, LeaderElector, LeaderError};
use crate::metrics::Metrics;
use crate::plugins::Registry;
use crate::scheduler::{BuildError, Scheduler, build_with};

/// How late a leader's renewal may be before `/healthz` fails (client-go's
/// `NewLeaderHealthzAdaptor(20 * time.Second)` in kube-scheduler).
pub const LEADER_HEALTH_TOLERANCE: Duration = Duration::from_secs(20);

/// Errors of [`Runner`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Leader election is misconfigured.
    #[error(transparent)]
    Leader(#[from] LeaderError),
    /// The scheduler did not build.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The endpoint address could not be bound.
    #[error("binding the metrics endpoint to {addr}: {source}")]
    Endpoint {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Hot swap could not start (admin endpoint, file watcher, SIGHUP).
    #[error("starting Wasm hot swap: {0}")]
    HotSwap(String),
    /// Leadership was lost; the scheduler stopped before sending anything more.
    #[error("leaderelection lost for lease {lease}; stopped scheduling")]
    LostLease {
        /// `namespace/name` of the lease.
        lease: String,
    },
}

/// What an instance is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Waiting for the lease (the scheduler is paused, its cache warm).
    Standby,
    /// Scheduling.
    Leader,
    /// Stopped: shut down or lost the lease.
    Stopped,
}

/// A switch that cuts a client off: once closed, every request through a [`Fence::wrap`]ped
/// client fails before it is sent. Requests already sent complete.
#[derive(Clone, Debug, Default)]
pub struct Fence(Arc<AtomicBool>);

impl Fence {
    /// An open fence.
    pub fn new() -> Self {
        Fence::default()
    }

    /// Closes it; irreversible.
    pub fn close(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether it is closed.
    pub fn is_closed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// A client that sends through `client` while the fence is open.
    pub fn wrap(&self, client: Client) -> Client {
        let namespace = client.default_namespace().to_string();
        Client::new(
            Fenced {
                inner: client,
                fence: self.clone(),
            },
            namespace,
        )
    }
}

/// The tower service behind a fenced client.
#[derive(Clone)]
struct Fenced {
    inner: Client,
    fence: Fence,
}

/// The error a fenced request fails with.
#[derive(Debug, thiserror::Error)]
#[error("request not sent: this scheduler is no longer the leader")]
pub struct FencedError;

impl tower::Service<http::Request<Body>> for Fenced {
    type Response = http::Response<Body>;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if self.fence.is_closed() {
            return Box::pin(async { Err(FencedError.into()) });
        }
        let (inner, fence) = (self.inner.clone(), self.fence.clone());
        Box::pin(async move {
            // Checked again: the request may have waited in the client's buffer.
            if fence.is_closed() {
                return Err(FencedError.into());
            }
            inner.send(req).await.map_err(Into::into)
        })
    }
}

/// How to run.
pub struct RunOptions {
    /// The configuration; its `leaderElection` decides whether to campaign.
    pub config: SchedulerConfig,
    /// Where to serve `/metrics` and the health endpoints (`None`: nowhere).
    pub metrics_addr: Option<SocketAddr>,
    /// The leader-election identity (default: `$HOSTNAME_<uuid>`, as kube-scheduler).
    pub identity: Option<String>,
    /// Plugins to build profiles from (default: the built-ins).
    pub registry: Registry,
    /// Start the Wasm admin endpoint, file watcher and SIGHUP reloader (off in tests).
    pub hot_swap: bool,
}

impl RunOptions {
    /// Options for a configuration, with the built-in plugins, hot swap on and no endpoint.
    pub fn new(config: SchedulerConfig) -> Self {
        RunOptions {
            config,
            metrics_addr: None,
            identity: None,
            registry: Registry::with_builtins(),
            hot_swap: true,
        }
    }
}

/// The host name for identities: `$HOSTNAME`, else the kernel's, else `localhost`.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A started instance; [`Runner::run`] drives it.
pub struct Runner {
    scheduler: Scheduler,
    elector: Option<Arc<LeaderElector>>,
    fence: Fence,
    role: watch::Sender<Role>,
    metrics: Arc<Metrics>,
    stopping: Arc<AtomicBool>,
    endpoint: Option<SocketAddr>,
    _tasks: Vec<AbortOnDrop>,
    _watcher: Option<crate::wasm::FileWatcher>,
}

impl Runner {
    /// Serves the endpoint, builds the scheduler on `client` (paused if leader election is on)
    /// and starts hot swap. The lease is not touched until [`Runner::run`].
    ///
    /// # Errors
    /// Bad leader-election timings, a configuration that does not build, an endpoint address
    /// that cannot be bound, or hot swap that cannot start.
    pub async fn start(client: Client, options: RunOptions) -> Result<Runner, RunError> {
        let config = options.config;
        let le = &config.leader_election;
        let elector = if le.leader_elect {
            leader::validate(le)?;
            let identity = options
                .identity
                .unwrap_or_else(|| format!("{}_{}", hostname(), uuid::Uuid::new_v4()));
            Some(Arc::new(LeaderElector::new(
                client.clone(),
                le.clone(),
                identity,
            )))
        } else {
            None
        };
        let metrics = Arc::new(Metrics::new());
        let stopping = Arc::new(AtomicBool::new(false));
        let cache: Arc<OnceLock<(Arc<Cache>, Arc<crate::queue::SchedulingQueue>)>> =
            Arc::new(OnceLock::new());
        let mut tasks = Vec::new();
        let mut endpoint_addr = None;
        let wasm: Arc<OnceLock<crate::wasm::WasmPlugins>> = Arc::new(OnceLock::new());
        if let Some(addr) = options.metrics_addr {
            let mut state = endpoint_state(&metrics, elector.as_ref(), &cache, &stopping);
            add_wasm_checks(&mut state, &config, &wasm);
            let (bound, task) = endpoint::serve(addr, state)
                .await
                .map_err(|source| RunError::Endpoint { addr, source })?;
            tracing::info!(addr = %bound, "serving /metrics, /healthz, /livez and /readyz");
            tasks.push(AbortOnDrop(task));
            endpoint_addr = Some(bound);
        }
        let fence = Fence::new();
        let mut sched_options = crate::scheduler::build::options(&config);
        sched_options.start_paused = elector.is_some();
        let scheduler = build_with(
            fence.wrap(client),
            &config,
            options.registry,
            metrics.clone(),
            sched_options,
        )
        .await?;
        let _ = cache.set((scheduler.cache().clone(), scheduler.queue().clone()));
        if let Some(w) = scheduler.wasm() {
            let _ = wasm.set(w.clone());
        }
        let mut watcher = None;
        if options.hot_swap
            && let Some(wasm) = scheduler.wasm()
        {
            if let Some(addr) = config.wasm.admin_addr {
                let admin = crate::wasm::serve_admin(wasm.clone(), addr)
                    .await
                    .map_err(|e| RunError::HotSwap(e.to_string()))?;
                tracing::info!(addr = %admin.addr, "Wasm admin endpoint (POST /plugins/NAME/reload)");
                tasks.push(AbortOnDrop(admin.task));
            }
            #[cfg(unix)]
            tasks.push(AbortOnDrop(
                crate::wasm::spawn_sighup_reloader(wasm.clone())
                    .map_err(|e| RunError::HotSwap(e.to_string()))?,
            ));
            watcher = Some(
                wasm.watch_files()
                    .map_err(|e| RunError::HotSwap(e.to_string()))?,
            );
        }
        let initial = if elector.is_some() {
            Role::Standby
        } else {
            Role::Leader
        };
        if let Some(e) = &elector {
            metrics.set_leader(e.lease_name(), false);
        }
        tracing::info!(
            profiles = ?config.profiles.iter().map(|p| p.scheduler_name.as_str()).collect::<Vec<_>>(),
            leader_elect = elector.is_some(),
            "scheduler started"
        );
        Ok(Runner {
            scheduler,
            elector,
            fence,
            role: watch::Sender::new(initial),
            metrics,
            stopping,
            endpoint: endpoint_addr,
            _tasks: tasks,
            _watcher: watcher,
        })
    }

    /// The address the endpoint listens on, if it was asked for.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint
    }

    /// Follows the instance's [`Role`].
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// The leader-election identity (`None` without leader election).
    pub fn identity(&self) -> Option<&str> {
        self.elector.as_ref().map(|e| e.identity())
    }

    /// The scheduler (paused while standing by).
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The metrics served on `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Campaigns (with leader election), schedules until `shutdown` completes or the lease is
    /// lost, then stops. On shutdown the lease is released.
    ///
    /// # Errors
    /// [`RunError::LostLease`] when leadership was lost; the scheduler's client was fenced the
    /// moment the loss was detected.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        tokio::pin!(shutdown);
        let Some(elector) = self.elector.clone() else {
            shutdown.await;
            self.stop().await;
            return Ok(());
        };
        tokio::select! {
            _ = elector.acquire() => {}
            _ = &mut shutdown => {
                self.stop().await;
                return Ok(());
            }
        }
        self.metrics.set_leader(elector.lease_name(), true);
        self.role.send_replace(Role::Leader);
        self.scheduler.resume();
        let fence = self.fence.clone();
        tokio::select! {
            _ = elector.hold(move || fence.close()) => {
                self.metrics.set_leader(elector.lease_name(), false);
                self.stopping.store(true, Ordering::Release);
                self.role.send_replace(Role::Stopped);
                // Dropping the scheduler closes its queue and watches; the fence already
                // refuses whatever its binding cycles still try.
                Err(RunError::LostLease {
                    lease: format!("{}/{}", elector.lease_namespace(), elector.lease_name()),
                })
            }
            _ = &mut shutdown => {
                self.stop().await;
                elector.release().await;
                Ok(())
            }
        }
    }

    /// Stops scheduling, then fences the client, so nothing is sent after the lease is
    /// released.
    async fn stop(self) {
        self.stopping.store(true, Ordering::Release);
        tracing::info!("stopping");
        if let Some(e) = &self.elector {
            self.metrics.set_leader(e.lease_name(), false);
        }
        self.scheduler.shutdown().await;
        self.fence.close();
        self.role.send_replace(Role::Stopped);
    }
}

/// One `/readyz` check per configured Wasm plugin, `wasm-plugin-NAME`: it fails while the
/// plugin counts as failed (an object is quarantined because its `on_event` hung or trapped on
/// it, or a trapped instance could not be replaced), with the reason; `?verbose` lists them.
fn add_wasm_checks(
    state: &mut EndpointState,
    config: &SchedulerConfig,
    wasm: &Arc<OnceLock<crate::wasm::WasmPlugins>>,
) {
    for p in &config.wasm.plugins {
        let (name, w) = (p.name.clone(), wasm.clone());
        let check: Check = Arc::new(move || match w.get().and_then(|w| w.stats(&name)) {
            Some(stats) => stats.failure().map_or(Ok(()), Err),
            None => Ok(()),
        });
        state.ready.push((check_name(&p.name), check));
    }
}

/// `wasm-plugin-NAME` as the `'static` name a check needs, made once per plugin name.
fn check_name(plugin: &str) -> &'static str {
    static NAMES: OnceLock<parking_lot::Mutex<std::collections::HashMap<String, &'static str>>> =
        OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock();
    names
        .entry(plugin.to_string())
        .or_insert_with(|| Box::leak(format!("wasm-plugin-{plugin}").into_boxed_str()))
}

/// The checks kube-scheduler serves: `/healthz` and `/livez` have `ping` and (with leader
/// election) `leaderElection`; `/readyz` adds `sched-handler-sync` (the cache listed
/// everything) and `shutdown` (fails while stopping). A standby is ready once synced: it is
/// healthy and able to take over, as upstream's standbys report.
fn endpoint_state(
    metrics: &Arc<Metrics>,
    elector: Option<&Arc<LeaderElector>>,
    cache: &Arc<OnceLock<(Arc<Cache>, Arc<crate::queue::SchedulingQueue>)>>,
    stopping: &Arc<AtomicBool>,
) -> EndpointState {
    let mut state = EndpointState::new(metrics.clone());
    let (m, c) = (metrics.clone(), cache.clone());
    state.refresh = Arc::new(move || {
        if let Some((_, q)) = c.get() {
            let s = q.stats();
            m.set_pending(s.active, s.backoff, s.unschedulable, s.gated);
        }
    });
    if let Some(e) = elector {
        let e = e.clone();
        let check: Check = Arc::new(move || e.check(LEADER_HEALTH_TOLERANCE));
        state.health.push(("leaderElection", check));
    }
    let c = cache.clone();
    let synced: Check = Arc::new(move || match c.get() {
        Some((cache, _)) if cache.is_synced() => Ok(()),
        _ => Err("waiting for the cache to sync".into()),
    });
    state.ready.push(("sched-handler-sync", synced));
    let s = stopping.clone();
    let shutdown: Check = Arc::new(move || {
        if s.load(Ordering::Acquire) {
            Err("the scheduler is shutting down".into())
        } else {
            Ok(())
        }
    });
    state.ready.push(("shutdown", shutdown));
    state
}
