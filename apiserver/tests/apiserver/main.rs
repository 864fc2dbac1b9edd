//! Integration tests of the embedded API server, driven only through `kube::Client` (and, in
//! `kubectl.rs`, through the real kubectl). One binary, one file per feature.

mod audit;
mod binding;
mod concurrency;
mod controller;
mod crud;
mod devicetaintrules;
mod discovery;
mod kubectl;
mod manifests;
mod patch;
mod scheduling;
mod storage;
mod validation;
mod watch;
mod workloads;

use embedded_apiserver::ApiServer;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::resource::v1::ResourceClaim;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// A server and a client for it.
pub fn setup() -> (ApiServer, kube::Client) {
    let server = ApiServer::new();
    let client = server.client();
    (server, client)
}

pub fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .unwrap()
}

pub fn claim(name: &str) -> ResourceClaim {
    serde_json::from_value(json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "gpu.example.com"}}]}}
    }))
    .unwrap()
}

pub fn allocation() -> Value {
    json!({
        "devices": {"results": [{"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu-0"}]},
        "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]}
    })
}

/// Creates a claim and allocates it through `/status`.
pub async fn allocated_claim(client: &kube::Client, name: &str) -> ResourceClaim {
    let claims: Api<ResourceClaim> = Api::default_namespaced(client.clone());
    claims
        .create(&PostParams::default(), &claim(name))
        .await
        .unwrap();
    claims
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"allocation": allocation()}})),
        )
        .await
        .unwrap()
}

/// The Status of a failed call.
pub fn status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}
