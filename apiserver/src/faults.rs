//! Fault injection: a seeded fraction of requests answered as an overloaded or failing
//! kube-apiserver would answer them, so the scheduler's retry paths can be tested.
//!
//! A [`FaultPlan`] is a seed and a list of [`FaultRule`]s. Each rule whose selector matches a
//! request fires with its probability, in order; the first that fires decides. Each decision is a hash of the seed, the request (verb, resource,
//! subresource, namespace, name) and how many times that same request was seen before, so a run
//! with the same seed injects the same faults into the same requests whatever the interleaving of
//! unrelated requests.
//!
//! The text form (`--faults`) is a comma-separated list: `seed=N`, `user=NAME` (repeatable: only
//! requests from these users get faults; default everyone) and rules `SELECTOR=FRACTION:FAULT`,
//! for example
//! `seed=7,write=0.2:503,create@pods/binding=0.1:429/1s,watch=1:cut/500ms,get=0.05:delay/200ms`.
//! - SELECTOR: a verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`), `write`
//!   (create, update, patch, delete), `read` (get, list, watch) or `*`, optionally followed by
//!   `@RESOURCE` or `@RESOURCE/SUBRESOURCE` (plural, e.g. `resourceclaims/status`).
//! - FAULT: `500`, `503`, `504`, `429` or `429/Ns` (Retry-After, default 1 s), `delay/DURATION`
//!   (answered normally, late), `cut/DURATION` (a watch that ends after that long), `drop` (the
//!   connection is dropped before the request is handled) or `drop/handled` (the request is
//!   handled, then the connection is dropped before the answer: the client cannot tell whether
//!   its write happened).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;

use crate::audit::RequestRecord;
use crate::status::ApiError;

/// Errors parsing a fault specification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault specification {spec:?}: {reason}")]
pub struct FaultSpecError {
    /// The part that is wrong.
    pub spec: String,
    /// Why.
    pub reason: String,
}

/// What an injected fault does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `500 InternalError`.
    InternalError,
    /// `503 ServiceUnavailable`.
    ServiceUnavailable,
    /// `504 Timeout` (the server gave up on the request).
    Timeout,
    /// `429 TooManyRequests` with `Retry-After` (API priority and fairness rejecting a request).
    TooManyRequests {
        /// The `Retry-After` value.
        retry_after: Duration,
    },
    /// The request is answered normally after this delay.
    Delay(Duration),
    /// A watch is answered normally but its stream ends after this long.
    CutWatch(Duration),
    /// The connection is dropped without an answer; when `handled`, after the request took effect.
    Drop {
        /// Whether the request is carried out before the connection drops.
        handled: bool,
    },
}

/// One rule: which requests, how often, what happens.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// Verbs the rule applies to (empty: every verb).
    pub verbs: Vec<String>,
    /// `resource` or `resource/subresource` (None: every resource).
    pub resource: Option<String>,
    /// Probability in `[0, 1]` that a matching request gets the fault.
    pub fraction: f64,
    /// The fault.
    pub fault: Fault,
}

/// A seed and rules; see the module docs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// Seed of the per-request decisions.
    pub seed: u64,
    /// Rules, in order; the first that fires decides.
    pub rules: Vec<FaultRule>,
    /// When not empty, only requests from these users (the request log's `user`) get faults.
    pub users: Vec<String>,
}

const WRITE_VERBS: [&str; 4] = ["create", "update", "patch", "delete"];
const READ_VERBS: [&str; 3] = ["get", "list", "watch"];

