//! The host side of the WIT world `kube-scheduler:plugin/plugin`, generated once per version
//! the host serves: [`v0_3`] (the current `wit/plugin.wit`), [`v0_2`] and [`v0_1`] (frozen
//! copies), so components built against an earlier version keep loading. Generated types stay inside the runtime;
//! [`super::convert`] maps them to the SDK types the framework uses.

/// `kube-scheduler:plugin@0.3.0`, the version the SDK targets.
pub mod v0_3 {
    wasmtime::component::bindgen!({
        path: "../wit/plugin.wit",
        world: "plugin",
    });

    pub use exports::kube_scheduler::plugin::plugin_api::Guest;
    pub use kube_scheduler::plugin::types as wit;
}

/// `kube-scheduler:plugin@0.2.0`, frozen: no field selection.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/frozen/0.2.0/plugin.wit",
        world: "plugin",
    });

    pub use exports::kube_scheduler::plugin::plugin_api::Guest;
    pub use kube_scheduler::plugin::types as wit;
}

/// `kube-scheduler:plugin@0.1.0`, frozen: node names instead of indices, a status per node.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/frozen/0.1.0/plugin.wit",
        world: "plugin",
    });

    pub use exports::kube_scheduler::plugin::plugin_api::Guest;
    pub use kube_scheduler::plugin::types as wit;
}

/// The WIT package every plugin component must target (without version).
pub const PACKAGE: &str = "kube-scheduler:plugin";
/// The package versions this host serves, newest first.
pub const VERSIONS: &[&str] = &["0.3.0", "0.2.0", "0.1.0"];

/// A WIT version this host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WitVersion {
    /// `0.1.0`, frozen.
    V0_1,
    /// `0.2.0`, frozen.
    V0_2,
    /// `0.3.0`, current.
    V0_3,
}

impl WitVersion {
    /// The version as it appears in the package name.
    pub fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_1 => "0.1.0",
            WitVersion::V0_2 => "0.2.0",
            WitVersion::V0_3 => "0.3.0",
        }
    }

    /// The served version called `v`, if any.
    pub fn parse(v: &str) -> Option<WitVersion> {
        match v {
            "0.1.0" => Some(WitVersion::V0_1),
            "0.2.0" => Some(WitVersion::V0_2),
            "0.3.0" => Some(WitVersion::V0_3),
            _ => None,
        }
    }
}

impl serde::Serialize for WitVersion {
    /// As the version string, e.g. `"0.2.0"`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for WitVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_wit_is_the_frozen_copy_of_its_version() {
        let current = include_str!("../../../wit/plugin.wit");
        let frozen = include_str!("../../../wit/frozen/0.3.0/plugin.wit");
        assert!(current.contains(&format!("package {PACKAGE}@{};", VERSIONS[0])));
        assert_eq!(
            current, frozen,
            "wit/plugin.wit changed: bump its version and freeze a copy"
        );
        for (old, v) in [
            (
                include_str!("../../../wit/frozen/0.2.0/plugin.wit"),
                "0.2.0",
            ),
            (
                include_str!("../../../wit/frozen/0.1.0/plugin.wit"),
                "0.1.0",
            ),
        ] {
            assert!(old.contains(&format!("package {PACKAGE}@{v};")));
        }
    }

    #[test]
    fn every_served_version_parses_back() {
        for v in VERSIONS {
            assert_eq!(WitVersion::parse(v).unwrap().as_str(), *v);
        }
        assert_eq!(WitVersion::parse("0.4.0"), None);
    }
}
