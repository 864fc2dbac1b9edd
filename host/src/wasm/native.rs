//! [`NativeSdkPlugin`]: an SDK plugin compiled into the host, behind the same framework trait
//! and the same output checks as its Wasm build. Comparing the two measures the Wasm boundary.

use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use wasm_scheduler_sdk as sdk;

use super::fields::Selection;
use super::limits;
use crate::framework::PluginRef;
use crate::framework::{
    ClusterEvent, CycleState, ExtensionPoint, NodeInfo, ObjectEvent, PatchIntent, PermitResult,
    Plugin, PodInfo, PostFilterResult, PreFilterResult, ResourceKind, Snapshot, Status,
};
use crate::plugins::{FactoryContext, PluginFactory, Registry, RegistryError};

/// An SDK plugin running natively. Calls are serialized by a mutex, as the SDK promises.
///
/// Object events never wait for a running call: they are queued and delivered at once if the
/// plugin is idle, else before its next call, as the Wasm runtime does (see
/// `Instance::push_event`), so both builds see the same events at the same points.
pub struct NativeSdkPlugin<P> {
    name: String,
    metadata: sdk::Metadata,
    /// The fields it reads, applied to its events as for its Wasm build.
    selection: Selection,
    pre_bind_timeout: std::time::Duration,
    inner: Mutex<P>,
    queued: Mutex<Vec<ObjectEvent>>,
}

impl<P: sdk::Plugin> NativeSdkPlugin<P> {
    /// Creates the plugin from its args (`null` means `{}`) and feeds it the current state.
    ///
    /// # Errors
    /// [`RegistryError::InvalidArgs`] with the plugin's own message.
    pub fn new(
        name: &str,
        args: &serde_json::Value,
        ctx: &FactoryContext,
    ) -> Result<Self, RegistryError> {
        let json = args_json(args);
        let mut plugin = P::new(&json).map_err(|message| RegistryError::InvalidArgs {
            plugin: name.to_string(),
            message,
        })?;
        let metadata = plugin.metadata();
        let selection =
            Selection::new(&plugin.fields(), &metadata.subscriptions).map_err(|message| {
                RegistryError::InvalidArgs {
                    plugin: name.to_string(),
                    message,
                }
            })?;
        for event in selection
            .events(&ctx.state.replay(&metadata.subscriptions))
            .iter()
        {
            plugin.on_event(event);
        }
        Ok(NativeSdkPlugin {
            name: name.to_string(),
            metadata,
            selection,
            pre_bind_timeout: pre_bind_timeout(&json),
            inner: Mutex::new(plugin),
            queued: Mutex::new(Vec::new()),
        })
    }

    /// The plugin, locked, with every queued event delivered.
    fn plugin(&self) -> MutexGuard<'_, P> {
        let mut p = self.inner.lock();
        self.deliver_queued(&mut p);
        p
    }

    /// Delivers queued events in order; runs with the plugin locked, so deliveries never
    /// interleave.
    fn deliver_queued(&self, p: &mut P) {
        loop {
            let events = std::mem::take(&mut *self.queued.lock());
            if events.is_empty() {
                return;
            }
            for e in &events {
                p.on_event(e);
            }
        }
    }

    /// A registry factory for `P` under `name`.
    pub fn factory(name: &str) -> PluginFactory {
        let name = name.to_string();
        Arc::new(move |args, ctx| Ok(Arc::new(Self::new(&name, args, ctx)?) as PluginRef))
    }

    fn implements(&self, p: ExtensionPoint) -> bool {
        self.metadata.extension_points.contains(&p)
    }

    fn checked(&self, point: &str, r: Result<(), String>) -> Result<(), Status> {
        r.map_err(|m| {
            let msg = format!("plugin {}: {point}: {m}", self.name);
            tracing::warn!(plugin = %self.name, "{msg}");
            Status::error(msg)
        })
    }
}

/// Whether the plugin's PreFilter returned `Skip` in this cycle. The WIT contract of `skip` is
/// that *later* calls of the plugin are skipped, so an SDK plugin is not asked for PreScore or
/// Score either: a pod it does not apply to costs it nothing, not even a copy of the node names.
/// (Upstream in-tree plugins only get their Filter skipped; the framework keeps that rule.)
pub(crate) fn skipped_pre_filter(state: &CycleState, plugin: &str) -> bool {
    state.skip_filter.contains(plugin)
}

/// `bindingTimeout` of an SDK plugin's args (upstream `DynamicResourcesArgs`), else the
/// upstream default; the plugin's `init` rejects a bad value, so a bad one is never used.
pub(crate) fn pre_bind_timeout(args_json: &str) -> std::time::Duration {
    serde_json::from_str::<serde_json::Value>(args_json)
        .ok()
        .and_then(|v| v.get("bindingTimeout")?.as_str().map(str::to_owned))
        .and_then(|t| crate::config::parse_duration(&t).ok())
        .unwrap_or(crate::framework::DEFAULT_PRE_BIND_TIMEOUT)
}