impl FaultPlan {
    /// Parses the text form described in the module docs.
    ///
    /// # Errors
    /// A [`FaultSpecError`] naming the part that does not parse.
    pub fn parse(spec: &str) -> Result<FaultPlan, FaultSpecError> {
        let mut plan = FaultPlan::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let err = |reason: &str| FaultSpecError {
                spec: part.to_string(),
                reason: reason.to_string(),
            };
            let (selector, rest) = part
                .split_once('=')
                .ok_or_else(|| err("expected SELECTOR=FRACTION:FAULT or seed=N"))?;
            if selector == "seed" {
                plan.seed = rest
                    .parse()
                    .map_err(|_| err("the seed must be an integer"))?;
                continue;
            }
            if selector == "user" {
                if rest.is_empty() {
                    return Err(err("empty user name"));
                }
                plan.users.push(rest.to_string());
                continue;
            }
            let (verb, resource) = match selector.split_once('@') {
                Some((v, r)) if !r.is_empty() => (v, Some(r.to_string())),
                Some(_) => return Err(err("empty resource after @")),
                None => (selector, None),
            };
            let verbs: Vec<String> = match verb {
                "*" => Vec::new(),
                "write" => WRITE_VERBS.iter().map(|s| s.to_string()).collect(),
                "read" => READ_VERBS.iter().map(|s| s.to_string()).collect(),
                v if WRITE_VERBS.contains(&v) || READ_VERBS.contains(&v) => vec![v.to_string()],
                _ => return Err(err("unknown verb")),
            };
            let (fraction, fault) = rest
                .split_once(':')
                .ok_or_else(|| err("expected FRACTION:FAULT"))?;
            let fraction: f64 = fraction
                .parse()
                .ok()
                .filter(|f: &f64| (0.0..=1.0).contains(f))
                .ok_or_else(|| err("the fraction must be a number from 0 to 1"))?;
            let duration = |s: &str| parse_duration(s).ok_or_else(|| err("bad duration"));
            let fault = match fault.split_once('/') {
                None => match fault {
                    "500" => Fault::InternalError,
                    "503" => Fault::ServiceUnavailable,
                    "504" => Fault::Timeout,
                    "429" => Fault::TooManyRequests {
                        retry_after: Duration::from_secs(1),
                    },
                    "drop" => Fault::Drop { handled: false },
                    _ => return Err(err("unknown fault")),
                },
                Some(("429", d)) => Fault::TooManyRequests {
                    retry_after: duration(d)?,
                },
                Some(("delay", d)) => Fault::Delay(duration(d)?),
                Some(("cut", d)) => Fault::CutWatch(duration(d)?),
                Some(("drop", "handled")) => Fault::Drop { handled: true },
                Some(_) => return Err(err("unknown fault")),
            };
            plan.rules.push(FaultRule {
                verbs,
                resource,
                fraction,
                fault,
            });
        }
        Ok(plan)
    }
}

/// `250ms`, `2s` or a bare number of seconds.
fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    let secs: f64 = s.strip_suffix('s').unwrap_or(s).parse().ok()?;
    (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs))
}

/// What the HTTP layer does with one request.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Answer with this error instead of handling the request.
    Fail(ApiError),
    /// Handle it after this delay.
    Delay(Duration),
    /// Handle it; end a watch stream after this long.
    CutWatch(Duration),
    /// Drop the connection (after handling the request when `handled`).
    Drop {
        /// Whether the request is carried out first.
        handled: bool,
    },
}

/// The active plan and the per-request counters that make decisions repeatable.
#[derive(Default)]
pub(crate) struct Faults {
    state: Mutex<Option<(FaultPlan, HashMap<u64, u64>)>>,
    active: AtomicBool,
    injected: AtomicU64,
}

impl Faults {
    pub(crate) fn set(&self, plan: Option<FaultPlan>) {
        self.active.store(plan.is_some(), Ordering::Relaxed);
        *self.state.lock() = plan.map(|p| (p, HashMap::new()));
    }

    /// Whether a plan is set (a cheap check before describing the request).
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub(crate) fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Decides the fate of a request (described as the request log describes it).
    pub(crate) fn decide(&self, req: &RequestRecord) -> Option<Decision> {
        let mut guard = self.state.lock();
        let (plan, seen) = guard.as_mut()?;
        if !plan.users.is_empty() && !plan.users.contains(&req.user) {
            return None;
        }
        let resource = match &req.subresource {
            Some(sub) => format!("{}/{sub}", req.resource),
            None => req.resource.clone(),
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&req.verb, &resource, &req.namespace, &req.name).hash(&mut h);
        let key = h.finish();
        let mut seen_before = None;
        // Each matching rule fires with its own probability; the first that fires decides.
        let rule = plan.rules.iter().enumerate().find(|(i, r)| {
            let matches = (r.verbs.is_empty() || r.verbs.iter().any(|v| *v == req.verb))
                && r.resource
                    .as_deref()
                    .is_none_or(|want| want == resource || want == req.resource);
            if !matches {
                return false;
            }
            let n = *seen_before.get_or_insert_with(|| {
                let n = seen.entry(key).or_insert(0);
                *n += 1;
                *n
            });
            let draw = splitmix(
                plan.seed ^ key ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((*i as u64) << 56),
            );
            // Uniform in [0, 1) from the top 53 bits.
            ((draw >> 11) as f64 / (1u64 << 53) as f64) < r.fraction
        });
        let (_, rule) = rule?;
        self.injected.fetch_add(1, Ordering::Relaxed);
        Some(match rule.fault {
            Fault::InternalError => Decision::Fail(
                ApiError::new(
                    500,
                    Some("InternalError"),
                    "Internal error occurred: injected fault",
                )
                .with_details(json!({"causes": [{"message": "injected fault"}]})),
            ),
            Fault::ServiceUnavailable => Decision::Fail(ApiError::new(
                503,
                Some("ServiceUnavailable"),
                "the server is currently unable to handle the request",
            )),
            Fault::Timeout => Decision::Fail(ApiError::new(
                504,
                Some("Timeout"),
                "Timeout: request did not complete within the allotted timeout",
            )),
            Fault::TooManyRequests { retry_after } => {
                let secs = retry_after.as_secs().max(1);
                let mut e = ApiError::new(
                    429,
                    Some("TooManyRequests"),
                    "Too many requests, please try again later.",
                )
                .with_details(json!({"retryAfterSeconds": secs}));
                e.headers.push(("Retry-After", secs.to_string()));
                Decision::Fail(e)
            }
            Fault::Delay(d) => Decision::Delay(d),
            Fault::CutWatch(d) if req.verb == "watch" => Decision::CutWatch(d),
            Fault::CutWatch(_) => return None,
            Fault::Drop { handled } => Decision::Drop { handled },
        })
    }
}

