//! The scheduling framework: the extension point interface ([`Plugin`]), the per-cycle state,
//! and the node and pod views plugins decide on. Statuses, intents and the rest of the plugin
//! vocabulary come from the SDK, so native and Wasm plugins speak the same types.
//!
//! [`Framework`] runs one profile's plugins at each extension point with upstream semantics.

mod cycle_state;
mod node_info;
mod nominator;
mod plugin;
mod runtime;

pub use cycle_state::CycleState;
pub use node_info::{NodeInfo, NonZeroRequests, PodInfo, Resource, Snapshot};
pub use nominator::Nominator;
pub use plugin::{
    BindContext, DEFAULT_PRE_BIND_TIMEOUT, Plugin, PluginRef, PodActivator, PostFilterContext,
    StateReplay,
};
pub use runtime::{
    FilterVerdicts, Framework, MAX_NODE_SCORE, MAX_PERMIT_TIMEOUT, NarrowedNodes, OnIntents,
    PermitOutcome, PluginFailure, PluginIntents, PostFilterOutcome,
};
pub use wasm_scheduler_sdk::{
    ClusterEvent, Code, EventAction, ExtensionPoint, Metadata, ObjectEvent, ObjectRef, PatchIntent,
    PatchKind, PermitResult, PodRef, PostFilterResult, PreFilterResult, ResourceKind, Status,
};
