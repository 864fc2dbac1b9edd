//! ImageLocality: prefers nodes that already have the pod's container images (upstream
//! `imagelocality/image_locality.go`). An image counts its size scaled by the share of nodes
//! that have it (so an image on every node does not pull pods together), and the sum is mapped
//! linearly from 23 MiB (score 0) to 1000 MiB per container (score 100).
//!
//! Images come from `node.status.images`; names are compared as upstream normalizes them (a
//! name without a tag gets `:latest`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::framework::PreFilterResult;
use crate::framework::{CycleState, ExtensionPoint, NodeInfo, Plugin, PodInfo, Snapshot, Status};

use super::helpers::{MAX_NODE_SCORE, decode_args};
use super::registry::RegistryError;

/// The plugin's name in the configuration.
pub const NAME: &str = "ImageLocality";
/// CycleState key of the cluster's image counts.
const STATE_KEY: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
/// Below this the score is 0.
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container, above this the score is 100.
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// Prefers nodes that have the pod's images.
#[derive(Debug)]
pub struct ImageLocality;

/// The pod's normalized images and how many nodes have each, read once per cycle.
struct State {
    images: Vec<String>,
    containers: i64,
    image_nodes: Arc<HashMap<String, usize>>,
    total_nodes: usize,
}

/// Adds `:latest` to a name without a tag (upstream `normalizedImageName`).
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':');
    let slash = name.rfind('/');
    if colon.map(|c| c as isize).unwrap_or(-1) <= slash.map(|s| s as isize).unwrap_or(-1) {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

/// Maps the summed image scores to `0..=100` (upstream `calculatePriority`).
pub fn calculate_priority(sum: i64, containers: i64) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * containers;
    if max <= MIN_THRESHOLD {
        return 0;
    }
    let sum = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

impl ImageLocality {
    /// Creates the plugin; it takes no args.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] for any args but none.
    pub fn new(args: &serde_json::Value) -> Result<Self, RegistryError> {
        let _: NoArgs = decode_args(NAME, args)?;
        Ok(ImageLocality)
    }

    fn score_node(&self, s: &State, node: &NodeInfo) -> i64 {
        let mut sum = 0;
        for image in &s.images {
            if let Some((_, size)) = node.images.iter().find(|(n, _)| n == image) {
                let num = s.image_nodes.get(image).copied().unwrap_or(1);
                let spread = num as f64 / s.total_nodes.max(1) as f64;
                sum += (*size as f64 * spread) as i64;
            }
        }
        calculate_priority(sum, s.containers)
    }
}

/// No args are accepted (`apiVersion`/`kind` only).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NoArgs {
    #[allow(dead_code)]
    api_version: Option<String>,
    #[allow(dead_code)]
    kind: Option<String>,
}

impl Plugin for ImageLocality {
    fn name(&self) -> &str {
        NAME
    }

    /// PreFilter only reads the snapshot's image counts (Score does not see the snapshot);
    /// there is no Filter.
    fn extension_points(&self) -> Vec<ExtensionPoint> {
        vec![ExtensionPoint::PreFilter, ExtensionPoint::Score]
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> PreFilterResult {
        let spec = pod.pod.spec.as_ref();
        let containers: Vec<&str> = spec
            .into_iter()
            .flat_map(|s| {
                s.init_containers
                    .iter()
                    .flatten()
                    .chain(&s.containers)
                    .map(|c| c.image.as_deref().unwrap_or(""))
            })
            .collect();
        // Nodes without images (most test and bench clusters) make every score 0: skip work.
        if !snapshot.image_nodes.is_empty() {
            state.write(
                STATE_KEY,
                State {
                    images: containers
                        .iter()
                        .map(|i| normalized_image_name(i))
                        .collect(),
                    containers: containers.len() as i64,
                    image_nodes: snapshot.image_nodes.clone(),
                    total_nodes: snapshot.len(),
                },
            );
        }
        PreFilterResult {
            status: Status::skip(),
            node_names: None,
        }
    }

    fn score(
        &self,
        state: &CycleState,
        _pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        let Some(s) = state.read::<State>(STATE_KEY) else {
            return Ok(vec![0; nodes.len()]);
        };
        Ok(nodes.iter().map(|n| self.score_node(s, n)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};

    fn scores(p: &PodInfo, nodes: Vec<Arc<NodeInfo>>) -> Vec<i64> {
        let pl = ImageLocality::new(&serde_json::Value::Null).unwrap();
        let snapshot = Snapshot::from_nodes(nodes.clone());
        let mut state = CycleState::default();
        pl.pre_filter(&mut state, p, &snapshot);
        pl.score(&state, p, &nodes).unwrap()
    }

    #[test]
    fn names_without_a_tag_get_latest() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(normalized_image_name("nginx:1.2"), "nginx:1.2");
        assert_eq!(normalized_image_name("reg:5000/app"), "reg:5000/app:latest");
        assert_eq!(normalized_image_name("reg:5000/app:v1"), "reg:5000/app:v1");
    }

    // Upstream TestImageLocalityPriority "two images spread on two nodes, prefer the larger
    // image one": 40 MB on one node, 300 MB on the other, each on 1 of 2 nodes.
    #[test]
    fn the_node_with_the_larger_image_wins_and_sizes_are_scaled_by_spread() {
        let p = pod(
            "metadata: {name: p, namespace: d}\nspec: {containers: [{name: a, image: 'gcr.io/40'}, {name: b, image: 'gcr.io/300'}]}",
        );
        let n1 = node(&format!(
            "metadata: {{name: n1}}\nstatus: {{images: [{{names: ['gcr.io/40:latest'], sizeBytes: {}}}, {{names: ['gcr.io/other:latest'], sizeBytes: {}}}]}}",
            40 * MB,
            2000 * MB
        ));
        let n2 = node(&format!(
            "metadata: {{name: n2}}\nstatus: {{images: [{{names: ['gcr.io/300:latest'], sizeBytes: {}}}]}}",
            300 * MB
        ));
        // n1: 40 MB * 1/2 = 20 MB < 23 MB: 0. n2: 150 MB: 100 * (150 - 23) / (2000 - 23) = 6.
        assert_eq!(scores(&p, vec![n1, n2]), [0, 6]);
    }

    #[test]
    fn an_image_on_every_node_counts_its_full_size_and_nodes_without_images_score_zero() {
        let p = pod(
            "metadata: {name: p, namespace: d}\nspec: {containers: [{name: a, image: 'big:v1'}]}",
        );
        let with = |n: &str| {
            node(&format!(
                "metadata: {{name: {n}}}\nstatus: {{images: [{{names: ['big:v1'], sizeBytes: {}}}]}}",
                2000 * MB
            ))
        };
        assert_eq!(scores(&p, vec![with("a"), with("b")]), [100, 100]);
        let bare = node("metadata: {name: c}");
        // 2000 MB * 1/2: 1000 MB, the cap for one container.
        assert_eq!(scores(&p, vec![with("a"), bare]), [100, 0]);
        assert_eq!(calculate_priority(0, 1), 0);
    }
}
