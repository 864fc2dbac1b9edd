//! Defaulting and admission, per kind: what the real server adds to an object it did not receive
//! (reference captures 10-16). Defaults are applied to every write, like the real server's decoder
//! does, so a patch that drops a defaulted field gets it back.
//!
//! Admission that needs other objects is reduced to what a scheduler can observe:
//! - ServiceAccount admission: `serviceAccountName`/`serviceAccount` are set to `default`, but no
//!   ServiceAccount objects exist and no token volume is added (nothing here runs containers).
//! - The node `not-ready` taint is NOT added: the real taint is removed by the node lifecycle
//!   controller once the kubelet reports Ready, and neither runs here, so every node from a manifest
//!   would stay unschedulable forever.
//! - Priority admission lives in `crate::admission` (it reads PriorityClasses).

mod workloads;

use serde_json::{Map, Value, json};

use crate::resources::Kind;
use kube_quantity::Quantity;

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    v[key].as_object_mut().expect("just made an object")
}

fn set_default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

/// Defaults that hold for every version of an object of `kind`.
pub(crate) fn apply(kind: Kind, obj: &mut Value) {
    match kind {
        Kind::Pod => pod(obj),
        Kind::Node => node(obj),
        Kind::Namespace => namespace(obj),
        Kind::ResourceClaim => claim_spec(obj.get_mut("spec")),
        Kind::ResourceClaimTemplate => {
            claim_spec(obj.get_mut("spec").and_then(|s| s.get_mut("spec")))
        }
        Kind::ResourceSlice => slice(obj),
        Kind::Event => event(obj),
        Kind::PriorityClass => {
            if let Some(m) = obj.as_object_mut() {
                set_default(m, "preemptionPolicy", "PreemptLowerPriority".into());
            }
        }
        Kind::PodDisruptionBudget => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                set_default(spec, "unhealthyPodEvictionPolicy", "IfHealthyBudget".into());
            }
        }
        Kind::PersistentVolume => persistent_volume(obj),
        Kind::PersistentVolumeClaim => persistent_volume_claim(obj),
        Kind::StorageClass => {
            if let Some(m) = obj.as_object_mut() {
                set_default(m, "reclaimPolicy", "Delete".into());
                set_default(m, "volumeBindingMode", "Immediate".into());
            }
        }
        Kind::Service | Kind::ReplicationController | Kind::ReplicaSet | Kind::StatefulSet => {
            workloads::apply(kind, obj)
        }
        Kind::DeviceTaintRule => {
            if let Some(t) = obj.pointer_mut("/spec/taint") {
                taint(t);
            }
        }
        Kind::DeviceClass | Kind::Lease => {}
    }
}

/// `SetDefaults_DeviceTaint`: a taint without `timeAdded` was added now.
fn taint(t: &mut Value) {
    if let Some(m) = t.as_object_mut() {
        set_default(m, "timeAdded", crate::registry::now().into());
    }
}

/// A DeviceTaintRule update (upstream `PrepareForUpdate`): when the effect changes and the
/// client left `timeAdded` as it was, it becomes now, so it tells when the effect began.
pub(crate) fn taint_rule_update(new: &mut Value, old: &Value) {
    let (n, o) = (&new["spec"]["taint"], &old["spec"]["taint"]);
    if n.get("effect") != o.get("effect") && n.get("timeAdded") == o.get("timeAdded") {
        new["spec"]["taint"]["timeAdded"] = crate::registry::now().into();
    }
}

/// Status on create: dropped for claims (status is only writable through `/status`), computed for
/// pods and namespaces, kept for nodes (reference 11).
pub(crate) fn status_on_create(kind: Kind, obj: &mut Value) {
    match kind {
        Kind::ResourceClaim | Kind::DeviceTaintRule => obj["status"] = json!({}),
        Kind::Pod => {
            let qos = pod_qos(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        Kind::Namespace => obj["status"] = json!({"phase": "Active"}),
        // The PV strategy's PrepareForCreate; the binder (`crate::volumes`) moves it on.
        Kind::PersistentVolume => {
            obj["status"] =
                json!({"phase": "Pending", "lastPhaseTransitionTime": crate::registry::now()})
        }
        Kind::PersistentVolumeClaim => obj["status"] = json!({"phase": "Pending"}),
        // Written by the disruption controller (`crate::disruption`) right after the create.
        Kind::PodDisruptionBudget => {
            obj["status"] = json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0})
        }
        Kind::Service | Kind::ReplicationController | Kind::ReplicaSet | Kind::StatefulSet => {
            obj["status"] = workloads::status_on_create(kind)
        }
        _ => {}
    }
}

fn image_pull_policy(image: &str) -> &'static str {
    // `:latest` or no tag (and no digest) means Always, like the real defaulting.
    let name = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match name.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// The stored form of a quantity string; an unparsable one stays as it is (validation reports it).
