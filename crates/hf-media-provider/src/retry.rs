//! The one retry mechanism of hf-media: every retry in the product (a provider call, a media download,
//! a status request while polling, hf-inference's loading wait, the Hub mapping call, a sink's store)
//! runs through [`RetryPolicy::run`], is classified by [`Retryable`], waits as [`RetryPolicy::delay`]
//! says (the one place that honours `Retry-After`), and is reported as one [`RetryNotice`].

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::ProviderError;

/// Whether a failure is worth another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transience {
    /// Trying again will not help.
    Final,
    /// A passing failure (408, 429, 5xx, a broken connection, an HTTP timeout).
    Transient {
        /// How long the server asked to wait (`Retry-After`, a loading estimate), if it said.
        retry_after: Option<Duration>,
    },
}

/// An error that the retry mechanism can classify and describe.
pub trait Retryable {
    /// Whether another try may succeed, and after how long the server asked to wait.
    fn transience(&self) -> Transience;

    /// The HTTP status the failure answered, if any (reported in the [`RetryNotice`]).
    fn retry_status(&self) -> Option<u16>;

    /// What went wrong, for the [`RetryNotice`].
    fn retry_message(&self) -> String;
}

impl Retryable for ProviderError {
    fn transience(&self) -> Transience {
        if !self.is_retryable() {
            return Transience::Final;
        }
        let retry_after = match self {
            ProviderError::Http { retry_after, .. } => *retry_after,
            _ => None,
        };
        Transience::Transient { retry_after }
    }

    fn retry_status(&self) -> Option<u16> {
        self.status()
    }

    fn retry_message(&self) -> String {
        self.message()
    }
}

/// What was tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetryStage {
    /// The Hub's mapping call (which providers serve the model).
    Mapping,
    /// A provider's whole generation call (submit and wait).
    Request,
    /// A status request while polling a job that is already running.
    Poll,
    /// A model that is still loading (hf-inference's 503 with `estimated_time`).
    Loading,
    /// The download of a finished media from its URL.
    Download,
    /// Storing the media in the sink.
    Store,
}

impl RetryStage {
    /// The stage's wire name (`mapping`, `request`, `poll`, `loading`, `download`, `store`).
    pub fn as_str(self) -> &'static str {
        match self {
            RetryStage::Mapping => "mapping",
            RetryStage::Request => "request",
            RetryStage::Poll => "poll",
            RetryStage::Loading => "loading",
            RetryStage::Download => "download",
            RetryStage::Store => "store",
        }
    }
}

impl fmt::Display for RetryStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One retry, reported the same way wherever it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryNotice {
    /// What is tried again.
    pub stage: RetryStage,
    /// The try that failed (1 for the first).
    pub attempt: u32,
    /// The wait before the next try.
    pub delay: Duration,
    /// The failed try's HTTP status, when it answered one.
    pub status: Option<u16>,
    /// What it said.
    pub message: String,
}