/// Plugin args as the JSON text the SDK takes: `null` (no pluginConfig) becomes `{}`.
pub(crate) fn args_json(args: &serde_json::Value) -> String {
    if args.is_null() {
        "{}".to_string()
    } else {
        args.to_string()
    }
}

fn names(nodes: &[Arc<NodeInfo>]) -> Vec<String> {
    nodes.iter().map(|n| n.name.clone()).collect()
}

impl<P: sdk::Plugin> Plugin for NativeSdkPlugin<P> {
    fn name(&self) -> &str {
        &self.name
    }

    fn pre_bind_timeout(&self) -> std::time::Duration {
        self.pre_bind_timeout
    }

    fn extension_points(&self) -> Vec<ExtensionPoint> {
        self.metadata
            .extension_points
            .iter()
            .copied()
            .filter(|p| *p != ExtensionPoint::Bind)
            .collect()
    }

    fn requeue_on(&self) -> Vec<ClusterEvent> {
        self.metadata.requeue_on.clone()
    }

    fn subscriptions(&self) -> Vec<ResourceKind> {
        self.metadata.subscriptions.clone()
    }

    fn patchable_kinds(&self) -> Vec<ResourceKind> {
        self.metadata.patches.clone()
    }

    fn on_event(&self, event: &ObjectEvent) {
        if !self.metadata.subscriptions.contains(&event.resource) {
            return;
        }
        let Some(event) = self.selection.event(event.clone()) else {
            return; // nothing it reads changed
        };
        self.queued.lock().push(event);
        if let Some(mut p) = self.inner.try_lock() {
            self.deliver_queued(&mut p);
        }
    }

    fn pre_enqueue(&self, pod: &PodInfo) -> Status {
        self.plugin().pre_enqueue(&pod.key)
    }

