//! Tells users what happened to their pods, as kube-scheduler does: `Scheduled` and
//! `FailedScheduling` Events (events.k8s.io/v1) and the `PodScheduled=False` condition
//! (strategic-merge patch of pods/status). Writes happen in a background task with bounded
//! concurrency, never in the scheduling loop; under overload records are dropped, like
//! client-go's event broadcaster does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::framework::PodInfo;

use super::intents::FIELD_MANAGER;

/// Longest Event note the API server accepts, in bytes (`NoteLengthLimit` in
/// k8s.io/kubernetes pkg/apis/core/validation/events.go, enforced for events.k8s.io/v1).
pub const NOTE_LENGTH_LIMIT: usize = 1024;

/// How many writes run at once.
const CONCURRENCY: usize = 32;
/// Records queued beyond this are dropped.
const BUFFER: usize = 65_536;

/// One thing to tell the API server.
enum Record {
    Scheduled {
        pod: Arc<PodInfo>,
        node: String,
        profile: String,
    },
    Failed {
        pod: Arc<PodInfo>,
        reason: &'static str,
        message: String,
        profile: String,
    },
}

/// Posts events and conditions in the background. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: Option<mpsc::Sender<Record>>,
    outstanding: Arc<(AtomicUsize, Notify)>,
}

impl Recorder {
    /// A recorder that writes nothing.
    pub fn disabled() -> Self {
        Recorder {
            tx: None,
            outstanding: Arc::new((AtomicUsize::new(0), Notify::new())),
        }
    }

    /// Starts the background writer.
    pub fn start(client: Client, instance: String) -> Self {
        let (tx, mut rx) = mpsc::channel::<Record>(BUFFER);
        let outstanding = Arc::new((AtomicUsize::new(0), Notify::new()));
        let out = outstanding.clone();
        tokio::spawn(async move {
            let limit = Arc::new(Semaphore::new(CONCURRENCY));
            while let Some(rec) = rx.recv().await {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                let (client, instance, out) = (client.clone(), instance.clone(), out.clone());
                tokio::spawn(async move {
                    write(&client, &instance, rec).await;
                    drop(permit);
                    if out.0.fetch_sub(1, Ordering::AcqRel) == 1 {
                        out.1.notify_waiters();
                    }
                });
            }
        });
        Recorder {
            tx: Some(tx),
            outstanding,
        }
    }

    fn send(&self, rec: Record) {
        let Some(tx) = &self.tx else { return };
        self.outstanding.0.fetch_add(1, Ordering::AcqRel);
        if tx.try_send(rec).is_err() {
            tracing::debug!("event recorder overloaded; dropping a record");
            self.outstanding.0.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Records a successful binding.
    pub fn scheduled(&self, pod: Arc<PodInfo>, node: &str, profile: &str) {
        self.send(Record::Scheduled {
            pod,
            node: node.to_string(),
            profile: profile.to_string(),
        });
    }

    /// Records a failed attempt: a FailedScheduling event and the PodScheduled=False condition
    /// with `reason` (`Unschedulable`, or `SchedulerError` for internal errors).
    pub fn failed(&self, pod: Arc<PodInfo>, reason: &'static str, message: String, profile: &str) {
        self.send(Record::Failed {
            pod,
            reason,
            message,
            profile: profile.to_string(),
        });
    }

    /// Waits until every queued record was written.
    pub async fn flush(&self) {
        loop {
            let notified = self.outstanding.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.outstanding.0.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Cuts a message to [`NOTE_LENGTH_LIMIT`] bytes ending in ` ...`, as kube-scheduler's
/// `truncateMessage` does for the FailedScheduling note (on a character boundary here, so the
/// result stays valid UTF-8).
pub fn truncate_message(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= NOTE_LENGTH_LIMIT {
        return message.into();
    }
    const SUFFIX: &str = " ...";
    let mut cut = NOTE_LENGTH_LIMIT - SUFFIX.len();
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{SUFFIX}", &message[..cut]).into()
}

fn regarding(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// The Event kube-scheduler posts (reference capture 81/82): named `<pod>.<hex unix nanos>`.
fn event(
    pod: &Pod,
    profile: &str,
    instance: &str,
    type_: &str,
    reason: &str,
    action: &str,
    note: String,
) -> Event {
    let now = jiff::Timestamp::now();
    Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}.{:x}",
                pod.metadata.name.as_deref().unwrap_or("pod"),
                now.as_nanosecond()
            )),
            namespace: pod.metadata.namespace.clone(),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        reporting_controller: Some(profile.to_string()),
        reporting_instance: Some(instance.to_string()),
        action: Some(action.into()),
        reason: Some(reason.into()),
        regarding: Some(regarding(pod)),
        note: Some(note),
        type_: Some(type_.into()),
        ..Default::default()
    }
}

/// Whether the pod already carries this PodScheduled=False condition (then no write is needed).
fn has_condition(pod: &Pod, reason: &str, message: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some(reason)
                    && c.message.as_deref() == Some(message)
            })
        })
}

async fn write(client: &Client, instance: &str, rec: Record) {
    match rec {
        Record::Scheduled { pod, node, profile } => {
            let p = &pod.pod;
            let note = format!(
                "Successfully assigned {}/{} to {node}",
                pod.key.namespace, pod.key.name
            );
            let ev = event(
                p,
                &profile,
                instance,
                "Normal",
                "Scheduled",
                "Binding",
                note,
            );
            post(client, &pod.key.namespace, &ev).await;
        }
        Record::Failed {
            pod,
            reason,
            message,
            profile,
        } => {
            // Upstream caps the note (the API server refuses a longer one) and writes the
            // condition in full; the condition is capped too, so that a plugin's reason cannot
            // grow the pod object by kilobytes on every attempt. The log has the whole reason.
            let message = truncate_message(&message).into_owned();
            let p = &pod.pod;
            let ev = event(
                p,
                &profile,
                instance,
                "Warning",
                "FailedScheduling",
                "Scheduling",
                message.clone(),
            );
            post(client, &pod.key.namespace, &ev).await;
            if has_condition(p, reason, &message) {
                return;
            }
            let mut condition = serde_json::json!({
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": null,
                "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "reason": reason,
                "message": message,
            });
            if let Some(g) = p.metadata.generation {
                condition["observedGeneration"] = g.into();
            }
            let body = serde_json::json!({"status": {"conditions": [condition]}});
            let api: Api<Pod> = Api::namespaced(client.clone(), &pod.key.namespace);
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..Default::default()
            };
            if let Err(e) = api
                .patch_status(&pod.key.name, &params, &Patch::Strategic(body))
                .await
            {
                tracing::debug!(pod = %pod.key.name, error = %e, "could not set the PodScheduled condition");
            }
        }
    }
}

async fn post(client: &Client, namespace: &str, ev: &Event) {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    if let Err(e) = api.create(&PostParams::default(), ev).await {
        tracing::debug!(error = %e, "could not post an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_to_the_note_limit_with_a_marker() {
        assert_eq!(truncate_message("short"), "short");
        let exact = "x".repeat(NOTE_LENGTH_LIMIT);
        assert_eq!(truncate_message(&exact), exact);
        let long = "é".repeat(NOTE_LENGTH_LIMIT);
        let cut = truncate_message(&long);
        assert!(cut.len() <= NOTE_LENGTH_LIMIT, "{}", cut.len());
        assert!(cut.ends_with("é ..."), "{cut}");
    }
}
