//! A plugin that misbehaves on purpose, for the hostile-plugin tests. It behaves well for every
//! pod except those whose name starts with `evil`; for those it does what `mode` says:
//!
//! - `loop`: Filter never returns (the call deadline must stop it);
//! - `memory`: Filter allocates without bound (the memory cap must stop it);
//! - `trap`: Reserve panics;
//! - `undeclared`: Reserve returns a patch intent for a Node, a kind it did not declare;
//! - `oversized`: Filter returns one status more than nodes, Reserve a 2 MiB patch body;
//! - `logflood`: Filter logs 20,000 lines of 4 KB;
//! - `stack`: Filter recurses until the call stack is exhausted;
//! - `longreason`: Filter rejects every node with a 10 KB reason;
//! - `poison`: `on_event` never returns for a pod named `evil*` (it subscribes to pods).

use serde::Deserialize;
use wasm_scheduler_sdk::{
    ExtensionPoint, LogLevel, Metadata, ObjectEvent, ObjectRef, PatchIntent, PatchKind, Plugin,
    PodRef, ResourceKind, Status, export_plugin,
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
    /// 20,000 log lines of 4 KB from one Filter call.
    Logflood,
    /// Unbounded recursion in Filter.
    Stack,
    /// A 10 KB unschedulable reason from Filter.
    Longreason,
    /// `on_event` loops forever on pods named `evil*`.
    Poison,
}

/// Lines and line length of the `logflood` mode.
pub const FLOOD_LINES: usize = 20_000;
/// Bytes per line of the `logflood` mode.
pub const FLOOD_LINE_BYTES: usize = 4096;

/// Recurses with a frame the optimizer cannot remove, until the stack runs out.
#[inline(never)]
#[allow(unconditional_recursion)] // the point of the `stack` mode
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    recurse(depth + 1).wrapping_add(frame[(depth % 16) as usize])
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
            subscriptions: if self.mode == Mode::Poison {
                vec![ResourceKind::pod()]
            } else {
                Vec::new()
            },
            ..Default::default()
        }
    }

    fn on_event(&mut self, event: &ObjectEvent) {
        if self.mode != Mode::Poison {
            return;
        }
        let name = serde_json::from_str::<serde_json::Value>(&event.object)
            .ok()
            .and_then(|v| v["metadata"]["name"].as_str().map(str::to_string))
            .unwrap_or_default();
        if name.starts_with("evil") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
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
            Mode::Logflood => {
                let line = "x".repeat(FLOOD_LINE_BYTES);
                for _ in 0..FLOOD_LINES {
                    wasm_scheduler_sdk::log(LogLevel::Info, &line);
                }
            }
            Mode::Stack => {
                std::hint::black_box(recurse(0));
            }
            Mode::Longreason => {
                let reason = format!("hostile reason {}", "y".repeat(10_000));
                out = vec![Status::unschedulable(reason); nodes.len()];
            }
            Mode::Trap | Mode::Undeclared | Mode::Poison => {}
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
            Mode::Loop
            | Mode::Memory
            | Mode::Logflood
            | Mode::Stack
            | Mode::Longreason
            | Mode::Poison => Ok(Vec::new()),
        }
    }
}

export_plugin!(Hostile);
