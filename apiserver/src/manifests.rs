//! Loading YAML manifests (what `kubectl apply -f` users write): multi-document files, `kind: List`,
//! all documents checked before anything is created, namespaces first and then file order, and a
//! roll-back of this load's objects if a create fails, so nothing is ever half-loaded.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::registry::{Registry, WriteOptions};
use crate::resources::{self, Kind, ResourceDef};
use crate::status::ApiError;
use crate::typed::FieldValidation;

/// What a load created, as `Kind/namespace/name` (`Kind/name` for cluster-scoped objects).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The created objects, in creation order.
    pub created: Vec<String>,
}

/// Why a manifest could not be loaded. Every variant names the file and, where there is one, the
/// document (1-based, counting `---` separated documents; items of a `kind: List` count as
/// `<document>.<item>`) and the offending field.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The text is not YAML.
    #[error("{source_name}: document {document}: invalid YAML: {message}")]
    Yaml {
        /// The file or source name.
        source_name: String,
        /// The document number.
        document: String,
        /// The parser's message.
        message: String,
    },
    /// A document is not a valid object of a served kind.
    #[error("{source_name}: document {document}: {field}: {message}")]
    Invalid {
        /// The file or source name.
        source_name: String,
        /// The document number.
        document: String,
        /// The field at fault (`kind`, `metadata.name`, `spec.devices.requests[0].name`, ...).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// Creating an object failed (for example, it already exists); nothing of this load was kept.
    #[error("{source_name}: document {document}: cannot create {object}: {message}")]
    Create {
        /// The file or source name.
        source_name: String,
        /// The document number.
        document: String,
        /// `Kind/namespace/name` of the object.
        object: String,
        /// The server's message.
        message: String,
    },
}

/// One object to create.
struct Doc {
    source_name: String,
    document: String,
    res: &'static ResourceDef,
    namespace: Option<String>,
    value: Value,
}

impl Doc {
    fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> ManifestError {
        ManifestError::Invalid {
            source_name: self.source_name.clone(),
            document: self.document.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    fn label(&self, name: &str) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{name}", self.res.kind),
            None => format!("{}/{name}", self.res.kind),
        }
    }

    /// Turns a validation or decode error into a manifest error naming the field.
    fn error_from_api(&self, e: ApiError) -> ManifestError {
        if let Some(cause) = e
            .details
            .as_ref()
            .and_then(|d| d.get("causes"))
            .and_then(|c| c.get(0))
        {
            let field = cause
                .get("field")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let message = cause
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return self.invalid(if field.is_empty() { "(object)" } else { field }, message);
        }
        // Decode errors read "<Kind> in version ... cannot be handled as a <Kind>: <path>: <error>".
        let detail = e
            .message
            .split_once(" cannot be handled as a ")
            .map(|(_, d)| d)
            .unwrap_or(&e.message);
        let detail = detail.split_once(": ").map(|(_, d)| d).unwrap_or(detail);
        let detail = detail
            .strip_prefix("strict decoding error: ")
            .unwrap_or(detail);
        if let Some(field) = detail
            .strip_prefix("unknown field \"")
            .and_then(|r| r.split('"').next())
        {
            return self.invalid(field, "unknown field");
        }
        match detail.split_once(": ") {
            Some((path, msg)) if !path.contains(' ') => self.invalid(path, msg),
            _ => self.invalid("(object)", detail),
        }
    }
}

/// Splits YAML text into objects, expanding `kind: List`.
fn parse(source_name: &str, yaml: &str) -> Result<Vec<Doc>, ManifestError> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
        let document = (i + 1).to_string();
        let value = Value::deserialize(de).map_err(|e| ManifestError::Yaml {
            source_name: source_name.to_string(),
            document: document.clone(),
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue; // empty document, e.g. a trailing `---`
        }
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            let items = value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (j, item) in items.into_iter().enumerate() {
                docs.push(classify(
                    source_name,
                    format!("{document}.{}", j + 1),
                    item,
                )?);
            }
        } else {
            docs.push(classify(source_name, document, value)?);
        }
    }
    Ok(docs)
}

