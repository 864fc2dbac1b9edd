//! A plugin that misbehaves on purpose, for the hostile-plugin tests. It behaves well for every
//! pod except those whose name starts with `evil`; for those it does what `mode` says:
//!
//! - `loop`: Filter never returns (the call deadline must stop it);
//! - `memory`: Filter allocates without bound (the memory cap must stop it);
//! - `trap`: Reserve panics;
//! - `undeclared`: Reserve returns a patch intent for a Node, a kind it did not declare;
//! - `oversized`: Filter returns one status more than nodes, Reserve a 2 MiB patch body.

use serde::Deserialize;
use wasm_scheduler_sdk::{
    ExtensionPoint, Metadata, ObjectRef, PatchIntent, PatchKind, Plugin, PodRef, ResourceKind,
    Status, export_plugin,
};

/// The misbehaviour, from the args `{"mode": "..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Endless loop in Filter.
    Loop,
    /// Unbounded allocation in Filter.
    Memory,
    /// Panic in Reserve.
    Trap,
    /// Intent for an undeclared kind in Reserve.
    Undeclared,
    /// Too many statuses in Filter, too large intent in Reserve.
    Oversized,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    mode: Mode,
}

/// The hostile plugin.
pub struct Hostile {
    mode: Mode,
}

fn evil(pod: &PodRef) -> bool {
    pod.name.starts_with("evil")
}

impl Plugin for Hostile {
    fn new(args: &str) -> Result<Self, String> {
        let a: Args = serde_json::from_str(args).map_err(|e| format!("Hostile args: {e}"))?;
        Ok(Hostile { mode: a.mode })
    }

    fn metadata(&self) -> Metadata {
        Metadata {
            name: "Hostile".into(),
            version: "0.0.1".into(),
            extension_points: vec![ExtensionPoint::Filter, ExtensionPoint::Reserve],
            patches: vec![ResourceKind::resource_claim()],
            ..Default::default()
        }
    }

    fn filter(&mut self, pod: &PodRef, nodes: &[String]) -> Vec<Status> {
        let mut out = vec![Status::success(); nodes.len()];
        if !evil(pod) {
            return out;
        }
        match self.mode {
            Mode::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Memory => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Mode::Oversized => out.push(Status::success()),
            Mode::Trap | Mode::Undeclared => {}
        }
        out
    }

    fn reserve(&mut self, pod: &PodRef, node: &str) -> Result<Vec<PatchIntent>, Status> {
        if !evil(pod) {
            return Ok(Vec::new());
        }
        let intent = |resource: ResourceKind, body: String| PatchIntent {
            target: ObjectRef {
                resource,
                namespace: None,
                name: node.to_string(),
                uid: "uid".into(),
            },
            subresource: None,
            patch_kind: PatchKind::Merge,
            body,
        };
        match self.mode {
            Mode::Trap => panic!("hostile plugin: trap in reserve for {}", pod.name),
            Mode::Undeclared => Ok(vec![intent(
                ResourceKind::node(),
                r#"{"metadata":{"labels":{"owned":"yes"}}}"#.into(),
            )]),
            Mode::Oversized => {
                let body = format!(
                    r#"{{"metadata":{{"annotations":{{"x":"{}"}}}}}}"#,
                    "x".repeat(2 << 20)
                );
                Ok(vec![intent(ResourceKind::resource_claim(), body)])
            }
            Mode::Loop | Mode::Memory => Ok(Vec::new()),
        }
    }
}

export_plugin!(Hostile);
