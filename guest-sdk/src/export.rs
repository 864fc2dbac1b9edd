//! The guest side of the Wasm boundary (WIT 0.3.0): conversions between the generated WIT types
//! and the SDK types, and one dispatch function per export, called by the code `export_plugin!`
//! expands to. Conversions move fields; node indices become the names the host announced
//! (`nodes-added`), so plugins keep seeing `&[String]`, and Filter sends back only the nodes
//! that did not pass.

use crate::__bindings::kube_scheduler::plugin::types as wit;
use crate::Plugin;
use crate::types::*;
use std::cell::RefCell;

/// The node names by index, as the host announced them.
#[derive(Default)]
struct Nodes {
    names: Vec<String>,
}

std::thread_local! {
    // Wasm is single-threaded and calls never re-enter, so a RefCell is enough.
    static NODES: RefCell<Nodes> = RefCell::new(Nodes::default());
    /// The last batch and its names: a cycle passes the same nodes to Filter, PreScore and
    /// Score, and consecutive cycles mostly the same ones, so the names are made once.
    static BATCH: RefCell<(Vec<u32>, Vec<String>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

fn name_of(t: &Nodes, i: u32) -> String {
    match t.names.get(i as usize) {
        Some(n) => n.clone(),
        // The host announces every index before passing it; anything else is a host bug.
        None => panic!("wasm-scheduler-sdk: node index {i} was never announced"),
    }
}

/// Runs `f` with the batch `nodes` and their names.
fn with_batch<R>(nodes: Vec<u32>, f: impl FnOnce(&[u32], &[String]) -> R) -> R {
    BATCH.with_borrow_mut(|(ids, names)| {
        if *ids != nodes {
            *names = NODES.with_borrow(|t| nodes.iter().map(|&i| name_of(t, i)).collect());
            *ids = nodes;
        }
        f(ids, names)
    })
}

fn name(node: u32) -> String {
    NODES.with_borrow(|t| name_of(t, node))
}

pub fn nodes_added(first: u32, added: Vec<String>) {
    NODES.with_borrow_mut(|t| {
        assert_eq!(
            first as usize,
            t.names.len(),
            "wasm-scheduler-sdk: nodes announced out of order"
        );
        t.names.extend(added);
    })
}

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
    let fields = p
        .fields()
        .into_iter()
        .map(|f| wit::FieldSelection {
            resource: kind_out(f.resource),
            paths: f.paths,
        })
        .collect();
    wit::Metadata {
        fields,
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

/// Filter's statuses, sent back for the nodes that did not pass only. A plugin that returns a
/// wrong number of statuses fails every node with an error worded as the host words a broken
/// output, so the host fails the cycle: with only failing nodes on the wire, the host could no
/// longer tell.
pub fn filter<P: Plugin>(p: &mut P, pod: wit::PodRef, nodes: Vec<u32>) -> Vec<wit::NodeStatus> {
    with_batch(nodes, |nodes, names| filtered(p, pod, nodes, names))
}

fn filtered<P: Plugin>(
    p: &mut P,
    pod: wit::PodRef,
    nodes: &[u32],
    names: &[String],
) -> Vec<wit::NodeStatus> {
    let statuses = p.filter(&pod_in(pod), names);
    if statuses.len() != nodes.len() {
        let wrong = Status::error(format!(
            "plugin {}: filter: filter returned {} statuses for {} nodes",
            p.metadata().name,
            statuses.len(),
            nodes.len()
        ));
        return nodes
            .iter()
            .map(|&node| wit::NodeStatus {
                node,
                status: status_out(wrong.clone()),
            })
            .collect();
    }
    nodes
        .iter()
        .copied()
        .zip(statuses)
        .filter(|(_, s)| !s.is_success())
        .map(|(node, s)| wit::NodeStatus {
            node,
            status: status_out(s),
        })
        .collect()
}

pub fn post_filter<P: Plugin>(
    p: &mut P,
    pod: wit::PodRef,
    rejected: Vec<wit::NodeStatus>,
) -> wit::PostFilterResult {
    let rejected: Vec<(String, Status)> = rejected
        .into_iter()
        .map(|ns| (name(ns.node), status_in(ns.status)))
        .collect();
    let r = p.post_filter(&pod_in(pod), &rejected);
    wit::PostFilterResult {
        status: status_out(r.status),
        nominated_node: r.nominated_node,
        intents: intents_out(r.intents),
    }
}

pub fn pre_score<P: Plugin>(p: &mut P, pod: wit::PodRef, nodes: Vec<u32>) -> wit::Status {
    with_batch(nodes, |_, names| {
        status_out(p.pre_score(&pod_in(pod), names))
    })
}

pub fn score<P: Plugin>(
    p: &mut P,
    pod: wit::PodRef,
    nodes: Vec<u32>,
) -> Result<Vec<i64>, wit::Status> {
    with_batch(nodes, |_, names| {
        p.score(&pod_in(pod), names).map_err(status_out)
    })
}

pub fn reserve<P: Plugin>(
    p: &mut P,
    pod: wit::PodRef,
    node: u32,
) -> Result<Vec<wit::PatchIntent>, wit::Status> {
    p.reserve(&pod_in(pod), &name(node))
        .map(intents_out)
        .map_err(status_out)
}

pub fn unreserve<P: Plugin>(p: &mut P, pod: wit::PodRef, node: u32) -> Vec<wit::PatchIntent> {
    intents_out(p.unreserve(&pod_in(pod), &name(node)))
}

pub fn permit<P: Plugin>(p: &mut P, pod: wit::PodRef, node: u32) -> wit::PermitResult {
    let r = p.permit(&pod_in(pod), &name(node));
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
    node: u32,
) -> Result<Vec<wit::PatchIntent>, wit::Status> {
    p.pre_bind(&pod_in(pod), &name(node))
        .map(intents_out)
        .map_err(status_out)
}

pub fn post_bind<P: Plugin>(p: &mut P, pod: wit::PodRef, node: u32) {
    p.post_bind(&pod_in(pod), &name(node))
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

fn intents_out(intents: Vec<PatchIntent>) -> Vec<wit::PatchIntent> {
    intents
        .into_iter()
        .map(|i| wit::PatchIntent {
            target: wit::ObjectRef {
                resource: kind_out(i.target.resource),
                namespace: i.target.namespace,
                name: i.target.name,
                uid: i.target.uid,
            },
            subresource: i.subresource,
            patch_kind: match i.patch_kind {
                PatchKind::Json => wit::PatchKind::Json,
                PatchKind::Merge => wit::PatchKind::Merge,
                PatchKind::StrategicMerge => wit::PatchKind::StrategicMerge,
                PatchKind::Create => wit::PatchKind::Create,
            },
            body: i.body,
        })
        .collect()
}