/// SplitMix64: a small, well-mixed hash of a 64-bit value.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(verb: &str, resource: &str, sub: Option<&str>, name: &str) -> RequestRecord {
        RequestRecord {
            verb: verb.into(),
            resource: resource.into(),
            subresource: sub.map(Into::into),
            name: Some(name.into()),
            namespace: Some("default".into()),
            user: "test".into(),
            api_group: String::new(),
            api_version: "v1".into(),
            code: 0,
        }
    }

    #[test]
    fn parses_every_form_of_the_spec() {
        let plan = FaultPlan::parse(
            "seed=7, write=0.2:503, create@pods/binding=0.1:429/2s, watch=1:cut/500ms, get=0.5:delay/20ms, *=0:500",
        )
        .unwrap();
        assert_eq!(plan.seed, 7);
        assert_eq!(plan.rules.len(), 5);
        assert_eq!(plan.rules[0].verbs, ["create", "update", "patch", "delete"]);
        assert_eq!(plan.rules[1].resource.as_deref(), Some("pods/binding"));
        assert_eq!(
            plan.rules[1].fault,
            Fault::TooManyRequests {
                retry_after: Duration::from_secs(2)
            }
        );
        assert_eq!(
            plan.rules[2].fault,
            Fault::CutWatch(Duration::from_millis(500))
        );
        assert!(plan.rules[4].verbs.is_empty());
        let drops = FaultPlan::parse("patch=0.1:drop,create=0.1:drop/handled").unwrap();
        assert_eq!(drops.rules[0].fault, Fault::Drop { handled: false });
        assert_eq!(drops.rules[1].fault, Fault::Drop { handled: true });
        assert!(FaultPlan::parse("patch=0.1:drop/later").is_err());
        let scoped = FaultPlan::parse("user=system:kube-scheduler,write=1:500").unwrap();
        assert_eq!(scoped.users, ["system:kube-scheduler"]);
    }

    #[test]
    fn errors_when_a_rule_is_malformed() {
        for bad in [
            "write",
            "write=2:500",
            "fly=0.1:500",
            "write=0.1:418",
            "seed=x",
        ] {
            let e = FaultPlan::parse(bad).unwrap_err();
            assert_eq!(e.spec, bad, "{e}");
        }
    }

    #[test]
    fn the_same_seed_fails_the_same_requests_whatever_the_order() {
        let plan = FaultPlan::parse("seed=3,patch=0.3:500,patch=0.5:delay/1ms").unwrap();
        let run = |order: &[usize]| {
            let f = Faults::default();
            f.set(Some(plan.clone()));
            let mut failed: Vec<(usize, u32)> = Vec::new();
            for round in 0..5u32 {
                for &i in order {
                    let r = record("patch", "resourceclaims", Some("status"), &format!("c{i}"));
                    if matches!(f.decide(&r), Some(Decision::Fail(_))) {
                        failed.push((i, round));
                    }
                }
            }
            failed.sort();
            failed
        };
        let forward: Vec<usize> = (0..200).collect();
        let backward: Vec<usize> = (0..200).rev().collect();
        let a = run(&forward);
        assert_eq!(a, run(&backward));
        // About 30% of 1000 requests.
        assert!((200..400).contains(&a.len()), "{}", a.len());
    }

    #[test]
    fn a_429_carries_retry_after_and_reads_are_left_alone() {
        let f = Faults::default();
        f.set(Some(FaultPlan::parse("write=1:429/3s").unwrap()));
        match f.decide(&record("create", "pods", Some("binding"), "p")) {
            Some(Decision::Fail(e)) => {
                assert_eq!(e.code, 429);
                assert_eq!(e.headers, vec![("Retry-After", "3".to_string())]);
            }
            other => panic!("{other:?}"),
        }
        assert!(f.decide(&record("get", "pods", None, "p")).is_none());
        f.set(None);
        assert!(f.decide(&record("create", "pods", None, "p")).is_none());
    }

    #[test]
    fn only_the_named_users_get_faults() {
        let f = Faults::default();
        f.set(Some(FaultPlan::parse("user=test,write=1:drop").unwrap()));
        assert!(matches!(
            f.decide(&record("patch", "resourceclaims", Some("status"), "c")),
            Some(Decision::Drop { handled: false })
        ));
        let mut other = record("patch", "resourceclaims", Some("status"), "c");
        other.user = "system:admin".into();
        assert!(f.decide(&other).is_none());
    }
}
