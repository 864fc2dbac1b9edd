//! Triggers of hot swap: the plugin files changing on disk (`notify`, debounced), SIGHUP, and
//! `POST /plugins/{name}/reload` on the admin endpoint. All of them call
//! [`WasmPlugins::reload`], which keeps the old module serving when anything fails.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use notify::{EventKind, RecursiveMode, Watcher};

use super::error::WasmError;
use super::runtime::WasmPlugins;

/// Quiet time after the last file event before a reload starts (editors and `cp` write in
/// several steps).
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Watches the plugin files; reloads a plugin when its file is written, created, or renamed
/// over. Stops when dropped.
pub struct FileWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl WasmPlugins {
    /// Starts watching the directories of the plugin files (a file replaced by rename is seen
    /// too) and reloads a plugin [`DEBOUNCE`] after its file last changed.
    ///
    /// # Errors
    /// [`WasmError::Watch`] if a directory cannot be watched.
    pub fn watch_files(&self) -> Result<FileWatcher, WasmError> {
        let files: Vec<(String, PathBuf)> = self
            .paths()
            .into_iter()
            .map(|(n, p)| (n, std::path::absolute(&p).unwrap_or(p)))
            .collect();
        let (tx, rx) = mpsc::channel::<notify::Result<notify::Event>>();
        let mut watcher = notify::recommended_watcher(tx)?;
        let dirs: BTreeSet<PathBuf> = files
            .iter()
            .filter_map(|(_, p)| p.parent().map(|d| d.to_path_buf()))
            .collect();
        for dir in &dirs {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
        let plugins = self.clone();
        std::thread::Builder::new()
            .name("wasm-watch".into())
            .spawn(move || watch_loop(&plugins, &files, &rx))
            .map_err(|e| WasmError::Watch(notify::Error::io(e)))?;
        Ok(FileWatcher { _watcher: watcher })
    }
}

fn watch_loop(
    plugins: &WasmPlugins,
    files: &[(String, PathBuf)],
    rx: &mpsc::Receiver<notify::Result<notify::Event>>,
) {
    let mut pending: BTreeSet<String> = BTreeSet::new();
    loop {
        let event = if pending.is_empty() {
            match rx.recv() {
                Ok(e) => e,
                Err(_) => return, // watcher dropped
            }
        } else {
            match rx.recv_timeout(DEBOUNCE) {
                Ok(e) => e,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    for name in std::mem::take(&mut pending) {
                        let path = &files.iter().find(|(n, _)| *n == name).expect("watched").1;
                        if path.exists() {
                            let _ = plugins.reload(&name);
                        }
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        let Ok(event) = event else { continue };
        if !matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_)) {
            continue;
        }
        for (name, path) in files {
            if event.paths.iter().any(|p| p == path) {
                pending.insert(name.clone());
            }
        }
    }
}

/// Reloads every plugin on SIGHUP. Needs a Tokio runtime.
///
/// # Errors
/// The signal handler could not be installed.
#[cfg(unix)]
pub fn spawn_sighup_reloader(plugins: WasmPlugins) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading Wasm plugins");
            let p = plugins.clone();
            let _ = tokio::task::spawn_blocking(move || p.reload_all()).await;
        }
    }))
}

/// The running admin endpoint.
pub struct AdminServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The server task.
    pub task: tokio::task::JoinHandle<()>,
}

/// Serves `GET /plugins` (status of every Wasm plugin) and `POST /plugins/{name}/reload`
/// (hot swap now; 200 with the outcome, 404 for an unknown plugin, 422 with the failed step).
///
/// # Errors
/// [`WasmError::Admin`] if the address cannot be bound.
pub async fn serve_admin(plugins: WasmPlugins, addr: SocketAddr) -> Result<AdminServer, WasmError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| WasmError::Admin { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| WasmError::Admin { addr, source })?;
    let app = Router::new()
        .route("/plugins", get(list))
        .route("/plugins/{name}/reload", post(reload))
        .with_state(plugins);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    });
    tracing::info!(%addr, "Wasm plugin admin endpoint listening");
    Ok(AdminServer { addr, task })
}

async fn list(State(plugins): State<WasmPlugins>) -> Response {
    Json(plugins.statuses()).into_response()
}

async fn reload(State(plugins): State<WasmPlugins>, Path(name): Path<String>) -> Response {
    let result = tokio::task::spawn_blocking(move || plugins.reload(&name)).await;
    match result {
        Ok(Ok(o)) => Json(serde_json::json!({
            "plugin": o.plugin, "swapped": o.swapped, "sha256": o.sha256,
            "previousSha256": o.previous_sha256, "version": o.version, "instances": o.instances,
        }))
        .into_response(),
        Ok(Err(e @ WasmError::UnknownPlugin(_))) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({"error": e.to_string(), "step": e.step_name()})),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