/// Retries of transient failures (408, 429, 500, 502, 503, 504, connection errors, HTTP timeouts) with
/// exponential backoff and jitter, honouring `Retry-After`. After the last try the facade falls through
/// to the next provider. 400/401/402 fall through at once; 404 stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Tries, the first included (1 disables retries).
    pub max_attempts: u32,
    /// The backoff before the first retry; doubled for each further one.
    #[serde(with = "millis")]
    pub base_delay: Duration,
    /// The longest backoff.
    #[serde(with = "millis")]
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a server asking for more is not waited for (the failure is
    /// then final for this stage: the next provider is tried).
    #[serde(with = "millis")]
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

    /// The same policy with `max_attempts` tries.
    pub fn with_max_attempts(self, max_attempts: u32) -> Self {
        RetryPolicy { max_attempts, ..self }
    }

    /// How long to wait before try number `failed + 1`, or `None` when the failure is not to be retried
    /// (final, tries used up, or a `Retry-After` longer than [`RetryPolicy::max_retry_after`]).
    pub fn delay(&self, failed: u32, transience: Transience) -> Option<Duration> {
        let Transience::Transient { retry_after } = transience else {
            return None;
        };
        if failed >= self.max_attempts {
            return None;
        }
        if let Some(wait) = retry_after {
            return (wait <= self.max_retry_after).then_some(wait);
        }
        let exponent = failed.saturating_sub(1).min(16);
        let backoff = self.base_delay.saturating_mul(1 << exponent).min(self.max_delay);
        // "Equal jitter": half fixed, half random, so retries of parallel tasks spread out.
        let half = backoff / 2;
        Some(half + half.mul_f64(fastrand::f64()))
    }

    /// Runs `operation` (given the try's number, from 1) until it succeeds, fails for good, or the tries
    /// are used up, waiting [`RetryPolicy::delay`] between tries. Before each wait, `on_retry` is told
    /// of the failed try (to report it, or to keep its error). Returns the last error.
    ///
    /// Cancel-safe: dropping the future stops at once, mid-try or mid-wait.
    pub async fn run<T, E, F, Fut>(
        &self,
        stage: RetryStage,
        operation: F,
        on_retry: impl FnMut(&RetryNotice, &E),
    ) -> Result<T, E>
    where
        E: Retryable,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_bounded(stage, None, operation, on_retry).await
    }

    /// [`RetryPolicy::run`] within a deadline (a job's polling deadline): no wait goes past `deadline`.
    /// When the next wait would reach it, there is no further try: the wait is cut to end at `deadline`
    /// (not reported, since nothing is tried again) and the last error is returned then. The caller
    /// tells a deadline from other ends by the clock: a transient error returned at or after `deadline`
    /// means the time is up.
    ///
    /// `deadline` does not bound a try itself (wrap the future in [`tokio::time::timeout_at`] for that).
    pub async fn run_until<T, E, F, Fut>(
        &self,
        stage: RetryStage,
        deadline: tokio::time::Instant,
        operation: F,
        on_retry: impl FnMut(&RetryNotice, &E),
    ) -> Result<T, E>
    where
        E: Retryable,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_bounded(stage, Some(deadline), operation, on_retry).await
    }

    async fn run_bounded<T, E, F, Fut>(
        &self,
        stage: RetryStage,
        deadline: Option<tokio::time::Instant>,
        mut operation: F,
        mut on_retry: impl FnMut(&RetryNotice, &E),
    ) -> Result<T, E>
    where
        E: Retryable,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            let error = match operation(attempt).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let Some(delay) = self.delay(attempt, error.transience()) else {
                return Err(error);
            };
            if let Some(deadline) = deadline {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                if delay >= remaining {
                    tracing::debug!(%stage, attempt, ?remaining, "transient failure, no time left to try again");
                    tokio::time::sleep_until(deadline).await;
                    return Err(error);
                }
            }
            let notice = RetryNotice {
                stage,
                attempt,
                delay,
                status: error.retry_status(),
                message: error.retry_message(),
            };
            tracing::debug!(%stage, attempt, ?delay, status = ?notice.status, "transient failure, trying again");
            on_retry(&notice, &error);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

