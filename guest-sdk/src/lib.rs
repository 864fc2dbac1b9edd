//! # wasm-scheduler-sdk
//!
//! Write a scheduler plugin in Rust: implement [`Plugin`] for a type (only the extension points
//! you need; the rest have defaults), then export it with one macro, [`export_plugin!`]. The same
//! crate builds as a Wasm component (`cargo build --target wasm32-wasip2 --release`) and natively,
//! so the host can run it in-process for tests and to measure the cost of the Wasm boundary.
//!
//! ```
//! use wasm_scheduler_sdk::{export_plugin, ExtensionPoint, Metadata, Plugin, PodRef, Status};
//!
//! struct OnlyEvenNodes;
//!
//! impl Plugin for OnlyEvenNodes {
//!     fn new(_args: &str) -> Result<Self, String> {
//!         Ok(OnlyEvenNodes)
//!     }
//!     fn metadata(&self) -> Metadata {
//!         Metadata {
//!             name: "OnlyEvenNodes".into(),
//!             version: "0.1.0".into(),
//!             extension_points: vec![ExtensionPoint::Filter],
//!             ..Default::default()
//!         }
//!     }
//!     fn filter(&mut self, _pod: &PodRef, nodes: &[String]) -> Vec<Status> {
//!         nodes
//!             .iter()
//!             .map(|n| match n.ends_with(|c: char| c.is_ascii_digit() && (c as u8) % 2 == 0) {
//!                 true => Status::success(),
//!                 false => Status::unschedulable("odd node"),
//!             })
//!             .collect()
//!     }
//! }
//!
//! export_plugin!(OnlyEvenNodes);
//! ```
//!
//! The generated Wasm bindings live in a hidden module; plugins only see the types of this
//! crate. Plugins get no filesystem, network or clock: everything they know arrives through
//! [`Plugin::on_event`].

// Lets the generated bindings name this crate the same way from inside and outside it.
extern crate self as wasm_scheduler_sdk;

mod log;
mod plugin;
mod types;

pub use log::log;
pub use plugin::Plugin;
pub use types::*;

#[doc(hidden)]
pub use log::set_native_logger;

/// The raw bindings generated from `wit/plugin.wit`. Not part of the API: use [`export_plugin!`].
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit/plugin.wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_component",
        runtime_path: "wasm_scheduler_sdk::__bindings::__rt::rt",
    });
    pub use wit_bindgen as __rt;
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[path = "export.rs"]
pub mod __export;

/// Exports a [`Plugin`] type as the plugin of this crate.
///
/// On `wasm32` it makes the crate a component of the world `kube-scheduler:plugin/plugin`:
/// `init` creates one instance of the type from the plugin args, and every exported function
/// is dispatched to it. Natively it only checks that the type implements [`Plugin`], so the
/// same crate can be compiled into the host.
///
/// Use it once per crate, with a type that implements [`Plugin`]:
///
/// ```
/// use wasm_scheduler_sdk::{Metadata, Plugin};
///
/// struct MyPlugin;
///
/// impl Plugin for MyPlugin {
///     fn new(_args: &str) -> Result<Self, String> {
///         Ok(MyPlugin)
///     }
///     fn metadata(&self) -> Metadata {
///         Metadata {
///             name: "MyPlugin".into(),
///             version: "0.1.0".into(),
///             ..Default::default()
///         }
///     }
/// }
///
/// wasm_scheduler_sdk::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty) => {
        // Natively: only a check that points at the user's type if it is not a plugin.
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            const fn __assert_plugin<P: $crate::Plugin>() {}
            __assert_plugin::<$ty>()
        };

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__bindings::exports::kube_scheduler::plugin::plugin_api as __api;
            use $crate::__bindings::kube_scheduler::plugin::types as __wit;

            ::std::thread_local! {
                // The one instance, created by `init`. Wasm is single-threaded and calls never
                // re-enter, so a RefCell is enough.
                static __PLUGIN: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            fn __with<R>(f: impl FnOnce(&mut $ty) -> R) -> R {
                __PLUGIN.with_borrow_mut(|p| f($crate::__export::expect_init(p.as_mut())))
            }

            struct __Export;

            impl __api::Guest for __Export {
                fn init(args: String) -> Result<(), String> {
                    $crate::__export::install_panic_hook();
                    let plugin = <$ty as $crate::Plugin>::new(&args)?;
                    __PLUGIN.set(Some(plugin));
                    Ok(())
                }
                fn metadata() -> __wit::Metadata {
                    __with(|p| $crate::__export::metadata(p))
                }
                fn on_event(events: Vec<__wit::ObjectEvent>) {
                    __with(|p| $crate::__export::on_event(p, events))
                }
                fn health() -> __wit::Status {
                    __with(|p| $crate::__export::health(p))
                }
                fn pre_enqueue(pod: __wit::PodRef) -> __wit::Status {
                    __with(|p| $crate::__export::pre_enqueue(p, pod))
                }
                fn pre_filter(pod: __wit::PodRef) -> __wit::PreFilterResult {
                    __with(|p| $crate::__export::pre_filter(p, pod))
                }
                fn nodes_added(first: u32, names: Vec<String>) {
                    $crate::__export::nodes_added(first, names)
                }
                fn filter(pod: __wit::PodRef, nodes: Vec<u32>) -> Vec<__wit::NodeStatus> {
                    __with(|p| $crate::__export::filter(p, pod, nodes))
                }
                fn post_filter(
                    pod: __wit::PodRef,
                    rejected: Vec<__wit::NodeStatus>,
                ) -> __wit::PostFilterResult {
                    __with(|p| $crate::__export::post_filter(p, pod, rejected))
                }
                fn pre_score(pod: __wit::PodRef, nodes: Vec<u32>) -> __wit::Status {
                    __with(|p| $crate::__export::pre_score(p, pod, nodes))
                }
                fn score(pod: __wit::PodRef, nodes: Vec<u32>) -> Result<Vec<i64>, __wit::Status> {
                    __with(|p| $crate::__export::score(p, pod, nodes))
                }
                fn reserve(
                    pod: __wit::PodRef,
                    node: u32,
                ) -> Result<Vec<__wit::PatchIntent>, __wit::Status> {
                    __with(|p| $crate::__export::reserve(p, pod, node))
                }
                fn unreserve(pod: __wit::PodRef, node: u32) -> Vec<__wit::PatchIntent> {
                    __with(|p| $crate::__export::unreserve(p, pod, node))
                }
                fn permit(pod: __wit::PodRef, node: u32) -> __wit::PermitResult {
                    __with(|p| $crate::__export::permit(p, pod, node))
                }
                fn pre_bind(
                    pod: __wit::PodRef,
                    node: u32,
                ) -> Result<Vec<__wit::PatchIntent>, __wit::Status> {
                    __with(|p| $crate::__export::pre_bind(p, pod, node))
                }
                fn post_bind(pod: __wit::PodRef, node: u32) {
                    __with(|p| $crate::__export::post_bind(p, pod, node))
                }
            }

    $crate::__bindings::__export_component!(__Export with_types_in $crate::__bindings);
        };
    };
}
