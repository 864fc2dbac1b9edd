//! The request log: who sent which request, described as kube-apiserver's `RequestInfo` (the
//! attributes RBAC authorizes), and the response code. Off by default; while off, a request pays
//! one relaxed atomic load.

use std::sync::atomic::{AtomicBool, Ordering};

use http::Request;
use parking_lot::Mutex;

/// The user of requests from [`crate::ApiServer::client`] and of network requests without an
/// `Impersonate-User` header.
pub(crate) const ADMIN: &str = "system:admin";

/// One request, as recorded by [`crate::ApiServer::record_requests`].
///
/// The fields follow kube-apiserver's `RequestInfo` (what an RBAC rule matches against):
///
/// - `verb`: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
///   A GET without a name is `list`, or `watch` with `watch=true`; a DELETE without a name is
///   `deletecollection`. For a list or watch whose `fieldSelector` requires `metadata.name=X`,
///   `name` is `X` (RBAC's `resourceNames` apply to it, as in the real server).
/// - `namespace`: for `/api/v1/namespaces/NAME` this is `NAME`, as in the real server.
/// - Non-resource requests (`/version`, `/api`, `/apis/GROUP`, `/openapi/v3`, `/healthz`, …) have
///   `verb` = the lower-case HTTP method, empty `api_group`, `api_version` and `resource`, and
///   `name` = the URL path (what an RBAC `nonResourceURLs` rule matches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Who sent it: [`crate::ApiServer::client_as`]'s user, `system:admin` for
    /// [`crate::ApiServer::client`], or the `Impersonate-User` header when the request has one.
    pub user: String,
    /// The RBAC verb.
    pub verb: String,
    /// The API group (`""` for core).
    pub api_group: String,
    /// The API version (`v1`).
    pub api_version: String,
    /// The resource (plural), `""` for non-resource requests.
    pub resource: String,
    /// The subresource (`status`, `binding`), if any.
    pub subresource: Option<String>,
    /// The namespace, if any.
    pub namespace: Option<String>,
    /// The object name; the URL path for non-resource requests.
    pub name: Option<String>,
    /// The HTTP status code of the response (200 for a watch that started, 0 when an injected
    /// `drop` fault closed the connection without an answer).
    pub code: u16,
}

/// The recorder, owned by the registry.
#[derive(Default)]
pub(crate) struct Log {
    on: AtomicBool,
    records: Mutex<Vec<RequestRecord>>,
}

impl Log {
    pub(crate) fn set(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    pub(crate) fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    pub(crate) fn push(&self, r: RequestRecord) {
        self.records.lock().push(r);
    }

    pub(crate) fn records(&self) -> Vec<RequestRecord> {
        self.records.lock().clone()
    }
}

/// The effective user: the `Impersonate-User` header wins over the connection's user.
pub(crate) fn user_of<B>(req: &Request<B>, default: &str) -> String {
    req.headers()
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or(default)
        .to_string()
}

/// A record of `req` (code 0 until the response is known), as `RequestInfoFactory.NewRequestInfo`
/// of k8s.io/apiserver derives it.
pub(crate) fn request_info<B>(req: &Request<B>, user: String) -> RequestRecord {
    let path = req.uri().path();
    let method = req.method().as_str();
    let mut r = RequestRecord {
        user,
        verb: method.to_ascii_lowercase(),
        api_group: String::new(),
        api_version: String::new(),
        resource: String::new(),
        subresource: None,
        namespace: None,
        name: Some(path.to_string()),
        code: 0,
    };
    let mut parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if parts.len() < 3 || !matches!(parts[0], "api" | "apis") {
        return r;
    }
    let groupless = parts[0] == "api";
    parts.remove(0);
    let mut group = "";
    if !groupless {
        if parts.len() < 3 {
            return r;
        }
        group = parts.remove(0);
    }
    r.api_group = group.to_string();
    r.api_version = parts.remove(0).to_string();
    r.name = None;
    let mut verb = match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    };
    // The deprecated /watch/ and /proxy/ prefixes.
    if matches!(parts[0], "watch" | "proxy") {
        verb = if parts[0] == "watch" {
            "watch"
        } else {
            "proxy"
        };
        parts.remove(0);
        if parts.is_empty() || parts[0].is_empty() {
            r.verb = verb.to_string();
            return r;
        }
    }
    if parts[0] == "namespaces" && parts.len() > 1 {
        r.namespace = Some(parts[1].to_string());
        if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
            parts.drain(..2);
        }
    }
    if parts.len() >= 3 && verb != "proxy" {
        r.subresource = Some(parts[2].to_string());
    }
    if parts.len() >= 2 {
        r.name = Some(parts[1].to_string());
    }
    r.resource = parts[0].to_string();
    if r.name.is_none() && verb == "get" {
        let mut watch = false;
        for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()) {
            match &*k {
                // ListOptions.Watch is a bool; Go's strconv.ParseBool spellings.
                "watch" => watch = matches!(&*v, "1" | "t" | "T" | "true" | "TRUE" | "True"),
                "fieldSelector" => {
                    r.name = exact_name(&v).filter(|n| valid_path_segment(n));
                }
                _ => {}
            }
        }
        verb = if watch { "watch" } else { "list" };
    }
    if r.name.is_none() && verb == "delete" {
        verb = "deletecollection";
    }
    r.verb = verb.to_string();
    r
}

