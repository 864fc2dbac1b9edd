//! The registry: plugin name → factory. Built-in and Wasm plugins meet here; the configuration
//! enables plugins by these names.
//!
//! [`Registry::with_builtins`] holds the native plugins. The Wasm runtime adds its plugins with
//! [`Registry::register`] (a new name) or [`Registry::replace`] (a `wasmPlugins` entry named
//! like a built-in replaces the built-in, on purpose). A duplicate [`Registry::register`] is an
//! error, as upstream (`frameworkruntime.Registry.Register`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use thiserror::Error;

use super::{
    balanced_allocation, default_binder, default_preemption, image_locality, inter_pod_affinity,
    node_affinity, node_name, node_ports, node_resources_fit, node_unschedulable,
    pod_topology_spread, scheduling_gates, taint_toleration, volume_binding,
};
use crate::framework::{ObjectEvent, PluginRef, ResourceKind, StateReplay};

/// Creates a plugin instance from its `pluginConfig` args (`null` when none are configured).
pub type PluginFactory = Arc<
    dyn Fn(&serde_json::Value, &FactoryContext) -> Result<PluginRef, RegistryError> + Send + Sync,
>;

/// What a factory may use to build a plugin.
#[derive(Clone)]
pub struct FactoryContext {
    /// The cluster client, if there is one (plugins themselves never do I/O; bind plugins get
    /// the client through `BindContext`).
    pub client: Option<kube::Client>,
    /// The cache's current objects, to feed a new plugin instance before it serves.
    pub state: Arc<dyn StateReplay>,
}

impl FactoryContext {
    /// A context with no client and an empty cluster state (tests, config validation).
    pub fn empty() -> Self {
        FactoryContext {
            client: None,
            state: Arc::new(EmptyState),
        }
    }
}

impl fmt::Debug for FactoryContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FactoryContext")
            .field("client", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

/// A cluster with no objects.
struct EmptyState;

impl StateReplay for EmptyState {
    fn replay(&self, _kinds: &[ResourceKind]) -> Vec<ObjectEvent> {
        Vec::new()
    }
}

/// Errors of the registry and of plugin factories.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// [`Registry::register`] was called twice with one name.
    #[error("a plugin named {0:?} is already registered")]
    Duplicate(String),
    /// The plugin's `pluginConfig` args are wrong.
    #[error("plugin {plugin:?}: invalid args: {message}")]
    InvalidArgs {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        message: String,
    },
    /// The plugin could not be created for another reason (e.g. a Wasm module failed to load).
    #[error("plugin {plugin:?}: {message}")]
    Create {
        /// The plugin.
        plugin: String,
        /// What went wrong.
        message: String,
    },
}

