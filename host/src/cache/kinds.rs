//! Where each object kind lives in the API: URL plural and scope.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};

use crate::framework::ResourceKind;

/// The resource.k8s.io kinds the cache can watch as generic (JSON) objects.
pub fn dra_kinds() -> [ResourceKind; 4] {
    [
        ResourceKind::resource_claim(),
        ResourceKind::resource_claim_template(),
        ResourceKind::resource_slice(),
        ResourceKind::device_class(),
    ]
}

/// The API resource of a kind. Known kinds use their real plural; others get kube's guess.
pub fn api_resource(kind: &ResourceKind) -> ApiResource {
    let (group, version) = match kind.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", kind.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &kind.kind);
    match known_plural(&kind.kind) {
        Some(plural) => ApiResource::from_gvk_with_plural(&gvk, plural),
        None => ApiResource::from_gvk(&gvk),
    }
}

fn known_plural(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Pod" => "pods",
        "Node" => "nodes",
        "Namespace" => "namespaces",
        "ResourceClaim" => "resourceclaims",
        "ResourceClaimTemplate" => "resourceclaimtemplates",
        "ResourceSlice" => "resourceslices",
        "DeviceClass" => "deviceclasses",
        "DeviceTaintRule" => "devicetaintrules",
        "PodDisruptionBudget" => "poddisruptionbudgets",
        "PersistentVolume" => "persistentvolumes",
        "PersistentVolumeClaim" => "persistentvolumeclaims",
        "StorageClass" => "storageclasses",
        "Service" => "services",
        "ReplicationController" => "replicationcontrollers",
        "ReplicaSet" => "replicasets",
        "StatefulSet" => "statefulsets",
        _ => return None,
    })
}

/// A dynamic API handle for one object: namespaced if `namespace` is given.
pub fn dynamic_api(
    client: Client,
    kind: &ResourceKind,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let ar = api_resource(kind);
    match namespace {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    }
}

/// The cache key of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn object_key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_claims_map_to_their_api_path() {
        let ar = api_resource(&ResourceKind::resource_claim());
        assert_eq!(ar.group, "resource.k8s.io");
        assert_eq!(ar.version, "v1");
        assert_eq!(ar.plural, "resourceclaims");
        let pods = api_resource(&ResourceKind::pod());
        assert_eq!((pods.group.as_str(), pods.plural.as_str()), ("", "pods"));
    }
}
