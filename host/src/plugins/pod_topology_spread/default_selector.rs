//! The selector default constraints get (upstream `helper.DefaultSelector` in
//! `pkg/scheduler/framework/plugins/helper/spread.go`): the labels of every Service in the
//! pod's namespace whose selector matches the pod, plus the selector of the pod's controller if
//! it is a ReplicationController, ReplicaSet or StatefulSet (looked up by the owner's name).
//!
//! [`SelectorSources`] keeps only what that needs of the four kinds, their namespace, name and
//! selector, fed by the cache's object events.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde::Deserialize;

use crate::framework::{EventAction, ObjectEvent, PodInfo, ResourceKind};

use super::super::label_selector::Selector;

/// core/v1 Service.
pub fn service_kind() -> ResourceKind {
    ResourceKind::new("v1", "Service")
}
/// core/v1 ReplicationController.
pub fn replication_controller_kind() -> ResourceKind {
    ResourceKind::new("v1", "ReplicationController")
}
/// apps/v1 ReplicaSet.
pub fn replica_set_kind() -> ResourceKind {
    ResourceKind::new("apps/v1", "ReplicaSet")
}
/// apps/v1 StatefulSet.
pub fn stateful_set_kind() -> ResourceKind {
    ResourceKind::new("apps/v1", "StatefulSet")
}

/// The four kinds, what the plugin subscribes to when it has default constraints.
pub fn kinds() -> Vec<ResourceKind> {
    vec![
        service_kind(),
        replication_controller_kind(),
        replica_set_kind(),
        stateful_set_kind(),
    ]
}

/// The part of the four kinds' objects that is read: the rest is skipped while decoding.
#[derive(Deserialize)]
struct Object {
    metadata: Meta,
    #[serde(default)]
    spec: Option<Spec>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Deserialize)]
struct Spec {
    /// A label map (Service, ReplicationController) or a LabelSelector (apps).
    #[serde(default)]
    selector: Option<serde_json::Value>,
}

/// Which of the four kinds an owner or object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    ReplicationController,
    ReplicaSet,
    StatefulSet,
}

/// The selectors of the Services, ReplicationControllers, ReplicaSets and StatefulSets.
#[derive(Debug, Default)]
pub struct SelectorSources {
    /// Per namespace: Service name → its selector (Services without one select nothing and
    /// are not kept).
    services: HashMap<String, BTreeMap<String, BTreeMap<String, String>>>,
    /// `(kind, namespace, name)` → the controller's selector as requirements.
    controllers: HashMap<(Source, String, String), Vec<LabelSelectorRequirement>>,
}

impl SelectorSources {
    /// Applies one change of a watched object; other kinds and undecodable objects are ignored.
    pub fn on_event(&mut self, event: &ObjectEvent) {
        let kind = &event.resource;
        let source = if *kind == service_kind() {
            None
        } else if *kind == replication_controller_kind() {
            Some(Source::ReplicationController)
        } else if *kind == replica_set_kind() {
            Some(Source::ReplicaSet)
        } else if *kind == stateful_set_kind() {
            Some(Source::StatefulSet)
        } else {
            return;
        };
        let Ok(obj) = serde_json::from_str::<Object>(&event.object) else {
            return;
        };
        let (ns, name) = (obj.metadata.namespace, obj.metadata.name);
        let selector = obj
            .spec
            .and_then(|s| s.selector)
            .filter(|_| event.action != EventAction::Deleted);
        match source {
            None => {
                let labels = selector
                    .and_then(|s| serde_json::from_value::<BTreeMap<String, String>>(s).ok())
                    .filter(|l| !l.is_empty());
                match labels {
                    Some(l) => {
                        self.services.entry(ns).or_default().insert(name, l);
                    }
                    None => {
                        if let Some(m) = self.services.get_mut(&ns) {
                            m.remove(&name);
                            if m.is_empty() {
                                self.services.remove(&ns);
                            }
                        }
                    }
                }
            }
            Some(source) => {
                let key = (source, ns, name);
                let reqs = selector.and_then(|s| {
                    if source == Source::ReplicationController {
                        let labels: BTreeMap<String, String> = serde_json::from_value(s).ok()?;
                        Some(in_requirements(&labels))
                    } else {
                        let sel: LabelSelector = serde_json::from_value(s).ok()?;
                        Some(requirements(&sel))
                    }
                });
                match reqs {
                    Some(r) => {
                        self.controllers.insert(key, r);
                    }
                    None => {
                        self.controllers.remove(&key);
                    }
                }
            }
        }
    }

