//! Builders for hand-written nodes and pods in the plugins' unit tests.

use std::sync::Arc;

use crate::framework::{NodeInfo, PodInfo};

/// A pod from YAML, with its requests computed as the cache does.
pub fn pod(yaml: &str) -> PodInfo {
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_yaml_ng::from_str(yaml).expect("test pod YAML");
    PodInfo::new(Arc::new(pod))
}

/// A node from YAML with no pods.
pub fn node(yaml: &str) -> Arc<NodeInfo> {
    Arc::new(node_info(yaml, &[]))
}

/// A node from YAML with these pods assigned.
pub fn node_info(yaml: &str, pods: &[PodInfo]) -> NodeInfo {
    let node: k8s_openapi::api::core::v1::Node =
        serde_yaml_ng::from_str(yaml).expect("test node YAML");
    let mut info = NodeInfo::new(Arc::new(node));
    for p in pods {
        info.add_pod(Arc::new(p.clone()));
    }
    info
}
