//! A plugin built against the frozen `kube-scheduler:plugin@0.2.0` with raw `wit-bindgen`, as a
//! component built before 0.3.0 would be: no field selection in its metadata. Nodes come as
//! indices named through `nodes-added`; it filters out the nodes whose name is the plugin's
//! args (a JSON string) and returns only those.

/// Filter's reason for the avoided node.
pub const REASON_AVOIDED: &str = "node is avoided by LegacyAvoid";

#[cfg(target_arch = "wasm32")]
mod component {
    use std::cell::RefCell;

    use exports::kube_scheduler::plugin::plugin_api::Guest;
    use kube_scheduler::plugin::types::*;

    wit_bindgen::generate!({
        path: "../../../wit/frozen/0.2.0/plugin.wit",
        world: "plugin",
    });

    #[derive(Default)]
    struct State {
        avoid: String,
        names: Vec<String>,
    }

    std::thread_local! {
        static STATE: RefCell<State> = RefCell::new(State::default());
    }

    fn ok() -> Status {
        Status {
            code: Code::Success,
            reasons: vec![],
        }
    }

    struct LegacyAvoid;

    impl Guest for LegacyAvoid {
        fn init(args: String) -> Result<(), String> {
            // `"node-3"`: the args are one JSON string, read without a JSON library.
            let avoid = args.trim().trim_matches('"').to_string();
            STATE.with_borrow_mut(|s| s.avoid = avoid);
            Ok(())
        }
        fn metadata() -> Metadata {
            Metadata {
                name: "LegacyAvoid".into(),
                version: "0.2.0".into(),
                extension_points: vec![ExtensionPoint::Filter],
                subscriptions: vec![],
                patches: vec![],
                requeue_on: vec![],
            }
        }
        fn on_event(_events: Vec<ObjectEvent>) {}
        fn health() -> Status {
            ok()
        }
        fn nodes_added(_first: NodeIndex, names: Vec<String>) {
            STATE.with_borrow_mut(|s| s.names.extend(names));
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
        fn filter(_pod: PodRef, nodes: Vec<NodeIndex>) -> Vec<NodeStatus> {
            STATE.with_borrow(|s| {
                nodes
                    .into_iter()
                    .filter(|&i| s.names.get(i as usize) == Some(&s.avoid))
                    .map(|node| NodeStatus {
                        node,
                        status: Status {
                            code: Code::UnschedulableAndUnresolvable,
                            reasons: vec![super::REASON_AVOIDED.to_string()],
                        },
                    })
                    .collect()
            })
        }
        fn post_filter(_pod: PodRef, _rejected: Vec<NodeStatus>) -> PostFilterResult {
            PostFilterResult {
                status: Status {
                    code: Code::Unschedulable,
                    reasons: vec!["no change".into()],
                },
                nominated_node: None,
                intents: vec![],
            }
        }
        fn pre_score(_pod: PodRef, _nodes: Vec<NodeIndex>) -> Status {
            ok()
        }
        fn score(_pod: PodRef, nodes: Vec<NodeIndex>) -> Result<Vec<i64>, Status> {
            Ok(vec![0; nodes.len()])
        }
        fn reserve(_pod: PodRef, _node: NodeIndex) -> Result<Vec<PatchIntent>, Status> {
            Ok(vec![])
        }
        fn unreserve(_pod: PodRef, _node: NodeIndex) -> Vec<PatchIntent> {
            vec![]
        }
        fn permit(_pod: PodRef, _node: NodeIndex) -> PermitResult {
            PermitResult {
                status: ok(),
                timeout_ms: 0,
                allow: vec![],
                reject: vec![],
            }
        }
        fn pre_bind(_pod: PodRef, _node: NodeIndex) -> Result<Vec<PatchIntent>, Status> {
            Ok(vec![])
        }
        fn post_bind(_pod: PodRef, _node: NodeIndex) {}
    }

    export!(LegacyAvoid);
}
