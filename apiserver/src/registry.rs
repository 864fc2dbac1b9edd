//! The write path: create, update, patch, delete and bind, with the real server's semantics.
//!
//! Each operation runs the same pipeline the generic registry of kube-apiserver runs:
//! decode (with `fieldValidation`) → system fields and subresource isolation → defaults →
//! validation → commit. Updates are optimistic: the current object is read, the new one computed
//! without holding a lock, and the commit succeeds only if the object is still the one that was
//! read, else the whole computation is retried (an internal retry, invisible to the client; only
//! a client-supplied `resourceVersion` can produce 409). Nothing is committed unless the complete
//! new object is valid.
//!
//! After every commit, [`crate::controller`] gets to react (the resourceclaim controller's job).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::admission;
use crate::controller;
use crate::defaults;
use crate::events;
use crate::resources::{Kind, ResourceDef};
use crate::services;
use crate::status::{ApiError, Cause, resource_details, success_status};
use crate::store::{Key, NameChoice, Store, Stored, WriteConflict};
use crate::typed::{self, FieldValidation};
use crate::validation::{self, Subresource};

/// Options shared by create, update and patch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriteOptions {
    pub field_validation: FieldValidation,
    pub dry_run: bool,
    /// Skip the checks that the namespace and a pod's PriorityClass exist (manifest pre-checks,
    /// whose namespaces and classes may be created by the same load).
    pub skip_namespace_check: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            field_validation: FieldValidation::Warn,
            dry_run: false,
            skip_namespace_check: false,
        }
    }
}

/// A successful write: the object to answer with, and `Warning` headers.
#[derive(Debug)]
pub(crate) struct WriteResult {
    pub obj: Arc<Stored>,
    pub warnings: Vec<String>,
}

/// Options of a DELETE (query parameters and/or a `DeleteOptions` body).
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOptions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
    /// `gracePeriodSeconds`: for pods, overrides `spec.terminationGracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
}

/// What a DELETE answers.
#[derive(Debug)]
pub(crate) enum DeleteResult {
    /// The object still exists (finalizers, or a pod's last state): 200 with the object.
    Object(Arc<Stored>),
    /// The object is gone: 200 with a Success Status.
    Gone(Vec<u8>),
}

