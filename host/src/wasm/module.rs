//! A loaded module: a component file read, hashed, compiled, checked against the WIT versions
//! this host serves, linked and pre-instantiated. No guest code has run when a [`Module`]
//! exists; instances are created from it cheaply ([`super::instance::Instance::start`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};

use super::bindings::{PACKAGE, VERSIONS, WitVersion, v0_1, v0_2, v0_3};
use super::engine::{self, Tier};
use super::error::{WasmError, chain};
use super::sandbox::{self, HostState};

/// A compiled, linked and version-checked plugin component.
pub struct Module {
    /// The plugin's configured name.
    pub plugin: Arc<str>,
    /// Where it was read from.
    pub path: PathBuf,
    /// Hex sha256 of the file's bytes.
    pub sha256: String,
    /// Which compiler made its code (and so which engine runs it).
    pub tier: Tier,
    /// The WIT version it was built against.
    pub wit: WitVersion,
    pub(crate) pre: Pre,
}

/// A pre-instantiated component of one of the served WIT versions.
pub(crate) enum Pre {
    V0_1(v0_1::PluginPre<HostState>),
    V0_2(v0_2::PluginPre<HostState>),
    V0_3(v0_3::PluginPre<HostState>),
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("plugin", &self.plugin)
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("tier", &self.tier)
            .field("wit", &self.wit)
            .finish()
    }
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Module {
    /// Checks the pinned hash against `sha256` (the hex sha256 of `bytes`, as [`sha256_hex`]
    /// gives it; the caller has it already), compiles at `tier` (or takes the compiled copy from `cache`),
    /// checks the WIT package version by name, and pre-instantiates with the sandbox linker,
    /// which must belong to the tier's engine ([`engine::engine_for`]).
    ///
    /// # Errors
    /// [`WasmError::HashMismatch`], [`WasmError::WitVersion`], or [`WasmError::Step`] with
    /// step `compile` or `link`.
    pub fn from_bytes(
        plugin: &str,
        path: &Path,
        bytes: &[u8],
        sha256: &str,
        pin: Option<&str>,
        cache: &engine::CompileCache,
        linker: &Linker<HostState>,
        tier: Tier,
    ) -> Result<Module, WasmError> {
        let sha256 = sha256.to_string();
        if let Some(expected) = pin
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(WasmError::HashMismatch {
                plugin: plugin.to_string(),
                path: path.to_path_buf(),
                expected: expected.to_string(),
                actual: sha256,
            });
        }
        let component = cache
            .compile(bytes, &sha256, tier)
            .map_err(|e| WasmError::step(plugin, "compile", chain(&e)))?;
        let wit = check_wit_version(plugin, &component)?;
        let pre = sandbox::module_linker(linker, &component)
            .and_then(|l| l.instantiate_pre(&component))
            .and_then(|pre| match wit {
                WitVersion::V0_1 => v0_1::PluginPre::new(pre).map(Pre::V0_1),
                WitVersion::V0_2 => v0_2::PluginPre::new(pre).map(Pre::V0_2),
                WitVersion::V0_3 => v0_3::PluginPre::new(pre).map(Pre::V0_3),
            })
            .map_err(|e| WasmError::step(plugin, "link", chain(&e)))?;
        Ok(Module {
            plugin: plugin.into(),
            path: path.to_path_buf(),
            sha256,
            tier,
            wit,
            pre,
        })
    }
}

/// The WIT version of a component's `kube-scheduler:plugin` interfaces: all of them must carry
/// the same version, one this host serves; anything else is rejected by name, before any
/// linking or guest code.
fn check_wit_version(plugin: &str, component: &Component) -> Result<WitVersion, WasmError> {
    let engine = component.engine();
    let ty = component.component_type();
    let prefix = format!("{PACKAGE}/");
    let wrong = |direction: &'static str, name: &str| WasmError::WitVersion {
        plugin: plugin.to_string(),
        direction,
        found: name.to_string(),
        supported: VERSIONS.join(", "),
    };
    let mut version: Option<WitVersion> = None;
    let mut exports_api = false;
    let exports = ty.exports(engine).map(|(n, _)| ("exports", n.to_string()));
    let imports = ty.imports(engine).map(|(n, _)| ("imports", n.to_string()));
    for (direction, name) in exports.collect::<Vec<_>>().into_iter().chain(imports) {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let v = rest
            .split_once('@')
            .and_then(|(_, v)| WitVersion::parse(v))
            .filter(|v| version.is_none_or(|seen| seen == *v))
            .ok_or_else(|| wrong(direction, &name))?;
        version = Some(v);
        exports_api |= direction == "exports" && rest.starts_with("plugin-api@");
    }
    match version {
        Some(v) if exports_api => Ok(v),
        _ => Err(WasmError::step(
            plugin,
            "wit-version",
            format!(
                "component does not export {PACKAGE}/plugin-api@{}; build it with wasm-scheduler-sdk's export_plugin!",
                VERSIONS[0]
            ),
        )),
    }
}
