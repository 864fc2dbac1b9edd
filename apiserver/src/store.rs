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
//! against etcd.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::RwLock;
use serde_json::Value;

use crate::resources::Kind;

/// `(namespace, name)`; the namespace is empty for cluster-scoped kinds. Sorting by this key gives
/// the real server's list order (namespace, then name).
pub(crate) type Key = (String, String);

/// One stored object version. Immutable once stored; its JSON is rendered at most once and shared
/// by every response and watch event that carries it.
#[derive(Debug)]
pub(crate) struct Stored {
    pub value: Value,
    pub rv: u64,
    json: OnceLock<Bytes>,
}

impl Stored {
    pub(crate) fn new(value: Value, rv: u64) -> Self {
        Stored {
            value,
            rv,
            json: OnceLock::new(),
        }
    }

    /// The object's JSON bytes, serialized on first use.
    pub(crate) fn json(&self) -> &Bytes {
        self.json.get_or_init(|| {
            Bytes::from(serde_json::to_vec(&self.value).expect("stored objects serialize"))
        })
    }

    pub(crate) fn meta_str(&self, field: &str) -> Option<&str> {
        self.value
            .get("metadata")
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
    }

    pub(crate) fn name(&self) -> &str {
        self.meta_str("name").unwrap_or_default()
    }

    pub(crate) fn namespace(&self) -> &str {
        self.meta_str("namespace").unwrap_or_default()
    }

    pub(crate) fn uid(&self) -> &str {
        self.meta_str("uid").unwrap_or_default()
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

/// One change in a kind's history. `prev` is the state before the change (for MODIFIED and
/// DELETED), which watchers with selectors need to turn a MODIFIED into ADDED or DELETED when an
/// object starts or stops matching.
#[derive(Debug)]
pub(crate) struct WatchEvent {
    pub rv: u64,
    pub ty: EventType,
    pub obj: Arc<Stored>,
    pub prev: Option<Arc<Stored>>,
    frame: OnceLock<Bytes>,
}

impl WatchEvent {
    /// The newline-terminated wire frame `{"type":..,"object":..}`, built once for all watchers.
    pub(crate) fn frame(&self) -> &Bytes {
        self.frame
            .get_or_init(|| frame(self.ty.as_str(), &self.obj))
    }
}

/// Builds one watch frame for an object.
pub(crate) fn frame(ty: &str, obj: &Stored) -> Bytes {
    let json = obj.json();
    let mut out = Vec::with_capacity(json.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(ty.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(json);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
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
    pub(crate) fn insert(
        &self,
        kind: Kind,
        namespace: &str,
        mut value: Value,
        name: NameChoice,
    ) -> Result<Arc<Stored>, WriteConflict> {
        let slot = self.slot(kind);
        let mut state = slot.state.write();
        let key = match name {
            NameChoice::Fixed(n) => {
                let key = (namespace.to_string(), n);
                if state.objects.contains_key(&key) {
                    return Err(WriteConflict::Exists);
                }
                key
            }
            NameChoice::Generate(prefix) => loop {
                let key = (
                    namespace.to_string(),
                    format!("{prefix}{}", random_suffix()),
                );
                if !state.objects.contains_key(&key) {
                    break key;
                }
            },
        };
        let rv = self.next_rv();
        value["metadata"]["name"] = Value::String(key.1.clone());
        value["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let stored = Arc::new(Stored::new(value, rv));
        state.objects.insert(key, stored.clone());
        self.push_event(
            kind,
            &mut state,
            WatchEvent {
                rv,
                ty: EventType::Added,
                obj: stored.clone(),
                prev: None,
                frame: OnceLock::new(),
            },
        );
        Ok(stored)
    }

    /// Replaces `expected` by `value` if it is still the stored version.
    pub(crate) fn replace(
        &self,
        kind: Kind,
        expected: &Arc<Stored>,
        mut value: Value,
    ) -> Result<Arc<Stored>, WriteConflict> {
        let key = (
            expected.namespace().to_string(),
            expected.name().to_string(),
        );
        let slot = self.slot(kind);
        let mut state = slot.state.write();
        match state.objects.get(&key) {
            Some(cur) if Arc::ptr_eq(cur, expected) => {}
            _ => return Err(WriteConflict::Changed),
        }
        let rv = self.next_rv();
        value["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let stored = Arc::new(Stored::new(value, rv));
        state.objects.insert(key, stored.clone());
        self.push_event(
            kind,
            &mut state,
            WatchEvent {
                rv,
                ty: EventType::Modified,
                obj: stored.clone(),
                prev: Some(expected.clone()),
                frame: OnceLock::new(),
            },
        );
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
        let slot = self.slot(kind);
        let mut state = slot.state.write();
        match state.objects.get(&key) {
            Some(cur) if Arc::ptr_eq(cur, expected) => {}
            _ => return Err(WriteConflict::Changed),
        }
        state.objects.remove(&key);
        let rv = self.next_rv();
        let mut last = expected.value.clone();
        last["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let gone = Arc::new(Stored::new(last, rv));
        self.push_event(
            kind,
            &mut state,
            WatchEvent {
                rv,
                ty: EventType::Deleted,
                obj: gone.clone(),
                prev: Some(expected.clone()),
                frame: OnceLock::new(),
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
            .insert(Kind::Pod, "ns", obj("a"), NameChoice::Fixed("a".into()))
            .unwrap();
        let b = s
            .insert(
                Kind::ResourceClaim,
                "ns",
                obj("b"),
                NameChoice::Fixed("b".into()),
            )
            .unwrap();
        assert_eq!((a.rv, b.rv), (1, 2));
        assert_eq!(a.value["metadata"]["resourceVersion"], "1");
        assert_eq!(s.current_rv(), 2);
    }

    #[test]
    fn create_of_an_existing_name_conflicts() {
        let s = Store::new(100);
        s.insert(Kind::Pod, "ns", obj("a"), NameChoice::Fixed("a".into()))
            .unwrap();
        assert!(matches!(
            s.insert(Kind::Pod, "ns", obj("a"), NameChoice::Fixed("a".into())),
            Err(WriteConflict::Exists)
        ));
    }

    #[test]
    fn replace_of_a_stale_version_conflicts() {
        let s = Store::new(100);
        let a = s
            .insert(Kind::Pod, "ns", obj("a"), NameChoice::Fixed("a".into()))
            .unwrap();
        s.replace(Kind::Pod, &a, obj("a")).unwrap();
        assert!(matches!(
            s.replace(Kind::Pod, &a, obj("a")),
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
                obj(&format!("p{i}")),
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
            .insert(Kind::Pod, "ns", obj("a"), NameChoice::Fixed("a".into()))
            .unwrap();
        s.insert(Kind::Pod, "ns", obj("b"), NameChoice::Fixed("b".into()))
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
