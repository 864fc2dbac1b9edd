//! A loaded module: a component file read, hashed, compiled, checked against the WIT version
//! this host serves, linked and pre-instantiated. No guest code has run when a [`Module`]
//! exists; instances are created from it cheaply ([`super::instance::Instance::start`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};

use super::bindings::{self, PACKAGE, VERSION};
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
    pub(crate) pre: bindings::PluginPre<HostState>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("plugin", &self.plugin)
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("tier", &self.tier)
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
        check_wit_version(plugin, &component)?;
        let pre = sandbox::module_linker(linker, &component)
            .and_then(|l| l.instantiate_pre(&component))
            .and_then(bindings::PluginPre::new)
            .map_err(|e| WasmError::step(plugin, "link", chain(&e)))?;
        Ok(Module {
            plugin: plugin.into(),
            path: path.to_path_buf(),
            sha256,
            tier,
            pre,
        })
    }
}

/// Rejects, by name, a component whose `kube-scheduler:plugin` interfaces carry another version
/// than the one this host serves, before any linking or guest code.
fn check_wit_version(plugin: &str, component: &Component) -> Result<(), WasmError> {
    let engine = component.engine();
    let ty = component.component_type();
    let prefix = format!("{PACKAGE}/");
    let wrong = |direction: &'static str, name: &str| WasmError::WitVersion {
        plugin: plugin.to_string(),
        direction,
        found: name.to_string(),
        supported: VERSION,
    };
    let mut exports_api = false;
    for (name, _) in ty.exports(engine) {
        if let Some(rest) = name.strip_prefix(&prefix) {
            if rest.split_once('@').map(|(_, v)| v) != Some(VERSION) {
                return Err(wrong("exports", name));
            }
            exports_api |= rest.starts_with("plugin-api@");
        }
    }
    for (name, _) in ty.imports(engine) {
        if let Some(rest) = name.strip_prefix(&prefix)
            && rest.split_once('@').map(|(_, v)| v) != Some(VERSION)
        {
            return Err(wrong("imports", name));
        }
    }
    if !exports_api {
        return Err(WasmError::step(
            plugin,
            "wit-version",
            format!(
                "component does not export {PACKAGE}/plugin-api@{VERSION}; build it with wasm-scheduler-sdk's export_plugin!"
            ),
        ));
    }
    Ok(())
}