fn canonicalize(s: &str) -> String {
    kube_quantity::canonicalize(s).unwrap_or_else(|_| s.to_string())
}

fn canonicalize_map(m: Option<&mut Value>) {
    if let Some(Value::Object(m)) = m {
        for v in m.values_mut() {
            if let Value::String(s) = v {
                *s = canonicalize(s);
            }
        }
    }
}

/// A container's defaults. `in_pod`: also the ones upstream sets only on Pods
/// (`SetDefaults_Pod`: requests default to limits), not on pod templates.
fn container(c: &mut Value, in_pod: bool) {
    let Some(m) = c.as_object_mut() else { return };
    set_default(m, "terminationMessagePath", "/dev/termination-log".into());
    set_default(m, "terminationMessagePolicy", "File".into());
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    set_default(m, "imagePullPolicy", image_pull_policy(&image).into());
    let res = obj_mut(c, "resources");
    // Requests default to limits (resource by resource).
    if in_pod && let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() {
        let requests = res.entry("requests").or_insert_with(|| json!({}));
        if let Some(r) = requests.as_object_mut() {
            for (k, v) in limits {
                r.entry(k).or_insert(v);
            }
        }
    }
    canonicalize_map(res.get_mut("limits"));
    canonicalize_map(res.get_mut("requests"));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(pm) = p.as_object_mut() {
                set_default(pm, "protocol", "TCP".into());
            }
        }
    }
}

/// The defaults of every PodSpec, in pods and in pod templates (upstream `SetDefaults_PodSpec`
/// and `SetDefaults_Container`).
fn pod_spec(spec: &mut Map<String, Value>, in_pod: bool) {
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(|c| container(c, in_pod));
        }
    }
    set_default(spec, "restartPolicy", "Always".into());
    set_default(spec, "terminationGracePeriodSeconds", 30.into());
    set_default(spec, "dnsPolicy", "ClusterFirst".into());
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", "default-scheduler".into());
}

/// The defaults of a pod template's spec (workloads' `spec.template.spec`).
pub(crate) fn pod_template_spec(spec: &mut Map<String, Value>) {
    pod_spec(spec, false);
}

