//! Structural checks with the `k8s-openapi` types.
//!
//! Objects are stored as JSON values, but every write is first decoded into the matching typed
//! struct. That catches wrong field types (a 400 like the real server's decode errors) and, through
//! `serde_ignored`, finds fields the schema does not know, which the `fieldValidation` parameter
//! turns into warnings (`Warn`, the default), errors (`Strict`) or nothing (`Ignore`). Unknown
//! fields are then dropped from the stored object, as decoding into a Go struct drops them.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resources::Kind;

/// The `fieldValidation` query parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// One step of a JSON path.
#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &serde_ignored::Path) -> Vec<Seg> {
    use serde_ignored::Path;
    let mut out = match path {
        Path::Root => return Vec::new(),
        Path::Seq { parent, .. } | Path::Map { parent, .. } => segments(parent),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => {
            return segments(parent);
        }
    };
    match path {
        Path::Seq { index, .. } => out.push(Seg::Index(*index)),
        Path::Map { key, .. } => out.push(Seg::Key(key.clone())),
        _ => {}
    }
    out
}

/// Renders a path the way the real server names fields: `spec.devices.requests[0].exactly.bogus`.
fn render(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn remove_path(value: &mut Value, segs: &[Seg]) {
    let Some((last, parents)) = segs.split_last() else {
        return;
    };
    let mut cur = value;
    for seg in parents {
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(v) => v,
                None => return,
            },
            (Seg::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
    }
    if let (Seg::Key(k), Value::Object(m)) = (last, cur) {
        m.remove(k);
    }
}

fn check<T: DeserializeOwned>(value: &Value) -> Result<Vec<Vec<Seg>>, String> {
    let mut unknown = Vec::new();
    let mut record = |p: serde_ignored::Path| unknown.push(segments(&p));
    if serde_ignored::deserialize::<_, _, T>(value, &mut record).is_ok() {
        return Ok(unknown);
    }
    // Only a failed decode pays for tracking the path of the error.
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(_) => Ok(unknown),
        Err(e) => {
            let path = e.path().to_string();
            Err(if path.is_empty() || path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            })
        }
    }
}

/// Decodes `value` as the typed object of `kind`. Returns the rendered unknown-field paths (which
/// have been removed from `value`), or the decode error.
pub(crate) fn decode(kind: Kind, value: &mut Value) -> Result<Vec<String>, String> {
    use k8s_openapi::api::{
        apps::v1 as apps, policy::v1 as policy, scheduling::v1 as scheduling,
        storage::v1 as storage,
    };
    use k8s_openapi::api::{coordination::v1 as coord, core::v1 as core, resource::v1 as res};
    let unknown = match kind {
        Kind::Namespace => check::<core::Namespace>(value),
        Kind::Node => check::<core::Node>(value),
        Kind::Pod => check::<core::Pod>(value),
        Kind::Event => check::<core::Event>(value),
        Kind::Lease => check::<coord::Lease>(value),
        Kind::DeviceClass => check::<res::DeviceClass>(value),
        Kind::ResourceSlice => check::<res::ResourceSlice>(value),
        Kind::ResourceClaim => check::<res::ResourceClaim>(value),
        Kind::ResourceClaimTemplate => check::<res::ResourceClaimTemplate>(value),
        Kind::PriorityClass => check::<scheduling::PriorityClass>(value),
        Kind::PodDisruptionBudget => check::<policy::PodDisruptionBudget>(value),
        Kind::PersistentVolume => check::<core::PersistentVolume>(value),
        Kind::PersistentVolumeClaim => check::<core::PersistentVolumeClaim>(value),
        Kind::StorageClass => check::<storage::StorageClass>(value),
        Kind::Service => check::<core::Service>(value),
        Kind::ReplicationController => check::<core::ReplicationController>(value),
        Kind::ReplicaSet => check::<apps::ReplicaSet>(value),
        Kind::StatefulSet => check::<apps::StatefulSet>(value),
        Kind::DeviceTaintRule => {
            check::<k8s_openapi::api::resource::v1beta2::DeviceTaintRule>(value)
        }
    }?;
    // `apiVersion`/`kind` are consumed by k8s-openapi's visitor; anything else unknown is dropped.
    let mut names = Vec::with_capacity(unknown.len());
    for segs in &unknown {
        names.push(render(segs));
        remove_path(value, segs);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_reported_with_their_paths_and_removed() {
        let mut claim = json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "x"},
            "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "c", "bogus": 1}}]},
                     "alsoBogus": true}
        });
        let unknown = decode(Kind::ResourceClaim, &mut claim).unwrap();
        assert_eq!(
            unknown,
            vec!["spec.alsoBogus", "spec.devices.requests[0].exactly.bogus"]
        );
        assert!(claim["spec"].get("alsoBogus").is_none());
        assert!(
            claim["spec"]["devices"]["requests"][0]["exactly"]
                .get("bogus")
                .is_none()
        );
    }

    #[test]
    fn wrong_types_are_decode_errors() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 5}});
        assert!(decode(Kind::Pod, &mut pod).is_err());
    }
}