    /// The pod's default selector: empty when nothing selects it (then default constraints do
    /// not apply). Cheap for a pod in a namespace without Services and without a controller.
    pub fn default_selector(&self, pod: &PodInfo) -> Selector {
        let meta = &pod.pod.metadata;
        let ns = pod.key.namespace.as_str();
        // Services that select the pod: their labels are merged (they all match the pod, so
        // they cannot disagree).
        let mut labels: BTreeMap<String, String> = BTreeMap::new();
        if let Some(services) = self.services.get(ns) {
            let pod_labels = meta.labels.as_ref();
            for selector in services.values() {
                let selects = selector
                    .iter()
                    .all(|(k, v)| pod_labels.and_then(|l| l.get(k)) == Some(v));
                if selects {
                    labels.extend(selector.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut reqs = in_requirements(&labels);
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        if let Some(owner) = owner {
            let source = match (owner.api_version.as_str(), owner.kind.as_str()) {
                ("v1", "ReplicationController") => Some(Source::ReplicationController),
                ("apps/v1", "ReplicaSet") => Some(Source::ReplicaSet),
                ("apps/v1", "StatefulSet") => Some(Source::StatefulSet),
                _ => None,
            };
            if let Some(extra) = source.and_then(|s| {
                self.controllers
                    .get(&(s, ns.to_string(), owner.name.clone()))
            }) {
                reqs.extend(extra.iter().cloned());
            }
        }
        if reqs.is_empty() {
            return Selector::everything();
        }
        let selector = LabelSelector {
            match_expressions: Some(reqs),
            match_labels: None,
        };
        // The requirements come from valid objects; one that does not compile selects nothing.
        Selector::new(Some(&selector)).unwrap_or(Selector::Nothing)
    }
}

/// `key In (value)` for each label.
fn in_requirements(labels: &BTreeMap<String, String>) -> Vec<LabelSelectorRequirement> {
    labels
        .iter()
        .map(|(k, v)| LabelSelectorRequirement {
            key: k.clone(),
            operator: "In".into(),
            values: Some(vec![v.clone()]),
        })
        .collect()
}

/// A LabelSelector's requirements (`matchLabels` as `In`, then `matchExpressions`).
fn requirements(sel: &LabelSelector) -> Vec<LabelSelectorRequirement> {
    let mut reqs = in_requirements(&sel.match_labels.clone().unwrap_or_default());
    reqs.extend(sel.match_expressions.iter().flatten().cloned());
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::pod;

    fn event(kind: ResourceKind, action: EventAction, object: &str) -> ObjectEvent {
        let value: serde_json::Value = serde_yaml_ng::from_str(object).unwrap();
        ObjectEvent {
            action,
            resource: kind,
            object: value.to_string(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_pod_nothing_selects_gets_an_empty_selector() {
        let mut s = SelectorSources::default();
        s.on_event(&event(
            service_kind(),
            EventAction::Added,
            "metadata: {name: db, namespace: d}\nspec: {selector: {app: db}}",
        ));
        let p = pod(
            "metadata: {name: p, namespace: d, uid: p, labels: {app: web}}\nspec: {containers: [{name: c}]}",
        );
        assert!(s.default_selector(&p).is_empty());
    }

    #[test]
    fn services_in_other_namespaces_and_without_selectors_do_not_count() {
        let mut s = SelectorSources::default();
        s.on_event(&event(
            service_kind(),
            EventAction::Added,
            "metadata: {name: web, namespace: other}\nspec: {selector: {app: web}}",
        ));
        s.on_event(&event(
            service_kind(),
            EventAction::Added,
            "metadata: {name: external, namespace: d}\nspec: {type: ExternalName}",
        ));
        let p = pod(
            "metadata: {name: p, namespace: d, uid: p, labels: {app: web}}\nspec: {containers: [{name: c}]}",
        );
        assert!(s.default_selector(&p).is_empty());
    }

    #[test]
    fn selecting_services_and_the_owning_replica_set_are_combined() {
        let mut s = SelectorSources::default();
        s.on_event(&event(
            service_kind(),
            EventAction::Added,
            "metadata: {name: web, namespace: d}\nspec: {selector: {app: web}}",
        ));
        s.on_event(&event(
            service_kind(),
            EventAction::Added,
            "metadata: {name: web-canary, namespace: d}\nspec: {selector: {app: web, track: canary}}",
        ));
        s.on_event(&event(
            replica_set_kind(),
            EventAction::Added,
            "metadata: {name: web-1, namespace: d}\nspec: {selector: {matchLabels: {app: web}, matchExpressions: [{key: tier, operator: In, values: [fe]}]}}",
        ));
        let p = pod(
            "metadata: {name: p, namespace: d, uid: p, labels: {app: web, tier: fe},
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-1, uid: u, controller: true}]}
spec: {containers: [{name: c}]}",
        );
        let sel = s.default_selector(&p);
        // The canary Service does not select this pod; the ReplicaSet adds `tier in (fe)`.
        assert!(sel.matches(Some(&labels(&[("app", "web"), ("tier", "fe")]))));
        assert!(!sel.matches(Some(&labels(&[("app", "web")]))));
        assert!(!sel.matches(Some(&labels(&[("tier", "fe")]))));
    }

    #[test]
    fn an_owner_that_is_not_the_controller_or_not_watched_adds_nothing() {
        let mut s = SelectorSources::default();
        s.on_event(&event(
            stateful_set_kind(),
            EventAction::Added,
            "metadata: {name: db, namespace: d}\nspec: {selector: {matchLabels: {app: db}}}",
        ));
        let not_controller = pod(
            "metadata: {name: p, namespace: d, uid: p, labels: {app: db},
  ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: db, uid: u}]}
spec: {containers: [{name: c}]}",
        );
        assert!(s.default_selector(&not_controller).is_empty());
        let job = pod(
            "metadata: {name: p, namespace: d, uid: p, labels: {app: db},
  ownerReferences: [{apiVersion: batch/v1, kind: Job, name: db, uid: u, controller: true}]}
spec: {containers: [{name: c}]}",
        );
        assert!(s.default_selector(&job).is_empty());
        let owned = pod(
            "metadata: {name: p, namespace: d, uid: p, labels: {app: db},
  ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: db, uid: u, controller: true}]}
spec: {containers: [{name: c}]}",
        );
        assert!(!s.default_selector(&owned).is_empty());
    }

    #[test]
    fn a_replication_controller_selector_is_a_label_map_and_deletes_forget_it() {
        let mut s = SelectorSources::default();
        let rc = "metadata: {name: web, namespace: d}\nspec: {selector: {app: web}}";
        s.on_event(&event(
            replication_controller_kind(),
            EventAction::Added,
            rc,
        ));
        let p = pod("metadata: {name: p, namespace: d, uid: p, labels: {app: web},
  ownerReferences: [{apiVersion: v1, kind: ReplicationController, name: web, uid: u, controller: true}]}
spec: {containers: [{name: c}]}");
        let sel = s.default_selector(&p);
        assert!(sel.matches(Some(&labels(&[("app", "web")]))));
        assert!(!sel.matches(Some(&labels(&[("app", "db")]))));
        s.on_event(&event(
            replication_controller_kind(),
            EventAction::Deleted,
            rc,
        ));
        assert!(s.default_selector(&p).is_empty());
    }
}
