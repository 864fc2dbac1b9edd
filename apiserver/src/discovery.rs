//! Discovery: `/version`, legacy `/api`, `/apis`, `/apis/<group>[/<version>]`, aggregated discovery
//! (`apidiscovery.k8s.io/v2`), and the small OpenAPI v3 document kubectl needs (references 01-08).
//!
//! kubectl refuses `create -f`/`apply -f` without OpenAPI ("failed to download openapi") unless
//! `--validate=false`. What it reads from `/openapi/v3` is only whether each kind's PATCH operation
//! accepts the `fieldValidation` parameter; if it does, kubectl leaves validation to the server
//! (`fieldValidation=Strict`), which this server implements. So the documents here list one PATCH
//! operation per kind with that parameter and no schemas. kubectl then computes `apply` patches
//! from its built-in types (core kinds) or falls back to JSON merge patches (resource.k8s.io).

use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use crate::http::{ResponseBody, Wanted, json_response, negotiate, typed_response};
use crate::resources::{self, GROUPS, ResourceDef};
use crate::status::ApiError;
use http::Response;

const DISCOVERY_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// GET /version. The version is the one the reference captures were taken from.
pub(crate) fn version() -> Bytes {
    Bytes::from(
        json!({
            "major": "1",
            "minor": "36",
            "emulationMajor": "1",
            "emulationMinor": "36",
            "minCompatibilityMajor": "1",
            "minCompatibilityMinor": "35",
            "gitVersion": "v1.36.2",
            "gitCommit": "embedded",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "embedded-apiserver",
            "compiler": "rustc",
            "platform": "linux/amd64"
        })
        .to_string(),
    )
}

/// Subresources per resource: (name, kind, verbs).
fn subresources(res: &ResourceDef) -> Vec<(&'static str, &'static str, &'static [&'static str])> {
    let mut subs = Vec::new();
    if res.kind == "Pod" && res.group.is_empty() {
        subs.push(("binding", "Binding", &["create"][..]));
    }
    if res.has_status {
        subs.push(("status", res.kind, &["get", "patch", "update"][..]));
    }
    subs
}

fn aggregated_resource(res: &ResourceDef) -> Value {
    let mut r = json!({
        "resource": res.plural,
        "responseKind": {"group": "", "version": "", "kind": res.kind},
        "scope": if res.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": res.singular,
        "verbs": res.verbs,
    });
    if !res.short_names.is_empty() {
        r["shortNames"] = json!(res.short_names);
    }
    if !res.categories.is_empty() {
        r["categories"] = json!(res.categories);
    }
    let subs: Vec<Value> = subresources(res)
        .into_iter()
        .map(|(name, kind, verbs)| {
            json!({"subresource": name, "responseKind": {"group": "", "version": "", "kind": kind}, "verbs": verbs})
        })
        .collect();
    if !subs.is_empty() {
        r["subresources"] = Value::Array(subs);
    }
    r
}

fn aggregated_group(name: Option<&str>, versions: &[&str], group: &str) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| {
            let mut resources: Vec<Value> = resources::in_group_version(group, version)
                .map(aggregated_resource)
                .collect();
            resources.sort_by(|a, b| a["resource"].as_str().cmp(&b["resource"].as_str()));
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let metadata = match name {
        Some(n) => json!({"name": n}),
        None => json!({}),
    };
    json!({"metadata": metadata, "versions": versions})
}

/// The served groups in priority order, each with its versions (preferred first).
fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for (g, v) in GROUPS {
        match out.iter_mut().find(|(name, _)| name == g) {
            Some((_, versions)) => versions.push(v),
            None => out.push((g, vec![v])),
        }
    }
    out
}

fn discovery_list(items: Vec<Value>) -> Response<ResponseBody> {
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
    typed_response(StatusCode::OK, DISCOVERY_V2, body.to_string())
}

/// GET /api.
pub(crate) fn api(accept: &str, host: &str) -> Result<Response<ResponseBody>, ApiError> {
    match negotiate(accept, false, true)? {
        Wanted::DiscoveryV2 => Ok(discovery_list(vec![aggregated_group(None, &["v1"], "")])),
        _ => {
            let address = if host.is_empty() { "127.0.0.1" } else { host };
            let body = json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]
            });
            Ok(json_response(StatusCode::OK, body.to_string()))
        }
    }
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = gvs[0].clone();
    json!({"name": group, "versions": gvs, "preferredVersion": preferred})
}

