//! The HTTP surface: URL routing, query parameters, content negotiation, and the read verbs (get,
//! list, watch). Writes are delegated to [`crate::registry`].
//!
//! The same [`handle`] function serves the in-process `kube::Client` (through [`InProcess`], a
//! tower service) and the loopback listener, so both see identical behaviour.

pub(crate) mod body;
mod table;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

pub(crate) use body::ResponseBody;

use crate::audit;
use crate::discovery;
use crate::faults::Decision;
use crate::registry::{DeleteOptions, DeleteResult, Registry, WriteOptions, WriteResult};
use crate::resources::{self, Kind, ResourceDef};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Cause};
use crate::store::Stored;
use crate::typed::FieldValidation;
use crate::validation::Subresource;
use crate::watch::{self, WatchParams, WatchStart};

/// Default watch duration when the client gives no `timeoutSeconds` (the real server picks 30-60 min).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// A tower service answering `kube::Client` requests in-process.
#[derive(Clone)]
pub(crate) struct InProcess {
    pub(crate) reg: Arc<Registry>,
    /// Whom the requests are attributed to in the request log.
    pub(crate) user: Arc<str>,
}

impl<B> tower::Service<Request<B>> for InProcess
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    type Response = Response<ResponseBody>;
    type Error = ConnectionDropped;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectionDropped>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectionDropped>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let reg = self.reg.clone();
        let user = self.user.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    return Ok(error_response(&ApiError::bad_request(format!(
                        "cannot read request body: {e}"
                    ))));
                }
            };
            handle(reg, &user, Request::from_parts(parts, bytes)).await
        })
    }
}

/// An injected `drop` fault: the connection ends without an answer. The in-process client sees
/// it as a service error, a network client as a closed connection, as with a real server that
/// crashed or a load balancer that cut the connection.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by the server (injected fault)")]
pub struct ConnectionDropped;

/// Answers one request from `user` (recorded in the request log when it is on; a dropped one with
/// code 0).
pub(crate) async fn handle(
    reg: Arc<Registry>,
    user: &str,
    req: Request<Bytes>,
) -> Result<Response<ResponseBody>, ConnectionDropped> {
    // Described only when something needs the description: it costs a few allocations.
    let info = (reg.audit.enabled() || reg.faults.active())
        .then(|| audit::request_info(&req, audit::user_of(&req, user)));
    let decision = info.as_ref().and_then(|i| reg.faults.decide(i));
    let record = info.filter(|_| reg.audit.enabled());
    let audit = record.as_ref().map(|_| reg.clone());
    let resp = match decision {
        Some(Decision::Fail(e)) => Ok(error_response(&e)),
        Some(Decision::Drop { handled }) => {
            if handled {
                // The write takes effect; only its answer is lost.
                let _ = route(reg.clone(), req).await;
            }
            Err(ConnectionDropped)
        }
        other => Ok({
            if let Some(Decision::Delay(d)) = other {
                tokio::time::sleep(d).await;
            }
            let resp = route(reg, req).await.unwrap_or_else(|e| error_response(&e));
            match other {
                // An error answer has a full body, which `cut_after` leaves as it is.
                Some(Decision::CutWatch(d)) => resp.map(|body| body.cut_after(d)),
                _ => resp,
            }
        }),
    };
    if let (Some(mut record), Some(reg)) = (record, audit) {
        record.code = resp.as_ref().map_or(0, |r| r.status().as_u16());
        reg.audit.push(record);
    }
    resp
}

pub(crate) fn error_response(e: &ApiError) -> Response<ResponseBody> {
    let mut r = json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        e.body(),
    );
    for (k, v) in &e.headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().append(*k, v);
        }
    }
    r
}

pub(crate) fn json_response(code: StatusCode, body: impl Into<Bytes>) -> Response<ResponseBody> {
    typed_response(code, "application/json", body)
}

pub(crate) fn typed_response(
    code: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(body));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Query parameters, decoded.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1" | "True"))
    }
}

/// What the client asked for in `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wanted {
    Json,
    Table,
    DiscoveryV2,
}

