//! API errors and their `meta/v1 Status` bodies.
//!
//! Every failing request ends as an [`ApiError`], which renders exactly the Status body the real
//! kube-apiserver sends (message wording, `reason`, `details`, `causes`), see the reference captures
//! 20-29 in `shared/k8s-reference`.

use serde::Serialize;
use serde_json::{Value, json};

use crate::resources::ResourceDef;

/// One field error (`details.causes[]` entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

impl Cause {
    /// `Invalid value: <value>: <detail>`.
    pub(crate) fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: {detail}", render_value(value)),
            field: field.into(),
        }
    }

    /// `Required value` (with an optional explanation).
    pub(crate) fn required(field: impl Into<String>, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            message: if detail.is_empty() {
                "Required value".into()
            } else {
                format!("Required value: {detail}")
            },
            field: field.into(),
        }
    }

    /// `Forbidden: <detail>`.
    pub(crate) fn forbidden(field: impl Into<String>, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
            field: field.into(),
        }
    }

    /// `Duplicate value: <value>`.
    pub(crate) fn duplicate(field: impl Into<String>, value: &Value) -> Cause {
        Cause {
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {}", render_value(value)),
            field: field.into(),
        }
    }

    /// `Too many: <n>: must have at most <max> items`.
    pub(crate) fn too_many(field: impl Into<String>, n: usize, max: usize) -> Cause {
        Cause {
            reason: "FieldValueTooMany",
            message: format!("Too many: {n}: must have at most {max} items"),
            field: field.into(),
        }
    }

    /// `Too long: may not be more than <max> bytes`.
    pub(crate) fn too_long(field: impl Into<String>, max: usize) -> Cause {
        Cause {
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {max} bytes"),
            field: field.into(),
        }
    }

    /// `Unsupported value: "x": supported values: "a", "b"`.
    pub(crate) fn not_supported(
        field: impl Into<String>,
        value: &Value,
        supported: &[&str],
    ) -> Cause {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {}",
                render_value(value),
                list.join(", ")
            ),
            field: field.into(),
        }
    }

    fn summary(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// Renders a value the way Go's field errors print it: strings quoted, numbers bare, and objects as
/// JSON with Go-style capitalised field names (the real server prints the internal Go struct).
pub(crate) fn render_value(value: &Value) -> String {
    fn go_style(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let mut c = k.chars();
                        let key = match c.next() {
                            Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                            None => String::new(),
                        };
                        (key, go_style(v))
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(go_style).collect()),
            other => other.clone(),
        }
    }
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => value.to_string(),
        other => go_style(other).to_string(),
    }
}

/// A failed request: HTTP code plus the Status body fields.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: Option<&'static str>,
    pub message: String,
    pub details: Option<Value>,
    /// Extra response headers (e.g. `Retry-After`).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: Value,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a Value>,
    code: u16,
}

