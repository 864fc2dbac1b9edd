//! Field selection (WIT 0.3.0 `metadata.fields`): a plugin names the fields it reads of a
//! subscribed kind, and gets that kind's objects with only those fields, and no `Modified` event
//! when none of them changed since its last event for that object. A pod is bound, gets
//! conditions and container statuses; a plugin that reads its claims hears of the binding only.
//!
//! Objects are cut from their JSON text without building a tree: each level is split into its
//! fields as raw text, and a kept field's text is copied as it is.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use serde_json::value::RawValue;
use wasm_scheduler_sdk::{EventAction, FieldSelection, ObjectEvent, ResourceKind};

/// The fields every projection keeps: what names an object.
const ALWAYS: &[&str] = &["metadata.name", "metadata.namespace", "metadata.uid"];

/// The fields to keep below one level: a field maps to `None` when it is kept whole.
#[derive(Debug, Default, PartialEq)]
struct Tree(BTreeMap<String, Option<Tree>>);

impl Tree {
    fn add(&mut self, path: &str) {
        let mut node = self;
        let mut segments = path.split('.').peekable();
        while let Some(seg) = segments.next() {
            let entry = node.0.entry(seg.to_owned());
            if segments.peek().is_none() {
                // A whole field covers any narrower path given for it.
                *entry.or_default() = None;
                return;
            }
            match entry.or_insert_with(|| Some(Tree::default())) {
                Some(sub) => node = sub,
                None => return, // already kept whole
            }
        }
    }
}

/// A plugin's field selections with what each object last looked like to it. One per plugin
/// instance: a new instance hears every object again (state replay) and starts empty.
#[derive(Debug, Default)]
pub struct Selection {
    trees: HashMap<ResourceKind, Tree>,
    /// The projected JSON last sent, by kind and object (namespace, name).
    last: Mutex<HashMap<(ResourceKind, String, String), String>>,
}

impl Selection {
    /// The selection a plugin declared; `subscriptions` are its subscribed kinds.
    ///
    /// # Errors
    /// A kind it does not subscribe to, twice the same kind, or an empty path or segment.
    pub fn new(
        fields: &[FieldSelection],
        subscriptions: &[ResourceKind],
    ) -> Result<Selection, String> {
        let mut trees = HashMap::new();
        for f in fields {
            let kind = format!("{}/{}", f.resource.api_version, f.resource.kind);
            if !subscriptions.contains(&f.resource) {
                return Err(format!("fields: {kind} is not one of its subscriptions"));
            }
            if trees.contains_key(&f.resource) {
                return Err(format!("fields: {kind} is listed twice"));
            }
            if f.paths.is_empty() {
                return Err(format!("fields: {kind} lists no path"));
            }
            let mut tree = Tree::default();
            for p in f
                .paths
                .iter()
                .map(String::as_str)
                .chain(ALWAYS.iter().copied())
            {
                if p.split('.').any(str::is_empty) {
                    return Err(format!("fields: {kind}: bad path {p:?}"));
                }
                tree.add(p);
            }
            trees.insert(f.resource.clone(), tree);
        }
        Ok(Selection {
            trees,
            last: Mutex::default(),
        })
    }

    /// Whether the plugin selected fields of any kind.
    pub fn is_empty(&self) -> bool {
        self.trees.is_empty()
    }

    /// The event as the plugin gets it: its kind's selected fields only, or `None` for a
    /// `Modified` event that changes none of them. Objects of kinds without a selection pass
    /// whole, as does an object whose JSON does not parse (the plugin reports it).
    pub fn event(&self, event: ObjectEvent) -> Option<ObjectEvent> {
        let Some(tree) = self.trees.get(&event.resource) else {
            return Some(event);
        };
        let Ok(object) = project(&event.object, tree) else {
            return Some(event);
        };
        let (namespace, name) = names_of(&object);
        let key = (event.resource.clone(), namespace, name);
        let mut last = self.last.lock();
        match event.action {
            EventAction::Deleted => {
                last.remove(&key);
            }
            EventAction::Modified if last.get(&key) == Some(&object) => return None,
            _ => {
                last.insert(key, object.clone());
            }
        }
        Some(ObjectEvent { object, ..event })
    }

    /// [`Selection::event`] for each of `events`, dropping the unchanged ones; borrowed as they
    /// are when nothing is selected.
    pub fn events<'a>(&self, events: &'a [ObjectEvent]) -> Cow<'a, [ObjectEvent]> {
        if self.is_empty() {
            return Cow::Borrowed(events);
        }
        Cow::Owned(
            events
                .iter()
                .filter_map(|e| self.event(e.clone()))
                .collect(),
        )
    }
}

/// `metadata.namespace` and `metadata.name` of a projected object (which keeps the names), in
/// one pass that skips every other field.
fn names_of(object: &str) -> (String, String) {
    #[derive(Default, serde::Deserialize)]
    #[serde(default)]
    struct Names {
        namespace: String,
        name: String,
    }
    #[derive(serde::Deserialize)]
    struct Object {
        #[serde(default)]
        metadata: Names,
    }
    serde_json::from_str::<Object>(object)
        .map(|o| (o.metadata.namespace, o.metadata.name))
        .unwrap_or_default()
}

/// `json` with only the fields of `tree`, in the order of `tree` (sorted, so equal objects
/// project to equal text).
fn project(json: &str, tree: &Tree) -> Result<String, serde_json::Error> {
    let raw: &RawValue = serde_json::from_str(json)?;
    let mut out = String::with_capacity(json.len().min(1024));
    cut(raw, tree, &mut out)?;
    Ok(out)
}

