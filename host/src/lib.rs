//! # wasm-scheduler
//!
//! A Kubernetes scheduler whose plugins are WebAssembly components.
//!
//! Data flows one way: watch → [`cache`] → [`queue`] → scheduling cycle ([`scheduler`]) →
//! patch intents → binding cycle (PreBind executor) → API server. Start with [`framework`] for
//! the plugin interface and [`scheduler`] for the algorithm.
//!
//! - [`cache`]: watches (one writer) → nodes with their pods, generic objects, assumptions.
//! - [`queue`]: activeQ, backoffQ, unschedulable pool, PreEnqueue gating.
//! - [`scheduler`]: the scheduling cycle, the binding cycle and its PreBind executor;
//!   [`scheduler::build`] starts one from a [`config::SchedulerConfig`].
//! - [`plugins`]: the native plugins and the [`plugins::Registry`]; [`wasm`]: Wasm components.
//! - [`simulate`], [`cluster`] (`run`: leader election, endpoint, hot swap), [`leader`],
//!   [`endpoint`], [`metrics`]: what the `wasm-scheduler` binary uses.

pub mod bench;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod endpoint;
pub mod framework;
pub mod leader;
pub mod metrics;
pub mod plugins;
pub mod queue;
pub mod report;
pub mod retry;
pub mod scheduler;
pub mod simulate;
pub mod wasm;