/// Plugin factories by name.
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, PluginFactory>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The native plugins: SchedulingGates, NodeUnschedulable, NodeName, NodePorts,
    /// TaintToleration, NodeAffinity, NodeResourcesFit, VolumeBinding, PodTopologySpread,
    /// InterPodAffinity, NodeResourcesBalancedAllocation, ImageLocality, DefaultPreemption and
    /// DefaultBinder.
    pub fn with_builtins() -> Self {
        let mut r = Registry::new();
        let builtins: [(&str, PluginFactory); 14] = [
            (
                scheduling_gates::NAME,
                Arc::new(|args, _| scheduling_gates::SchedulingGates::new(args).map(to_ref)),
            ),
            (
                node_unschedulable::NAME,
                Arc::new(|args, _| node_unschedulable::NodeUnschedulable::new(args).map(to_ref)),
            ),
            (
                node_name::NAME,
                Arc::new(|args, _| node_name::NodeName::new(args).map(to_ref)),
            ),
            (
                node_ports::NAME,
                Arc::new(|args, _| node_ports::NodePorts::new(args).map(to_ref)),
            ),
            (
                taint_toleration::NAME,
                Arc::new(|args, _| taint_toleration::TaintToleration::new(args).map(to_ref)),
            ),
            (
                node_affinity::NAME,
                Arc::new(|args, _| node_affinity::NodeAffinity::new(args).map(to_ref)),
            ),
            (
                node_resources_fit::NAME,
                Arc::new(|args, _| node_resources_fit::NodeResourcesFit::new(args).map(to_ref)),
            ),
            (
                volume_binding::NAME,
                Arc::new(|args, _| volume_binding::VolumeBinding::new(args).map(to_ref)),
            ),
            (
                pod_topology_spread::NAME,
                Arc::new(|args, _| pod_topology_spread::PodTopologySpread::new(args).map(to_ref)),
            ),
            (
                inter_pod_affinity::NAME,
                Arc::new(|args, _| inter_pod_affinity::InterPodAffinity::new(args).map(to_ref)),
            ),
            (
                balanced_allocation::NAME,
                Arc::new(|args, _| balanced_allocation::BalancedAllocation::new(args).map(to_ref)),
            ),
            (
                image_locality::NAME,
                Arc::new(|args, _| image_locality::ImageLocality::new(args).map(to_ref)),
            ),
            (
                default_preemption::NAME,
                Arc::new(|args, ctx| {
                    default_preemption::DefaultPreemption::new(args, ctx.client.clone()).map(to_ref)
                }),
            ),
            (
                default_binder::NAME,
                Arc::new(|args, _| default_binder::DefaultBinder::new(args).map(to_ref)),
            ),
        ];
        for (name, factory) in builtins {
            r.factories.insert(name.to_string(), factory);
        }
        r
    }

    /// Adds a factory under a new name.
    ///
    /// # Errors
    /// [`RegistryError::Duplicate`] if the name is taken.
    pub fn register(&mut self, name: &str, factory: PluginFactory) -> Result<(), RegistryError> {
        if self.factories.contains_key(name) {
            return Err(RegistryError::Duplicate(name.to_string()));
        }
        self.factories.insert(name.to_string(), factory);
        Ok(())
    }

    /// Adds a factory, replacing any factory of that name; returns the replaced one. Used for
    /// `wasmPlugins` entries named like a built-in: the user's module wins.
    pub fn replace(&mut self, name: &str, factory: PluginFactory) -> Option<PluginFactory> {
        self.factories.insert(name.to_string(), factory)
    }

    /// Removes a factory; returns it if it was there.
    pub fn unregister(&mut self, name: &str) -> Option<PluginFactory> {
        self.factories.remove(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.factories.keys().cloned().collect()
    }

    /// Whether a plugin of this name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// The factory registered under a name.
    pub fn get(&self, name: &str) -> Option<&PluginFactory> {
        self.factories.get(name)
    }

    /// Creates a plugin instance by name.
    ///
    /// # Errors
    /// [`RegistryError::Create`] for an unknown name, or the factory's error.
    pub fn create(
        &self,
        name: &str,
        args: &serde_json::Value,
        ctx: &FactoryContext,
    ) -> Result<PluginRef, RegistryError> {
        let factory = self
            .factories
            .get(name)
            .ok_or_else(|| RegistryError::Create {
                plugin: name.to_string(),
                message: "not registered".into(),
            })?;
        factory(args, ctx)
    }
}

fn to_ref<P: crate::framework::Plugin + 'static>(p: P) -> PluginRef {
    Arc::new(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_registered_by_their_upstream_names() {
        let r = Registry::with_builtins();
        assert_eq!(
            r.names(),
            [
                "DefaultBinder",
                "DefaultPreemption",
                "ImageLocality",
                "InterPodAffinity",
                "NodeAffinity",
                "NodeName",
                "NodePorts",
                "NodeResourcesBalancedAllocation",
                "NodeResourcesFit",
                "NodeUnschedulable",
                "PodTopologySpread",
                "SchedulingGates",
                "TaintToleration",
                "VolumeBinding"
            ]
        );
        let ctx = FactoryContext::empty();
        for name in r.names() {
            let p = r.create(&name, &serde_json::Value::Null, &ctx).unwrap();
            assert_eq!(p.name(), name);
            assert!(!p.extension_points().is_empty());
        }
    }

    #[test]
    fn errors_when_a_name_is_registered_twice() {
        let mut r = Registry::with_builtins();
        let f: PluginFactory = Arc::new(|args, _| node_name::NodeName::new(args).map(to_ref));
        let err = r.register("NodeName", f.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a plugin named \"NodeName\" is already registered"
        );
        r.register("MyNodeName", f.clone()).unwrap();
        assert!(r.contains("MyNodeName"));
        assert!(r.replace("NodeName", f).is_some());
    }

    #[test]
    fn errors_when_creating_an_unknown_plugin() {
        let err = Registry::new()
            .create("Nope", &serde_json::Value::Null, &FactoryContext::empty())
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "plugin \"Nope\": not registered");
    }
}
