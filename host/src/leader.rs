//! Lease-based leader election (coordination.k8s.io/v1), following client-go's
//! `leaderelection` sequence: get → create or take over an expired lease → renew every retry
//! period with the resourceVersion just read (a 409 means someone else won) → give up when
//! renewal fails for longer than the renew deadline.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use crate::config::LeaderElection;

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The lease could not be read or written.
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Client error.
        #[source]
        source: kube::Error,
    },
}

/// Campaigns for and holds one lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElection,
    identity: String,
}

/// What a try found.
enum Attempt {
    Acquired,
    HeldByOther,
}

impl LeaderElector {
    /// An elector for the configured lease under `identity` (e.g. `host_uuid`).
    pub fn new(client: Client, config: LeaderElection, identity: String) -> Self {
        let api = Api::namespaced(client, &config.resource_namespace);
        LeaderElector {
            api,
            config,
            identity,
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn now() -> MicroTime {
        MicroTime(jiff::Timestamp::now())
    }

    fn err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            namespace: self.config.resource_namespace.clone(),
            name: self.config.resource_name.clone(),
            source,
        }
    }

    fn expired(&self, spec: &LeaseSpec) -> bool {
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(self.config.lease_duration);
        match &spec.renew_time {
            Some(t) => {
                let age = jiff::Timestamp::now().duration_since(t.0);
                age.as_secs_f64() > duration.as_secs_f64()
            }
            None => true,
        }
    }

    /// One try to acquire or renew (client-go `tryAcquireOrRenew`).
    async fn try_acquire_or_renew(&self) -> Result<Attempt, LeaderError> {
        let name = &self.config.resource_name;
        let now = Self::now();
        let duration = self.config.lease_duration.as_secs() as i32;
        let existing = self.api.get_opt(name).await.map_err(|e| self.err(e))?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.config.resource_namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Acquired),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldByOther),
                Err(e) => Err(self.err(e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.identity;
        if !ours && !holder.is_empty() && !self.expired(spec) {
            return Ok(Attempt::HeldByOther);
        }
        if !ours {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(duration);
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Acquired),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldByOther),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Waits until this candidate holds the lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Acquired) => {
                    tracing::info!(identity = %self.identity, lease = %self.config.resource_name, "became leader");
                    return;
                }
                Ok(Attempt::HeldByOther) => {
                    tracing::debug!("lease held by another scheduler; waiting")
                }
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Keeps renewing the lease; returns when leadership is lost (renewal failed for longer
    /// than the renew deadline, or another candidate took the lease). Flags `lost` then.
    pub async fn hold(&self, lost: watch::Sender<bool>) {
        let mut last_renew = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Acquired) => last_renew = tokio::time::Instant::now(),
                Ok(Attempt::HeldByOther) => {
                    tracing::error!("another scheduler took the lease");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the lease failed");
                    if last_renew.elapsed() > self.config.renew_deadline {
                        tracing::error!("could not renew the lease within the renew deadline");
                        break;
                    }
                }
            }
        }
        let _ = lost.send(true);
    }
}