fn pod(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    pod_spec(spec, true);
    set_default(spec, "serviceAccountName", "default".into());
    let sa = spec["serviceAccountName"].clone();
    set_default(spec, "serviceAccount", sa);
    // DefaultTolerationSeconds admission.
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if tolerations.is_null() {
        *tolerations = json!([]);
    }
    if let Some(t) = tolerations.as_array_mut() {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            let tolerated = t.iter().any(|x| {
                let k = x.get("key").and_then(Value::as_str);
                let e = x.get("effect").and_then(Value::as_str);
                let exists_all = x.get("operator").and_then(Value::as_str) == Some("Exists")
                    && k.is_none_or(str::is_empty);
                exists_all || (k == Some(key) && e.is_none_or(|e| e.is_empty() || e == "NoExecute"))
            });
            if !tolerated {
                t.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    // Priority admission (`crate::admission`) has set the priority of new pods already.
    set_default(spec, "priority", 0.into());
    set_default(spec, "enableServiceLinks", true.into());
    set_default(spec, "preemptionPolicy", "PreemptLowerPriority".into());
    canonicalize_map(spec.get_mut("overhead"));
    // Condition timestamps are non-pointer structs in Go: unset ones are written as `null`.
    if let Some(conds) = obj
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        for c in conds.iter_mut().filter_map(Value::as_object_mut) {
            c.entry("lastProbeTime").or_insert(Value::Null);
            c.entry("lastTransitionTime").or_insert(Value::Null);
        }
    }
}

/// `status.qosClass` from the containers' cpu/memory requests and limits.
pub(crate) fn pod_qos(pod: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for list in ["containers", "initContainers"] {
        for c in pod["spec"]
            .get(list)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let get = |kind: &str, r: &str| {
                c.pointer(&format!("/resources/{kind}/{r}"))
                    .and_then(Value::as_str)
                    .and_then(|s| Quantity::parse_json(s).ok())
                    .filter(|q| !q.is_zero())
            };
            for r in ["cpu", "memory"] {
                let (req, lim) = (get("requests", r), get("limits", r));
                if req.is_some() || lim.is_some() {
                    any = true;
                }
                match (req, lim) {
                    (_, None) => guaranteed = false,
                    (Some(a), Some(b)) if a != b => guaranteed = false,
                    _ => {}
                }
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn node(obj: &mut Value) {
    obj_mut(obj, "spec");
    let status = obj_mut(obj, "status");
    set_default(
        status,
        "daemonEndpoints",
        json!({"kubeletEndpoint": {"Port": 0}}),
    );
    let info = status.entry("nodeInfo").or_insert_with(|| json!({}));
    if let Some(info) = info.as_object_mut() {
        for f in [
            "machineID",
            "systemUUID",
            "bootID",
            "kernelVersion",
            "osImage",
            "containerRuntimeVersion",
            "kubeletVersion",
            "kubeProxyVersion",
            "operatingSystem",
            "architecture",
        ] {
            set_default(info, f, "".into());
        }
    }
    canonicalize_map(status.get_mut("capacity"));
    canonicalize_map(status.get_mut("allocatable"));
}

fn namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let labels = obj_mut(obj.get_mut("metadata").expect("metadata exists"), "labels");
    labels.insert("kubernetes.io/metadata.name".into(), name.into());
    let spec = obj_mut(obj, "spec");
    set_default(spec, "finalizers", json!(["kubernetes"]));
}

/// `SetDefaults_PersistentVolume`: Retain, Filesystem, phase Pending; canonical capacity.
fn persistent_volume(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    set_default(spec, "persistentVolumeReclaimPolicy", "Retain".into());
    set_default(spec, "volumeMode", "Filesystem".into());
    canonicalize_map(spec.get_mut("capacity"));
    let status = obj_mut(obj, "status");
    set_default(status, "phase", "Pending".into());
}

/// `SetDefaults_PersistentVolumeClaim`: Filesystem, phase Pending; canonical quantities.
fn persistent_volume_claim(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    set_default(spec, "volumeMode", "Filesystem".into());
    if let Some(res) = spec.get_mut("resources") {
        canonicalize_map(res.get_mut("requests"));
        canonicalize_map(res.get_mut("limits"));
    }
    let status = obj_mut(obj, "status");
    set_default(status, "phase", "Pending".into());
    canonicalize_map(status.get_mut("capacity"));
}

fn exact_request(r: &mut Value) {
    let Some(m) = r.as_object_mut() else { return };
    set_default(m, "allocationMode", "ExactCount".into());
    if m.get("allocationMode").and_then(Value::as_str) == Some("ExactCount") {
        set_default(m, "count", 1.into());
    }
}

fn claim_spec(spec: Option<&mut Value>) {
    let Some(requests) = spec
        .and_then(|s| s.pointer_mut("/devices/requests"))
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for r in requests {
        if let Some(e) = r.get_mut("exactly") {
            exact_request(e);
        }
        if let Some(subs) = r.get_mut("firstAvailable").and_then(Value::as_array_mut) {
            subs.iter_mut().for_each(exact_request);
        }
    }
}

fn slice(obj: &mut Value) {
    if let Some(devices) = obj
        .pointer_mut("/spec/devices")
        .and_then(Value::as_array_mut)
    {
        for d in devices {
            if let Some(taints) = d.get_mut("taints").and_then(Value::as_array_mut) {
                taints.iter_mut().for_each(taint);
            }
            if let Some(caps) = d.get_mut("capacity").and_then(Value::as_object_mut) {
                for c in caps.values_mut() {
                    if let Some(Value::String(s)) = c.get_mut("value") {
                        *s = canonicalize(s);
                    }
                }
            }
        }
    }
}

fn event(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    set_default(m, "source", json!({}));
    m.entry("firstTimestamp").or_insert(Value::Null);
    m.entry("lastTimestamp").or_insert(Value::Null);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with(resources: Value) -> Value {
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i:1", "resources": resources}]}});
        apply(Kind::Pod, &mut p);
        p
    }

    #[test]
    fn pods_get_the_reference_defaults() {
        let p = pod_with(json!({"requests": {"cpu": "100m", "memory": "64Mi"}}));
        let spec = &p["spec"];
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod_qos(&p), "Burstable");
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        assert_eq!(
            pod_qos(&pod_with(
                json!({"limits": {"cpu": "500m", "memory": "128Mi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(pod_qos(&pod_with(json!({}))), "BestEffort");
    }

    #[test]
    fn claims_default_to_one_device() {
        let mut c = json!({"spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": "x"}}]}}});
        apply(Kind::ResourceClaim, &mut c);
        assert_eq!(
            c["spec"]["devices"]["requests"][0]["exactly"],
            json!({"deviceClassName": "x", "allocationMode": "ExactCount", "count": 1})
        );
    }

    #[test]
    fn volumes_claims_and_classes_get_the_v1_defaults() {
        let mut pv = json!({"spec": {"capacity": {"storage": "1024Mi"}}});
        apply(Kind::PersistentVolume, &mut pv);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(pv["status"]["phase"], "Pending");
        let mut pvc = json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        apply(Kind::PersistentVolumeClaim, &mut pvc);
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["status"]["phase"], "Pending");
        let mut sc = json!({"provisioner": "x"});
        apply(Kind::StorageClass, &mut sc);
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
    }

    #[test]
    fn slice_capacities_are_canonical() {
        let mut s = json!({"spec": {"devices": [{"name": "d", "capacity": {"cores": {"value": "1000m"}}}]}});
        apply(Kind::ResourceSlice, &mut s);
        assert_eq!(s["spec"]["devices"][0]["capacity"]["cores"]["value"], "1");
    }
}
