//! The loopback HTTP listener and the kubeconfig that points `kubectl` at it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::audit::ADMIN;
use crate::http::{error_response, handle};
use crate::registry::Registry;
use crate::status::ApiError;

/// Why [`crate::ApiServer::serve`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kubeconfig file could not be written.
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Where it was to be written.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A running loopback server. Dropping it (or calling [`ServeHandle::shutdown`]) stops the
/// listener, closes open connections (watches included) and removes the kubeconfig file.
#[derive(Debug)]
pub struct ServeHandle {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// A kubeconfig for `kubectl --kubeconfig` pointing at `http://<addr>`.
    pub kubeconfig_path: PathBuf,
    stop: watch::Sender<bool>,
    dir: PathBuf,
}

impl ServeHandle {
    /// Stops the server now.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The kubeconfig text for a server at `addr`.
fn kubeconfig(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: embedded
  cluster:
    server: http://{addr}
contexts:
- name: embedded
  context:
    cluster: embedded
    user: embedded
    namespace: default
current-context: embedded
users:
- name: embedded
  user: {{}}
"
    )
}

fn write_kubeconfig(dir: &Path, addr: SocketAddr) -> Result<PathBuf, ServeError> {
    let path = dir.join("kubeconfig");
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&path, kubeconfig(addr)))
        .map_err(|source| ServeError::Kubeconfig {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

pub(crate) async fn serve(reg: Arc<Registry>, addr: SocketAddr) -> Result<ServeHandle, ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let dir = std::env::temp_dir().join(format!(
        "embedded-apiserver-{}-{}",
        std::process::id(),
        local.port()
    ));
    let kubeconfig_path = write_kubeconfig(&dir, local)?;
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(async move {
        // Connections live in this set, so stopping the server aborts them all.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let reg = reg.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let reg = reg.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                // An injected drop fault is an error here, which makes hyper
                                // close the connection without an answer.
                                match body.collect().await {
                                    Ok(b) => handle(reg, ADMIN, Request::from_parts(parts, b.to_bytes())).await,
                                    Err(e) => Ok(error_response(&ApiError::bad_request(format!("cannot read request body: {e}")))),
                                }
                            }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = stopped.changed() => break,
            }
        }
    });
    Ok(ServeHandle {
        addr: local,
        kubeconfig_path,
        stop,
        dir,
    })
}
