//! Conversions between the generated WIT types of each served version and the SDK types the
//! framework speaks. The records all versions share have the same shape, so one macro writes
//! their conversions for each version's module, another what 0.2.0 and later share (how nodes
//! are passed, the `create` intent); what is left (field selection) is written per version.

use std::sync::Arc;

use wasm_scheduler_sdk as sdk;

use super::node_index;
use crate::framework::NodeInfo;

/// The conversions of the records every version shares, for the bindings module `$v`.
macro_rules! shared {
    ($v:ident) => {
        use crate::wasm::bindings::$v::wit;

        pub fn pod_ref(p: &sdk::PodRef) -> wit::PodRef {
            wit::PodRef {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                uid: p.uid.clone(),
            }
        }

        pub fn status(s: wit::Status) -> sdk::Status {
            let code = match s.code {
                wit::Code::Success => sdk::Code::Success,
                wit::Code::Error => sdk::Code::Error,
                wit::Code::Unschedulable => sdk::Code::Unschedulable,
                wit::Code::UnschedulableAndUnresolvable => sdk::Code::UnschedulableAndUnresolvable,
                wit::Code::Wait => sdk::Code::Wait,
                wit::Code::Skip => sdk::Code::Skip,
                wit::Code::Pending => sdk::Code::Pending,
            };
            sdk::Status {
                code,
                reasons: s.reasons,
            }
        }

        pub fn status_out(s: &sdk::Status) -> wit::Status {
            let code = match s.code {
                sdk::Code::Success => wit::Code::Success,
                sdk::Code::Error => wit::Code::Error,
                sdk::Code::Unschedulable => wit::Code::Unschedulable,
                sdk::Code::UnschedulableAndUnresolvable => wit::Code::UnschedulableAndUnresolvable,
                sdk::Code::Wait => wit::Code::Wait,
                sdk::Code::Skip => wit::Code::Skip,
                sdk::Code::Pending => wit::Code::Pending,
            };
            wit::Status {
                code,
                reasons: s.reasons.clone(),
            }
        }

        fn kind(k: wit::ResourceKind) -> sdk::ResourceKind {
            sdk::ResourceKind {
                api_version: k.api_version,
                kind: k.kind,
            }
        }

        fn kind_out(k: &sdk::ResourceKind) -> wit::ResourceKind {
            wit::ResourceKind {
                api_version: k.api_version.clone(),
                kind: k.kind.clone(),
            }
        }

        fn action(a: wit::EventAction) -> sdk::EventAction {
            match a {
                wit::EventAction::Added => sdk::EventAction::Added,
                wit::EventAction::Modified => sdk::EventAction::Modified,
                wit::EventAction::Deleted => sdk::EventAction::Deleted,
            }
        }

        pub fn event_out(e: &sdk::ObjectEvent) -> wit::ObjectEvent {
            let action = match e.action {
                sdk::EventAction::Added => wit::EventAction::Added,
                sdk::EventAction::Modified => wit::EventAction::Modified,
                sdk::EventAction::Deleted => wit::EventAction::Deleted,
            };
            wit::ObjectEvent {
                action,
                resource: kind_out(&e.resource),
                object: e.object.clone(),
            }
        }

        fn point(p: wit::ExtensionPoint) -> sdk::ExtensionPoint {
            match p {
                wit::ExtensionPoint::PreEnqueue => sdk::ExtensionPoint::PreEnqueue,
                wit::ExtensionPoint::PreFilter => sdk::ExtensionPoint::PreFilter,
                wit::ExtensionPoint::Filter => sdk::ExtensionPoint::Filter,
                wit::ExtensionPoint::PostFilter => sdk::ExtensionPoint::PostFilter,
                wit::ExtensionPoint::PreScore => sdk::ExtensionPoint::PreScore,
                wit::ExtensionPoint::Score => sdk::ExtensionPoint::Score,
                wit::ExtensionPoint::Reserve => sdk::ExtensionPoint::Reserve,
                wit::ExtensionPoint::Permit => sdk::ExtensionPoint::Permit,
                wit::ExtensionPoint::PreBind => sdk::ExtensionPoint::PreBind,
                wit::ExtensionPoint::Bind => sdk::ExtensionPoint::Bind,
                wit::ExtensionPoint::PostBind => sdk::ExtensionPoint::PostBind,
            }
        }

        pub fn metadata(m: wit::Metadata) -> sdk::Metadata {
            sdk::Metadata {
                name: m.name,
                version: m.version,
                extension_points: m.extension_points.into_iter().map(point).collect(),
                subscriptions: m.subscriptions.into_iter().map(kind).collect(),
                patches: m.patches.into_iter().map(kind).collect(),
                requeue_on: m
                    .requeue_on
                    .into_iter()
                    .map(|e| sdk::ClusterEvent {
                        resource: kind(e.resource),
                        actions: e.actions.into_iter().map(action).collect(),
                    })
                    .collect(),
            }
        }

        pub fn intents(v: Vec<wit::PatchIntent>) -> Vec<sdk::PatchIntent> {
            v.into_iter()
                .map(|i| sdk::PatchIntent {
                    target: sdk::ObjectRef {
                        resource: kind(i.target.resource),
                        namespace: i.target.namespace,
                        name: i.target.name,
                        uid: i.target.uid,
                    },
                    subresource: i.subresource,
                    patch_kind: patch_kind(i.patch_kind),
                    body: i.body,
                })
                .collect()
        }

        pub fn pre_filter(r: wit::PreFilterResult) -> sdk::PreFilterResult {
            sdk::PreFilterResult {
                status: status(r.status),
                node_names: r.node_names,
            }
        }

        pub fn post_filter(r: wit::PostFilterResult) -> sdk::PostFilterResult {
            sdk::PostFilterResult {
                status: status(r.status),
                nominated_node: r.nominated_node,
                intents: intents(r.intents),
            }
        }

        pub fn permit(r: wit::PermitResult) -> sdk::PermitResult {
            sdk::PermitResult {
                status: status(r.status),
                timeout_ms: r.timeout_ms,
                allow: r.allow,
                reject: r.reject,
            }
        }
    };
}

