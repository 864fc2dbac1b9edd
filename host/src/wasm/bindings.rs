//! The host side of the WIT world `kube-scheduler:plugin/plugin@0.1.0`: the one `bindgen!` of
//! the project. Generated types stay inside the runtime; [`super::convert`] maps them to the SDK
//! types the framework uses.

wasmtime::component::bindgen!({
    path: "../wit/plugin.wit",
    world: "plugin",
});

pub use exports::kube_scheduler::plugin::plugin_api::Guest;
pub use kube_scheduler::plugin::types as wit;

/// The WIT package every plugin component must target (without version).
pub const PACKAGE: &str = "kube-scheduler:plugin";
/// The package version this host serves.
pub const VERSION: &str = "0.1.0";

#[cfg(test)]
mod tests {
    #[test]
    fn the_served_wit_is_the_frozen_copy_of_its_version() {
        let current = include_str!("../../../wit/plugin.wit");
        let frozen = include_str!("../../../wit/frozen/0.1.0/plugin.wit");
        assert!(current.contains(&format!("package {}@{};", super::PACKAGE, super::VERSION)));
        assert_eq!(
            current, frozen,
            "wit/plugin.wit changed: bump its version and freeze a copy"
        );
    }
}
