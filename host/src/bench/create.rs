//! Creating and deleting the workload's objects through `kube::Client`, many requests at once so
//! that the client is not what limits the measured rate.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::{Client, discovery::ApiResource};
use serde_json::Value;

use super::BenchError;
use crate::cache::api_resource;
use crate::framework::ResourceKind;

/// Requests in flight at once.
pub const CONCURRENCY: usize = 64;

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// Creates `objects` (any kinds, namespaced or not) with [`CONCURRENCY`] requests in flight.
///
/// # Errors
/// The first create the API server refuses, naming the object.
pub async fn create_all(client: &Client, objects: Vec<Value>) -> Result<(), BenchError> {
    let mut resources: HashMap<(String, String), ApiResource> = HashMap::new();
    let requests: Vec<(Api<DynamicObject>, String, Value)> = objects
        .into_iter()
        .map(|o| {
            let key = (
                str_at(&o, "/apiVersion").to_string(),
                str_at(&o, "/kind").to_string(),
            );
            let ar = resources
                .entry(key.clone())
                .or_insert_with(|| api_resource(&ResourceKind::new(key.0, key.1)))
                .clone();
            let api = match o.pointer("/metadata/namespace").and_then(Value::as_str) {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            let what = format!("{} {}", str_at(&o, "/kind"), str_at(&o, "/metadata/name"));
            (api, what, o)
        })
        .collect();
    stream::iter(requests)
        .map(|(api, what, o)| async move {
            let obj: DynamicObject = serde_json::from_value(o)
                .map_err(|e| BenchError::Object(format!("{what}: {e}")))?;
            api.create(&PostParams::default(), &obj)
                .await
                .map(|_| ())
                .map_err(|source| BenchError::Api {
                    what: format!("creating {what}"),
                    source,
                })
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Deletes pods of a namespace by name, at once (grace period 0, as for pods no kubelet runs).
///
/// # Errors
/// The first delete that fails.
pub async fn delete_pods(
    client: &Client,
    namespace: &str,
    names: &[String],
) -> Result<(), BenchError> {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    stream::iter(names)
        .map(|n| {
            let (api, params) = (&api, &params);
            async move {
                api.delete(n, params)
                    .await
                    .map(|_| ())
                    .map_err(|source| BenchError::Api {
                        what: format!("deleting pod {namespace}/{n}"),
                        source,
                    })
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}
