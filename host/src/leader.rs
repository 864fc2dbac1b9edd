//! Lease-based leader election (coordination.k8s.io/v1), following client-go's
//! `leaderelection` package:
//!
//! - a candidate reads the lease; it takes it over only when the holder has not renewed for a
//!   lease duration **as observed on the candidate's own clock** (the time it last saw the
//!   record change), so clock skew between machines does not matter;
//! - every write carries the resourceVersion just read: of two candidates racing for an expired
//!   lease, the API server lets exactly one win (409 for the other);
//! - the leader renews every retry period and gives up once it has not renewed for the renew
//!   deadline. Because the renew deadline is shorter than the lease duration, a leader always
//!   stops before any standby can take over;
//! - on a clean shutdown the leader releases the lease (`ReleaseOnCancel`), so a standby takes
//!   over within a retry period instead of a lease duration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, PostParams};
use parking_lot::Mutex;
use rand::Rng;
use tokio::time::Instant;

use crate::config::LeaderElection;

/// client-go's `JitterFactor`: campaign retries wait `retry * (1 + rand * 1.2)`.
const JITTER_FACTOR: f64 = 1.2;

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
    /// The timings cannot give a single leader.
    #[error("leader election: {0}")]
    Config(String),
}

/// The fields of a lease record that show the holder is alive: any change restarts the
/// observed-expiry clock.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    holder: String,
    lease_duration: Duration,
    acquire_time: Option<MicroTime>,
    renew_time: Option<MicroTime>,
    transitions: i32,
}

impl Record {
    fn of(spec: &LeaseSpec, default_duration: Duration) -> Self {
        Record {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            lease_duration: spec
                .lease_duration_seconds
                .map_or(default_duration, |s| Duration::from_secs(s.max(0) as u64)),
            acquire_time: spec.acquire_time.clone(),
            renew_time: spec.renew_time.clone(),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }
}

/// What this candidate knows: the last record it saw and when (its own clock), and when it last
/// renewed as leader.
#[derive(Default)]
struct State {
    observed: Option<(Record, Instant)>,
    /// Start of the last successful acquire or renew while leading.
    renewed: Option<Instant>,
}

/// Campaigns for and holds one lease.
pub struct LeaderElector {
    api: Api<Lease>,
    events: Api<Event>,
    config: LeaderElection,
    identity: String,
    state: Mutex<State>,
}

/// What a try found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Acquired,
    HeldByOther,
}

/// Checks the timings as client-go's `NewLeaderElector` does.
///
/// # Errors
/// `lease duration > renew deadline > 1.2 × retry period > 0` does not hold, or the lease
/// duration is under a second (leases count whole seconds).
pub fn validate(config: &LeaderElection) -> Result<(), LeaderError> {
    let bad = |m: String| Err(LeaderError::Config(m));
    if config.lease_duration < Duration::from_secs(1) {
        return bad(format!(
            "the lease duration ({:?}) must be at least 1s",
            config.lease_duration
        ));
    }
    if config.lease_duration <= config.renew_deadline {
        return bad(format!(
            "the lease duration ({:?}) must be greater than the renew deadline ({:?})",
            config.lease_duration, config.renew_deadline
        ));
    }
    if config.retry_period.is_zero() {
        return bad("the retry period must be positive".into());
    }
    if config.renew_deadline.as_secs_f64() <= JITTER_FACTOR * config.retry_period.as_secs_f64() {
        return bad(format!(
            "the renew deadline ({:?}) must be greater than {JITTER_FACTOR} × the retry period ({:?})",
            config.renew_deadline, config.retry_period
        ));
    }
    if config.resource_name.is_empty() || config.resource_namespace.is_empty() {
        return bad("the lease name and namespace must not be empty".into());
    }
    Ok(())
}

