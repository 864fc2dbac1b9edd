//! Defaults of Services (core/v1), ReplicationControllers (core/v1), ReplicaSets and
//! StatefulSets (apps/v1), as upstream `SetDefaults_Service`, `SetDefaults_ReplicationController`,
//! `SetDefaults_ReplicaSet` and `SetDefaults_StatefulSet`. A Service's cluster IP, IP families and
//! node ports need the other Services: they are allocated in `crate::services`.

use serde_json::{Map, Value, json};

use super::{obj_mut, pod_template_spec, set_default};
use crate::resources::Kind;

/// Static defaults of one of the four kinds (applied on every write).
pub(super) fn apply(kind: Kind, obj: &mut Value) {
    match kind {
        Kind::Service => service(obj),
        Kind::ReplicationController => replication_controller(obj),
        Kind::ReplicaSet => {
            set_default(obj_mut(obj, "spec"), "replicas", 1.into());
            template(obj);
        }
        Kind::StatefulSet => stateful_set(obj),
        _ => {}
    }
}

/// The status a new object starts with (no controller runs to fill it in).
pub(super) fn status_on_create(kind: Kind) -> Value {
    match kind {
        Kind::Service => json!({"loadBalancer": {}}),
        Kind::StatefulSet => json!({"replicas": 0, "availableReplicas": 0}),
        _ => json!({"replicas": 0}),
    }
}

fn template(obj: &mut Value) {
    if let Some(spec) = obj
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
    {
        pod_template_spec(spec);
    }
}

fn service(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    set_default(spec, "type", "ClusterIP".into());
    set_default(spec, "sessionAffinity", "None".into());
    let kind = spec["type"].as_str().unwrap_or_default().to_string();
    if spec["sessionAffinity"] == "ClientIP" {
        let cfg = spec
            .entry("sessionAffinityConfig")
            .or_insert_with(|| json!({}));
        if let Some(cfg) = cfg.as_object_mut() {
            let client = cfg.entry("clientIP").or_insert_with(|| json!({}));
            if let Some(client) = client.as_object_mut() {
                set_default(client, "timeoutSeconds", 10800.into());
            }
        }
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", "TCP".into());
            // targetPort defaults to the port.
            if let Some(port) = p.get("port").cloned() {
                set_default(p, "targetPort", port);
            }
        }
    }
    if kind != "ExternalName" {
        set_default(spec, "internalTrafficPolicy", "Cluster".into());
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", "Cluster".into());
    }
    if kind == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", true.into());
    }
}

fn replication_controller(obj: &mut Value) {
    // An RC without a selector selects its template's labels, and is labelled with them.
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    let spec = obj_mut(obj, "spec");
    set_default(spec, "replicas", 1.into());
    if let Some(labels) = labels {
        if spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            spec.insert("selector".into(), labels.clone());
        }
        let meta = obj_mut(obj, "metadata");
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), labels);
        }
    }
    template(obj);
}

fn stateful_set(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    set_default(spec, "replicas", 1.into());
    set_default(spec, "podManagementPolicy", "OrderedReady".into());
    set_default(spec, "revisionHistoryLimit", 10.into());
    set_default(
        spec,
        "persistentVolumeClaimRetentionPolicy",
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
    let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({}));
    if let Some(strategy) = strategy.as_object_mut() {
        set_default(strategy, "type", "RollingUpdate".into());
        if strategy["type"] == "RollingUpdate" {
            let rolling = strategy.entry("rollingUpdate").or_insert_with(|| json!({}));
            if let Some(rolling) = rolling.as_object_mut() {
                set_default(rolling, "partition", 0.into());
            }
        }
    }
    if let Some(claims) = spec
        .get_mut("volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    {
        for claim in claims.iter_mut().filter(|c| c.is_object()) {
            set_default(obj_mut(claim, "spec"), "volumeMode", "Filesystem".into());
            set_default(obj_mut(claim, "status"), "phase", "Pending".into());
        }
    }
    template(obj);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_default_to_cluster_ip_with_target_ports() {
        let mut s = json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        apply(Kind::Service, &mut s);
        assert_eq!(
            s["spec"],
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                   "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"})
        );
    }

    #[test]
    fn replication_controllers_select_their_template_labels() {
        let mut rc = json!({"metadata": {}, "spec": {"template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        apply(Kind::ReplicationController, &mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(rc["spec"]["replicas"], 1);
        let pod = &rc["spec"]["template"]["spec"];
        assert_eq!(pod["schedulerName"], "default-scheduler");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        // Pod-only defaults stay out of templates.
        assert!(pod.get("serviceAccountName").is_none() && pod.get("tolerations").is_none());
    }

    #[test]
    fn stateful_sets_get_their_policies() {
        let mut ss = json!({"spec": {"selector": {"matchLabels": {"app": "db"}}}});
        apply(Kind::StatefulSet, &mut ss);
        assert_eq!(ss["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            ss["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(ss["spec"]["revisionHistoryLimit"], 10);
    }
}
