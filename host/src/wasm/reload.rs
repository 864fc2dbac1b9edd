//! Triggers of hot swap: the plugin files changing on disk (`notify`, debounced), SIGHUP, and
//! `POST /plugins/{name}/reload` on the admin endpoint. All of them call
//! [`WasmPlugins::reload`], which keeps the old module serving when anything fails.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use notify::{EventKind, RecursiveMode, Watcher};

use super::error::WasmError;
use super::runtime::WasmPlugins;

/// Quiet time given to a plugin file after its first event before it is reloaded (editors and
/// `cp` write in several steps). Counted from the file's first event, never restarted.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Wait after an event that says the file is complete (closed after writing, renamed into
/// place, a ConfigMap `..data` swap): long enough to coalesce its sibling events.
pub const SETTLE: Duration = Duration::from_millis(15);

/// The entry a Kubernetes ConfigMap/Secret volume swaps atomically on update (kubelet's
/// atomic writer renames `..data_tmp` onto it); the files are symlinks through it.
const ATOMIC_DATA: &str = "..data";

/// Watches the plugin files; reloads a plugin when its file is written, created, renamed over,
/// or its ConfigMap volume is swapped. Stops when dropped.
pub struct FileWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl WasmPlugins {
    /// Starts watching the directories of the plugin files (a file replaced by rename is seen
    /// too) and reloads a plugin at most [`DEBOUNCE`] after its file's first event, sooner once
    /// the file is complete. Every file has its own debounce: events on other files of the
    /// folder neither delay nor trigger it. A reload of an unchanged file (same sha256) swaps
    /// nothing.
    ///
    /// # Errors
    /// [`WasmError::Watch`] if a directory cannot be watched.
    pub fn watch_files(&self) -> Result<FileWatcher, WasmError> {
        let files: Vec<Watched> = self
            .paths()
            .into_iter()
            .map(|(name, p)| Watched::new(name, std::path::absolute(&p).unwrap_or(p)))
            .collect();
        let (tx, rx) = mpsc::channel::<notify::Result<notify::Event>>();
        let mut watcher = notify::recommended_watcher(tx)?;
        let dirs: BTreeSet<PathBuf> = files.iter().map(|w| w.dir.clone()).collect();
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

/// One watched plugin file and the directory entries whose change means its content may have
/// changed.
struct Watched {
    name: String,
    path: PathBuf,
    dir: PathBuf,
    /// `dir/..data`: the atomic-writer swap never names the plugin file itself.
    data: PathBuf,
}

impl Watched {
    fn new(name: String, path: PathBuf) -> Self {
        let dir = path
            .parent()
            .map(FsPath::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let data = dir.join(ATOMIC_DATA);
        Watched {
            name,
            path,
            dir,
            data,
        }
    }

    fn concerns(&self, p: &FsPath) -> bool {
        p == self.path || p == self.data
    }
}

/// What an event says about a file it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touch {
    /// Irrelevant (opened, read, metadata).
    None,
    /// Being written: wait for more, up to [`DEBOUNCE`].
    Partial,
    /// In place and complete: reload after [`SETTLE`].
    Complete,
}

fn touch(kind: &EventKind) -> Touch {
    use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Touch::Complete,
        EventKind::Modify(ModifyKind::Name(_)) => Touch::Complete,
        // A symlink (or hard link) is complete when created; a regular file is written next.
        EventKind::Create(CreateKind::File | CreateKind::Any | CreateKind::Other) => Touch::Partial,
        EventKind::Create(CreateKind::Folder) => Touch::None,
        EventKind::Modify(ModifyKind::Metadata(_)) => Touch::None,
        EventKind::Modify(_) => Touch::Partial,
        _ => Touch::None,
    }
}

/// Per-file debounce: the first event of a file fixes its deadline (later ones can only bring
/// it forward, when they say the file is complete).
fn watch_loop(
    plugins: &WasmPlugins,
    files: &[Watched],
    rx: &mpsc::Receiver<notify::Result<notify::Event>>,
) {
    // Deadline per index into `files`.
    let mut due: BTreeMap<usize, Instant> = BTreeMap::new();
    loop {
        let next = due.values().min().copied();
        let event = match next {
            None => match rx.recv() {
                Ok(e) => Some(e),
                Err(_) => return, // watcher dropped
            },
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(e) => Some(e),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            },
        };
        if let Some(Ok(event)) = event {
            let t = touch(&event.kind);
            if t != Touch::None {
                let now = Instant::now();
                for (i, w) in files.iter().enumerate() {
                    if !event.paths.iter().any(|p| w.concerns(p)) {
                        continue;
                    }
                    let limit = match t {
                        Touch::Complete => now + SETTLE,
                        _ => now + DEBOUNCE,
                    };
                    due.entry(i)
                        .and_modify(|d| *d = (*d).min(limit))
                        .or_insert(limit);
                }
            }
        }
        let now = Instant::now();
        let ready: Vec<usize> = due
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(i, _)| *i)
            .collect();
        for i in ready {
            due.remove(&i);
            let w = &files[i];
            // Gone (mid-rename, or the volume is being swapped): its next event brings it back.
            if w.path.exists() {
                // `reload` swaps only when the content hash changed, and logs failures.
                let _ = plugins.reload(&w.name);
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
            "compileMs": o.compile.as_millis() as u64, "startMs": o.start.as_millis() as u64,
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
