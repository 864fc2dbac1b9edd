//! Conversions between the generated WIT types and the SDK types the framework speaks. They
//! move fields; the only copies are of the host values a call borrows (pod reference).

use wasm_scheduler_sdk as sdk;

use super::bindings::wit;

pub fn pod_ref(p: &sdk::PodRef) -> wit::PodRef {
    wit::PodRef {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        uid: p.uid.clone(),
    }
}

pub fn status(s: wit::Status) -> sdk::Status {
    sdk::Status {
        code: code(s.code),
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

fn code(c: wit::Code) -> sdk::Code {
    match c {
        wit::Code::Success => sdk::Code::Success,
        wit::Code::Error => sdk::Code::Error,
        wit::Code::Unschedulable => sdk::Code::Unschedulable,
        wit::Code::UnschedulableAndUnresolvable => sdk::Code::UnschedulableAndUnresolvable,
        wit::Code::Wait => sdk::Code::Wait,
        wit::Code::Skip => sdk::Code::Skip,
        wit::Code::Pending => sdk::Code::Pending,
    }
}

fn kind(k: wit::ResourceKind) -> sdk::ResourceKind {
    sdk::ResourceKind {
        api_version: k.api_version,
        kind: k.kind,
    }
}

pub fn kind_out(k: &sdk::ResourceKind) -> wit::ResourceKind {
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
            patch_kind: match i.patch_kind {
                wit::PatchKind::Json => sdk::PatchKind::Json,
                wit::PatchKind::Merge => sdk::PatchKind::Merge,
                wit::PatchKind::StrategicMerge => sdk::PatchKind::StrategicMerge,
            },
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
