//! When a failed call is tried again on the same provider, and how long to wait first.

use std::time::Duration;

use hf_media_provider::ProviderError;

/// Retries of transient failures (408, 429, 500, 502, 503, 504, connection errors, HTTP timeouts) on the
/// same provider, with exponential backoff and jitter, honouring `Retry-After`. After the last try the
/// generator falls through to the next provider. 400/401/402 fall through at once; 404 stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per provider, the first included (1 disables retries).
    pub max_attempts: u32,
    /// The backoff before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// The longest backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a provider asking for more is left for the next one.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// How long to wait before try number `failed + 1`, or `None` when `error` is not to be retried
    /// (not transient, tries used up, or a `Retry-After` longer than [`RetryPolicy::max_retry_after`]).
    pub fn delay(&self, failed: u32, error: &ProviderError) -> Option<Duration> {
        if !error.is_retryable() || failed >= self.max_attempts {
            return None;
        }
        if let ProviderError::Http {
            retry_after: Some(wait),
            ..
        } = error
        {
            return (*wait <= self.max_retry_after).then_some(*wait);
        }
        let exponent = failed.saturating_sub(1).min(16);
        let backoff = self.base_delay.saturating_mul(1 << exponent).min(self.max_delay);
        // "Equal jitter": half fixed, half random, so retries of parallel tasks spread out.
        let half = backoff / 2;
        Some(half + half.mul_f64(fastrand::f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, retry_after: Option<Duration>) -> ProviderError {
        ProviderError::Http {
            provider: "p".into(),
            status,
            message: "m".into(),
            retry_after,
        }
    }

    #[test]
    fn transient_failures_back_off_exponentially_within_bounds() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(5),
        };
        for _ in 0..50 {
            let first = policy.delay(1, &http(503, None)).unwrap();
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
                "{first:?}"
            );
            let second = policy.delay(2, &http(500, None)).unwrap();
            assert!(
                second >= Duration::from_millis(100) && second <= Duration::from_millis(200),
                "{second:?}"
            );
            let capped = policy.delay(4, &http(502, None)).unwrap();
            assert!(capped <= Duration::from_millis(300), "{capped:?}");
        }
        assert_eq!(policy.delay(5, &http(503, None)), None, "tries used up");
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_bound() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(1, &http(429, Some(Duration::from_secs(2)))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(policy.delay(1, &http(429, Some(Duration::from_secs(3600)))), None);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let policy = RetryPolicy::default();
        for status in [400, 401, 402, 404, 422] {
            assert_eq!(policy.delay(1, &http(status, None)), None, "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(policy.delay(1, &http(status, None)).is_some(), "{status}");
        }
        let network = ProviderError::Network {
            provider: "p".into(),
            message: "reset".into(),
        };
        assert!(policy.delay(1, &network).is_some());
        let deadline = ProviderError::Timeout {
            provider: "p".into(),
            what: "polling".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(policy.delay(1, &deadline), None, "an expired polling deadline is final");
        assert_eq!(RetryPolicy::none().delay(1, &network), None);
    }
}