/// 0.1.0: nodes by name, one status per node.
pub mod v0_1 {
    use super::*;

    shared!(v0_1);

    fn patch_kind(k: wit::PatchKind) -> sdk::PatchKind {
        match k {
            wit::PatchKind::Json => sdk::PatchKind::Json,
            wit::PatchKind::Merge => sdk::PatchKind::Merge,
            wit::PatchKind::StrategicMerge => sdk::PatchKind::StrategicMerge,
        }
    }

    pub fn nodes(nodes: &[Arc<NodeInfo>]) -> Vec<String> {
        nodes.iter().map(|n| n.name.clone()).collect()
    }

    pub fn node(name: &str) -> &str {
        name
    }

    pub fn rejected(rejected: &[(String, sdk::Status)]) -> Vec<(String, wit::Status)> {
        rejected
            .iter()
            .map(|(n, s)| (n.clone(), status_out(s)))
            .collect()
    }

    /// One status per node in batch order; a wrong count is the caller's to reject.
    pub fn filtered(v: Vec<wit::Status>, _batch: &[String]) -> Result<Vec<sdk::Status>, String> {
        Ok(v.into_iter().map(status).collect())
    }

    /// The plugin's metadata; 0.1.0 has no field selection.
    pub fn described(m: wit::Metadata) -> (sdk::Metadata, Vec<sdk::FieldSelection>) {
        (metadata(m), Vec::new())
    }
}