/// `X` when the field selector requires `metadata.name=X` (or `==`), as
/// `fields.Selector.RequiresExactMatch`.
fn exact_name(selector: &str) -> Option<String> {
    let mut terms = Vec::new();
    let (mut cur, mut escaped) = (String::new(), false);
    for c in selector.chars() {
        match c {
            _ if escaped => {
                cur.push('\\');
                cur.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            ',' => terms.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    terms.push(cur);
    terms.iter().find_map(|t| {
        if t.contains("!=") {
            return None;
        }
        let (field, value) = t.split_once("==").or_else(|| t.split_once('='))?;
        (field.trim() == "metadata.name").then(|| unescape(value))
    })
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// `path.IsValidPathSegmentName`: not `.` or `..`, no `/` or `%`.
fn valid_path_segment(name: &str) -> bool {
    !matches!(name, "." | "..") && !name.contains(['/', '%'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: &str, uri: &str) -> RequestRecord {
        let req = Request::builder().method(method).uri(uri).body(()).unwrap();
        request_info(&req, ADMIN.into())
    }

    fn brief(r: &RequestRecord) -> String {
        format!(
            "{} {}/{}/{} sub={:?} ns={:?} name={:?}",
            r.verb, r.api_group, r.api_version, r.resource, r.subresource, r.namespace, r.name
        )
    }

    #[test]
    fn resource_requests_follow_request_info() {
        let cases = [
            (
                "GET",
                "/api/v1/namespaces/default/pods",
                "list /v1/pods sub=None ns=Some(\"default\") name=None",
            ),
            (
                "GET",
                "/api/v1/pods?watch=true&resourceVersion=5",
                "watch /v1/pods sub=None ns=None name=None",
            ),
            (
                "GET",
                "/api/v1/namespaces/kube-system/leases?watch=1&fieldSelector=metadata.name%3Dx",
                "watch /v1/leases sub=None ns=Some(\"kube-system\") name=Some(\"x\")",
            ),
            (
                "GET",
                "/api/v1/nodes?fieldSelector=spec.unschedulable%3Dfalse,metadata.name%3D%3Dn1",
                "list /v1/nodes sub=None ns=None name=Some(\"n1\")",
            ),
            (
                "GET",
                "/api/v1/nodes?fieldSelector=metadata.name!%3Dn1",
                "list /v1/nodes sub=None ns=None name=None",
            ),
            (
                "POST",
                "/api/v1/namespaces/default/pods/p/binding",
                "create /v1/pods sub=Some(\"binding\") ns=Some(\"default\") name=Some(\"p\")",
            ),
            (
                "PATCH",
                "/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims/c/status",
                "patch resource.k8s.io/v1/resourceclaims sub=Some(\"status\") ns=Some(\"ns\") name=Some(\"c\")",
            ),
            (
                "DELETE",
                "/apis/resource.k8s.io/v1/namespaces/ns/resourceclaims",
                "deletecollection resource.k8s.io/v1/resourceclaims sub=None ns=Some(\"ns\") name=None",
            ),
            (
                "GET",
                "/api/v1/namespaces/ns1",
                "get /v1/namespaces sub=None ns=Some(\"ns1\") name=Some(\"ns1\")",
            ),
            (
                "PUT",
                "/api/v1/namespaces/ns1/finalize",
                "update /v1/namespaces sub=Some(\"finalize\") ns=Some(\"ns1\") name=Some(\"ns1\")",
            ),
            (
                "GET",
                "/api/v1/namespaces",
                "list /v1/namespaces sub=None ns=None name=None",
            ),
            (
                "GET",
                "/api/v1/watch/namespaces/default/pods",
                "watch /v1/pods sub=None ns=Some(\"default\") name=None",
            ),
        ];
        for (method, uri, want) in cases {
            assert_eq!(brief(&info(method, uri)), want, "{method} {uri}");
        }
    }

    #[test]
    fn non_resource_requests_carry_the_path() {
        for (method, uri) in [
            ("GET", "/version"),
            ("GET", "/api"),
            ("GET", "/api/v1"),
            ("GET", "/apis/resource.k8s.io"),
            ("GET", "/apis/resource.k8s.io/v1"),
            ("GET", "/openapi/v3/api/v1"),
            ("POST", "/healthz"),
        ] {
            let r = info(method, uri);
            assert_eq!(
                (r.verb.as_str(), r.resource.as_str(), r.name.as_deref()),
                (method.to_ascii_lowercase().as_str(), "", Some(uri)),
                "{method} {uri}"
            );
        }
    }
}