fn classify(source_name: &str, document: String, value: Value) -> Result<Doc, ManifestError> {
    let invalid = |field: &str, message: String| ManifestError::Invalid {
        source_name: source_name.to_string(),
        document: document.clone(),
        field: field.to_string(),
        message,
    };
    if !value.is_object() {
        return Err(invalid(
            "(document)",
            "expected a Kubernetes object (a YAML mapping)".into(),
        ));
    }
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("apiVersion", "Required value".into()))?;
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("kind", "Required value".into()))?;
    let res = resources::lookup_kind(api_version, kind).ok_or_else(|| {
        invalid(
            "kind",
            format!("{kind} in {api_version} is not served by the embedded API server"),
        )
    })?;
    let namespace = res.namespaced.then(|| {
        value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_string()
    });
    Ok(Doc {
        source_name: source_name.to_string(),
        document,
        res,
        namespace,
        value,
    })
}

/// Loads documents: checks all, then creates them, rolling back on the first failure.
fn load(reg: &Registry, docs: Vec<Doc>) -> Result<LoadReport, ManifestError> {
    // Namespaces first (stable), then PriorityClasses and StorageClasses (the admission of pods
    // and claims reads them), then everything else in file order.
    let (mut ordered, rest): (Vec<Doc>, Vec<Doc>) = docs
        .into_iter()
        .partition(|d| d.res.kind_enum == Kind::Namespace);
    let (classes, rest): (Vec<Doc>, Vec<Doc>) = rest
        .into_iter()
        .partition(|d| matches!(d.res.kind_enum, Kind::PriorityClass | Kind::StorageClass));
    ordered.extend(classes);
    ordered.extend(rest);
    let new_namespaces: Vec<String> = ordered
        .iter()
        .filter(|d| d.res.kind_enum == Kind::Namespace)
        .filter_map(|d| {
            d.value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();

    // Check every document before creating anything.
    let check = WriteOptions {
        field_validation: FieldValidation::Strict,
        dry_run: true,
        skip_namespace_check: true,
    };
    for doc in &ordered {
        if let Some(ns) = &doc.namespace {
            let known = new_namespaces.contains(ns)
                || reg
                    .store
                    .get(Kind::Namespace, &(String::new(), ns.clone()))
                    .is_some();
            if !known {
                return Err(doc.invalid(
                    "metadata.namespace",
                    format!("namespaces \"{ns}\" not found"),
                ));
            }
        }
        reg.create(doc.res, doc.namespace.as_deref(), doc.value.clone(), check)
            .map_err(|e| doc.error_from_api(e))?;
    }

    let opts = WriteOptions {
        field_validation: FieldValidation::Strict,
        dry_run: false,
        skip_namespace_check: false,
    };
    let mut created: Vec<(&'static ResourceDef, Option<String>, String)> = Vec::new();
    let mut report = LoadReport::default();
    for doc in &ordered {
        match reg.create(doc.res, doc.namespace.as_deref(), doc.value.clone(), opts) {
            Ok(r) => {
                let name = r.obj.name().to_string();
                report.created.push(doc.label(&name));
                created.push((doc.res, doc.namespace.clone(), name));
            }
            Err(e) => {
                let name = doc
                    .value
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                for (res, ns, name) in created.iter().rev() {
                    reg.purge(res, ns.as_deref(), name);
                }
                return Err(ManifestError::Create {
                    source_name: doc.source_name.clone(),
                    document: doc.document.clone(),
                    object: doc.label(&name),
                    message: e.message,
                });
            }
        }
    }
    Ok(report)
}

/// Parses and loads YAML text.
pub(crate) fn load_str(
    reg: &Registry,
    source_name: &str,
    yaml: &str,
) -> Result<LoadReport, ManifestError> {
    load(reg, parse(source_name, yaml)?)
}

/// Parses files (all of them first) and loads them as one unit.
pub(crate) fn load_files(reg: &Registry, paths: &[PathBuf]) -> Result<LoadReport, ManifestError> {
    let mut docs = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        docs.extend(parse(&path.display().to_string(), &text)?);
    }
    load(reg, docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_expanded_and_numbered() {
        let yaml = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata: {name: a}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: b}\n";
        let docs = parse("m.yaml", yaml).unwrap();
        assert_eq!(
            docs.iter().map(|d| d.document.as_str()).collect::<Vec<_>>(),
            vec!["1.1", "2"]
        );
    }

    #[test]
    fn unknown_kinds_name_the_document_and_field() {
        let err = parse("m.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\n")
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "m.yaml: document 2: kind: Deployment in apps/v1 is not served by the embedded API server"
        );
    }
}