/// RFC 3339 with seconds, UTC: how `metav1.Time` is written.
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// [`now`] plus some seconds (a pod's `deletionTimestamp` is when its grace period ends).
fn now_plus(seconds: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Whether this object, with no finalizers left, is removed from storage: anything being
/// deleted, except a pod still within its grace period (`deletionGracePeriodSeconds` > 0).
fn is_finished(kind: Kind, v: &Value) -> bool {
    is_deleting(v)
        && finalizers(v) == 0
        && (kind != Kind::Pod
            || v.pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                == 0)
}

fn key_of(res: &ResourceDef, ns: Option<&str>, name: &str) -> Key {
    (
        if res.namespaced {
            ns.unwrap_or_default().to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

fn meta_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn is_deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

fn finalizers(v: &Value) -> usize {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// Drops what Go's `omitempty` would drop: `null`s (except the time fields that serialize as
/// `null`), empty lists, and empty `labels`/`annotations`.
pub(crate) fn prune(v: &mut Value) {
    const KEEP_NULL: &[&str] = &[
        "lastProbeTime",
        "lastTransitionTime",
        "lastHeartbeatTime",
        "firstTimestamp",
        "lastTimestamp",
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "eventTime",
    ];
    match v {
        Value::Object(m) => {
            m.retain(|k, x| match x {
                Value::Null => KEEP_NULL.contains(&k.as_str()),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            });
            for x in m.values_mut() {
                prune(x);
            }
            if let Some(Value::Object(meta)) = m.get_mut("metadata") {
                meta.retain(|k, x| {
                    !((k == "labels" || k == "annotations")
                        && x.as_object().is_some_and(|o| o.is_empty()))
                });
            }
        }
        Value::Array(a) => a.iter_mut().for_each(prune),
        _ => {}
    }
}

/// The embedded server's state and write logic. The HTTP layer and the controller both call it.
pub(crate) struct Registry {
    pub(crate) store: Store,
    /// The request log (see [`crate::ApiServer::record_requests`]).
    pub(crate) audit: crate::audit::Log,
    /// Injected faults (see [`crate::ApiServer::set_faults`]).
    pub(crate) faults: crate::faults::Faults,
    /// A handle on itself, for the timers that end pods' grace periods.
    self_ref: std::sync::OnceLock<std::sync::Weak<Registry>>,
    /// Held from a Service's address allocation until it is stored (`crate::services`).
    service_alloc: std::sync::Mutex<()>,
}

enum Attempt<T> {
    Done(T),
    Retry,
}

impl Registry {
    pub(crate) fn new(history_limit: usize) -> Self {
        Registry {
            store: Store::new(history_limit),
            audit: crate::audit::Log::default(),
            faults: crate::faults::Faults::default(),
            self_ref: std::sync::OnceLock::new(),
            service_alloc: std::sync::Mutex::new(()),
        }
    }

    /// Lets the registry start timers that hold a reference to it (pod grace periods).
    pub(crate) fn set_self(self: &Arc<Self>) {
        let _ = self.self_ref.set(Arc::downgrade(self));
    }

    // ----- shared steps -----

    /// The body's `apiVersion`/`kind` must be the resource's (or absent).
    fn check_kind(res: &ResourceDef, body: &mut Value) -> Result<(), ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: expected an object",
                res.kind
            )));
        }
        let api_version = res.api_version();
        let kind = body
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let av = body
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if (!kind.is_empty() && kind != res.kind) || (!av.is_empty() && av != api_version) {
            let version = av.rsplit('/').next().unwrap_or_default();
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {}: converting ({version}.{kind}) to ({}.{}): unknown conversion",
                res.kind,
                res.group
                    .split('.')
                    .next()
                    .filter(|g| !g.is_empty())
                    .unwrap_or("core"),
                res.kind
            )));
        }
        body["apiVersion"] = api_version.into();
        body["kind"] = res.kind.into();
        if !body.get("metadata").is_some_and(Value::is_object) {
            body["metadata"] = json!({});
        }
        Ok(())
    }

    /// Typed decode of the (canonical, stored-shape) object: structural errors, unknown fields,
    /// strict MicroTime fields.
    fn decode(
        res: &ResourceDef,
        obj: &mut Value,
        fv: FieldValidation,
    ) -> Result<Vec<String>, ApiError> {
        let cannot = |detail: String| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {detail}",
                res.kind, res.version, res.kind
            ))
        };
        let micro: &[&str] = match res.kind_enum {
            Kind::Lease => &["/spec/acquireTime", "/spec/renewTime"],
            Kind::Event => &["/eventTime"],
            _ => &[],
        };
        for p in micro {
            if let Some(Value::String(t)) = obj.pointer(p) {
                validation::check_micro_time(t).map_err(cannot)?;
            }
        }
        let unknown = typed::decode(res.kind_enum, obj).map_err(cannot)?;
        let unknown: Vec<String> = unknown
            .into_iter()
            .map(|p| {
                if res.converted {
                    rename_event_path(&p)
                } else {
                    p
                }
            })
            .collect();
        match fv {
            FieldValidation::Strict if !unknown.is_empty() => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                Err(cannot(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )))
            }
            FieldValidation::Warn => Ok(unknown
                .into_iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect()),
            _ => Ok(Vec::new()),
        }
    }

    fn ensure_namespace(&self, res: &ResourceDef, ns: &str, name: &str) -> Result<(), ApiError> {
        match self.store.get(Kind::Namespace, &(String::new(), ns.to_string())) {
            None => Err(ApiError::namespace_not_found(ns)),
            Some(n) if n.deleting() => Err(ApiError::new(
                403,
                Some("Forbidden"),
                format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    res.plural
                ),
            )
            .with_details(json!({"name": name, "kind": res.plural}))),
            Some(_) => Ok(()),
        }
    }

    /// The served representation of a stored object.
    pub(crate) fn present(res: &ResourceDef, obj: &Arc<Stored>) -> Arc<Stored> {
        if res.converted {
            let shown = events::from_core(&obj.value());
            Arc::new(Stored::new(res.kind_enum, &shown, obj.rv))
        } else {
            obj.clone()
        }
    }

    /// The served representation of an object not stored (dry runs, deleted states).
    fn present_value(res: &ResourceDef, obj: &Value, rv: u64) -> Arc<Stored> {
        if res.converted {
            Arc::new(Stored::new(res.kind_enum, &events::from_core(obj), rv))
        } else {
            Arc::new(Stored::new(res.kind_enum, obj, rv))
        }
    }

    // ----- create -----

    /// POST of a new object.
    pub(crate) fn create(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        mut body: Value,
        opts: WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        Self::check_kind(res, &mut body)?;
        if res.converted {
            body = events::to_core(&body);
        }
        let canon = res.kind_enum.canonical();
        let warnings = Self::decode(res, &mut body, opts.field_validation)?;
        let name = meta_str(&body, "name").to_string();
        let generate = meta_str(&body, "generateName").to_string();
        let namespace = if res.namespaced {
            let url_ns = ns.unwrap_or("default");
            let body_ns = meta_str(&body, "namespace");
            if !body_ns.is_empty() && body_ns != url_ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            if !opts.skip_namespace_check {
                self.ensure_namespace(res, url_ns, &name)?;
            }
            body["metadata"]["namespace"] = url_ns.into();
            url_ns.to_string()
        } else {
            if let Some(m) = body["metadata"].as_object_mut() {
                m.remove("namespace");
            }
            String::new()
        };
        {
            let meta = body["metadata"]
                .as_object_mut()
                .expect("metadata is an object");
            for f in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "selfLink",
            ] {
                meta.remove(f);
            }
            meta.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
            meta.insert("creationTimestamp".into(), now().into());
            if canon.generation {
                meta.insert("generation".into(), 1.into());
            } else {
                meta.remove("generation");
            }
        }
        if name.is_empty() && !generate.is_empty() {
            // Validate as if the name were generated.
            body["metadata"]["name"] = format!("{generate}xxxxx").into();
        }
        match canon.kind_enum {
            Kind::Pod => admission::admit_pod(self, &mut body, opts.skip_namespace_check)?,
            Kind::PriorityClass => admission::admit_priority_class(self, &body)?,
            Kind::PersistentVolumeClaim => crate::volumes::admit_claim(self, &mut body),
            _ => {}
        }
        prune(&mut body);
        defaults::apply(canon.kind_enum, &mut body);
        defaults::status_on_create(canon.kind_enum, &mut body);
        let _allocating = (canon.kind_enum == Kind::Service)
            .then(|| self.service_alloc.lock().unwrap_or_else(|e| e.into_inner()));
        if canon.kind_enum == Kind::Service {
            services::allocate(self, &mut body)?;
        }
        let causes = validation::validate_create(canon, &body);
        if !causes.is_empty() {
            return Err(ApiError::invalid(res, &name, causes));
        }
        if opts.dry_run {
            return Ok(WriteResult {
                obj: Self::present_value(res, &body, 0),
                warnings,
            });
        }
        let choice = if name.is_empty() {
            NameChoice::Generate(generate)
        } else {
            NameChoice::Fixed(name.clone())
        };
        let stored = self
            .store
            .insert(canon.kind_enum, &namespace, &mut body, choice)
            .map_err(|e| match e {
                WriteConflict::Exists => ApiError::already_exists(res, &name),
                WriteConflict::Changed => ApiError::internal("object changed during create"),
            })?;
        controller::after_write(self, canon.kind_enum, None, Some(&stored));
        Ok(WriteResult {
            obj: Self::present(res, &stored),
            warnings,
        })
    }

    // ----- update and patch -----

    /// Combines the incoming object with the stored one according to the subresource: the main
    /// resource cannot change `status` or system metadata; `/status` can change only `status`.
    fn merge_update(res: &ResourceDef, cur: &Value, incoming: Value, sub: Subresource) -> Value {
        match sub {
            Subresource::Main => {
                let mut new = incoming;
                if res.has_status {
                    match cur.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                let cm = &cur["metadata"];
                let nm = new["metadata"]
                    .as_object_mut()
                    .expect("metadata is an object");
                if nm
                    .get("uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .is_empty()
                {
                    nm.insert("uid".into(), cm["uid"].clone());
                }
                if nm
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .is_empty()
                {
                    nm.insert("name".into(), cm["name"].clone());
                }
                for f in [
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "namespace",
                ] {
                    match cm.get(f) {
                        Some(v) => nm.insert(f.into(), v.clone()),
                        None => nm.remove(f),
                    };
                }
                nm.remove("managedFields");
                new
            }
            Subresource::Status => {
                let mut new = cur.clone();
                new["status"] = incoming.get("status").cloned().unwrap_or_else(|| json!({}));
                // uid and name come from the request so that a changed one is reported as invalid.
                for f in ["uid", "name"] {
                    let v = meta_str(&incoming, f);
                    if !v.is_empty() {
                        new["metadata"][f] = v.into();
                    }
                }
                new
            }
        }
    }

    /// Validates and commits `new` as the successor of `cur`.
    #[allow(clippy::too_many_arguments)]
    fn commit_update(
        &self,
        res: &'static ResourceDef,
        cur: &Arc<Stored>,
        cur_value: &Value,
        mut new: Value,
        sub: Subresource,
        opts: WriteOptions,
        warnings: Vec<String>,
    ) -> Result<Attempt<WriteResult>, ApiError> {
        let canon = res.kind_enum.canonical();
        prune(&mut new);
        if canon.kind_enum == Kind::DeviceTaintRule && sub == Subresource::Main {
            defaults::taint_rule_update(&mut new, cur_value);
        }
        defaults::apply(canon.kind_enum, &mut new);
        if canon.kind_enum == Kind::Service {
            services::keep_allocations(cur_value, &mut new);
        }
        if canon.generation && new.get("spec") != cur_value.get("spec") {
            let g = cur_value
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            new["metadata"]["generation"] = (g + 1).into();
        }
        let causes = validation::validate_update(canon, &new, cur_value, sub);
        if !causes.is_empty() {
            return Err(ApiError::invalid(res, cur.name(), causes));
        }
        if canon.kind_enum == Kind::PriorityClass {
            admission::admit_priority_class(self, &new)?;
        }
        new["metadata"]["resourceVersion"] = cur.rv.to_string().into();
        if new == *cur_value {
            // A no-op write is not stored: same resourceVersion, no watch event.
            return Ok(Attempt::Done(WriteResult {
                obj: Self::present(res, cur),
                warnings,
            }));
        }
        if opts.dry_run {
            return Ok(Attempt::Done(WriteResult {
                obj: Self::present_value(res, &new, cur.rv),
                warnings,
            }));
        }
        let kind = canon.kind_enum;
        if is_finished(kind, &new) {
            // The last finalizer is gone: storage deletes the object instead of writing this state.
            return match self.store.remove(kind, cur) {
                Err(_) => Ok(Attempt::Retry),
                Ok(gone) => {
                    controller::after_write(self, kind, Some(cur), None);
                    let _ = gone;
                    Ok(Attempt::Done(WriteResult {
                        obj: Self::present_value(res, &new, cur.rv),
                        warnings,
                    }))
                }
            };
        }
        match self.store.replace(kind, cur, &mut new) {
            Err(_) => Ok(Attempt::Retry),
            Ok(stored) => {
                controller::after_write(self, kind, Some(cur), Some(&stored));
                Ok(Attempt::Done(WriteResult {
                    obj: Self::present(res, &stored),
                    warnings,
                }))
            }
        }
    }

    fn current(&self, res: &ResourceDef, key: &Key) -> Result<Arc<Stored>, ApiError> {
        self.store
            .get(res.kind_enum, key)
            .ok_or_else(|| ApiError::not_found(res, &key.1))
    }

    /// PUT of a whole object (main resource or `/status`).
    pub(crate) fn update(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        name: &str,
        mut body: Value,
        sub: Subresource,
        opts: WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        Self::check_kind(res, &mut body)?;
        if res.converted {
            body = events::to_core(&body);
        }
        let warnings = Self::decode(res, &mut body, opts.field_validation)?;
        let body_name = meta_str(&body, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let key = key_of(res, ns, name);
        loop {
            let cur = self.current(res, &key)?;
            let rv = meta_str(&body, "resourceVersion");
            if !rv.is_empty() && rv != cur.rv.to_string() {
                return Err(ApiError::stale(res, name));
            }
            let uid = meta_str(&body, "uid");
            if !uid.is_empty() && uid != cur.uid() {
                return Err(ApiError::uid_precondition(
                    res,
                    ns.filter(|_| res.namespaced),
                    name,
                    uid,
                    cur.uid(),
                ));
            }
            let cur_value = cur.value();
            let new = Self::merge_update(res, &cur_value, body.clone(), sub);
            if let Attempt::Done(r) =
                self.commit_update(res, &cur, &cur_value, new, sub, opts, warnings.clone())?
            {
                return Ok(r);
            }
        }
    }

    /// PATCH with one of the three patch types.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        name: &str,
        patch_type: kube_patch::PatchType,
        patch: &[u8],
        sub: Subresource,
        opts: WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        let key = key_of(res, ns, name);
        loop {
            let cur = self.current(res, &key)?;
            let cur_value = cur.value();
            let converted;
            let original = if res.converted {
                converted = events::from_core(&cur_value);
                &converted
            } else {
                &cur_value
            };
            let mut patched = kube_patch::apply_patch_bytes(patch_type, res.kind, original, patch)
                .map_err(|e| {
                    let code = e.http_status();
                    match code {
                        400 => ApiError::bad_request(e.to_string()),
                        422 => ApiError::new(422, Some("Invalid"), e.to_string())
                            .with_details(json!({})),
                        _ => ApiError::new(code, Some(e.reason()), e.to_string()),
                    }
                })?;
            // A resourceVersion in the patch is a precondition on the stored version.
            let rv = meta_str(&patched, "resourceVersion").to_string();
            if !rv.is_empty() && rv != cur.rv.to_string() {
                return Err(ApiError::stale(res, name));
            }
            if res.converted {
                patched = events::to_core(&patched);
            }
            Self::check_kind(res.kind_enum.canonical(), &mut patched)?;
            let warnings = match Self::decode(res, &mut patched, opts.field_validation) {
                Ok(w) => w,
                Err(e) if e.code == 400 && opts.field_validation == FieldValidation::Strict => {
                    // Strict decoding errors of patches are reported as an invalid `patch` field.
                    let detail = e
                        .message
                        .split_once(": ")
                        .map(|(_, d)| d.to_string())
                        .unwrap_or(e.message.clone());
                    let patch_str = String::from_utf8_lossy(patch).to_string();
                    return Err(ApiError::new(
                        422,
                        Some("Invalid"),
                        format!(" \"\" is invalid: patch: Invalid value: \"{}\": {detail}", patch_str.escape_default()),
                    )
                    .with_details(json!({"causes": [{
                        "reason": "FieldValueInvalid",
                        "message": format!("Invalid value: \"{}\": {detail}", patch_str.escape_default()),
                        "field": "patch"
                    }]})));
                }
                Err(e) => return Err(e),
            };
            let new = Self::merge_update(res, &cur_value, patched, sub);
            if let Attempt::Done(r) =
                self.commit_update(res, &cur, &cur_value, new, sub, opts, warnings)?
            {
                return Ok(r);
            }
        }
    }

    // ----- delete -----

    fn delete_precondition_failed(
        res: &ResourceDef,
        name: &str,
        what: &str,
        given: &str,
        actual: &str,
        hint: &str,
    ) -> ApiError {
        let mut details = json!({"name": name, "group": res.group, "kind": res.kind});
        if res.group.is_empty() {
            details.as_object_mut().unwrap().remove("group");
        }
        ApiError::new(
            409,
            Some("Conflict"),
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the {what} in the precondition ({given}) does not match the {what} in record ({actual}). {hint}",
                res.qualified_kind()
            ),
        )
        .with_details(details)
    }

    /// Marks an object as being deleted (`deletionTimestamp` now, grace period 0).
    fn mark_deleting(res: &ResourceDef, cur: &Value) -> Value {
        let mut new = cur.clone();
        new["metadata"]["deletionTimestamp"] = now().into();
        new["metadata"]["deletionGracePeriodSeconds"] = 0.into();
        if res.kind_enum.canonical().generation {
            let g = cur
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            new["metadata"]["generation"] = (g + 1).into();
        }
        new
    }

    /// DELETE of one object.
    pub(crate) fn delete(
        &self,
        res: &'static ResourceDef,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<DeleteResult, ApiError> {
        let key = key_of(res, ns, name);
        let kind = res.kind_enum;
        loop {
            let cur = self.current(res, &key)?;
            if let Some(uid) = opts.uid.as_deref().filter(|u| !u.is_empty())
                && uid != cur.uid()
            {
                return Err(Self::delete_precondition_failed(
                    res,
                    name,
                    "UID",
                    uid,
                    cur.uid(),
                    "The object might have been deleted and then recreated",
                ));
            }
            if let Some(rv) = opts.resource_version.as_deref().filter(|r| !r.is_empty())
                && rv != cur.rv.to_string()
            {
                return Err(Self::delete_precondition_failed(
                    res,
                    name,
                    "ResourceVersion",
                    rv,
                    &cur.rv.to_string(),
                    "The object might have been modified",
                ));
            }
            let cur_value = cur.value();
            if opts.dry_run || cur.deleting() && finalizers(&cur_value) > 0 {
                return Ok(DeleteResult::Object(Self::present(res, &cur)));
            }
            if kind == Kind::Namespace {
                return self.delete_namespace(res, &cur);
            }
            if finalizers(&cur_value) > 0 {
                let mut new = Self::mark_deleting(res, &cur_value);
                match self.store.replace(kind, &cur, &mut new) {
                    Err(_) => continue,
                    Ok(stored) => {
                        controller::after_write(self, kind, Some(&cur), Some(&stored));
                        return Ok(DeleteResult::Object(Self::present(res, &stored)));
                    }
                }
            }
            if kind == Kind::Pod
                && let Some(grace) = Self::pod_grace_period(&cur_value, opts)
            {
                // A bound pod's kubelet would stop it within its grace period and then delete it;
                // here the pod stays terminating (deletionTimestamp = end of the grace period)
                // until the period ends, then it is removed as if its kubelet had finished.
                let remaining = cur_value
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64);
                if cur.deleting() && remaining.is_some_and(|r| r <= grace) {
                    return Ok(DeleteResult::Object(Self::present(res, &cur)));
                }
                let mut new = cur_value.clone();
                new["metadata"]["deletionTimestamp"] = now_plus(grace).into();
                new["metadata"]["deletionGracePeriodSeconds"] = grace.into();
                let g = cur_value
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                new["metadata"]["generation"] = (g + 1).into();
                match self.store.replace(kind, &cur, &mut new) {
                    Err(_) => continue,
                    Ok(stored) => {
                        controller::after_write(self, kind, Some(&cur), Some(&stored));
                        self.finish_termination_after(&key, stored.uid(), grace);
                        return Ok(DeleteResult::Object(Self::present(res, &stored)));
                    }
                }
            }
            if kind == Kind::Pod {
                // Pods are first marked (MODIFIED with deletionTimestamp), then removed (DELETED),
                // as the real server does for pods no kubelet has to stop (unbound or finished
                // pods, or a grace period of 0).
                let marked = if cur.deleting() {
                    cur.clone()
                } else {
                    match self
                        .store
                        .replace(kind, &cur, &mut Self::mark_deleting(res, &cur_value))
                    {
                        Err(_) => continue,
                        Ok(m) => m,
                    }
                };
                let mut target = marked.clone();
                loop {
                    match self.store.remove(kind, &target) {
                        Ok(_) => break,
                        Err(_) => match self.store.get(kind, &key) {
                            Some(latest) if finalizers(&latest.value()) == 0 => target = latest,
                            _ => break,
                        },
                    }
                }
                controller::after_write(self, kind, Some(&cur), None);
                return Ok(DeleteResult::Object(Self::present(res, &marked)));
            }
            match self.store.remove(kind, &cur) {
                Err(_) => continue,
                Ok(_) => {
                    controller::after_write(self, kind, Some(&cur), None);
                    let mut details = resource_details(res, Some(name));
                    details["uid"] = cur.uid().into();
                    return Ok(DeleteResult::Gone(success_status(200, Some(details))));
                }
            }
        }
    }

    /// The grace period a pod deletion gets, `None` for "remove at once" (as the real server:
    /// unbound and finished pods, and a grace period of 0). `gracePeriodSeconds` wins over
    /// `spec.terminationGracePeriodSeconds`.
    fn pod_grace_period(pod: &Value, opts: &DeleteOptions) -> Option<i64> {
        let bound = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        if !bound || finished {
            return None;
        }
        let grace = opts.grace_period_seconds.unwrap_or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        // As the real server, a negative grace period means 1 second.
        let grace = if grace < 0 { 1 } else { grace };
        (grace > 0).then_some(grace)
    }

    /// Removes the pod `key` with this uid once its grace period has passed, if it is still
    /// terminating then. Without a Tokio runtime (no timer), it is removed at once.
    fn finish_termination_after(&self, key: &Key, uid: &str, grace: i64) {
        let (key, uid) = (key.clone(), uid.to_string());
        let reg = self.self_ref.get().and_then(std::sync::Weak::upgrade);
        match (tokio::runtime::Handle::try_current(), reg) {
            (Ok(rt), Some(reg)) => {
                rt.spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(grace as u64)).await;
                    reg.finish_termination(&key, &uid);
                });
            }
            _ => self.finish_termination(&key, &uid),
        }
    }

    /// The end of a pod's grace period: a still-terminating pod with no finalizers is removed.
    fn finish_termination(&self, key: &Key, uid: &str) {
        let kind = Kind::Pod;
        while let Some(cur) = self.store.get(kind, key) {
            if cur.uid() != uid || !cur.deleting() || finalizers(&cur.value()) > 0 {
                return;
            }
            if self.store.remove(kind, &cur).is_ok() {
                controller::after_write(self, kind, Some(&cur), None);
                return;
            }
        }
    }

    /// Deleting a namespace deletes everything in it (the namespace controller's job, done at once).
    fn delete_namespace(
        &self,
        res: &'static ResourceDef,
        cur: &Arc<Stored>,
    ) -> Result<DeleteResult, ApiError> {
        let ns = cur.name().to_string();
        let mut new = Self::mark_deleting(res, &cur.value());
        new["status"]["phase"] = "Terminating".into();
        let marked = match self.store.replace(Kind::Namespace, cur, &mut new) {
            Ok(m) => m,
            Err(_) => self.current(res, &(String::new(), ns.clone()))?,
        };
        for kind in Kind::ALL {
            let kres = kind.canonical();
            if !kres.namespaced {
                continue;
            }
            let (items, _) = self.store.snapshot(kind, Some(&ns));
            for item in items {
                let _ = self.force_remove(kind, &item);
            }
        }
        if let Some(latest) = self.store.get(Kind::Namespace, &(String::new(), ns))
            && self.store.remove(Kind::Namespace, &latest).is_ok()
        {
            controller::after_write(self, Kind::Namespace, Some(&latest), None);
        }
        Ok(DeleteResult::Object(marked))
    }

    /// Removes an object by name regardless of finalizers (roll-back of a manifest load).
    pub(crate) fn purge(&self, res: &ResourceDef, ns: Option<&str>, name: &str) {
        let key = key_of(res, ns, name);
        if let Some(obj) = self.store.get(res.kind_enum, &key) {
            if res.kind_enum == Kind::Namespace {
                let _ = self.delete_namespace(res.kind_enum.canonical(), &obj);
            } else {
                let _ = self.force_remove(res.kind_enum, &obj);
            }
        }
    }

    /// Removes an object regardless of finalizers (namespace clean-up).
    fn force_remove(&self, kind: Kind, obj: &Arc<Stored>) -> Result<(), WriteConflict> {
        let key = (obj.namespace().to_string(), obj.name().to_string());
        let mut target = obj.clone();
        loop {
            match self.store.remove(kind, &target) {
                Ok(_) => {
                    controller::after_write(self, kind, Some(&target), None);
                    return Ok(());
                }
                Err(e) => match self.store.get(kind, &key) {
                    Some(latest) => target = latest,
                    None => return Err(e),
                },
            }
        }
    }

    // ----- pods/binding -----

    /// POST `pods/<name>/binding` (or `bindings` with the pod named in the body).
    pub(crate) fn bind(
        &self,
        ns: &str,
        url_name: Option<&str>,
        body: &Value,
    ) -> Result<(), ApiError> {
        let pods = Kind::Pod.canonical();
        let name = meta_str(body, "name").to_string();
        if let Some(url_name) = url_name
            && name != url_name
        {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Binding object",
            ));
        }
        let target_kind = body
            .pointer("/target/kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !target_kind.is_empty() && target_kind != "Node" {
            return Err(ApiError::internal(format!(
                "target.kind: Unsupported value: \"{target_kind}\": supported values: \"Node\", \"<empty>\""
            )));
        }
        let node = body
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if node.is_empty() {
            return Err(ApiError::invalid(
                Kind::Pod.canonical(),
                &name,
                vec![Cause::required("target.name", "")],
            ));
        }
        let conflict = |msg: String| {
            ApiError::new(
                409,
                Some("Conflict"),
                format!("Operation cannot be fulfilled on pods/binding \"{name}\": {msg}"),
            )
            .with_details(json!({"name": name, "kind": "pods/binding"}))
        };
        let key = (ns.to_string(), name.clone());
        loop {
            let cur = self.current(pods, &key)?;
            let uid = meta_str(body, "uid");
            if !uid.is_empty() && uid != cur.uid() {
                return Err(ApiError::uid_precondition(
                    pods,
                    Some(ns),
                    &name,
                    uid,
                    cur.uid(),
                ));
            }
            let rv = meta_str(body, "resourceVersion");
            if !rv.is_empty() && rv != cur.rv.to_string() {
                return Err(ApiError::stale(pods, &name));
            }
            if cur.deleting() {
                return Err(conflict(format!(
                    "pod {name} is being deleted, cannot be assigned to a host"
                )));
            }
            let mut new = cur.value();
            let assigned = new
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !assigned.is_empty() {
                return Err(conflict(format!(
                    "pod {name} is already assigned to node \"{assigned}\""
                )));
            }
            if new
                .pointer("/spec/schedulingGates")
                .and_then(Value::as_array)
                .is_some_and(|g| !g.is_empty())
            {
                return Err(conflict(format!(
                    "pod {name} has non-empty .spec.schedulingGates"
                )));
            }
            new["spec"]["nodeName"] = node.clone().into();
            if let Some(st) = new["status"].as_object_mut() {
                st.remove("nominatedNodeName");
            }
            if let Some(ann) = body
                .pointer("/metadata/annotations")
                .and_then(Value::as_object)
            {
                for (k, v) in ann {
                    new["metadata"]["annotations"][k] = v.clone();
                }
            }
            set_pod_scheduled(&mut new);
            match self.store.replace(Kind::Pod, &cur, &mut new) {
                Err(_) => continue,
                Ok(stored) => {
                    controller::after_write(self, Kind::Pod, Some(&cur), Some(&stored));
                    return Ok(());
                }
            }
        }
    }
}

/// Sets the `PodScheduled=True` condition the way binding does (no reason or message).
fn set_pod_scheduled(pod: &mut Value) {
    let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()});
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let conds = pod["status"]
        .as_object_mut()
        .unwrap()
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if let Some(list) = conds.as_array_mut() {
        match list
            .iter_mut()
            .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
        {
            Some(c) => *c = cond,
            None => list.push(cond),
        }
    }
}

/// Unknown-field paths of an events.k8s.io object are found in its core shape; name them back.
fn rename_event_path(p: &str) -> String {
    for (new, old) in [
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("reportingController", "reportingComponent"),
        ("deprecatedSource", "source"),
    ] {
        if let Some(rest) = p.strip_prefix(old) {
            return format!("{new}{rest}");
        }
    }
    p.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_drops_what_go_omits() {
        let mut v = json!({"metadata": {"labels": {}, "finalizers": []}, "spec": {"a": null, "b": {}},
            "status": {"conditions": [{"lastProbeTime": null}]}});
        prune(&mut v);
        assert_eq!(
            v,
            json!({"metadata": {}, "spec": {"b": {}}, "status": {"conditions": [{"lastProbeTime": null}]}})
        );
    }
}