/// What the versions since 0.2.0 share: nodes by index, only the statuses of nodes that did
/// not pass, `create` intents.
macro_rules! indexed {
    () => {
        fn patch_kind(k: wit::PatchKind) -> sdk::PatchKind {
            match k {
                wit::PatchKind::Json => sdk::PatchKind::Json,
                wit::PatchKind::Merge => sdk::PatchKind::Merge,
                wit::PatchKind::StrategicMerge => sdk::PatchKind::StrategicMerge,
                wit::PatchKind::Create => sdk::PatchKind::Create,
            }
        }

        pub fn nodes(nodes: &[Arc<NodeInfo>]) -> Vec<u32> {
            nodes
                .iter()
                .map(|n| *n.wasm_index.get_or_init(|| node_index::index(&n.name)))
                .collect()
        }

        pub fn node(name: &str) -> u32 {
            node_index::index(name)
        }

        pub fn rejected(rejected: &[(String, sdk::Status)]) -> Vec<wit::NodeStatus> {
            let nodes = node_index::indices(rejected.iter().map(|(n, _)| n.as_str()));
            nodes
                .into_iter()
                .zip(rejected)
                .map(|(node, (_, s))| wit::NodeStatus {
                    node,
                    status: status_out(s),
                })
                .collect()
        }

        /// The full status list of a batch from the failing nodes the guest returned; every other
        /// node passed. A node outside the batch, listed twice, or with a success status is a
        /// broken answer.
        pub fn filtered(
            failing: Vec<wit::NodeStatus>,
            batch: &[u32],
        ) -> Result<Vec<sdk::Status>, String> {
            let mut out = vec![sdk::Status::success(); batch.len()];
            let mut seen = vec![false; batch.len()];
            // The SDK answers in batch order, so a cursor finds each node without a map.
            let mut cursor = 0;
            let mut by_index: Option<std::collections::HashMap<u32, usize>> = None;
            for ns in failing {
                let pos = if batch.get(cursor) == Some(&ns.node) {
                    Some(cursor)
                } else if let Some(p) = batch[cursor.min(batch.len())..]
                    .iter()
                    .position(|&n| n == ns.node)
                {
                    Some(cursor + p)
                } else {
                    by_index
                        .get_or_insert_with(|| {
                            batch.iter().enumerate().map(|(i, &n)| (n, i)).collect()
                        })
                        .get(&ns.node)
                        .copied()
                };
                let Some(pos) = pos else {
                    return Err(format!(
                        "returned node index {} that is not in the batch",
                        ns.node
                    ));
                };
                if std::mem::replace(&mut seen[pos], true) {
                    return Err(format!("returned node index {} twice", ns.node));
                }
                let st = status(ns.status);
                if st.is_success() {
                    return Err(format!("returned node index {} with code success", ns.node));
                }
                out[pos] = st;
                cursor = pos + 1;
            }
            Ok(out)
        }
    };
}

/// 0.2.0: nodes by index, only the statuses of nodes that did not pass.
pub mod v0_2 {
    use super::*;

    shared!(v0_2);
    indexed!();

    /// The plugin's metadata; 0.2.0 has no field selection.
    pub fn described(m: wit::Metadata) -> (sdk::Metadata, Vec<sdk::FieldSelection>) {
        (metadata(m), Vec::new())
    }
}

/// 0.3.0: as 0.2.0, with field selection.
pub mod v0_3 {
    use super::*;

    shared!(v0_3);
    indexed!();

    /// The plugin's metadata and its field selections.
    pub fn described(mut m: wit::Metadata) -> (sdk::Metadata, Vec<sdk::FieldSelection>) {
        let fields = std::mem::take(&mut m.fields)
            .into_iter()
            .map(|f| sdk::FieldSelection {
                resource: kind(f.resource),
                paths: f.paths,
            })
            .collect();
        (metadata(m), fields)
    }
}

#[cfg(test)]
mod tests {
    use super::v0_3::*;
    use crate::wasm::bindings::v0_3::wit;

    fn failing(node: u32) -> wit::NodeStatus {
        wit::NodeStatus {
            node,
            status: wit::Status {
                code: wit::Code::Unschedulable,
                reasons: vec![format!("no {node}")],
            },
        }
    }

    #[test]
    fn failing_nodes_expand_to_a_status_per_node_in_any_order() {
        let batch = [7, 3, 9, 4];
        let v = filtered(vec![failing(3), failing(4)], &batch).unwrap();
        let codes: Vec<bool> = v.iter().map(|s| s.is_success()).collect();
        assert_eq!(codes, [true, false, true, false]);
        assert_eq!(v[1].reasons, ["no 3"]);
        let v = filtered(vec![failing(4), failing(7)], &batch).unwrap();
        assert_eq!(v[0].reasons, ["no 7"]);
        assert_eq!(v[3].reasons, ["no 4"]);
        assert!(
            filtered(Vec::new(), &batch)
                .unwrap()
                .iter()
                .all(|s| s.is_success())
        );
    }

    #[test]
    fn broken_failing_lists_are_rejected() {
        let batch = [1, 2];
        assert!(
            filtered(vec![failing(5)], &batch)
                .unwrap_err()
                .contains("not in the batch")
        );
        assert!(
            filtered(vec![failing(2), failing(2)], &batch)
                .unwrap_err()
                .contains("twice")
        );
        let ok = wit::NodeStatus {
            node: 1,
            status: wit::Status {
                code: wit::Code::Success,
                reasons: vec![],
            },
        };
        assert!(filtered(vec![ok], &batch).unwrap_err().contains("success"));
    }
}
