//! The in-memory object store: one map and one bounded event history per storage kind, and one
//! global `resourceVersion` counter shared by all kinds, like etcd's revision.
//!
//! Concurrency model: each kind has its own `RwLock`. A write allocates its `resourceVersion`,
//! inserts the object and appends the watch event while holding that kind's write lock, so events of
//! one kind are totally ordered by `resourceVersion` and a list taken under the read lock is exactly
//! the state at the global counter's value at that moment. Expensive work (patching, defaulting,
//! validation, serialization) happens outside the lock: writers read the current object, compute the
//! new one, then commit only if the object did not change in between ([`Store::replace`] compares
//! the stored `Arc`), retrying otherwise — the same "guaranteed update" loop the real server runs
//! against etcd. A new version is serialized before the lock is taken, with its resourceVersion
//! left empty; the commit splices the number in.
//!
//! Memory: each version is kept once, as JSON ([`Stored`]); the map and the watch history share
//! it through `Arc`s, and a MODIFIED or DELETED event's `prev` is the version before it (usually
//! the object of an earlier event in the same history), so the history adds no copies.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::RwLock;
use serde_json::Value;

use crate::resources::Kind;
use crate::selectors;

/// `(namespace, name)`; the namespace is empty for cluster-scoped kinds. Sorting by this key gives
/// the real server's list order (namespace, then name).
pub(crate) type Key = (String, String);

/// One stored object version: its JSON, which every response and watch event shares, and the
/// few fields lists, watches and the write path look at without parsing it. Immutable once stored.
///
/// The JSON is the only copy of the object: a `serde_json::Value` of a pod takes several times
/// the memory of its JSON (each small map is a B-tree node), so writes parse the current version
/// when they need it ([`Stored::value`]) instead of every version keeping a tree.
#[derive(Debug)]
pub(crate) struct Stored {
    pub rv: u64,
    json: Bytes,
    meta: Meta,
}

/// What selectors, keys and quick checks need, taken from the object when it is stored.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    name: Box<str>,
    namespace: Box<str>,
    uid: Box<str>,
    deleting: bool,
    labels: Box<[(Box<str>, Box<str>)]>,
    /// The values of the kind's selectable fields, in [`selectors::supported_fields`] order
    /// (`metadata.name` and `metadata.namespace` are left empty: they are `name`/`namespace`).
    fields: Box<[Box<str>]>,
}

impl Meta {
    fn of(kind: Kind, value: &Value) -> Self {
        let meta = value.get("metadata");
        let s = |f: &str| -> Box<str> {
            meta.and_then(|m| m.get(f))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into()
        };
        let labels = meta
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|l| {
                l.iter()
                    .filter_map(|(k, v)| Some((k.as_str().into(), v.as_str()?.into())))
                    .collect()
            })
            .unwrap_or_default();
        let fields = selectors::supported_fields(kind)
            .iter()
            .map(|f| match *f {
                "metadata.name" | "metadata.namespace" => Box::default(),
                f => selectors::field_value(kind, value, f).into_boxed_str(),
            })
            .collect();
        Meta {
            name: s("name"),
            namespace: s("namespace"),
            uid: s("uid"),
            deleting: meta
                .and_then(|m| m.get("deletionTimestamp"))
                .is_some_and(|t| !t.is_null()),
            labels,
            fields,
        }
    }

    /// The value of label `key`, if the object has it.
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }

    /// The value of the selectable field at `index` of the kind's supported fields.
    pub(crate) fn field(&self, index: usize, field: &str) -> &str {
        match field {
            "metadata.name" => &self.name,
            "metadata.namespace" => &self.namespace,
            _ => self.fields.get(index).map_or("", |v| &**v),
        }
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// A new version rendered before its resourceVersion is known: the JSON with an empty
/// `metadata.resourceVersion` whose position is remembered, so that committing under the kind's
/// lock only splices the number in and serialization stays outside the lock.
struct Rendered {
    json: Vec<u8>,
    rv_at: usize,
    meta: Meta,
}

impl Rendered {
    /// Renders `value`, whose `metadata.resourceVersion` is set to `""` for it. The bytes are
    /// those `serde_json::to_vec` writes (maps are ordered by key, so the field's place is fixed).
    fn new(kind: Kind, value: &mut Value) -> Self {
        value["metadata"]["resourceVersion"] = Value::String(String::new());
        let top = value.as_object().expect("stored objects are JSON objects");
        let mut json = Vec::with_capacity(2048);
        let mut rv_at = 0;
        json.push(b'{');
        for (i, (k, v)) in top.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            put(&mut json, k);
            json.push(b':');
            match (k.as_str(), v) {
                ("metadata", Value::Object(meta)) => {
                    json.push(b'{');
                    for (j, (mk, mv)) in meta.iter().enumerate() {
                        if j > 0 {
                            json.push(b',');
                        }
                        put(&mut json, mk);
                        json.push(b':');
                        if mk == "resourceVersion" {
                            json.push(b'"');
                            rv_at = json.len();
                            json.push(b'"');
                        } else {
                            put(&mut json, mv);
                        }
                    }
                    json.push(b'}');
                }
                _ => put(&mut json, v),
            }
        }
        json.push(b'}');
        Rendered {
            json,
            rv_at,
            meta: Meta::of(kind, value),
        }
    }

    /// The stored version at `rv`; its JSON is allocated at its exact size.
    fn commit(self, rv: u64) -> Stored {
        let digits = rv.to_string();
        let mut json = Vec::with_capacity(self.json.len() + digits.len());
        json.extend_from_slice(&self.json[..self.rv_at]);
        json.extend_from_slice(digits.as_bytes());
        json.extend_from_slice(&self.json[self.rv_at..]);
        Stored {
            rv,
            json: Bytes::from(json),
            meta: self.meta,
        }
    }
}