/// Picks the first acceptable media type of the `Accept` list (clients list them by preference).
pub(crate) fn negotiate(
    accept: &str,
    table_ok: bool,
    discovery_ok: bool,
) -> Result<Wanted, ApiError> {
    if accept.trim().is_empty() {
        return Ok(Wanted::Json);
    }
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| {
                p.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        let param = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        if !matches!(media.as_str(), "application/json" | "*/*" | "application/*") {
            continue;
        }
        match (param("as"), param("g"), param("v")) {
            (None, _, _) => return Ok(Wanted::Json),
            (Some("Table"), Some("meta.k8s.io"), Some("v1" | "v1beta1")) if table_ok => {
                return Ok(Wanted::Table);
            }
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2"))
                if discovery_ok =>
            {
                return Ok(Wanted::DiscoveryV2);
            }
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable())
}

fn header_str(req: &Request<Bytes>, name: header::HeaderName) -> &str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// A resolved resource URL.
struct Target {
    res: &'static ResourceDef,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn resolve(group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let not_found = ApiError::path_not_found;
    let (namespace, rest) = match rest {
        // /api/v1/namespaces/<ns>/<plural>/... (but /namespaces/<name>/status is the namespace itself)
        ["namespaces", ns, plural, tail @ ..]
            if !(group.is_empty() && matches!(*plural, "status" | "finalize"))
                && resources::lookup(group, version, plural).is_some_and(|r| r.namespaced) =>
        {
            (Some(ns.to_string()), &rest[2..])
        }
        ["namespaces", _, plural, ..] if *plural == "bindings" && group.is_empty() => {
            (Some(rest[1].to_string()), &rest[2..])
        }
        _ => (None, rest),
    };
    let _ = namespace.as_ref();
    let (plural, tail) = rest.split_first().ok_or_else(not_found)?;
    if *plural == "bindings" && group.is_empty() {
        let res = resources::lookup("", "v1", "pods").expect("pods exist");
        return Ok(Target {
            res,
            namespace,
            name: None,
            sub: Some("bindings".into()),
        });
    }
    let res = resources::lookup(group, version, plural).ok_or_else(not_found)?;
    let (name, sub) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => (Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(not_found()),
    };
    if namespace.is_none() && res.namespaced && name.is_some() {
        return Err(not_found());
    }
    Ok(Target {
        res,
        namespace,
        name,
        sub,
    })
}

async fn route(
    reg: Arc<Registry>,
    req: Request<Bytes>,
) -> Result<Response<ResponseBody>, ApiError> {
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query());
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let accept = header_str(&req, header::ACCEPT).to_string();
    let get = req.method() == Method::GET;
    match segs.as_slice() {
        ["version"] if get => Ok(json_response(StatusCode::OK, discovery::version())),
        ["healthz" | "readyz" | "livez", ..] if get => Ok(typed_response(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok",
        )),
        ["api"] if get => discovery::api(&accept, header_str(&req, header::HOST)),
        ["apis"] if get => discovery::apis(&accept),
        ["api", "v1"] if get => discovery::resource_list("", "v1"),
        ["apis", g] if get => discovery::group(g),
        ["apis", g, v] if get => discovery::resource_list(g, v),
        ["openapi", "v3"] if get => Ok(discovery::openapi_root()),
        ["openapi", "v3", rest @ ..] if get => discovery::openapi_group_version(&rest.join("/")),
        ["api", "v1", rest @ ..] => resource_request(reg, req, query, "", "v1", rest).await,
        ["apis", g, v, rest @ ..] => resource_request(reg, req, query, g, v, rest).await,
        _ => Err(ApiError::path_not_found()),
    }
}

fn write_options(query: &Query, options_kind: &str) -> Result<WriteOptions, ApiError> {
    let field_validation = match query.get("fieldValidation").unwrap_or_default() {
        "" | "Warn" => FieldValidation::Warn,
        "Strict" => FieldValidation::Strict,
        "Ignore" => FieldValidation::Ignore,
        other => {
            return Err(ApiError::invalid_options(
                options_kind,
                vec![Cause::not_supported(
                    "fieldValidation",
                    &Value::from(other),
                    &["", "Ignore", "Strict", "Warn"],
                )],
            ));
        }
    };
    Ok(WriteOptions {
        field_validation,
        dry_run: query.get("dryRun") == Some("All"),
        skip_namespace_check: false,
    })
}

