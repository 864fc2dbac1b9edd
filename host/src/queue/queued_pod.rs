//! A pod as the queue tracks it.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::time::Instant;

use crate::framework::PodInfo;

/// A pending pod with its queueing history (upstream `framework.QueuedPodInfo`).
#[derive(Debug, Clone)]
pub struct QueuedPodInfo {
    /// The pod (latest version seen).
    pub pod: Arc<PodInfo>,
    /// Scheduling attempts so far (incremented when popped).
    pub attempts: u32,
    /// When the pod last entered the queue or failed; orders activeQ and starts the backoff.
    pub timestamp: Instant,
    /// When the pod was first popped.
    pub initial_attempt: Option<Instant>,
    /// Plugins that rejected the pod in its last attempt; their `requeue_on` events move it.
    pub unschedulable_plugins: HashSet<String>,
    /// The PreEnqueue plugin that gates the pod, if any.
    pub gated_by: Option<String>,
    /// The queue's event counter when the pod was popped (events during the attempt send the
    /// pod to backoffQ instead of the unschedulable pool).
    pub(crate) popped_at_cycle: u64,
}

impl QueuedPodInfo {
    /// A pod that just entered the queue.
    pub fn new(pod: Arc<PodInfo>, now: Instant) -> Self {
        QueuedPodInfo {
            pod,
            attempts: 0,
            timestamp: now,
            initial_attempt: None,
            unschedulable_plugins: HashSet::new(),
            gated_by: None,
            popped_at_cycle: 0,
        }
    }
}
