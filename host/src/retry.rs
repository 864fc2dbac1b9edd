//! Retries of transient API errors, as client-go users expect: capped exponential backoff with
//! jitter for 5xx answers, 429 (after its `Retry-After`), timeouts and broken connections; no
//! retry for an answer that will not change (4xx: validation, conflicts, not found).
//!
//! The scheduler's writes are safe to repeat: claim patches merge by uid and a repeated binding
//! answers 409, which [`crate::plugins`]'s binder checks against the pod it meant to bind.

use std::future::Future;
use std::time::Duration;

/// How often and how long to retry. The default (8 tries, 50 ms doubling to at most 2 s, ±25%
/// jitter) gives up after about 7 s, well inside a binding cycle's budget.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Wait before the second try.
    pub initial: Duration,
    /// Longest wait between two tries (and longest `Retry-After` honoured).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            initial: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

/// What an error means for a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again, after at least this long if the server said so (`Retry-After`).
    Transient(Option<Duration>),
    /// The same request will get the same answer.
    Permanent,
}

/// Classifies a client error.
pub fn classify(error: &kube::Error) -> Verdict {
    match error {
        kube::Error::Api(status) => match status.code {
            429 => Verdict::Transient(
                status
                    .details
                    .as_ref()
                    .map(|d| Duration::from_secs(u64::from(d.retry_after_seconds.max(1)))),
            ),
            500 | 502 | 503 | 504 => Verdict::Transient(None),
            _ => Verdict::Permanent,
        },
        // The connection broke or timed out; the request may not have reached the server.
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            Verdict::Transient(None)
        }
        _ => Verdict::Permanent,
    }
}

impl RetryPolicy {
    /// The wait before try `n + 1` (n ≥ 1): doubling from `initial`, capped, ±25% jitter.
    fn delay(&self, n: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(self.max_delay);
        base.mul_f64(0.75 + rand::random::<f64>() * 0.5)
    }

    /// Runs `op` until it succeeds, fails permanently, or the tries are used up; returns the
    /// last result. `on_retry` sees each transient error before the wait (for logs).
    ///
    /// # Errors
    /// The last error when it is permanent or no try is left.
    pub async fn run<T, F, Fut>(
        &self,
        mut op: F,
        mut on_retry: impl FnMut(u32, &kube::Error),
    ) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut tried = 0;
        loop {
            tried += 1;
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let Verdict::Transient(after) = classify(&err) else {
                return Err(err);
            };
            if tried >= self.attempts {
                return Err(err);
            }
            on_retry(tried, &err);
            let wait = match after {
                Some(server) => server.min(self.max_delay).max(self.delay(tried)),
                None => self.delay(tried),
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::StatusDetails;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn api_error(code: u16, retry_after: u32) -> kube::Error {
        let mut s = kube::core::Status::failure("x", "y").with_code(code);
        if retry_after > 0 {
            s = s.with_details(StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: Vec::new(),
                retry_after_seconds: retry_after,
            });
        }
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn server_errors_and_429_are_transient_and_4xx_are_not() {
        assert_eq!(classify(&api_error(503, 0)), Verdict::Transient(None));
        assert_eq!(classify(&api_error(504, 0)), Verdict::Transient(None));
        assert_eq!(
            classify(&api_error(429, 3)),
            Verdict::Transient(Some(Duration::from_secs(3)))
        );
        for code in [400, 404, 409, 422] {
            assert_eq!(classify(&api_error(code, 0)), Verdict::Permanent, "{code}");
        }
    }

    #[test]
    fn the_delay_doubles_and_stays_under_the_cap() {
        let p = RetryPolicy::default();
        for n in 1..20 {
            let d = p.delay(n);
            assert!(d <= p.max_delay.mul_f64(1.25), "{n}: {d:?}");
        }
        assert!(p.delay(1) <= Duration::from_millis(63));
        assert!(p.delay(3) >= Duration::from_millis(150));
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_success_and_permanent_ones_are_not() {
        let p = RetryPolicy::default();
        let calls = AtomicU32::new(0);
        let out = p
            .run(
                || async {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0 => Err(api_error(500, 0)),
                        1 => Err(api_error(429, 1)),
                        _ => Ok(7),
                    }
                },
                |_, _| {},
            )
            .await
            .unwrap();
        assert_eq!((out, calls.load(Ordering::SeqCst)), (7, 3));

        let calls = AtomicU32::new(0);
        let err = p
            .run(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(api_error(422, 0))
                },
                |_, _| {},
            )
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(matches!(err, kube::Error::Api(s) if s.code == 422));

        let calls = AtomicU32::new(0);
        p.run(
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(api_error(503, 0))
            },
            |_, _| {},
        )
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), p.attempts);
    }
}