/// Decodes a POST/PUT body (JSON or YAML).
fn decode_body(req: &Request<Bytes>, res: &ResourceDef) -> Result<Value, ApiError> {
    let ct = header_str(req, header::CONTENT_TYPE)
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let parsed = match ct.as_str() {
        "" | "application/json" | "*/*" => {
            serde_json::from_slice::<Value>(req.body()).map_err(|e| e.to_string())
        }
        "application/yaml" => {
            serde_yaml_ng::from_slice::<Value>(req.body()).map_err(|e| e.to_string())
        }
        _ => return Err(ApiError::unsupported_body_type()),
    };
    parsed.map_err(|e| {
        let snippet: String = String::from_utf8_lossy(req.body()).chars().take(30).collect();
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {e} ({snippet} ...)",
            res.kind
        ))
    })
}

fn write_response(code: StatusCode, r: WriteResult) -> Response<ResponseBody> {
    let mut resp = json_response(code, r.obj.json().clone());
    for w in r.warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "\\\""))) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

async fn resource_request(
    reg: Arc<Registry>,
    req: Request<Bytes>,
    query: Query,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response<ResponseBody>, ApiError> {
    let t = resolve(group, version, rest)?;
    let res = t.res;
    let ns = t.namespace.as_deref();
    let method = req.method().clone();
    let accept = header_str(&req, header::ACCEPT).to_string();
    match (t.name.as_deref(), t.sub.as_deref(), method) {
        // ----- collection -----
        (None, None, Method::GET) => {
            if query.flag("watch") {
                watch_request(reg, res, ns, &query)
            } else {
                let wanted = negotiate(&accept, true, false)?;
                list_request(reg, res, ns, &query, wanted).await
            }
        }
        (None, None, Method::POST) => {
            if res.namespaced && ns.is_none() {
                return Err(ApiError::path_not_found());
            }
            negotiate(&accept, false, false)?;
            let body = decode_body(&req, res)?;
            let opts = write_options(&query, "CreateOptions")?;
            let r = reg.create(res, ns, body, opts)?;
            Ok(write_response(StatusCode::CREATED, r))
        }
        (None, None, Method::DELETE) => delete_collection(&reg, res, ns, &query),
        (None, Some("bindings"), Method::POST) => {
            let body = decode_body(&req, res)?;
            reg.bind(ns.unwrap_or("default"), None, &body)?;
            Ok(json_response(
                StatusCode::CREATED,
                crate::status::success_status(201, None),
            ))
        }
        // ----- one object -----
        (Some(name), None | Some("status"), Method::GET) => {
            if t.sub.is_some() && !res.has_status {
                return Err(ApiError::path_not_found());
            }
            let wanted = negotiate(&accept, true, false)?;
            let key = (
                if res.namespaced {
                    ns.unwrap_or_default().to_string()
                } else {
                    String::new()
                },
                name.to_string(),
            );
            let obj = reg
                .store
                .get(res.kind_enum, &key)
                .ok_or_else(|| ApiError::not_found(res, name))?;
            let obj = Registry::present(res, &obj);
            if wanted == Wanted::Table {
                let include = table::Include::parse(query.get("includeObject"));
                return Ok(json_response(
                    StatusCode::OK,
                    table::render(res, std::slice::from_ref(&obj), obj.rv, None, include),
                ));
            }
            Ok(json_response(StatusCode::OK, obj.json().clone()))
        }
        (Some(name), sub @ (None | Some("status")), Method::PUT) => {
            let sub = subresource(res, sub)?;
            negotiate(&accept, false, false)?;
            let body = decode_body(&req, res)?;
            let opts = write_options(&query, "UpdateOptions")?;
            let r = reg.update(res, ns, name, body, sub, opts)?;
            Ok(write_response(StatusCode::OK, r))
        }
        (Some(name), sub @ (None | Some("status")), Method::PATCH) => {
            let sub = subresource(res, sub)?;
            negotiate(&accept, false, false)?;
            patch_request(&reg, &req, &query, res, ns, name, sub)
        }
        (Some(name), None, Method::DELETE) => {
            let opts = delete_options(&req, &query)?;
            match reg.delete(res, ns, name, &opts)? {
                DeleteResult::Object(o) => Ok(json_response(StatusCode::OK, o.json().clone())),
                DeleteResult::Gone(status) => Ok(json_response(StatusCode::OK, status)),
            }
        }
        (Some(name), Some("binding"), Method::POST) if res.kind_enum == Kind::Pod => {
            let body = decode_body(&req, res)?;
            reg.bind(ns.unwrap_or("default"), Some(name), &body)?;
            Ok(json_response(
                StatusCode::CREATED,
                crate::status::success_status(201, None),
            ))
        }
        (_, Some(_), Method::GET | Method::PUT | Method::PATCH | Method::POST | Method::DELETE) => {
            Err(ApiError::path_not_found())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn subresource(res: &ResourceDef, sub: Option<&str>) -> Result<Subresource, ApiError> {
    match sub {
        None => Ok(Subresource::Main),
        Some("status") if res.has_status => Ok(Subresource::Status),
        _ => Err(ApiError::path_not_found()),
    }
}

fn patch_request(
    reg: &Arc<Registry>,
    req: &Request<Bytes>,
    query: &Query,
    res: &'static ResourceDef,
    ns: Option<&str>,
    name: &str,
    sub: Subresource,
) -> Result<Response<ResponseBody>, ApiError> {
    let ct = header_str(req, header::CONTENT_TYPE);
    let media = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let opts = write_options(query, "PatchOptions")?;
    if media == "application/apply-patch+yaml" || media == "application/apply-patch+cbor" {
        return apply_request(reg, req, query, res, ns, name, sub, opts);
    }
    let patch_type = kube_patch::PatchType::from_content_type(ct)
        .ok_or_else(ApiError::unsupported_patch_type)?;
    let r = reg.patch(res, ns, name, patch_type, req.body(), sub, opts)?;
    Ok(write_response(StatusCode::OK, r))
}

/// Server-side apply, approximated: the applied configuration is created when the object does not
/// exist, and otherwise merged into it as a strategic merge patch. Field ownership, conflicts and
/// removal of fields a manager stopped applying are not implemented.
#[allow(clippy::too_many_arguments)]
fn apply_request(
    reg: &Arc<Registry>,
    req: &Request<Bytes>,
    query: &Query,
    res: &'static ResourceDef,
    ns: Option<&str>,
    name: &str,
    sub: Subresource,
    opts: WriteOptions,
) -> Result<Response<ResponseBody>, ApiError> {
    if query.get("fieldManager").unwrap_or_default().is_empty() {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            vec![Cause::required(
                "fieldManager",
                "is required for apply patch",
            )],
        ));
    }
    let applied: Value = serde_yaml_ng::from_slice(req.body())
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    let key = (
        if res.namespaced {
            ns.unwrap_or_default().to_string()
        } else {
            String::new()
        },
        name.to_string(),
    );
    if reg.store.get(res.kind_enum, &key).is_none() && sub == Subresource::Main {
        let mut body = applied;
        body["metadata"]["name"] = name.into();
        let r = reg.create(res, ns, body, opts)?;
        return Ok(write_response(StatusCode::CREATED, r));
    }
    let bytes = serde_json::to_vec(&applied).expect("values serialize");
    let r = reg.patch(
        res,
        ns,
        name,
        kube_patch::PatchType::StrategicMerge,
        &bytes,
        sub,
        opts,
    )?;
    Ok(write_response(StatusCode::OK, r))
}

fn delete_options(req: &Request<Bytes>, query: &Query) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions {
        dry_run: query.get("dryRun") == Some("All"),
        grace_period_seconds: query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()),
        ..Default::default()
    };
    if !req.body().is_empty() {
        let body: Value = serde_json::from_slice(req.body())
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
        opts.uid = body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.resource_version = body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.grace_period_seconds = body.get("gracePeriodSeconds").and_then(Value::as_i64);
        if body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "All"))
        {
            opts.dry_run = true;
        }
    }
    Ok(opts)
}

