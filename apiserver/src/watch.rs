//! Watch streams: newline-delimited JSON events, as the real server writes them (references 50-55).
//!
//! Each watch is one task that follows its kind's event history with a cursor. It is woken by the
//! store when the kind changes, reads every event after its cursor under a short read lock, and
//! sends them in one chunk, copying each object's stored JSON (rendered once, when it was stored)
//! into the chunk. Selectors are matched on the fields kept next to the JSON, without parsing it. A watcher that falls behind the bounded history gets the `410 Expired` ERROR event
//! and its client re-lists, exactly like against a real server.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::json;
use tokio::sync::mpsc;

use crate::registry::Registry;
use crate::resources::{Kind, ResourceDef};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{EventType, Stored, WatchEvent, write_frame};

/// How often a watch that allows bookmarks gets one (the real server sends them about once a
/// minute; clients use them only to remember a resourceVersion).
const BOOKMARK_PERIOD: Duration = Duration::from_secs(10);
/// Events sent per wake-up at most, so one busy kind cannot starve the sender.
const BATCH: usize = 1024;

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WatchStart {
    /// After this resourceVersion (no replay of the current state).
    After(u64),
    /// With one ADDED per current object; `end_bookmark` adds the `k8s.io/initial-events-end`
    /// bookmark (streaming lists, `sendInitialEvents=true`).
    Initial { end_bookmark: bool },
}

/// A watch request.
pub(crate) struct WatchParams {
    pub res: &'static ResourceDef,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub start: WatchStart,
    pub bookmarks: bool,
    pub timeout: Duration,
}

impl WatchParams {
    fn matches(&self, obj: &Stored) -> bool {
        let meta = obj.meta();
        self.namespace
            .as_deref()
            .is_none_or(|ns| meta.namespace() == ns)
            && self.labels.matches(meta)
            && self.fields.matches(meta)
    }

    fn unfiltered(&self) -> bool {
        self.namespace.is_none() && self.labels.is_empty() && self.fields.is_empty()
    }

    /// Appends the frame this watcher sends for a history event, if any.
    fn write_frame_for(&self, out: &mut BytesMut, ev: &WatchEvent) {
        let ty = if self.unfiltered() {
            ev.ty
        } else {
            let now = self.matches(&ev.obj);
            let before = ev.prev.as_ref().is_some_and(|p| self.matches(p));
            match (ev.ty, before, now) {
                (EventType::Added, _, true) => EventType::Added,
                (EventType::Modified, true, true) => EventType::Modified,
                (EventType::Modified, false, true) => EventType::Added,
                (EventType::Modified, true, false) => EventType::Deleted,
                (EventType::Deleted, true, _) => EventType::Deleted,
                _ => return,
            }
        };
        if self.res.converted {
            let obj = Registry::present(self.res, &ev.obj);
            write_frame(out, ty.as_str(), &obj);
        } else {
            write_frame(out, ty.as_str(), &ev.obj);
        }
    }

    /// A BOOKMARK event: the kind's empty object carrying only a resourceVersion.
    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let mut obj =
            json!({"kind": self.res.kind, "apiVersion": self.res.api_version(), "metadata": meta});
        match self.res.kind_enum {
            Kind::Pod => {
                obj["spec"] = json!({"containers": null});
                obj["status"] = json!({});
            }
            Kind::ResourceClaim => {
                obj["spec"] = json!({"devices": {"requests": null}});
                obj["status"] = json!({});
            }
            _ => {}
        }
        let mut out = format!("{{\"type\":\"BOOKMARK\",\"object\":{obj}}}").into_bytes();
        out.push(b'\n');
        Bytes::from(out)
    }
}

/// Starts a watch; the returned receiver yields response body chunks until the watch ends.
pub(crate) fn start(reg: Arc<Registry>, params: WatchParams) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(run(reg, params, tx));
    rx
}

async fn run(reg: Arc<Registry>, p: WatchParams, tx: mpsc::Sender<Bytes>) {
    let kind = p.res.kind_enum;
    // Subscribe before reading anything, so no change can slip between the read and the wait.
    let mut changed = reg.store.subscribe(kind);
    let deadline = tokio::time::Instant::now() + p.timeout;
    let mut cursor = match p.start {
        WatchStart::After(rv) => rv,
        WatchStart::Initial { end_bookmark } => {
            let (items, rv) = reg.store.snapshot(kind, p.namespace.as_deref());
            let mut buf = BytesMut::new();
            for obj in items.iter().filter(|o| p.matches(o)) {
                let shown = Registry::present(p.res, obj);
                write_frame(&mut buf, "ADDED", &shown);
            }
            if end_bookmark && p.bookmarks {
                buf.extend_from_slice(&p.bookmark(rv, true));
            }
            if !buf.is_empty() && tx.send(buf.freeze()).await.is_err() {
                return;
            }
            rv
        }
    };
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + BOOKMARK_PERIOD,
        BOOKMARK_PERIOD,
    );
    loop {
        match reg.store.events_since(kind, cursor, BATCH) {
            Err(floor) => {
                let status =
                    ApiError::gone(format!("too old resource version: {cursor} ({floor})"));
                let line = format!("{{\"type\":\"ERROR\",\"object\":{}}}\n", status.to_value());
                let _ = tx.send(Bytes::from(line)).await;
                return;
            }
            Ok(events) if !events.is_empty() => {
                let mut buf = BytesMut::new();
                for ev in &events {
                    cursor = ev.rv;
                    p.write_frame_for(&mut buf, ev);
                }
                if !buf.is_empty() && tx.send(buf.freeze()).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(_) => {}
        }
        tokio::select! {
            r = changed.changed() => {
                if r.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if p.bookmarks {
                    let rv = bookmark_rv(&reg, kind, cursor);
                    let _ = tx.send(p.bookmark(rv, false)).await;
                }
                return;
            }
            _ = ticker.tick(), if p.bookmarks => {
                let rv = bookmark_rv(&reg, kind, cursor);
                if tx.send(p.bookmark(rv, false)).await.is_err() {
                    return;
                }
                cursor = rv;
            }
            _ = tx.closed() => return,
        }
    }
}

/// The newest resourceVersion a bookmark may claim: the store's current one if the watcher has
/// seen every event of its kind, else the last event it saw.
fn bookmark_rv(reg: &Registry, kind: Kind, cursor: u64) -> u64 {
    reg.store.bookmark_rv(kind, cursor)
}

/// Objects of a snapshot that a list or watch would show.
pub(crate) fn filter_items<'a>(
    items: &'a [Arc<Stored>],
    labels: &'a LabelSelector,
    fields: &'a FieldSelector,
) -> impl Iterator<Item = &'a Arc<Stored>> + 'a {
    items
        .iter()
        .filter(move |o| labels.matches(o.meta()) && fields.matches(o.meta()))
}