    fn pre_filter(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> PreFilterResult {
        self.plugin().pre_filter(&pod.key)
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Vec<Status> {
        let v = self.plugin().filter(&pod.key, &names(nodes));
        match self.checked("filter", limits::statuses("filter", &v, nodes.len())) {
            Ok(()) => v,
            Err(st) => vec![st; nodes.len()],
        }
    }

    fn post_filter(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        rejected: &[(String, Status)],
    ) -> PostFilterResult {
        if !self.implements(ExtensionPoint::PostFilter) {
            return PostFilterResult {
                status: Status::unschedulable("no change"),
                ..Default::default()
            };
        }
        let r = self.plugin().post_filter(&pod.key, rejected);
        match self.checked(
            "post-filter",
            limits::intents("post-filter", &r.intents, &self.metadata.patches),
        ) {
            Ok(()) => r,
            Err(status) => PostFilterResult {
                status,
                ..Default::default()
            },
        }
    }

    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Status {
        if skipped_pre_filter(state, &self.name) {
            return Status::skip();
        }
        self.plugin().pre_score(&pod.key, &names(nodes))
    }

    fn score(
        &self,
        _state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<i64>, Status> {
        let v = self.plugin().score(&pod.key, &names(nodes))?;
        self.checked("score", limits::scores("score", &v, nodes.len()))?;
        Ok(v)
    }

    fn reserve(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> Result<Vec<PatchIntent>, Status> {
        let v = self.plugin().reserve(&pod.key, node)?;
        self.checked(
            "reserve",
            limits::intents("reserve", &v, &self.metadata.patches),
        )?;
        Ok(v)
    }

    fn unreserve(&self, _state: &mut CycleState, pod: &PodInfo, node: &str) -> Vec<PatchIntent> {
        let v = self.plugin().unreserve(&pod.key, node);
        match self.checked(
            "unreserve",
            limits::intents("unreserve", &v, &self.metadata.patches),
        ) {
            Ok(()) => v,
            Err(_) => Vec::new(),
        }
    }

    fn permit(&self, _state: &mut CycleState, pod: &PodInfo, node: &str) -> PermitResult {
        self.plugin().permit(&pod.key, node)
    }

    fn pre_bind(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
    ) -> Result<Vec<PatchIntent>, Status> {
        let v = self.plugin().pre_bind(&pod.key, node)?;
        self.checked(
            "pre-bind",
            limits::intents("pre-bind", &v, &self.metadata.patches),
        )?;
        Ok(v)
    }

    fn post_bind(&self, pod: &PodInfo, node: &str) {
        self.plugin().post_bind(&pod.key, node);
    }
}

/// Registers the SDK plugins shipped with the project, compiled into the host:
/// `DynamicResources` (the DRA plugin), `NodeLabel` and `GangPermit`. A name that is already taken is left alone (e.g. a Wasm build of the same
/// plugin configured under that name wins).
pub fn register_native_sdk_plugins(registry: &mut Registry) {
    sdk::set_native_logger(log_native);
    let plugins: [(&str, PluginFactory); 3] = [
        (
            dra_plugin::NAME,
            NativeSdkPlugin::<dra_plugin::DraPlugin>::factory(dra_plugin::NAME),
        ),
        (
            node_label_plugin::NAME,
            NativeSdkPlugin::<node_label_plugin::NodeLabel>::factory(node_label_plugin::NAME),
        ),
        (
            gang_permit_plugin::NAME,
            NativeSdkPlugin::<gang_permit_plugin::GangPermit>::factory(gang_permit_plugin::NAME),
        ),
    ];
    for (name, factory) in plugins {
        if !registry.contains(name) {
            let _ = registry.register(name, factory);
        }
    }
}

fn log_native(level: sdk::LogLevel, message: &str) {
    match level {
        sdk::LogLevel::Trace => tracing::trace!(target: "sdk_plugin", "{message}"),
        sdk::LogLevel::Debug => tracing::debug!(target: "sdk_plugin", "{message}"),
        sdk::LogLevel::Info => tracing::info!(target: "sdk_plugin", "{message}"),
        sdk::LogLevel::Warn => tracing::warn!(target: "sdk_plugin", "{message}"),
        sdk::LogLevel::Error => tracing::error!(target: "sdk_plugin", "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Framework;
    use crate::plugins::testing::{node, pod};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static PRE_SCORES: AtomicUsize = AtomicUsize::new(0);
    static SCORES: AtomicUsize = AtomicUsize::new(0);

    /// Applies only to pods named `claimed-*`, like DynamicResources to pods with claims.
    struct OnlyClaimed;

    impl sdk::Plugin for OnlyClaimed {
        fn new(_: &str) -> Result<Self, String> {
            Ok(OnlyClaimed)
        }
        fn metadata(&self) -> sdk::Metadata {
            use sdk::ExtensionPoint::*;
            sdk::Metadata {
                name: "OnlyClaimed".into(),
                version: "0.1.0".into(),
                extension_points: vec![PreFilter, Filter, PreScore, Score],
                ..Default::default()
            }
        }
        fn pre_filter(&mut self, pod: &sdk::PodRef) -> sdk::PreFilterResult {
            sdk::PreFilterResult {
                status: if pod.name.starts_with("claimed-") {
                    sdk::Status::success()
                } else {
                    sdk::Status::skip()
                },
                node_names: None,
            }
        }
        fn pre_score(&mut self, _: &sdk::PodRef, _: &[String]) -> sdk::Status {
            PRE_SCORES.fetch_add(1, Ordering::SeqCst);
            sdk::Status::success()
        }
        fn score(&mut self, _: &sdk::PodRef, nodes: &[String]) -> Result<Vec<i64>, sdk::Status> {
            SCORES.fetch_add(1, Ordering::SeqCst);
            Ok(vec![1; nodes.len()])
        }
    }

    fn cycle(f: &Framework, name: &str) {
        let p = pod(&format!(
            "metadata: {{name: {name}, namespace: d, uid: u-{name}}}\nspec: {{containers: [{{name: c}}]}}"
        ));
        let nodes = vec![node("metadata: {name: n1}"), node("metadata: {name: n2}")];
        let snapshot = Snapshot::from_nodes(nodes.clone());
        let mut state = CycleState::default();
        f.run_pre_filter(&mut state, &p, &snapshot).unwrap();
        f.run_filter(&state, &p, &nodes).unwrap();
        f.run_pre_score(&mut state, &p, &nodes).unwrap();
        f.run_score(&state, &p, &nodes).unwrap();
    }

    #[test]
    fn a_pre_filter_skip_spares_the_plugin_pre_score_and_score() {
        use ExtensionPoint::*;
        let ctx = FactoryContext::empty();
        let plugin: PluginRef = Arc::new(
            NativeSdkPlugin::<OnlyClaimed>::new("OnlyClaimed", &serde_json::Value::Null, &ctx)
                .unwrap(),
        );
        let points = [PreFilter, Filter, PreScore, Score]
            .into_iter()
            .map(|p| (p, vec![(plugin.clone(), 1)]))
            .collect();
        let f = Framework::new("test", &points, None);
        cycle(&f, "plain");
        assert_eq!(
            PRE_SCORES.load(Ordering::SeqCst),
            0,
            "skipped pod reached PreScore"
        );
        assert_eq!(
            SCORES.load(Ordering::SeqCst),
            0,
            "skipped pod reached Score"
        );
        cycle(&f, "claimed-1");
        assert_eq!(PRE_SCORES.load(Ordering::SeqCst), 1);
        assert_eq!(SCORES.load(Ordering::SeqCst), 1);
    }
}
