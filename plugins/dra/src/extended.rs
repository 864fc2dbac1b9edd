//! Extended resources backed by DRA (KEP-5004): a pod that asks for e.g. `example.com/gpu: 2`
//! in its container resources, where a DeviceClass maps that name and the node does not offer
//! it as allocatable (device plugin), gets a special ResourceClaim with one request per
//! container and resource, created by the scheduler and owned by the pod.
//!
//! The requests and the container → request mappings are built as upstream's
//! `createRequestsAndMappings` (pkg/scheduler/framework/plugins/dynamicresources): request
//! `container-<i>-request-<j>`, where `i` indexes init containers then containers and `j` the
//! container's sorted request names, `ExactCount` with the container's quantity; init containers
//! that are not sidecars run before the others, so they first reuse the requests of the
//! containers after them and only the largest remainder among them is requested.

use serde_json::{Value, json};

use crate::state::{ContainerRequests, EXTENDED_RESOURCE_CLAIM_ANNOTATION, FINALIZER, Pod};

/// One request of the special claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `container-<i>-request-<j>`.
    pub name: String,
    /// The DeviceClass.
    pub class: String,
    /// `exactly.count`.
    pub count: i64,
}

/// `ContainerExtendedResourceRequest` of `pod.status.extendedResourceClaimStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The container.
    pub container: String,
    /// The extended resource.
    pub resource: String,
    /// The request of the claim that serves it.
    pub request: String,
}

/// The request a container makes for `resource`, after the requests in `reusable` (taken in
/// order until they cover its quantity), with the mappings to all of them.
fn container_request(
    index: usize,
    c: &ContainerRequests,
    resource: &str,
    class: &str,
    reusable: &[Option<Request>],
) -> (Option<Request>, Vec<Mapping>) {
    let Some(position) = c.requests.iter().position(|(n, _)| n == resource) else {
        return (None, Vec::new());
    };
    let Some(quantity) = c.requests[position].1.filter(|&q| q != 0) else {
        return (None, Vec::new());
    };
    let mapping = |request: &str| Mapping {
        container: c.name.clone(),
        resource: resource.to_owned(),
        request: request.to_owned(),
    };
    let mut mappings = Vec::new();
    let mut sum = 0;
    for r in reusable.iter().flatten() {
        sum += r.count;
        mappings.push(mapping(&r.name));
        if sum >= quantity {
            return (None, mappings);
        }
    }
    // `requests` is sorted by name, as upstream sorts the request map's keys.
    let name = format!("container-{index}-request-{position}");
    mappings.push(mapping(&name));
    let request = Request {
        name,
        class: class.to_owned(),
        count: quantity - sum,
    };
    (Some(request), mappings)
}

/// The requests (sorted by name) and mappings for `resources`: (resource, class) pairs, sorted
/// by resource.
pub fn requests_and_mappings(
    containers: &[ContainerRequests],
    resources: &[(String, String)],
) -> (Vec<Request>, Vec<Mapping>) {
    let mut requests = Vec::new();
    let mut mappings = Vec::new();
    for (resource, class) in resources {
        let mut long_lived: Vec<Option<Request>> = vec![None; containers.len()];
        let mut long_mappings = Vec::new();
        for (i, c) in containers
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.short_lived)
        {
            let (r, m) = container_request(i, c, resource, class, &[]);
            long_lived[i] = r;
            long_mappings.extend(m);
        }
        let mut largest: Option<Request> = None;
        let mut short_names = Vec::new();
        let mut short_mappings = Vec::new();
        for (i, c) in containers.iter().enumerate().filter(|(_, c)| c.short_lived) {
            let (r, m) = container_request(i, c, resource, class, &long_lived[i..]);
            if let Some(r) = r {
                short_names.push(r.name.clone());
                if largest.as_ref().is_none_or(|l| l.count < r.count) {
                    largest = Some(r);
                }
            }
            short_mappings.extend(m);
        }
        // Init containers run one after another: they all use the largest one's devices.
        if let Some(l) = &largest {
            for m in &mut short_mappings {
                if short_names.contains(&m.request) {
                    m.request.clone_from(&l.name);
                }
            }
        }
        requests.extend(largest);
        requests.extend(long_lived.into_iter().flatten());
        mappings.extend(long_mappings);
        mappings.extend(short_mappings);
    }
    requests.sort_by(|a, b| a.name.cmp(&b.name));
    (requests, mappings)
}

/// Characters of a generated name suffix (apimachinery `utilrand` alphabet: no vowels, no
/// look-alikes).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The special claim's name: `<pod name>-extended-resources-` (shortened to 58 characters, as
/// `generateName` is) and 5 characters derived from the pod's uid. Upstream lets the server
/// generate the suffix; a name known before the write is what makes the create idempotent:
/// a retry after a lost response or a failed later step finds the same claim (409 with the same
/// controller) instead of leaking a second one.
pub fn claim_name(pod_name: &str, pod_uid: &str) -> String {
    let mut base = format!("{pod_name}-extended-resources-");
    if base.len() > 58 {
        base.truncate(58);
    }
    // FNV-1a, 64 bits.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in pod_uid.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    for _ in 0..5 {
        base.push(ALPHANUMS[(h % ALPHANUMS.len() as u64) as usize] as char);
        h /= ALPHANUMS.len() as u64;
    }
    base
}