fn delete_collection(
    reg: &Arc<Registry>,
    res: &'static ResourceDef,
    ns: Option<&str>,
    query: &Query,
) -> Result<Response<ResponseBody>, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(
        query.get("fieldSelector").unwrap_or_default(),
        res.kind_enum,
        res.group.is_empty(),
    )?;
    let (items, _) = reg.store.snapshot(res.kind_enum, ns);
    let opts = DeleteOptions {
        dry_run: query.get("dryRun") == Some("All"),
        ..Default::default()
    };
    for obj in watch::filter_items(&items, &labels, &fields) {
        let ns = if res.namespaced {
            Some(obj.namespace())
        } else {
            None
        };
        match reg.delete(res, ns, obj.name(), &opts) {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        crate::status::success_status(200, None),
    ))
}

// ----- list -----

fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid resource version: resourceVersion: Invalid value: \"{s}\": strconv.ParseUint: parsing \"{s}\": invalid syntax"
        ))
    })
}

/// The continue token: opaque to clients; ours encodes the list's resourceVersion and the last key.
fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{ns}/{name}\u{0}")});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: illegal base64 data at input byte 0".to_string(),
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .trim_end_matches('\u{0}');
    let (ns, name) = start.split_once('/').ok_or_else(bad)?;
    Ok((rv, ns.to_string(), name.to_string()))
}