impl LeaderElector {
    /// An elector for the configured lease under `identity` (e.g. `host_uuid`).
    pub fn new(client: Client, config: LeaderElection, identity: String) -> Self {
        let api = Api::namespaced(client.clone(), &config.resource_namespace);
        let events = Api::namespaced(client, &config.resource_namespace);
        LeaderElector {
            api,
            events,
            config,
            identity,
            state: Mutex::new(State::default()),
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The lease name.
    pub fn lease_name(&self) -> &str {
        &self.config.resource_name
    }

    /// The lease namespace.
    pub fn lease_namespace(&self) -> &str {
        &self.config.resource_namespace
    }

    fn err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            namespace: self.config.resource_namespace.clone(),
            name: self.config.resource_name.clone(),
            source,
        }
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// One try to acquire or renew (client-go `tryAcquireOrRenew`).
    async fn try_acquire_or_renew(&self) -> Result<Attempt, LeaderError> {
        let name = &self.config.resource_name;
        let started = Instant::now();
        let now = MicroTime(jiff::Timestamp::now());
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
                    lease_duration_seconds: Some(self.lease_seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(l) => Ok(self.won(&l, started)),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldByOther),
                Err(e) => Err(self.err(e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let record = Record::of(spec, self.config.lease_duration);
        let ours = record.holder == self.identity;
        {
            let mut st = self.state.lock();
            let changed = st.observed.as_ref().is_none_or(|(r, _)| *r != record);
            if changed {
                st.observed = Some((record.clone(), started));
            }
            let seen = st.observed.as_ref().map_or(started, |(_, t)| *t);
            let valid = seen + record.lease_duration > started;
            if !record.holder.is_empty() && !ours && valid {
                return Ok(Attempt::HeldByOther);
            }
            if !ours && st.renewed.is_some() {
                // Someone else holds (or released) the lease we thought was ours.
                st.renewed = None;
                return Ok(Attempt::HeldByOther);
            }
        }
        if !ours {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(record.transitions + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.lease_seconds());
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(l) => Ok(self.won(&l, started)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldByOther),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Notes a successful write of our record.
    fn won(&self, lease: &Lease, started: Instant) -> Attempt {
        let mut st = self.state.lock();
        if let Some(spec) = &lease.spec {
            st.observed = Some((Record::of(spec, self.config.lease_duration), started));
        }
        st.renewed = Some(started);
        Attempt::Acquired
    }

    /// Waits until this candidate holds the lease, retrying every retry period with client-go's
    /// jitter. Posts the `LeaderElection` event ("<identity> became leader") on success.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Acquired) => {
                    tracing::info!(identity = %self.identity, lease = %self.config.resource_name, "successfully acquired lease; leading");
                    self.post_event("became leader").await;
                    return;
                }
                Ok(Attempt::HeldByOther) => {
                    tracing::debug!(lease = %self.config.resource_name, "lease held by another scheduler; waiting")
                }
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            let jitter = 1.0 + rand::rng().random::<f64>() * JITTER_FACTOR;
            tokio::time::sleep(self.config.retry_period.mul_f64(jitter)).await;
        }
    }

    /// Keeps renewing the lease every retry period. When leadership is lost (another candidate
    /// holds the lease, or no renewal succeeded within the renew deadline, counted from the
    /// start of the last successful one) it calls `on_lost` at once, synchronously, then
    /// returns. A renewal still in flight at the deadline is abandoned.
    pub async fn hold(&self, on_lost: impl FnOnce()) {
        loop {
            let last = self.state.lock().renewed.unwrap_or_else(Instant::now);
            let deadline = last + self.config.renew_deadline;
            let next = (Instant::now() + self.config.retry_period).min(deadline);
            tokio::time::sleep_until(next).await;
            let reason = match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await
            {
                Ok(Ok(Attempt::Acquired)) => continue,
                Ok(Ok(Attempt::HeldByOther)) => "another candidate holds the lease",
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "renewing the lease failed");
                    if Instant::now() < deadline {
                        continue;
                    }
                    "the renew deadline passed"
                }
                Err(_) => "the renew deadline passed",
            };
            self.state.lock().renewed = None;
            on_lost();
            tracing::error!(lease = %self.config.resource_name, identity = %self.identity, "leaderelection lost: {reason}");
            return;
        }
    }

    /// Whether this candidate currently considers itself the leader.
    pub fn is_leader(&self) -> bool {
        self.state.lock().renewed.is_some()
    }

    /// client-go's `HealthzAdaptor` check: fails when this candidate leads but has not renewed
    /// for longer than the lease duration plus `tolerance` (a stuck renew loop). Standbys pass.
    ///
    /// # Errors
    /// The message to show on `/healthz`.
    pub fn check(&self, tolerance: Duration) -> Result<(), String> {
        match self.state.lock().renewed {
            Some(t) if t.elapsed() > self.config.lease_duration + tolerance => Err(format!(
                "failed election to renew leadership on lease {}",
                self.config.resource_name
            )),
            _ => Ok(()),
        }
    }

    /// Gives the lease up if this candidate holds it (client-go `ReleaseOnCancel`): the holder
    /// is cleared and the duration set to one second, so a standby takes over at its next try.
    pub async fn release(&self) {
        let was_leader = self.state.lock().renewed.take().is_some();
        if !was_leader {
            return;
        }
        let name = &self.config.resource_name;
        let Ok(Some(mut lease)) = self.api.get_opt(name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let now = MicroTime(jiff::Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %name, "released the lease"),
            Err(e) => tracing::warn!(lease = %name, error = %e, "could not release the lease"),
        }
    }

    /// Posts the core/v1 Event client-go's resource lock records on the Lease.
    async fn post_event(&self, what: &str) {
        let now = jiff::Timestamp::now();
        let name = &self.config.resource_name;
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                namespace: Some(self.config.resource_namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("coordination.k8s.io/v1".into()),
                kind: Some("Lease".into()),
                name: Some(name.clone()),
                namespace: Some(self.config.resource_namespace.clone()),
                ..Default::default()
            },
            reason: Some("LeaderElection".into()),
            message: Some(format!("{} {what}", self.identity)),
            type_: Some("Normal".into()),
            source: Some(EventSource {
                component: Some(name.clone()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(name.clone()),
            reporting_instance: Some(self.identity.clone()),
            ..Default::default()
        };
        if let Err(e) = self.events.create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, "could not post the LeaderElection event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(lease: u64, renew: u64, retry: u64) -> LeaderElection {
        LeaderElection {
            lease_duration: Duration::from_millis(lease),
            renew_deadline: Duration::from_millis(renew),
            retry_period: Duration::from_millis(retry),
            ..LeaderElection::default()
        }
    }

    #[test]
    fn validates_timings_like_client_go() {
        assert!(validate(&LeaderElection::default()).is_ok());
        assert!(validate(&config(2000, 1000, 200)).is_ok());
        let e = validate(&config(2000, 2000, 200)).unwrap_err().to_string();
        assert!(e.contains("greater than the renew deadline"), "{e}");
        let e = validate(&config(2000, 1000, 900)).unwrap_err().to_string();
        assert!(e.contains("1.2 × the retry period"), "{e}");
        let e = validate(&config(500, 400, 100)).unwrap_err().to_string();
        assert!(e.contains("at least 1s"), "{e}");
    }
}
