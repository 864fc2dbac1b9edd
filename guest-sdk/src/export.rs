//! The guest side of the Wasm boundary: conversions between the generated WIT types and the SDK
//! types, and one dispatch function per export, called by the code `export_plugin!` expands to.
//! Conversions move fields (no copies of strings or lists).

use crate::__bindings::kube_scheduler::plugin::types as wit;
use crate::Plugin;
use crate::types::*;

/// Routes panic messages to the host log (plugins have no stderr), so the trap the host
/// reports carries the message.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        crate::log(LogLevel::Error, &format!("panic: {info}"));
    }));
}

/// The instance, or a trap with a clear message if the host called before `init`.
pub fn expect_init<P>(p: Option<&mut P>) -> &mut P {
    p.expect("wasm-scheduler-sdk: plugin called before init")
}

pub fn metadata<P: Plugin>(p: &mut P) -> wit::Metadata {
    let m = p.metadata();
    wit::Metadata {
        name: m.name,
        version: m.version,
        extension_points: m.extension_points.into_iter().map(point_out).collect(),
        subscriptions: m.subscriptions.into_iter().map(kind_out).collect(),
        patches: m.patches.into_iter().map(kind_out).collect(),
        requeue_on: m
            .requeue_on
            .into_iter()
            .map(|e| wit::ClusterEvent {
                resource: kind_out(e.resource),
                actions: e.actions.into_iter().map(action_out).collect(),
            })
            .collect(),
    }
}

pub fn on_event<P: Plugin>(p: &mut P, events: Vec<wit::ObjectEvent>) {
    for e in events {
        let event = ObjectEvent {
            action: action_in(e.action),
            resource: kind_in(e.resource),
            object: e.object,
        };
        p.on_event(&event);
    }
}

pub fn health<P: Plugin>(p: &mut P) -> wit::Status {
    status_out(p.health())
}

pub fn pre_enqueue<P: Plugin>(p: &mut P, pod: wit::PodRef) -> wit::Status {
    status_out(p.pre_enqueue(&pod_in(pod)))
}

pub fn pre_filter<P: Plugin>(p: &mut P, pod: wit::PodRef) -> wit::PreFilterResult {
    let r = p.pre_filter(&pod_in(pod));
    wit::PreFilterResult {
        status: status_out(r.status),
        node_names: r.node_names,
    }
}

pub fn filter<P: Plugin>(p: &mut P, pod: wit::PodRef, nodes: Vec<String>) -> Vec<wit::Status> {
    p.filter(&pod_in(pod), &nodes)
        .into_iter()
        .map(status_out)
        .collect()
}

pub fn post_filter<P: Plugin>(
    p: &mut P,
    pod: wit::PodRef,
    rejected: Vec<(String, wit::Status)>,
) -> wit::PostFilterResult {
    let rejected: Vec<(String, Status)> = rejected
        .into_iter()
        .map(|(n, s)| (n, status_in(s)))
        .collect();
    let r = p.post_filter(&pod_in(pod), &rejected);
    match intents_out(r.intents) {
        Ok(intents) => wit::PostFilterResult {
            status: status_out(r.status),
            nominated_node: r.nominated_node,
            intents,
        },
        Err(status) => wit::PostFilterResult {
            status,
            nominated_node: None,
            intents: Vec::new(),
        },
    }
}

pub fn pre_score<P: Plugin>(p: &mut P, pod: wit::PodRef, nodes: Vec<String>) -> wit::Status {
    status_out(p.pre_score(&pod_in(pod), &nodes))
}

pub fn score<P: Plugin>(
    p: &mut P,
    pod: wit::PodRef,
    nodes: Vec<String>,
) -> Result<Vec<i64>, wit::Status> {
    p.score(&pod_in(pod), &nodes).map_err(status_out)
}

pub fn reserve<P: Plugin>(
    p: &mut P,
    pod: wit::PodRef,
    node: String,
) -> Result<Vec<wit::PatchIntent>, wit::Status> {
    p.reserve(&pod_in(pod), &node)
        .map_err(status_out)
        .and_then(intents_out)
}

pub fn unreserve<P: Plugin>(p: &mut P, pod: wit::PodRef, node: String) -> Vec<wit::PatchIntent> {
    // Unreserve has no status to fail with: creates are dropped (they cannot be compensations).
    let intents = p.unreserve(&pod_in(pod), &node);
    let patches = intents
        .into_iter()
        .filter(|i| i.patch_kind != PatchKind::Create);
    intents_out(patches.collect()).unwrap_or_default()
}

pub fn permit<P: Plugin>(p: &mut P, pod: wit::PodRef, node: String) -> wit::PermitResult {
    let r = p.permit(&pod_in(pod), &node);
    wit::PermitResult {
        status: status_out(r.status),
        timeout_ms: r.timeout_ms,
        allow: r.allow,
        reject: r.reject,
    }
}