async fn list_request(
    reg: Arc<Registry>,
    res: &'static ResourceDef,
    ns: Option<&str>,
    query: &Query,
    wanted: Wanted,
) -> Result<Response<ResponseBody>, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(
        query.get("fieldSelector").unwrap_or_default(),
        res.kind_enum,
        res.group.is_empty(),
    )?;
    let rv_param = query.get("resourceVersion").unwrap_or_default();
    let rvm = query.get("resourceVersionMatch").unwrap_or_default();
    let mut causes = Vec::new();
    if !rvm.is_empty() && rv_param.is_empty() {
        causes.push(Cause::forbidden(
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    if query.get("sendInitialEvents").is_some() {
        causes.push(Cause::forbidden(
            "sendInitialEvents",
            "sendInitialEvents is forbidden for list",
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid_options("ListOptions", causes));
    }
    let kind = res.kind_enum;
    let (items, list_rv) = if let Some(token) = query.get("continue").filter(|c| !c.is_empty()) {
        let (rv, _, _) = decode_continue(token)?;
        let (items, _) = reg.store.snapshot(kind, ns);
        (items, rv)
    } else if rvm == "Exact" {
        let rv = parse_rv(rv_param)?;
        let items = reg
            .store
            .snapshot_at(kind, ns, rv)
            .map_err(|_| ApiError::gone("The resourceVersion for the provided list is too old."))?;
        (items, rv)
    } else {
        if !rv_param.is_empty() {
            let want = parse_rv(rv_param)?;
            wait_for_rv(&reg, want).await?;
        }
        reg.store.snapshot(kind, ns)
    };
    let start_after = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(t) => {
            let (_, ns, name) = decode_continue(t)?;
            Some((ns, name))
        }
        None => None,
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let mut matched: Vec<&Arc<Stored>> = watch::filter_items(&items, &labels, &fields)
        .filter(|o| match &start_after {
            Some((sns, sname)) => (o.namespace(), o.name()) > (sns.as_str(), sname.as_str()),
            None => true,
        })
        .collect();
    let mut cont = None;
    if let Some(limit) = limit
        && matched.len() > limit
    {
        let remaining = matched.len() - limit;
        matched.truncate(limit);
        let last = matched[limit - 1];
        cont = Some((
            encode_continue(list_rv, last.namespace(), last.name()),
            remaining,
        ));
    }
    let shown: Vec<Arc<Stored>> = matched
        .into_iter()
        .map(|o| Registry::present(res, o))
        .collect();
    if wanted == Wanted::Table {
        let include = table::Include::parse(query.get("includeObject"));
        return Ok(json_response(
            StatusCode::OK,
            table::render(
                res,
                &shown,
                list_rv,
                cont.as_ref().map(|c| c.0.as_str()),
                include,
            ),
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        render_list(res, &shown, list_rv, cont),
    ))
}

/// `{"kind":"<Kind>List","apiVersion":..,"metadata":{..},"items":[..]}` from pre-rendered objects.
fn render_list(
    res: &ResourceDef,
    items: &[Arc<Stored>],
    rv: u64,
    cont: Option<(String, usize)>,
) -> Bytes {
    let mut out = Vec::with_capacity(64 + items.iter().map(|i| i.json().len() + 1).sum::<usize>());
    out.extend_from_slice(
        format!(
            "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{rv}\"",
            res.list_kind(),
            res.api_version()
        )
        .as_bytes(),
    );
    if let Some((token, remaining)) = cont {
        out.extend_from_slice(
            format!(",\"continue\":\"{token}\",\"remainingItemCount\":{remaining}").as_bytes(),
        );
    }
    out.extend_from_slice(b"},\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item.json());
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// A list "not older than" a future resourceVersion waits briefly, then times out like the real server.
async fn wait_for_rv(reg: &Registry, want: u64) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while reg.store.current_rv() < want {
        if tokio::time::Instant::now() >= deadline {
            let mut e = ApiError::new(
                504,
                Some("Timeout"),
                format!("Timeout: Too large resource version: {want}, current: {}", reg.store.current_rv()),
            )
            .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}));
            e.headers.push(("retry-after", "1".into()));
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

// ----- watch -----

fn watch_request(
    reg: Arc<Registry>,
    res: &'static ResourceDef,
    ns: Option<&str>,
    query: &Query,
) -> Result<Response<ResponseBody>, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(
        query.get("fieldSelector").unwrap_or_default(),
        res.kind_enum,
        res.group.is_empty(),
    )?;
    let rv = query.get("resourceVersion").unwrap_or_default();
    let rvm = query.get("resourceVersionMatch").unwrap_or_default();
    let initial = query.get("sendInitialEvents");
    let start = match initial {
        Some("true") => {
            if rvm != "NotOlderThan" {
                return Err(ApiError::invalid_options(
                    "ListOptions",
                    vec![Cause::forbidden(
                        "resourceVersionMatch",
                        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                    )],
                ));
            }
            if !rv.is_empty() {
                parse_rv(rv)?;
            }
            WatchStart::Initial { end_bookmark: true }
        }
        Some("false") if rv.is_empty() || rv == "0" => WatchStart::After(reg.store.current_rv()),
        _ if rv.is_empty() || rv == "0" => WatchStart::Initial {
            end_bookmark: false,
        },
        _ => WatchStart::After(parse_rv(rv)?),
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_WATCH_TIMEOUT);
    let params = WatchParams {
        res,
        namespace: ns.map(str::to_string),
        labels,
        fields,
        start,
        bookmarks: query.flag("allowWatchBookmarks"),
        timeout,
    };
    let rx = watch::start(reg, params);
    let mut r = Response::new(ResponseBody::stream(rx));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(accept, true, false).unwrap(), Wanted::Table);
        assert_eq!(negotiate(accept, false, false).unwrap(), Wanted::Json);
    }

    #[test]
    fn protobuf_only_is_not_acceptable() {
        assert_eq!(
            negotiate("application/vnd.kubernetes.protobuf", true, false)
                .unwrap_err()
                .code,
            406
        );
        assert_eq!(
            negotiate("application/vnd.kubernetes.protobuf, */*", true, false).unwrap(),
            Wanted::Json
        );
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(622, "demo", "guaranteed");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (622, "demo".into(), "guaranteed".into())
        );
    }
}
