//! An in-memory, Kubernetes-compatible API server, so the scheduler runs, is tested and is
//! demonstrated without a cluster, through the same `kube::Client` code it uses against one.
//!
//! Start with [`ApiServer`]:
//!
//! - [`ApiServer::new`] creates an empty cluster (namespaces `default` and `kube-system`);
//! - [`ApiServer::client`] gives a `kube::Client` that talks to it in-process (no socket);
//! - [`ApiServer::serve`] listens on a loopback port and writes a kubeconfig for `kubectl`;
//! - [`ApiServer::client_as`], [`ApiServer::record_requests`] and [`ApiServer::requests`] log who
//!   sent which request, described as the real server's RBAC request attributes;
//! - [`ApiServer::load_manifest_str`] / [`ApiServer::load_manifests`] create the objects of YAML
//!   manifests, all or nothing.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use embedded_apiserver::ApiServer;
//! use k8s_openapi::api::core::v1::Node;
//! use kube::Api;
//!
//! let server = ApiServer::new();
//! server
//!     .load_manifest_str("nodes.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n")
//!     .await?;
//! let nodes: Api<Node> = Api::all(server.client());
//! assert_eq!(nodes.get("node-a").await?.metadata.name.as_deref(), Some("node-a"));
//! # Ok(()) }
//! ```
//!
//! What it serves: core/v1 namespaces, nodes, pods (+`binding`, +`status`), events, services
//! and replicationcontrollers; apps/v1 replicasets and statefulsets (stored, no controllers);
//! events.k8s.io/v1 events (the same objects); coordination.k8s.io/v1 leases; resource.k8s.io/v1
//! deviceclasses, resourceslices, resourceclaims (+`status`) and resourceclaimtemplates;
//! persistentvolumes and persistentvolumeclaims (+`status`) and storage.k8s.io/v1
//! storageclasses — with
//! get, list, watch, create, update, patch (JSON, merge, strategic merge) and delete, the real
//! server's validation and error bodies, discovery for `kubectl`, the resourceclaim
//! controller's work and the PersistentVolume controller's binding of pre-bound pairs. The crate README lists what differs from a real kube-apiserver.
//!
//! Inside (for maintainers), a request flows through `http` (routing, negotiation, list/get/watch)
//! to `registry` (the write pipeline: decode, defaults, validation, commit) and `store` (per-kind
//! maps, one global resourceVersion, bounded event histories); `watch` streams the histories and
//! `controller` reacts to commits. `validation/`, `defaults`, `discovery` and `manifests` hold what
//! their names say.

mod admission;
mod audit;
mod controller;
mod defaults;
mod discovery;
mod disruption;
mod events;
mod faults;
mod http;
mod manifests;
mod registry;
mod resources;
mod selectors;
mod server;
mod services;
mod status;
mod store;
mod typed;
mod validation;
mod volumes;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

pub use audit::RequestRecord;
pub use faults::{Fault, FaultPlan, FaultRule, FaultSpecError};
pub use manifests::{LoadReport, ManifestError};
pub use server::{ServeError, ServeHandle};

use registry::{Registry, WriteOptions};

/// Settings of an [`ApiServer`].
#[derive(Clone, Debug)]
pub struct Config {
    /// How many watch events are kept per kind. A watch from an older resourceVersion gets
    /// `410 Expired` and its client re-lists, as with a real server's watch cache. Default 10,000.
    /// Events share the stored versions (kept once, as JSON), so the history costs little more
    /// than the versions it keeps alive.
    pub watch_history: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            watch_history: 10_000,
        }
    }
}

/// An in-memory Kubernetes-compatible API server. Cheap to clone (an `Arc` inside); clones share
/// the same cluster state.
#[derive(Clone)]
pub struct ApiServer {
    reg: Arc<Registry>,
}

impl Default for ApiServer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("resource_version", &self.reg.store.current_rv())
            .finish()
    }
}

