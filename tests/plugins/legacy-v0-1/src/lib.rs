//! A plugin built against the frozen `kube-scheduler:plugin@0.1.0` with raw `wit-bindgen`, as a
//! component built before 0.2.0 would be: nodes by name, one status per node. It filters out
//! the nodes of the zone `avoid` (args) and scores the zone `prefer` 100.

/// Filter's reason for a node of the avoided zone.
pub const REASON_AVOIDED: &str = "node is in the avoided zone";
/// Filter's reason for a node it has not been told about.
pub const REASON_UNKNOWN: &str = "node is unknown to LegacyZone";

#[cfg(target_arch = "wasm32")]
mod component {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use exports::kube_scheduler::plugin::plugin_api::Guest;
    use kube_scheduler::plugin::types::*;

    wit_bindgen::generate!({
        path: "../../../wit/frozen/0.1.0/plugin.wit",
        world: "plugin",
    });

    #[derive(Default)]
    struct State {
        avoid: String,
        prefer: String,
        zones: HashMap<String, String>,
    }

    std::thread_local! {
        static STATE: RefCell<State> = RefCell::new(State::default());
    }

    fn status(code: Code, reason: &str) -> Status {
        Status {
            code,
            reasons: if reason.is_empty() {
                vec![]
            } else {
                vec![reason.to_string()]
            },
        }
    }

    fn ok() -> Status {
        status(Code::Success, "")
    }

    struct LegacyZone;

    impl Guest for LegacyZone {
        fn init(args: String) -> Result<(), String> {
            let v: serde_json::Value = serde_json::from_str(&args).map_err(|e| e.to_string())?;
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            STATE.with_borrow_mut(|s| {
                s.avoid = field("avoid");
                s.prefer = field("prefer");
            });
            Ok(())
        }
        fn metadata() -> Metadata {
            Metadata {
                name: "LegacyZone".into(),
                version: "0.1.0".into(),
                extension_points: vec![ExtensionPoint::Filter, ExtensionPoint::Score],
                subscriptions: vec![ResourceKind {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                }],
                patches: vec![],
                requeue_on: vec![],
            }
        }
        fn on_event(events: Vec<ObjectEvent>) {
            STATE.with_borrow_mut(|s| {
                for e in events {
                    let v: serde_json::Value = serde_json::from_str(&e.object).unwrap_or_default();
                    let name = v["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    match e.action {
                        EventAction::Deleted => {
                            s.zones.remove(&name);
                        }
                        _ => {
                            let zone = v["metadata"]["labels"]["zone"].as_str().unwrap_or_default();
                            s.zones.insert(name, zone.to_string());
                        }
                    }
                }
            })
        }
        fn health() -> Status {
            ok()
        }
        fn pre_enqueue(_pod: PodRef) -> Status {
            ok()
        }
        fn pre_filter(_pod: PodRef) -> PreFilterResult {
            PreFilterResult {
                status: ok(),
                node_names: None,
            }
        }
        fn filter(_pod: PodRef, nodes: Vec<String>) -> Vec<Status> {
            STATE.with_borrow(|s| {
                nodes
                    .iter()
                    .map(|n| match s.zones.get(n) {
                        None => status(Code::Unschedulable, super::REASON_UNKNOWN),
                        Some(z) if *z == s.avoid => {
                            status(Code::UnschedulableAndUnresolvable, super::REASON_AVOIDED)
                        }
                        Some(_) => ok(),
                    })
                    .collect()
            })
        }
        fn post_filter(_pod: PodRef, _rejected: Vec<(String, Status)>) -> PostFilterResult {
            PostFilterResult {
                status: status(Code::Unschedulable, "no change"),
                nominated_node: None,
                intents: vec![],
            }
        }
        fn pre_score(_pod: PodRef, _nodes: Vec<String>) -> Status {
            ok()
        }
        fn score(_pod: PodRef, nodes: Vec<String>) -> Result<Vec<i64>, Status> {
            Ok(STATE.with_borrow(|s| {
                nodes
                    .iter()
                    .map(|n| {
                        if s.zones.get(n) == Some(&s.prefer) {
                            100
                        } else {
                            0
                        }
                    })
                    .collect()
            }))
        }
        fn reserve(_pod: PodRef, _node: String) -> Result<Vec<PatchIntent>, Status> {
            Ok(vec![])
        }
        fn unreserve(_pod: PodRef, _node: String) -> Vec<PatchIntent> {
            vec![]
        }
        fn permit(_pod: PodRef, _node: String) -> PermitResult {
            PermitResult {
                status: ok(),
                timeout_ms: 0,
                allow: vec![],
                reject: vec![],
            }
        }
        fn pre_bind(_pod: PodRef, _node: String) -> Result<Vec<PatchIntent>, Status> {
            Ok(vec![])
        }
        fn post_bind(_pod: PodRef, _node: String) {}
    }

    export!(LegacyZone);
}