/// GET /apis.
pub(crate) fn apis(accept: &str) -> Result<Response<ResponseBody>, ApiError> {
    match negotiate(accept, false, true)? {
        Wanted::DiscoveryV2 => Ok(discovery_list(
            groups()
                .iter()
                .map(|(g, v)| aggregated_group(Some(g), v, g))
                .collect(),
        )),
        _ => {
            let groups: Vec<Value> = groups().iter().map(|(g, v)| api_group(g, v)).collect();
            let body = json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups});
            Ok(json_response(StatusCode::OK, body.to_string()))
        }
    }
}

/// GET /apis/<group>.
pub(crate) fn group(group: &str) -> Result<Response<ResponseBody>, ApiError> {
    let (g, v) = groups()
        .into_iter()
        .find(|(g, _)| *g == group)
        .ok_or_else(ApiError::path_not_found)?;
    let mut body = api_group(g, &v);
    body["kind"] = "APIGroup".into();
    body["apiVersion"] = "v1".into();
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// GET /api/v1 and /apis/<group>/<version>: the legacy APIResourceList.
pub(crate) fn resource_list(
    group: &str,
    version: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    let mut entries: Vec<Value> = Vec::new();
    for res in resources::in_group_version(group, version) {
        let mut r = json!({
            "name": res.plural,
            "singularName": res.singular,
            "namespaced": res.namespaced,
            "kind": res.kind,
            "verbs": res.verbs,
        });
        if !res.short_names.is_empty() {
            r["shortNames"] = json!(res.short_names);
        }
        if !res.categories.is_empty() {
            r["categories"] = json!(res.categories);
        }
        r["storageVersionHash"] = res.storage_version_hash.into();
        entries.push(r);
        for (sub, kind, verbs) in subresources(res) {
            entries.push(json!({
                "name": format!("{}/{sub}", res.plural),
                "singularName": "",
                "namespaced": res.namespaced,
                "kind": kind,
                "verbs": verbs,
            }));
        }
    }
    if entries.is_empty() {
        return Err(ApiError::path_not_found());
    }
    entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut body = json!({"kind": "APIResourceList", "groupVersion": gv, "resources": entries});
    if !group.is_empty() {
        body["apiVersion"] = "v1".into();
    }
    Ok(json_response(StatusCode::OK, body.to_string()))
}

fn gv_paths() -> Vec<(String, &'static str, &'static str)> {
    let mut out = vec![("api/v1".to_string(), "", "v1")];
    for (g, v) in GROUPS {
        out.push((format!("apis/{g}/{v}"), g, v));
    }
    out
}

/// GET /openapi/v3: the index of per-group-version documents.
pub(crate) fn openapi_root() -> Response<ResponseBody> {
    let mut paths = serde_json::Map::new();
    for (path, _, _) in gv_paths() {
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash=EMBEDDED0001")}),
        );
    }
    json_response(StatusCode::OK, json!({"paths": paths}).to_string())
}

/// GET /openapi/v3/<api/v1 | apis/group/version>.
pub(crate) fn openapi_group_version(path: &str) -> Result<Response<ResponseBody>, ApiError> {
    let (_, group, version) = gv_paths()
        .into_iter()
        .find(|(p, _, _)| p == path)
        .ok_or_else(ApiError::path_not_found)?;
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = serde_json::Map::new();
    for res in resources::in_group_version(group, version) {
        let item = if res.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", res.plural)
        } else {
            format!("{prefix}/{}/{{name}}", res.plural)
        };
        let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
            .iter()
            .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
            .collect();
        paths.insert(
            item,
            json!({
                "patch": {
                    "operationId": format!("patch{}", res.kind),
                    "parameters": params,
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": res.kind}
                }
            }),
        );
    }
    let doc = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.36.2"},
        "paths": paths,
        "components": {"schemas": {}}
    });
    Ok(json_response(StatusCode::OK, doc.to_string()))
}
