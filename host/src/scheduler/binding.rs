//! The binding cycle (upstream `bindingCycle`), one task per pod, concurrent across pods:
//! wait on Permit, then the PreBind executor applies the pod's intents in order under the
//! global bound, then PreBind plugins, Bind and PostBind. Every failure runs Unreserve and
//! forgets the assumptions before the pod is requeued, so the cache never keeps a placement or
//! an allocation the API server will not have.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::cache::IntentId;
use crate::framework::{
    Code, CycleState, EventAction, Framework, PatchIntent, PluginRef, PodInfo, ResourceKind, Status,
};
use crate::queue::QueuedPodInfo;

use super::intents::{apply_intent, check_kinds, describe};
use super::waiting::{PermitVerdict, Wait};
use super::{PodOutcome, Shared};

/// Intents a Reserve plugin returned, with the cache ids they were assumed under.
pub(crate) struct AssumedIntents {
    pub plugin: PluginRef,
    pub intents: Vec<PatchIntent>,
    pub ids: Vec<Option<IntentId>>,
}

/// Why a binding cycle failed.
struct BindFailure {
    code: Code,
    plugin: Option<String>,
    message: String,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn binding_cycle(
        self: Arc<Self>,
        fwk: Arc<Framework>,
        mut state: CycleState,
        qp: QueuedPodInfo,
        node: String,
        reserved: Vec<AssumedIntents>,
        wait: Option<Wait>,
        start: Instant,
    ) {
        let pod = qp.pod.clone();
        match self
            .bind_pod(&fwk, &mut state, &pod, &node, reserved, wait)
            .await
        {
            Ok(()) => {
                fwk.run_post_bind(&pod, &node);
                self.metrics
                    .attempt(fwk.name(), "scheduled", start.elapsed());
                if let Some(first) = qp.initial_attempt {
                    self.metrics.pod_scheduled(qp.attempts, first.elapsed());
                }
                tracing::Span::current().record("result", "scheduled");
                tracing::debug!(result = "scheduled", %node, "bound");
                self.outcomes.record(
                    &pod.key.uid,
                    PodOutcome {
                        namespace: pod.key.namespace.clone(),
                        name: pod.key.name.clone(),
                        node: Some(node.clone()),
                        message: None,
                        attempts: qp.attempts,
                    },
                );
                self.recorder.scheduled(pod.clone(), &node, fwk.name());
                self.queue.done(&pod.key.uid);
            }
            Err(f) => {
                self.unreserve(&fwk, &mut state, &pod, &node);
                // The pod's resources are free again: pods waiting for room may fit now
                // (upstream moves pods on `AssignedPodDelete` here).
                self.queue
                    .on_event(&ResourceKind::pod(), EventAction::Deleted);
                let plugins = f.plugin.into_iter().collect::<HashSet<_>>();
                self.fail(&fwk, &qp, f.code, plugins, f.message, start);
            }
        }
        // Waiters only care when the last binding cycle ends.
        if self.bindings.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.progress.notify_waiters();
        }
    }

    async fn bind_pod(
        &self,
        fwk: &Framework,
        state: &mut CycleState,
        pod: &Arc<PodInfo>,
        node: &str,
        reserved: Vec<AssumedIntents>,
        wait: Option<Wait>,
    ) -> Result<(), BindFailure> {
        if let Some(wait) = wait
            && let PermitVerdict::Rejected { plugin, message } = self.waiting.wait(wait).await
        {
            let plugin = (!plugin.is_empty()).then_some(plugin);
            return Err(BindFailure {
                code: Code::Unschedulable,
                plugin,
                message,
            });
        }
        let mut slot = Some(self.bind_slot().await?);
        // The PreBind executor: the Reserve intents, in order.
        for a in &reserved {
            for (intent, id) in a.intents.iter().zip(&a.ids) {
                match apply_intent(&self.client, intent).await {
                    Ok(rv) => {
                        if let Some(id) = id {
                            self.cache.intent_applied(intent, *id, rv.as_deref());
                        }
                    }
                    Err(e) => {
                        if let Some(id) = id {
                            self.cache.intent_failed(intent, *id);
                        }
                        return Err(BindFailure {
                            code: Code::Error,
                            plugin: Some(a.plugin.name().to_string()),
                            message: format!(
                                "running PreBind for plugin {:?}: {e}",
                                a.plugin.name()
                            ),
                        });
                    }
                }
            }
        }
        for plugin in fwk.pre_bind_plugins() {
            let failure = |message: String| BindFailure {
                code: Code::Error,
                plugin: Some(plugin.name().to_string()),
                message,
            };
            let intents = self
                .pre_bind_until_ready(fwk, plugin, state, pod, node, &mut slot)
                .await
                .map_err(|st| {
                    failure(format!(
                        "running PreBind plugin {:?}: {}",
                        plugin.name(),
                        st.message()
                    ))
                })?;
            check_kinds(plugin.as_ref(), &intents).map_err(|st| failure(st.message()))?;
            for intent in &intents {
                apply_intent(&self.client, intent).await.map_err(|e| {
                    failure(format!("running PreBind plugin {:?}: {e}", plugin.name()))
                })?;
            }
        }
        let status = fwk.run_bind(&self.bind_ctx, pod, node).await;
        if !status.is_success() {
            return Err(BindFailure {
                code: Code::Error,
                plugin: None,
                message: format!("Binding rejected: {}", status.message()),
            });
        }
        Ok(())
    }

    /// A place under the PreBind concurrency bound.
    async fn bind_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, BindFailure> {
        self.bind_limit
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| BindFailure {
                code: Code::Error,
                plugin: None,
                message: "the scheduler is shutting down".into(),
            })
    }

    /// Calls one PreBind plugin until it stops returning `Pending` (e.g. DRA binding
    /// conditions, KEP-5007): again after each change of a watched object, until the plugin's
    /// [`Plugin::pre_bind_timeout`](crate::framework::Plugin::pre_bind_timeout) or until the
    /// pod is deleted. This pod's task waits; the scheduling loop and other bindings go on,
    /// and the concurrency slot is given back while waiting.
    async fn pre_bind_until_ready(
        &self,
        fwk: &Framework,
        plugin: &PluginRef,
        state: &mut CycleState,
        pod: &Arc<PodInfo>,
        node: &str,
        slot: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Vec<PatchIntent>, Status> {
        let timeout = plugin.pre_bind_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the call, so a change while it runs is not missed.
            let changed = self.objects_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if slot.is_none() {
                *slot = Some(
                    self.bind_slot()
                        .await
                        .map_err(|f| Status::error(f.message))?,
                );
            }
            let st = match fwk.call_pre_bind(plugin, state, pod, node) {
                Err(st) if st.code == Code::Pending => st,
                other => return other,
            };
            if !self.cache.is_assigned(&pod.key.uid) {
                return Err(Status::error(format!(
                    "pod was deleted while PreBind waited: {}",
                    st.message()
                )));
            }
            *slot = None;
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Status::error(format!(
                        "timed out after {timeout:?}: {}",
                        st.message()
                    )));
                }
            }
        }
    }

    /// Undoes a reservation: Unreserve in reverse order, drop the pod's unapplied intents,
    /// assume and apply the compensating intents, and forget the assumed pod.
    pub(crate) fn unreserve(
        &self,
        fwk: &Framework,
        state: &mut CycleState,
        pod: &PodInfo,
        node: &str,
    ) {
        let compensation = fwk.run_unreserve(state, pod, node);
        self.cache.forget_intents(&pod.key.uid);
        for (plugin, intents) in compensation {
            match check_kinds(plugin.as_ref(), &intents) {
                Ok(()) => self.apply_in_background(format!("unreserve:{}", pod.key.uid), intents),
                Err(st) => tracing::warn!(pod = %pod.key.name, "{}", st.message()),
            }
        }
        self.cache.forget_pod(&pod.key.uid);
    }

    /// Assumes intents (when they apply to the cache) and applies them in order in a background
    /// task under the PreBind concurrency bound. Failures are logged: the plugin will see the
    /// object as the watch reports it.
    pub(crate) fn apply_in_background(&self, owner: String, intents: Vec<PatchIntent>) {
        let ids = self
            .cache
            .assume_intents(&owner, &intents)
            .unwrap_or_else(|e| {
                tracing::debug!("not assuming {owner}'s intents: {e}");
                vec![None; intents.len()]
            });
        let (client, cache, limit) = (
            self.client.clone(),
            self.cache.clone(),
            self.bind_limit.clone(),
        );
        self.rt.spawn(async move {
            let _slot = limit.acquire().await;
            for (intent, id) in intents.iter().zip(ids) {
                match apply_intent(&client, intent).await {
                    Ok(rv) => {
                        if let Some(id) = id {
                            cache.intent_applied(intent, id, rv.as_deref());
                        }
                    }
                    Err(e) => {
                        tracing::warn!("{owner}: applying {} failed: {e}", describe(intent));
                        if let Some(id) = id {
                            cache.intent_failed(intent, id);
                        }
                    }
                }
            }
        });
    }
}
