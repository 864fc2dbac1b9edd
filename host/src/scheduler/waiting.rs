//! Pods held at Permit (upstream `waitingPodsMap`): each waits for every plugin that said
//! `Wait` to allow it, and is rejected by any plugin, by its timeout, or by its deletion.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermitVerdict {
    /// Every waiting plugin allowed the pod.
    Allowed,
    /// A plugin rejected it, or its wait timed out.
    Rejected {
        /// The plugin.
        plugin: String,
        /// Why.
        message: String,
    },
}

struct WaitingPod {
    /// Plugins still to allow, with their deadlines and timeouts.
    pending: HashMap<String, (Instant, Duration)>,
    tx: Option<oneshot::Sender<PermitVerdict>>,
}

/// The pods waiting at Permit, by uid.
#[derive(Default)]
pub struct WaitingPods {
    pods: Mutex<HashMap<String, WaitingPod>>,
}

/// A registered wait: await [`Wait::wait`].
pub struct Wait {
    uid: String,
    rx: oneshot::Receiver<PermitVerdict>,
}

impl WaitingPods {
    /// Number of waiting pods.
    pub fn len(&self) -> usize {
        self.pods.lock().len()
    }

    /// True when no pod waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The uids of waiting pods.
    pub fn uids(&self) -> Vec<String> {
        self.pods.lock().keys().cloned().collect()
    }

    /// Holds a pod for these plugins, each with its timeout.
    pub fn add(&self, uid: &str, plugins: &[(String, Duration)]) -> Wait {
        let now = Instant::now();
        let (tx, rx) = oneshot::channel();
        let pending = plugins
            .iter()
            .map(|(p, t)| (p.clone(), (now + *t, *t)))
            .collect();
        self.pods.lock().insert(
            uid.to_string(),
            WaitingPod {
                pending,
                tx: Some(tx),
            },
        );
        Wait {
            uid: uid.to_string(),
            rx,
        }
    }

    /// `plugin` allows the pod; it proceeds once no plugin is left. Returns whether the pod was
    /// waiting for that plugin.
    pub fn allow(&self, uid: &str, plugin: &str) -> bool {
        let mut pods = self.pods.lock();
        let Some(w) = pods.get_mut(uid) else {
            return false;
        };
        if w.pending.remove(plugin).is_none() {
            return false;
        }
        if w.pending.is_empty() {
            let mut w = pods.remove(uid).expect("present");
            if let Some(tx) = w.tx.take() {
                let _ = tx.send(PermitVerdict::Allowed);
            }
        }
        true
    }

    /// Rejects the pod. Returns whether it was waiting.
    pub fn reject(&self, uid: &str, plugin: &str, message: &str) -> bool {
        let Some(mut w) = self.pods.lock().remove(uid) else {
            return false;
        };
        if let Some(tx) = w.tx.take() {
            let _ = tx.send(PermitVerdict::Rejected {
                plugin: plugin.to_string(),
                message: message.to_string(),
            });
        }
        true
    }

    fn earliest_deadline(&self, uid: &str) -> Option<Instant> {
        self.pods
            .lock()
            .get(uid)
            .and_then(|w| w.pending.values().map(|(d, _)| *d).min())
    }

    /// Rejects the pod if a plugin's deadline has passed, with upstream's message.
    fn expire(&self, uid: &str, now: Instant) {
        let expired = {
            let pods = self.pods.lock();
            pods.get(uid).and_then(|w| {
                w.pending
                    .iter()
                    .find(|(_, (d, _))| *d <= now)
                    .map(|(p, (_, t))| (p.clone(), *t))
            })
        };
        if let Some((plugin, timeout)) = expired {
            let msg = format!(
                "rejected due to timeout after waiting {} at plugin {plugin}",
                go_duration(timeout)
            );
            self.reject(uid, &plugin, &msg);
        }
    }

    /// Waits until the pod is allowed, rejected, or timed out.
    pub async fn wait(&self, mut wait: Wait) -> PermitVerdict {
        loop {
            let Some(deadline) = self.earliest_deadline(&wait.uid) else {
                // Decided already (or rejected by removal).
                return wait.rx.await.unwrap_or(PermitVerdict::Rejected {
                    plugin: String::new(),
                    message: "waiting pod was dropped".into(),
                });
            };
            tokio::select! {
                v = &mut wait.rx => {
                    return v.unwrap_or(PermitVerdict::Rejected { plugin: String::new(), message: "waiting pod was dropped".into() });
                }
                _ = tokio::time::sleep_until(deadline) => self.expire(&wait.uid, Instant::now()),
            }
        }
    }
}

/// A duration as Go prints it for whole seconds or milliseconds (`5s`, `1.5s`, `250ms`).
fn go_duration(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pod_is_allowed_once_every_waiting_plugin_allows_it() {
        let w = WaitingPods::default();
        let wait = w.add(
            "u",
            &[
                ("A".into(), Duration::from_secs(60)),
                ("B".into(), Duration::from_secs(60)),
            ],
        );
        assert!(w.allow("u", "A"));
        assert_eq!(w.len(), 1);
        assert!(w.allow("u", "B"));
        assert!(w.is_empty());
        assert_eq!(w.wait(wait).await, PermitVerdict::Allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_times_out_with_upstreams_message() {
        let w = WaitingPods::default();
        let wait = w.add("u", &[("Gang".into(), Duration::from_secs(5))]);
        let start = Instant::now();
        let v = w.wait(wait).await;
        assert!(start.elapsed() >= Duration::from_secs(5));
        assert_eq!(
            v,
            PermitVerdict::Rejected {
                plugin: "Gang".into(),
                message: "rejected due to timeout after waiting 5s at plugin Gang".into()
            }
        );
    }

    #[tokio::test]
    async fn a_rejection_ends_the_wait() {
        let w = WaitingPods::default();
        let wait = w.add("u", &[("Gang".into(), Duration::from_secs(60))]);
        assert!(w.reject("u", "Gang", "gang failed"));
        assert!(matches!(w.wait(wait).await, PermitVerdict::Rejected { .. }));
    }
}