/// Appends a key or a value as compact JSON.
fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(out, v).expect("JSON values serialize");
}

impl Stored {
    /// Renders `value` (an object of `kind`) for storage.
    pub(crate) fn new(kind: Kind, value: &Value, rv: u64) -> Self {
        let mut json = serde_json::to_vec(value).expect("stored objects serialize");
        // The serializer's spare capacity would stay allocated as long as the version lives.
        json.shrink_to_fit();
        Stored {
            rv,
            json: Bytes::from(json),
            meta: Meta::of(kind, value),
        }
    }

    /// The object's JSON bytes.
    pub(crate) fn json(&self) -> &Bytes {
        &self.json
    }

    /// The object, parsed (a fresh tree the caller owns).
    pub(crate) fn value(&self) -> Value {
        serde_json::from_slice(&self.json).expect("stored JSON parses")
    }

    /// Whether `needle` occurs anywhere in the JSON: a cheap test that lets scans skip objects
    /// that cannot refer to a uid or name before parsing the ones that might.
    pub(crate) fn mentions(&self, needle: &str) -> bool {
        memchr::memmem::find(&self.json, needle.as_bytes()).is_some()
    }

    pub(crate) fn meta(&self) -> &Meta {
        &self.meta
    }

    pub(crate) fn name(&self) -> &str {
        &self.meta.name
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.meta.namespace
    }

    pub(crate) fn uid(&self) -> &str {
        &self.meta.uid
    }

    /// Whether `metadata.deletionTimestamp` is set.
    pub(crate) fn deleting(&self) -> bool {
        self.meta.deleting
    }

    /// The value of a selectable field of `kind` (`""` when missing or not selectable).
    pub(crate) fn field(&self, kind: Kind, field: &str) -> &str {
        selectors::supported_fields(kind)
            .iter()
            .position(|f| *f == field)
            .map_or("", |i| self.meta.field(i, field))
    }
}

/// Watch event types as they appear on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change in a kind's history. `obj` is shared with the store (or with the next version's
/// `prev`), so history costs no copies. `prev` is the state before the change (for MODIFIED and
/// DELETED): watchers with selectors need it to turn a MODIFIED into ADDED or DELETED when an
/// object starts or stops matching, and lists at an exact older resourceVersion rewind with it.
#[derive(Debug)]
pub(crate) struct WatchEvent {
    pub rv: u64,
    pub ty: EventType,
    pub obj: Arc<Stored>,
    pub prev: Option<Arc<Stored>>,
}

