//! DefaultBinder: binds a pod by creating its `binding` subresource
//! (`POST /api/v1/namespaces/{ns}/pods/{name}/binding`), as upstream
//! `pkg/scheduler/framework/plugins/defaultbinder` does.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use crate::framework::{BindContext, ExtensionPoint, Plugin, PodInfo, Status};
use crate::retry::RetryPolicy;

use super::helpers::expect_no_args;
use super::registry::RegistryError;

/// The plugin's name in the configuration.
pub const NAME: &str = "DefaultBinder";

/// Binds pods through the API server.
#[derive(Debug, Default)]
pub struct DefaultBinder;

impl DefaultBinder {
    /// Creates the plugin; it takes no args.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] when args are given.
    pub fn new(args: &serde_json::Value) -> Result<Self, RegistryError> {
        expect_no_args(NAME, args)?;
        Ok(DefaultBinder)
    }
}

/// The Binding upstream sends: the pod's namespace, name and uid (the API server refuses the
/// binding if the pod was replaced by another of the same name) and the target node.
pub fn binding_for(pod: &PodInfo, node: &str) -> Binding {
    Binding {
        metadata: ObjectMeta {
            namespace: Some(pod.key.namespace.clone()),
            name: Some(pod.key.name.clone()),
            uid: (!pod.key.uid.is_empty()).then(|| pod.key.uid.clone()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..ObjectReference::default()
        },
    }
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &str {
        NAME
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![ExtensionPoint::Bind]
    }

    fn bind<'a>(
        &'a self,
        ctx: &'a BindContext,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status> {
        Box::pin(async move {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.key.namespace);
            let binding = binding_for(pod, node);
            // The API server answers with a Status object; only success matters. Transient
            // errors are retried; after one, a 409 may be our own earlier try that did land.
            let mut retried = false;
            let params = PostParams::default();
            let result = RetryPolicy::default()
                .run(
                    || {
                        api.create_subresource::<_, serde_json::Value>(
                            "binding",
                            &pod.key.name,
                            &params,
                            &binding,
                        )
                    },
                    |n, e| {
                        retried = true;
                        tracing::debug!(pod = %pod.key.name, "binding (try {n}) failed, retrying: {e}");
                    },
                )
                .await;
            match result {
                Ok(_) => Status::success(),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let ours = retried
                        && api.get(&pod.key.name).await.is_ok_and(|p| {
                            p.metadata.uid.as_deref() == Some(pod.key.uid.as_str())
                                && p.spec.and_then(|s| s.node_name).as_deref() == Some(node)
                        });
                    if ours {
                        Status::success()
                    } else {
                        // Someone else bound it (another scheduler, or a previous leader): the
                        // watch will report the pod as assigned and it leaves the queue.
                        Status::error(format!(
                            "binding pod {}/{} to node {node}: already bound elsewhere: {}",
                            pod.key.namespace, pod.key.name, s.message
                        ))
                    }
                }
                Err(e) => Status::error(format!(
                    "binding pod {}/{} to node {node}: {e}",
                    pod.key.namespace, pod.key.name
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::pod;

    #[test]
    fn the_binding_names_the_pod_with_its_uid_and_targets_the_node() {
        let p = pod("metadata: {name: web, namespace: prod, uid: u-1}\nspec: {containers: []}");
        let b = serde_json::to_value(binding_for(&p, "node-7")).unwrap();
        assert_eq!(
            b,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": "web", "namespace": "prod", "uid": "u-1"},
                "target": {"kind": "Node", "name": "node-7"}
            })
        );
    }
}