/// `spec.devices` of the special claim.
pub fn devices_spec(requests: &[Request]) -> Value {
    let requests: Vec<Value> = requests
        .iter()
        .map(|r| {
            json!({"name": r.name, "exactly": {
                "deviceClassName": r.class, "allocationMode": "ExactCount", "count": r.count}})
        })
        .collect();
    json!({"requests": requests})
}

/// The special claim as it is created: the annotation, the pod as controller, and the
/// delete-protection finalizer (written with the object rather than by a second write, as the
/// scheduler would add it before writing the allocation anyway).
pub fn claim_object(pod: &Pod, name: &str, requests: &[Request]) -> Value {
    json!({
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {
            "name": name,
            "namespace": pod.namespace,
            "annotations": {EXTENDED_RESOURCE_CLAIM_ANNOTATION: "true"},
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid,
                "controller": true}],
            "finalizers": [FINALIZER],
        },
        "spec": {"devices": devices_spec(requests)},
    })
}

/// `status.extendedResourceClaimStatus` naming the claim and the mappings.
pub fn pod_status(claim: &str, mappings: &[Mapping]) -> Value {
    let m: Vec<Value> = mappings
        .iter()
        .map(|m| {
            json!({"containerName": m.container, "resourceName": m.resource, "requestName": m.request})
        })
        .collect();
    json!({"resourceClaimName": claim, "requestMappings": m})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, short_lived: bool, reqs: &[(&str, i64)]) -> ContainerRequests {
        let mut requests: Vec<(String, Option<i64>)> = reqs
            .iter()
            .map(|(n, q)| (n.to_string(), Some(*q)))
            .collect();
        requests.sort();
        ContainerRequests {
            name: name.into(),
            short_lived,
            requests,
        }
    }

    fn gpu() -> Vec<(String, String)> {
        vec![("example.com/gpu".into(), "gpu".into())]
    }

    #[test]
    fn one_request_per_container_named_by_container_and_sorted_request_index() {
        let cs = [
            c("a", false, &[("cpu", 1), ("example.com/gpu", 2)]),
            c("b", false, &[("example.com/gpu", 1)]),
            c("none", false, &[("cpu", 1)]),
        ];
        let (reqs, maps) = requests_and_mappings(&cs, &gpu());
        let names: Vec<(&str, i64)> = reqs.iter().map(|r| (r.name.as_str(), r.count)).collect();
        assert_eq!(
            names,
            [("container-0-request-1", 2), ("container-1-request-0", 1)]
        );
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[0].container, "a");
        assert_eq!(maps[0].request, "container-0-request-1");
    }

    #[test]
    fn init_containers_reuse_later_requests_and_share_the_largest() {
        // init-1 needs 3, init-2 needs 1; the main container asks for 2.
        let cs = [
            c("init-1", true, &[("example.com/gpu", 3)]),
            c("init-2", true, &[("example.com/gpu", 1)]),
            c("main", false, &[("example.com/gpu", 2)]),
        ];
        let (reqs, maps) = requests_and_mappings(&cs, &gpu());
        let names: Vec<(&str, i64)> = reqs.iter().map(|r| (r.name.as_str(), r.count)).collect();
        // init-1 reuses main's 2 and asks for 1 more; init-2 is covered by main's request.
        assert_eq!(
            names,
            [("container-0-request-0", 1), ("container-2-request-0", 2)]
        );
        let of = |name: &str| -> Vec<&str> {
            maps.iter()
                .filter(|m| m.container == name)
                .map(|m| m.request.as_str())
                .collect()
        };
        assert_eq!(of("main"), ["container-2-request-0"]);
        assert_eq!(
            of("init-1"),
            ["container-2-request-0", "container-0-request-0"]
        );
        assert_eq!(of("init-2"), ["container-2-request-0"]);
    }

    #[test]
    fn a_sidecar_is_long_lived() {
        let cs = [
            c("sidecar", false, &[("example.com/gpu", 1)]),
            c("main", false, &[("example.com/gpu", 1)]),
        ];
        let (reqs, _) = requests_and_mappings(&cs, &gpu());
        assert_eq!(reqs.len(), 2);
    }

    #[test]
    fn claim_names_are_deterministic_and_valid() {
        let a = claim_name("pod", "uid-1");
        assert_eq!(a, claim_name("pod", "uid-1"));
        assert_ne!(a, claim_name("pod", "uid-2"));
        assert!(a.starts_with("pod-extended-resources-"));
        assert_eq!(a.len(), "pod-extended-resources-".len() + 5);
        let long = claim_name(&"p".repeat(80), "u");
        assert_eq!(long.len(), 63);
    }
}