fn cut(raw: &RawValue, tree: &Tree, out: &mut String) -> Result<(), serde_json::Error> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            let fields: BTreeMap<String, &RawValue> = serde_json::from_str(text)?;
            out.push('{');
            let mut first = true;
            for (name, sub) in &tree.0 {
                let Some(value) = fields.get(name) else {
                    continue;
                };
                if !std::mem::take(&mut first) {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(name)?);
                out.push(':');
                match sub {
                    None => out.push_str(value.get()),
                    Some(sub) => cut(value, sub, out)?,
                }
            }
            out.push('}');
        }
        // A path through a list applies to each item.
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text)?;
            out.push('[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                cut(item, tree, out)?;
            }
            out.push(']');
        }
        // A scalar (or null) where the path expects an object: nothing below it to cut.
        _ => out.push_str(text),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod_fields(paths: &[&str]) -> Selection {
        Selection::new(
            &[FieldSelection::new(ResourceKind::pod(), paths)],
            &[ResourceKind::pod(), ResourceKind::node()],
        )
        .unwrap()
    }

    fn event(action: EventAction, object: &Value) -> ObjectEvent {
        ObjectEvent {
            action,
            resource: ResourceKind::pod(),
            object: object.to_string(),
        }
    }

    fn pod(node: &str, phase: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                         "labels": {"app": "a"}},
            "spec": {"nodeName": node,
                     "containers": [{"name": "c", "image": "i",
                                     "resources": {"requests": {"cpu": "1"}}},
                                    {"name": "d", "image": "j"}]},
            "status": {"phase": phase, "conditions": [{"type": "PodScheduled"}]},
        })
    }

    #[test]
    fn only_the_selected_fields_and_the_names_are_kept() {
        let s = pod_fields(&["spec.nodeName", "spec.containers.resources", "status.phase"]);
        let got = s
            .event(event(EventAction::Added, &pod("n1", "Pending")))
            .unwrap();
        let v: Value = serde_json::from_str(&got.object).unwrap();
        assert_eq!(
            v,
            json!({
                "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
                "spec": {"nodeName": "n1",
                         "containers": [{"resources": {"requests": {"cpu": "1"}}}, {}]},
                "status": {"phase": "Pending"},
            })
        );
        assert_eq!(got.action, EventAction::Added);
    }

    #[test]
    fn a_change_outside_the_selection_is_no_event_and_one_inside_is() {
        let s = pod_fields(&["spec.nodeName"]);
        assert!(
            s.event(event(EventAction::Added, &pod("", "Pending")))
                .is_some()
        );
        // Bound: the node changed.
        assert!(
            s.event(event(EventAction::Modified, &pod("n1", "Pending")))
                .is_some()
        );
        // Running: only the status changed.
        assert!(
            s.event(event(EventAction::Modified, &pod("n1", "Running")))
                .is_none()
        );
        // A deletion always reaches the plugin, and the next object of that name is new.
        let gone = s
            .event(event(EventAction::Deleted, &pod("n1", "Running")))
            .unwrap();
        assert_eq!(gone.action, EventAction::Deleted);
        assert!(
            s.event(event(EventAction::Added, &pod("n1", "Running")))
                .is_some()
        );
    }

    #[test]
    fn kinds_without_a_selection_and_broken_json_pass_whole() {
        let s = pod_fields(&["spec.nodeName"]);
        let node = ObjectEvent {
            action: EventAction::Modified,
            resource: ResourceKind::node(),
            object: r#"{"metadata":{"name":"n1"},"status":{}}"#.into(),
        };
        assert_eq!(s.event(node.clone()).unwrap(), node);
        assert_eq!(
            s.event(node.clone()).unwrap(),
            node,
            "no dedup without a selection"
        );
        let broken = ObjectEvent {
            object: "{not json".into(),
            ..event(EventAction::Modified, &json!({}))
        };
        assert_eq!(s.event(broken.clone()).unwrap(), broken);
    }

    #[test]
    fn a_whole_field_covers_narrower_paths_and_field_order_does_not_matter() {
        let mut a = Tree::default();
        a.add("spec.containers.name");
        a.add("spec.containers");
        let mut b = Tree::default();
        b.add("spec.containers");
        b.add("spec.containers.name");
        assert_eq!(a, b);
        let t = {
            let mut t = Tree::default();
            t.add("spec.nodeName");
            t.add("metadata.name");
            t
        };
        let one = project(r#"{"spec":{"nodeName":"x"},"metadata":{"name":"p"}}"#, &t).unwrap();
        let two = project(r#"{"metadata":{"name":"p"},"spec":{"nodeName":"x"}}"#, &t).unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn bad_selections_are_refused_with_the_reason() {
        let subs = [ResourceKind::pod()];
        let err = |f: FieldSelection| Selection::new(&[f], &subs).unwrap_err();
        assert!(
            err(FieldSelection::new(ResourceKind::node(), &["spec"])).contains("subscriptions")
        );
        assert!(err(FieldSelection::new(ResourceKind::pod(), &[])).contains("no path"));
        assert!(err(FieldSelection::new(ResourceKind::pod(), &["spec..x"])).contains("bad path"));
        let twice = [
            FieldSelection::new(ResourceKind::pod(), &["spec"]),
            FieldSelection::new(ResourceKind::pod(), &["status"]),
        ];
        assert!(Selection::new(&twice, &subs).unwrap_err().contains("twice"));
        assert!(Selection::new(&[], &subs).unwrap().is_empty());
    }
}