/// Appends one newline-terminated watch frame `{"type":..,"object":..}` to `out`. Frames are not
/// kept: each watcher copies the object's JSON into its send buffer anyway.
pub(crate) fn write_frame(out: &mut BytesMut, ty: &str, obj: &Stored) {
    let json = obj.json();
    out.reserve(json.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(json);
    out.extend_from_slice(b"}\n");
}

struct KindState {
    objects: BTreeMap<Key, Arc<Stored>>,
    history: VecDeque<Arc<WatchEvent>>,
    /// Every event with `rv > floor` is still in `history`; watches from older versions get 410.
    floor: u64,
}

struct KindSlot {
    state: RwLock<KindState>,
    /// Carries the latest committed resourceVersion of this kind; watchers wait on it.
    notify: tokio::sync::watch::Sender<u64>,
}

/// How a created object gets its name.
pub(crate) enum NameChoice {
    Fixed(String),
    Generate(String),
}

/// Five characters from the alphabet the real server uses for generated names (no vowels, so no
/// words, and no look-alike characters).
pub(crate) fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Why a conditional write did not happen.
#[derive(Debug)]
pub(crate) enum WriteConflict {
    /// The object changed (or vanished) since it was read.
    Changed,
    /// Create of a name that exists.
    Exists,
}

/// The store. See the module docs for the locking rules.
pub(crate) struct Store {
    rv: AtomicU64,
    kinds: Vec<KindSlot>,
    history_limit: usize,
}

impl Store {
    pub(crate) fn new(history_limit: usize) -> Self {
        let kinds = Kind::ALL
            .iter()
            .map(|_| KindSlot {
                state: RwLock::new(KindState {
                    objects: BTreeMap::new(),
                    history: VecDeque::new(),
                    floor: 0,
                }),
                notify: tokio::sync::watch::channel(0).0,
            })
            .collect();
        Store {
            rv: AtomicU64::new(0),
            kinds,
            history_limit: history_limit.max(1),
        }
    }

    fn slot(&self, kind: Kind) -> &KindSlot {
        &self.kinds[kind.index()]
    }

    /// The latest resourceVersion of the whole store.
    pub(crate) fn current_rv(&self) -> u64 {
        self.rv.load(Ordering::SeqCst)
    }

    pub(crate) fn get(&self, kind: Kind, key: &Key) -> Option<Arc<Stored>> {
        self.slot(kind).state.read().objects.get(key).cloned()
    }

    /// All objects of a kind (optionally of one namespace) and the resourceVersion they represent.
    pub(crate) fn snapshot(&self, kind: Kind, namespace: Option<&str>) -> (Vec<Arc<Stored>>, u64) {
        let state = self.slot(kind).state.read();
        let items = match namespace {
            Some(ns) => state
                .objects
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => state.objects.values().cloned().collect(),
        };
        (items, self.current_rv())
    }

    /// Objects of one kind as they were at `rv`, reconstructed from the event history.
    /// `Err(floor)` when `rv` is older than the retained history.
    pub(crate) fn snapshot_at(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        rv: u64,
    ) -> Result<Vec<Arc<Stored>>, u64> {
        let state = self.slot(kind).state.read();
        if rv < state.floor {
            return Err(state.floor);
        }
        let mut objects = state.objects.clone();
        for ev in state.history.iter().rev().take_while(|e| e.rv > rv) {
            let key = (ev.obj.namespace().to_string(), ev.obj.name().to_string());
            match ev.ty {
                EventType::Added => {
                    objects.remove(&key);
                }
                EventType::Modified | EventType::Deleted => {
                    if let Some(prev) = &ev.prev {
                        objects.insert(key, prev.clone());
                    }
                }
            }
        }
        Ok(objects
            .into_iter()
            .filter(|((n, _), _)| namespace.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
            .collect())
    }

    /// Subscribes to "something changed" notifications of a kind.
    pub(crate) fn subscribe(&self, kind: Kind) -> tokio::sync::watch::Receiver<u64> {
        self.slot(kind).notify.subscribe()
    }

    /// Events of a kind after `rv` (at most `max`), or `Err(floor)` if `rv` is older than the history.
    pub(crate) fn events_since(
        &self,
        kind: Kind,
        rv: u64,
        max: usize,
    ) -> Result<Vec<Arc<WatchEvent>>, u64> {
        let state = self.slot(kind).state.read();
        if rv < state.floor {
            return Err(state.floor);
        }
        let start = state.history.partition_point(|e| e.rv <= rv);
        Ok(state.history.range(start..).take(max).cloned().collect())
    }

    /// The newest resourceVersion a watcher that has seen every event of `kind` up to `cursor` may
    /// claim in a bookmark. Read under the kind's lock: no write of the kind is half done then, so
    /// every event of the kind up to the global counter is already in the history.
    pub(crate) fn bookmark_rv(&self, kind: Kind, cursor: u64) -> u64 {
        let state = self.slot(kind).state.read();
        if state.history.back().is_none_or(|e| e.rv <= cursor) {
            self.current_rv().max(cursor)
        } else {
            cursor
        }
    }

    fn next_rv(&self) -> u64 {
        self.rv.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn push_event(&self, kind: Kind, state: &mut KindState, ev: WatchEvent) {
        let rv = ev.rv;
        state.history.push_back(Arc::new(ev));
        while state.history.len() > self.history_limit {
            if let Some(old) = state.history.pop_front() {
                state.floor = old.rv;
            }
        }
        self.slot(kind).notify.send_replace(rv);
    }

    /// Inserts a new object under a fixed name, or under `prefix` + 5 random characters for
    /// `generateName` (retrying on collisions, which the real server leaves to the client).
    /// `value` gets the final name and resourceVersion.
    pub(crate) fn insert(
        &self,
        kind: Kind,
        namespace: &str,
        value: &mut Value,
        name: NameChoice,
    ) -> Result<Arc<Stored>, WriteConflict> {
        let slot = self.slot(kind);
        loop {
            let key = (
                namespace.to_string(),
                match &name {
                    NameChoice::Fixed(n) => n.clone(),
                    NameChoice::Generate(prefix) => format!("{prefix}{}", random_suffix()),
                },
            );
            value["metadata"]["name"] = Value::String(key.1.clone());
            let rendered = Rendered::new(kind, value);
            let mut state = slot.state.write();
            if state.objects.contains_key(&key) {
                match name {
                    NameChoice::Fixed(_) => return Err(WriteConflict::Exists),
                    NameChoice::Generate(_) => continue,
                }
            }
            let rv = self.next_rv();
            let stored = Arc::new(rendered.commit(rv));
            state.objects.insert(key, stored.clone());
            self.push_event(
                kind,
                &mut state,
                WatchEvent {
                    rv,
                    ty: EventType::Added,
                    obj: stored.clone(),
                    prev: None,
                },
            );
            drop(state);
            value["metadata"]["resourceVersion"] = Value::String(rv.to_string());
            return Ok(stored);
        }
    }

    /// Replaces `expected` by `value` if it is still the stored version. `value` gets the new
    /// resourceVersion.
    pub(crate) fn replace(
        &self,
        kind: Kind,
        expected: &Arc<Stored>,
        value: &mut Value,
    ) -> Result<Arc<Stored>, WriteConflict> {
        let key = (
            expected.namespace().to_string(),
            expected.name().to_string(),
        );
        let rendered = Rendered::new(kind, value);
        let slot = self.slot(kind);
        let mut state = slot.state.write();
        match state.objects.get(&key) {
            Some(cur) if Arc::ptr_eq(cur, expected) => {}
            _ => return Err(WriteConflict::Changed),
        }
        let rv = self.next_rv();
        let stored = Arc::new(rendered.commit(rv));
        state.objects.insert(key, stored.clone());
        self.push_event(
            kind,
            &mut state,
            WatchEvent {
                rv,
                ty: EventType::Modified,
                obj: stored.clone(),
                prev: Some(expected.clone()),
            },
        );
        drop(state);
        value["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        Ok(stored)
    }

    /// Removes `expected` if it is still the stored version. Returns the object as the DELETED
    /// event carries it: the last stored state with the deletion's resourceVersion.
    pub(crate) fn remove(
        &self,
        kind: Kind,
        expected: &Arc<Stored>,
    ) -> Result<Arc<Stored>, WriteConflict> {
        let key = (
            expected.namespace().to_string(),
            expected.name().to_string(),
        );
        let rendered = Rendered::new(kind, &mut expected.value());
        let slot = self.slot(kind);
        let mut state = slot.state.write();
        match state.objects.get(&key) {
            Some(cur) if Arc::ptr_eq(cur, expected) => {}
            _ => return Err(WriteConflict::Changed),
        }
        state.objects.remove(&key);
        let rv = self.next_rv();
        let gone = Arc::new(rendered.commit(rv));
        self.push_event(
            kind,
            &mut state,
            WatchEvent {
                rv,
                ty: EventType::Deleted,
                obj: gone.clone(),
                prev: Some(expected.clone()),
            },
        );
        Ok(gone)
    }

    /// Number of objects of a kind (used by tests and the benchmark).
    #[allow(dead_code)]
    pub(crate) fn len(&self, kind: Kind) -> usize {
        self.slot(kind).state.read().objects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns"}})
    }

    #[test]
    fn resource_versions_are_global_and_increasing() {
        let s = Store::new(100);
        let a = s
            .insert(
                Kind::Pod,
                "ns",
                &mut obj("a"),
                NameChoice::Fixed("a".into()),
            )
            .unwrap();
        let b = s
            .insert(
                Kind::ResourceClaim,
                "ns",
                &mut obj("b"),
                NameChoice::Fixed("b".into()),
            )
            .unwrap();
        assert_eq!((a.rv, b.rv), (1, 2));
        assert_eq!(a.value()["metadata"]["resourceVersion"], "1");
        assert_eq!(s.current_rv(), 2);
    }

    #[test]
    fn committed_json_is_what_serde_json_writes() {
        let s = Store::new(100);
        let mut v = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"x": [1, "\u{1}\"é"]},
            "metadata": {"namespace": "ns", "labels": {"a": "b"}, "resourceVersion": "7", "uid": "u"},
            "status": {"resourceVersion": "not this one"}});
        let a = s
            .insert(Kind::Pod, "ns", &mut v, NameChoice::Generate("p-".into()))
            .unwrap();
        assert_eq!(v["metadata"]["resourceVersion"], "1");
        assert_eq!(
            a.json().as_ref(),
            serde_json::to_vec(&v).unwrap().as_slice()
        );
        assert_eq!(a.value(), v);
        assert_eq!((a.name().len(), a.meta().label("a")), (7, Some("b")));
        let gone = s.remove(Kind::Pod, &a).unwrap();
        v["metadata"]["resourceVersion"] = "2".into();
        assert_eq!(
            gone.json().as_ref(),
            serde_json::to_vec(&v).unwrap().as_slice()
        );
    }

    #[test]
    fn create_of_an_existing_name_conflicts() {
        let s = Store::new(100);
        s.insert(
            Kind::Pod,
            "ns",
            &mut obj("a"),
            NameChoice::Fixed("a".into()),
        )
        .unwrap();
        assert!(matches!(
            s.insert(
                Kind::Pod,
                "ns",
                &mut obj("a"),
                NameChoice::Fixed("a".into())
            ),
            Err(WriteConflict::Exists)
        ));
    }

    #[test]
    fn replace_of_a_stale_version_conflicts() {
        let s = Store::new(100);
        let a = s
            .insert(
                Kind::Pod,
                "ns",
                &mut obj("a"),
                NameChoice::Fixed("a".into()),
            )
            .unwrap();
        s.replace(Kind::Pod, &a, &mut obj("a")).unwrap();
        assert!(matches!(
            s.replace(Kind::Pod, &a, &mut obj("a")),
            Err(WriteConflict::Changed)
        ));
    }

    #[test]
    fn history_is_bounded_and_old_versions_expire() {
        let s = Store::new(2);
        for i in 0..5 {
            s.insert(
                Kind::Pod,
                "ns",
                &mut obj(&format!("p{i}")),
                NameChoice::Fixed(format!("p{i}")),
            )
            .unwrap();
        }
        assert_eq!(s.events_since(Kind::Pod, 0, 10).unwrap_err(), 3);
        let evs = s.events_since(Kind::Pod, 3, 10).unwrap();
        assert_eq!(evs.iter().map(|e| e.rv).collect::<Vec<_>>(), vec![4, 5]);
    }

    #[test]
    fn snapshot_at_rewinds_the_history() {
        let s = Store::new(100);
        let a = s
            .insert(
                Kind::Pod,
                "ns",
                &mut obj("a"),
                NameChoice::Fixed("a".into()),
            )
            .unwrap();
        s.insert(
            Kind::Pod,
            "ns",
            &mut obj("b"),
            NameChoice::Fixed("b".into()),
        )
        .unwrap();
        s.remove(Kind::Pod, &a).unwrap();
        let at1 = s.snapshot_at(Kind::Pod, None, 1).unwrap();
        assert_eq!(
            at1.iter().map(|o| o.name().to_string()).collect::<Vec<_>>(),
            vec!["a"]
        );
        let now = s.snapshot(Kind::Pod, Some("ns")).0;
        assert_eq!(
            now.iter().map(|o| o.name().to_string()).collect::<Vec<_>>(),
            vec!["b"]
        );
    }
}