pub fn pre_bind<P: Plugin>(
    p: &mut P,
    pod: wit::PodRef,
    node: String,
) -> Result<Vec<wit::PatchIntent>, wit::Status> {
    p.pre_bind(&pod_in(pod), &node)
        .map_err(status_out)
        .and_then(intents_out)
}

pub fn post_bind<P: Plugin>(p: &mut P, pod: wit::PodRef, node: String) {
    p.post_bind(&pod_in(pod), &node)
}

fn pod_in(p: wit::PodRef) -> PodRef {
    PodRef {
        namespace: p.namespace,
        name: p.name,
        uid: p.uid,
    }
}

fn status_in(s: wit::Status) -> Status {
    let code = match s.code {
        wit::Code::Success => Code::Success,
        wit::Code::Error => Code::Error,
        wit::Code::Unschedulable => Code::Unschedulable,
        wit::Code::UnschedulableAndUnresolvable => Code::UnschedulableAndUnresolvable,
        wit::Code::Wait => Code::Wait,
        wit::Code::Skip => Code::Skip,
        wit::Code::Pending => Code::Pending,
    };
    Status {
        code,
        reasons: s.reasons,
    }
}

fn status_out(s: Status) -> wit::Status {
    let code = match s.code {
        Code::Success => wit::Code::Success,
        Code::Error => wit::Code::Error,
        Code::Unschedulable => wit::Code::Unschedulable,
        Code::UnschedulableAndUnresolvable => wit::Code::UnschedulableAndUnresolvable,
        Code::Wait => wit::Code::Wait,
        Code::Skip => wit::Code::Skip,
        Code::Pending => wit::Code::Pending,
    };
    wit::Status {
        code,
        reasons: s.reasons,
    }
}

fn kind_in(k: wit::ResourceKind) -> ResourceKind {
    ResourceKind {
        api_version: k.api_version,
        kind: k.kind,
    }
}

fn kind_out(k: ResourceKind) -> wit::ResourceKind {
    wit::ResourceKind {
        api_version: k.api_version,
        kind: k.kind,
    }
}

fn action_in(a: wit::EventAction) -> EventAction {
    match a {
        wit::EventAction::Added => EventAction::Added,
        wit::EventAction::Modified => EventAction::Modified,
        wit::EventAction::Deleted => EventAction::Deleted,
    }
}

fn action_out(a: EventAction) -> wit::EventAction {
    match a {
        EventAction::Added => wit::EventAction::Added,
        EventAction::Modified => wit::EventAction::Modified,
        EventAction::Deleted => wit::EventAction::Deleted,
    }
}

fn point_out(p: ExtensionPoint) -> wit::ExtensionPoint {
    match p {
        ExtensionPoint::PreEnqueue => wit::ExtensionPoint::PreEnqueue,
        ExtensionPoint::PreFilter => wit::ExtensionPoint::PreFilter,
        ExtensionPoint::Filter => wit::ExtensionPoint::Filter,
        ExtensionPoint::PostFilter => wit::ExtensionPoint::PostFilter,
        ExtensionPoint::PreScore => wit::ExtensionPoint::PreScore,
        ExtensionPoint::Score => wit::ExtensionPoint::Score,
        ExtensionPoint::Reserve => wit::ExtensionPoint::Reserve,
        ExtensionPoint::Permit => wit::ExtensionPoint::Permit,
        ExtensionPoint::PreBind => wit::ExtensionPoint::PreBind,
        ExtensionPoint::Bind => wit::ExtensionPoint::Bind,
        ExtensionPoint::PostBind => wit::ExtensionPoint::PostBind,
    }
}

/// WIT 0.1.0 has no create intent: a plugin that returns one through it gets this error.
const CREATE_NEEDS_WIT_0_2: &str = "create intents need WIT 0.2.0";

fn intents_out(intents: Vec<PatchIntent>) -> Result<Vec<wit::PatchIntent>, wit::Status> {
    intents
        .into_iter()
        .map(|i| {
            let patch_kind = match i.patch_kind {
                PatchKind::Json => wit::PatchKind::Json,
                PatchKind::Merge => wit::PatchKind::Merge,
                PatchKind::StrategicMerge => wit::PatchKind::StrategicMerge,
                PatchKind::Create => return Err(status_out(Status::error(CREATE_NEEDS_WIT_0_2))),
            };
            Ok(wit::PatchIntent {
                target: wit::ObjectRef {
                    resource: kind_out(i.target.resource),
                    namespace: i.target.namespace,
                    name: i.target.name,
                    uid: i.target.uid,
                },
                subresource: i.subresource,
                patch_kind,
                body: i.body,
            })
        })
        .collect()
}
