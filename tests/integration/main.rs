//! One integration test binary, one module per feature. Everything runs against the embedded
//! API server through `kube::Client`.

mod affinity;
mod dra;
mod engine;
mod hostile_plugins;
mod hot_swap;
mod operations;
mod preemption;
mod scenarios;
mod volumes;
mod wasm_plugins;
