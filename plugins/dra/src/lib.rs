//! # DynamicResources (DRA) for wasm-scheduler
//!
//! Kubernetes Dynamic Resource Allocation with structured parameters (resource.k8s.io/v1) as a
//! scheduler plugin written with `wasm-scheduler-sdk`: it builds as a Wasm component
//! (`scripts/setup dra-plugin`) and natively.
//!
//! Start with [`DraPlugin`] (the extension points, [`plugin`]), then:
//! - [`allocator`]: picks devices for claims on a node (`exactly`, `firstAvailable`, `All`,
//!   `matchAttribute`, the 32-device cap);
//! - [`cel_env`]: device selectors in CEL, with the Kubernetes quantity and semver libraries;
//! - [`inventory`]: devices of complete ResourceSlice pools, indexed by node;
//! - [`extended`]: the special claim for extended resources backed by DRA (KEP-5004);
//! - [`intents`]: the claim patches of Kubernetes PR #121876;
//! - [`placement`]: device ranks that keep scarce devices free (device choice and Score);
//! - [`state`]: the cluster as rebuilt from pushed events.

pub mod allocator;
pub mod cel_env;
pub mod cel_quantity;
pub mod extended;
pub mod intents;
pub mod inventory;
pub mod node_selector;
pub mod placement;
pub mod plugin;
pub mod semver_val;
pub mod state;

pub use plugin::{DraPlugin, NAME};

wasm_scheduler_sdk::export_plugin!(DraPlugin);