impl ApiError {
    pub(crate) fn new(code: u16, reason: Option<&'static str>, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            headers: Vec::new(),
        }
    }

    pub(crate) fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The JSON Status body.
    pub(crate) fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: json!({}),
            status: "Failure",
            message: Some(&self.message),
            reason: self.reason,
            details: self.details.as_ref(),
            code: self.code,
        })
        .expect("status serializes")
    }

    /// The Status as a JSON value (for watch ERROR events).
    pub(crate) fn to_value(&self) -> Value {
        serde_json::from_slice(&self.body()).expect("status is JSON")
    }

    // ----- constructors, one per reason the real server uses -----

    pub(crate) fn not_found(res: &ResourceDef, name: &str) -> Self {
        ApiError::new(
            404,
            Some("NotFound"),
            format!("{} \"{name}\" not found", res.qualified_plural()),
        )
        .with_details(resource_details(res, Some(name)))
    }

    pub(crate) fn namespace_not_found(ns: &str) -> Self {
        ApiError::new(
            404,
            Some("NotFound"),
            format!("namespaces \"{ns}\" not found"),
        )
        .with_details(json!({"name": ns, "kind": "namespaces"}))
    }

    pub(crate) fn path_not_found() -> Self {
        ApiError::new(
            404,
            Some("NotFound"),
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub(crate) fn already_exists(res: &ResourceDef, name: &str) -> Self {
        ApiError::new(
            409,
            Some("AlreadyExists"),
            format!("{} \"{name}\" already exists", res.qualified_plural()),
        )
        .with_details(resource_details(res, Some(name)))
    }

    /// 409 Conflict: `Operation cannot be fulfilled on <plural.group> "<name>": <msg>`.
    pub(crate) fn conflict(res: &ResourceDef, name: &str, msg: &str) -> Self {
        ApiError::new(
            409,
            Some("Conflict"),
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {msg}",
                res.qualified_plural()
            ),
        )
        .with_details(resource_details(res, Some(name)))
    }

    /// The optimistic-concurrency conflict (stale `resourceVersion`).
    pub(crate) fn stale(res: &ResourceDef, name: &str) -> Self {
        Self::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// A uid precondition failure inside storage (PUT with another uid, binding with another uid).
    pub(crate) fn uid_precondition(
        res: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        given: &str,
        actual: &str,
    ) -> Self {
        let key = match ns {
            Some(ns) => format!("/registry/{}/{ns}/{name}", res.storage_prefix()),
            None => format!("/registry/{}/{name}", res.storage_prefix()),
        };
        Self::conflict(
            res,
            name,
            &format!(
                "StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {given}, UID in object meta: {actual}"
            ),
        )
    }

    /// 422 Invalid for an object: `<Kind.group> "<name>" is invalid: <causes>`.
    pub(crate) fn invalid(res: &ResourceDef, name: &str, causes: Vec<Cause>) -> Self {
        let mut details = json!({"name": name, "group": res.group, "kind": res.kind});
        if res.group.is_empty() {
            details.as_object_mut().unwrap().remove("group");
        }
        Self::invalid_with(
            format!("{} \"{name}\"", res.qualified_kind()),
            details,
            causes,
        )
    }

    /// 422 Invalid for request options (`ListOptions.meta.k8s.io "" is invalid: ...`).
    pub(crate) fn invalid_options(kind: &str, causes: Vec<Cause>) -> Self {
        Self::invalid_with(
            format!("{kind}.meta.k8s.io \"\""),
            json!({"group": "meta.k8s.io", "kind": kind}),
            causes,
        )
    }

    fn invalid_with(subject: String, mut details: Value, causes: Vec<Cause>) -> Self {
        // The message lists each distinct error once; `causes` keeps duplicates like the real server.
        let mut distinct: Vec<String> = Vec::new();
        for c in &causes {
            let s = c.summary();
            if !distinct.contains(&s) {
                distinct.push(s);
            }
        }
        let summary = if distinct.len() == 1 {
            distinct.remove(0)
        } else {
            format!("[{}]", distinct.join(", "))
        };
        details["causes"] = serde_json::to_value(&causes).expect("causes serialize");
        ApiError::new(
            422,
            Some("Invalid"),
            format!("{subject} is invalid: {summary}"),
        )
        .with_details(details)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, Some("BadRequest"), message)
    }

    pub(crate) fn unsupported_patch_type() -> Self {
        ApiError::new(
            415,
            Some("UnsupportedMediaType"),
            "415: Unsupported Media Type",
        )
        .with_details(json!({}))
    }

    pub(crate) fn unsupported_body_type() -> Self {
        ApiError::new(
            415,
            Some("UnsupportedMediaType"),
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
        )
    }

    pub(crate) fn not_acceptable() -> Self {
        ApiError::new(
            406,
            Some("NotAcceptable"),
            "only the following media types are accepted: application/json",
        )
    }

    pub(crate) fn method_not_allowed() -> Self {
        ApiError::new(
            405,
            Some("MethodNotAllowed"),
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    pub(crate) fn gone(message: impl Into<String>) -> Self {
        ApiError::new(410, Some("Expired"), message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, None, message)
    }
}

/// `details` naming an object by resource: `{name, group, kind: <plural>}` (group omitted for core).
pub(crate) fn resource_details(res: &ResourceDef, name: Option<&str>) -> Value {
    let mut d = serde_json::Map::new();
    if let Some(n) = name {
        d.insert("name".into(), n.into());
    }
    if !res.group.is_empty() {
        d.insert("group".into(), res.group.into());
    }
    d.insert("kind".into(), res.plural.into());
    Value::Object(d)
}

/// A `Success` Status (binding answers, deletes of objects that are gone).
pub(crate) fn success_status(code: u16, details: Option<Value>) -> Vec<u8> {
    let mut v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some(d) = details {
        v["details"] = d;
    }
    v["code"] = code.into();
    // serde_json sorts keys; the order of a Status is part of what users see, so build it by hand.
    let mut out = String::from(
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Success\"",
    );
    if let Some(d) = v.get("details") {
        out.push_str(",\"details\":");
        out.push_str(&d.to_string());
    }
    out.push_str(&format!(",\"code\":{code}}}"));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;

    #[test]
    fn not_found_matches_the_reference_body() {
        let res = lookup("resource.k8s.io", "v1", "resourceclaims").unwrap();
        let body: Value = serde_json::from_slice(&ApiError::not_found(res, "x").body()).unwrap();
        assert_eq!(
            body,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"resourceclaims.resource.k8s.io \"x\" not found","reason":"NotFound",
                "details":{"name":"x","group":"resource.k8s.io","kind":"resourceclaims"},"code":404})
        );
    }

    #[test]
    fn invalid_lists_distinct_errors_once_but_keeps_duplicate_causes() {
        let res = lookup("resource.k8s.io", "v1", "resourceclaims").unwrap();
        let c = Cause::invalid("metadata.uid", &json!("dead"), "field is immutable");
        let e = ApiError::invalid(res, "one", vec![c.clone(), c]);
        assert_eq!(
            e.message,
            "ResourceClaim.resource.k8s.io \"one\" is invalid: metadata.uid: Invalid value: \"dead\": field is immutable"
        );
        assert_eq!(e.details.unwrap()["causes"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn invalid_with_several_errors_uses_brackets() {
        let res = lookup("resource.k8s.io", "v1", "resourceclaims").unwrap();
        let e = ApiError::invalid(
            res,
            "s",
            vec![Cause::required("a", ""), Cause::required("b", "")],
        );
        assert!(
            e.message
                .ends_with("is invalid: [a: Required value, b: Required value]")
        );
    }
}