impl ApiServer {
    /// A new, empty cluster with the namespaces `default` and `kube-system`.
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A new, empty cluster with custom settings.
    pub fn with_config(config: Config) -> Self {
        let reg = Arc::new(Registry::new(config.watch_history));
        reg.set_self();
        let namespaces = resources::Kind::Namespace.canonical();
        for ns in ["default", "kube-system"] {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            reg.create(namespaces, None, body, WriteOptions::default())
                .expect("built-in namespaces are valid");
        }
        let classes = resources::Kind::PriorityClass.canonical();
        for class in admission::system_priority_classes() {
            reg.create(classes, None, class, WriteOptions::default())
                .expect("built-in priority classes are valid");
        }
        ApiServer { reg }
    }

    /// A `kube::Client` that talks to this server in-process: the requests go through the same
    /// HTTP handling as over the network, without a socket. Its default namespace is `default`.
    ///
    /// # Panics
    ///
    /// Must be called inside a Tokio runtime (the client spawns its request buffer there).
    pub fn client(&self) -> kube::Client {
        self.client_as(audit::ADMIN)
    }

    /// Like [`ApiServer::client`], but the request log attributes its requests to `user` (for
    /// example `system:serviceaccount:kube-system:wasm-scheduler`), so a test can check them
    /// against RBAC rules. Nothing is authorized: the user only appears in [`RequestRecord::user`].
    ///
    /// # Panics
    ///
    /// Must be called inside a Tokio runtime.
    pub fn client_as(&self, user: &str) -> kube::Client {
        kube::Client::new(
            http::InProcess {
                reg: self.reg.clone(),
                user: user.into(),
            },
            "default",
        )
    }

    /// Turns the request log on or off (off initially). While on, every request through a client
    /// or the network listener is appended as a [`RequestRecord`] when its response is ready.
    /// Requests made by [`ApiServer::load_manifests`] and the built-in controller are not HTTP
    /// requests and are not recorded.
    pub fn record_requests(&self, on: bool) {
        self.reg.audit.set(on);
    }

    /// The recorded requests, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.reg.audit.records()
    }

    /// Serves the API over plain HTTP on `addr` (use `127.0.0.1:0` for a free port) and writes a
    /// kubeconfig for it into a temporary directory. The server runs until the handle is dropped.
    /// The request log attributes network requests to `system:admin`, or to the user named by an
    /// `Impersonate-User` header (`kubectl --as`).
    ///
    /// # Errors
    ///
    /// [`ServeError::Bind`] if the address cannot be bound, [`ServeError::Kubeconfig`] if the
    /// kubeconfig cannot be written.
    pub async fn serve(&self, addr: SocketAddr) -> Result<ServeHandle, ServeError> {
        server::serve(self.reg.clone(), addr).await
    }

    /// Creates the objects of YAML manifest files, as one unit: every document of every file is
    /// checked first; namespaces are created first, then the rest in file order; if a create fails,
    /// the objects this call created are removed again.
    ///
    /// # Errors
    ///
    /// A [`ManifestError`] naming the file, the document and the field at fault.
    pub async fn load_manifests(&self, paths: &[PathBuf]) -> Result<LoadReport, ManifestError> {
        manifests::load_files(&self.reg, paths)
    }

    /// Like [`ApiServer::load_manifests`] for YAML text; `source_name` is used in errors.
    ///
    /// # Errors
    ///
    /// A [`ManifestError`] naming the source, the document and the field at fault.
    pub async fn load_manifest_str(
        &self,
        source_name: &str,
        yaml: &str,
    ) -> Result<LoadReport, ManifestError> {
        manifests::load_str(&self.reg, source_name, yaml)
    }

    /// Starts injecting faults into the requests of clients and the network listener (not into
    /// [`ApiServer::load_manifests`] or the built-in controller), or stops with `None`. The
    /// same plan and seed fail the same requests; see [`FaultPlan`].
    pub fn set_faults(&self, plan: Option<FaultPlan>) {
        self.reg.faults.set(plan);
    }

    /// How many faults were injected so far.
    pub fn injected_faults(&self) -> u64 {
        self.reg.faults.injected()
    }

    /// The latest resourceVersion of the whole store (what a list would report now).
    pub fn resource_version(&self) -> u64 {
        self.reg.store.current_rv()
    }
}