/// Durations as whole milliseconds in configuration files.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn http(status: u16, retry_after: Option<Duration>) -> ProviderError {
        ProviderError::http("p", status, "m", retry_after)
    }

    fn delay(policy: &RetryPolicy, failed: u32, error: &ProviderError) -> Option<Duration> {
        policy.delay(failed, error.transience())
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
            let first = delay(&policy, 1, &http(503, None)).unwrap();
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
                "{first:?}"
            );
            let second = delay(&policy, 2, &http(500, None)).unwrap();
            assert!(
                second >= Duration::from_millis(100) && second <= Duration::from_millis(200),
                "{second:?}"
            );
            let capped = delay(&policy, 4, &http(502, None)).unwrap();
            assert!(capped <= Duration::from_millis(300), "{capped:?}");
        }
        assert_eq!(delay(&policy, 5, &http(503, None)), None, "tries used up");
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_bound() {
        let policy = RetryPolicy::default();
        assert_eq!(
            delay(&policy, 1, &http(429, Some(Duration::from_secs(2)))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(delay(&policy, 1, &http(429, Some(Duration::from_secs(3600)))), None);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let policy = RetryPolicy::default();
        for status in [400, 401, 402, 404, 422] {
            assert_eq!(delay(&policy, 1, &http(status, None)), None, "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(delay(&policy, 1, &http(status, None)).is_some(), "{status}");
        }
        let network = ProviderError::Network {
            provider: "p".into(),
            message: "reset".into(),
        };
        assert!(delay(&policy, 1, &network).is_some());
        let deadline = ProviderError::Timeout {
            provider: "p".into(),
            what: "polling".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(
            delay(&policy, 1, &deadline),
            None,
            "an expired polling deadline is final"
        );
        assert_eq!(delay(&RetryPolicy::none(), 1, &network), None);
    }

    #[tokio::test(start_paused = true)]
    async fn run_retries_transient_failures_reporting_each_and_returns_the_last_error() {
        let policy = RetryPolicy::default();
        let calls = AtomicU32::new(0);
        let mut notices = Vec::new();
        let result: Result<(), ProviderError> = policy
            .run(
                RetryStage::Download,
                |attempt| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // 502, 503, 504: transient all (501 is not).
                    async move { Err(http(501 + u16::try_from(attempt).unwrap_or(0), None)) }
                },
                |notice, _| notices.push(notice.clone()),
            )
            .await;
        assert_eq!(result.unwrap_err().status(), Some(504), "the third try's error");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let tries: Vec<(u32, Option<u16>)> = notices.iter().map(|n| (n.attempt, n.status)).collect();
        assert_eq!(tries, [(1, Some(502)), (2, Some(503))]);
        assert!(notices.iter().all(|n| n.stage == RetryStage::Download));
    }

    #[tokio::test(start_paused = true)]
    async fn run_stops_at_once_on_a_final_failure_and_passes_success_through() {
        let policy = RetryPolicy::default();
        let mut retried = 0;
        let result: Result<(), ProviderError> = policy
            .run(
                RetryStage::Request,
                |_| async { Err(http(402, None)) },
                |_, _| retried += 1,
            )
            .await;
        assert_eq!(result.unwrap_err().status(), Some(402));
        assert_eq!(retried, 0);
        let value: Result<u8, ProviderError> = policy
            .run(
                RetryStage::Request,
                |attempt| async move {
                    if attempt < 2 {
                        Err(http(429, Some(Duration::from_secs(1))))
                    } else {
                        Ok(7)
                    }
                },
                |notice, _| assert_eq!(notice.delay, Duration::from_secs(1), "Retry-After is the wait"),
            )
            .await;
        assert_eq!(value.unwrap(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn run_until_never_waits_past_its_deadline() {
        let policy = RetryPolicy {
            max_attempts: 100,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
        };
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_millis(2500);
        let mut notices = Vec::new();
        let result: Result<(), ProviderError> = policy
            .run_until(
                RetryStage::Poll,
                deadline,
                |_| async { Err(http(429, Some(Duration::from_secs(1)))) },
                |notice, _| notices.push(notice.attempt),
            )
            .await;
        assert_eq!(
            result.unwrap_err().status(),
            Some(429),
            "the last error, at the deadline"
        );
        assert_eq!(
            tokio::time::Instant::now(),
            deadline,
            "the last wait is cut to end at the deadline"
        );
        assert_eq!(
            notices,
            [1, 2],
            "the cut wait is not a retry: tries at 0 s, 1 s and 2 s"
        );

        let final_error: Result<(), ProviderError> = policy
            .run_until(
                RetryStage::Poll,
                deadline,
                |_| async { Err(http(400, None)) },
                |_, _| unreachable!("a final failure is not retried"),
            )
            .await;
        assert_eq!(final_error.unwrap_err().status(), Some(400));
        let late: Result<u8, ProviderError> = policy
            .run_until(RetryStage::Poll, deadline, |_| async { Ok(1) }, |_, _| {})
            .await;
        assert_eq!(late.unwrap(), 1, "a try that succeeds is taken whatever the clock");
    }

    #[test]
    fn policies_read_from_configuration_in_milliseconds() {
        let policy: RetryPolicy = serde_json::from_str(r#"{"max_attempts": 5, "base_delay": 250}"#).unwrap();
        assert_eq!(policy.max_attempts, 5);
        assert_eq!(policy.base_delay, Duration::from_millis(250));
        assert_eq!(policy.max_delay, RetryPolicy::default().max_delay);
        let back = serde_json::to_value(policy).unwrap();
        assert_eq!(back["max_retry_after"], 60_000);
    }
}
