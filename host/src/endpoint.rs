//! The HTTP endpoint of `run`: `/metrics` (Prometheus text), `/healthz` and `/livez`
//! (liveness), `/readyz` (readiness), shaped like kube-scheduler's: each runs named checks and
//! answers `ok` (200) or a failure listing (500); `?verbose` lists every check.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// A named health check: `Err(reason)` fails it.
pub type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the endpoint reads.
#[derive(Clone)]
pub struct EndpointState {
    /// The metrics to serve.
    pub metrics: Arc<Metrics>,
    /// Called before each scrape (e.g. to refresh queue gauges).
    pub refresh: Arc<dyn Fn() + Send + Sync>,
    /// Checks of `/healthz` and `/livez` (`ping` is always there).
    pub health: Vec<(&'static str, Check)>,
    /// Further checks of `/readyz` (it runs the health checks too).
    pub ready: Vec<(&'static str, Check)>,
}

impl EndpointState {
    /// Only `/metrics` and the `ping` check.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        EndpointState {
            metrics,
            refresh: Arc::new(|| {}),
            health: Vec::new(),
            ready: Vec::new(),
        }
    }
}

/// Serves the endpoint on `addr`; returns the bound address and the server task.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    state: EndpointState,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok((addr, task))
}

async fn metrics(State(s): State<EndpointState>) -> impl IntoResponse {
    (s.refresh)();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn healthz(
    State(s): State<EndpointState>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    report("healthz", s.health.iter(), q.contains_key("verbose"))
}

async fn readyz(
    State(s): State<EndpointState>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    report(
        "readyz",
        s.health.iter().chain(s.ready.iter()),
        q.contains_key("verbose"),
    )
}

/// Runs the checks as k8s.io/apiserver's healthz handler reports them.
fn report<'a>(
    what: &str,
    checks: impl Iterator<Item = &'a (&'static str, Check)>,
    verbose: bool,
) -> (StatusCode, String) {
    let mut lines = vec!["[+]ping ok".to_string()];
    let mut failed = false;
    for (name, check) in checks {
        match check() {
            Ok(()) => lines.push(format!("[+]{name} ok")),
            Err(reason) => {
                failed = true;
                lines.push(format!("[-]{name} failed: {reason}"));
            }
        }
    }
    if failed {
        lines.push(format!("{what} check failed"));
        (StatusCode::INTERNAL_SERVER_ERROR, lines.join("\n") + "\n")
    } else if verbose {
        lines.push(format!("{what} check passed"));
        (StatusCode::OK, lines.join("\n") + "\n")
    } else {
        (StatusCode::OK, "ok".into())
    }
}
