use std::time::Duration;

use thiserror::Error;

/// What can go wrong while a provider makes a media.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The provider (or the router in front of it) answered with a non-success HTTP status.
    #[error("{provider} answered HTTP {status}: {message}")]
    Http {
        /// The provider's Hub name.
        provider: String,
        /// The HTTP status.
        status: u16,
        /// The provider's own message (from the body or `X-Error-Message`).
        message: String,
        /// The `Retry-After` delay, when the answer had one.
        retry_after: Option<Duration>,
    },
    /// The provider could not be reached, or the connection broke.
    #[error("could not reach {provider}: {message}")]
    Network {
        /// The provider's Hub name.
        provider: String,
        /// What went wrong (never with credentials).
        message: String,
    },
    /// The answer did not have the shape the provider documents.
    #[error("{provider} sent an invalid response: {reason}")]
    InvalidResponse {
        /// The provider's Hub name.
        provider: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The provider accepted the job, then reported that it failed.
    #[error("{provider} reported that job {job_id} failed: {message}")]
    JobFailed {
        /// The provider's Hub name.
        provider: String,
        /// The provider's job or request id.
        job_id: String,
        /// The provider's own message.
        message: String,
    },
    /// A request got no answer, or its body stopped arriving, within the HTTP timeouts (connect, request,
    /// or the stall timeout on bodies). Transient: worth another try.
    #[error("{provider} did not answer in time: {what}")]
    RequestTimeout {
        /// The provider's Hub name.
        provider: String,
        /// Which timeout expired.
        what: String,
    },
    /// A job took longer than its polling deadline (or a model longer than that to load). Final.
    #[error("timed out after {}s while {what} ({provider})", after.as_secs_f32())]
    Timeout {
        /// The provider's Hub name.
        provider: String,
        /// What was being waited for.
        what: String,
        /// How long was waited.
        after: Duration,
    },
    /// The provider was asked for a task it does not serve.
    #[error("{provider} does not serve {task}")]
    UnsupportedTask {
        /// The provider's Hub name.
        provider: String,
        /// The task asked for.
        task: String,
    },
    /// The request cannot be built (a parameter the provider cannot take, a bad URL).
    #[error("cannot call {provider}: {reason}")]
    InvalidRequest {
        /// The provider's Hub name.
        provider: String,
        /// What is wrong and what to do.
        reason: String,
    },
}

impl ProviderError {
    /// [`ProviderError::Http`]: `provider` answered `status` with `message`, asking to wait `retry_after`.
    pub fn http(
        provider: impl Into<String>,
        status: u16,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> Self {
        ProviderError::Http {
            provider: provider.into(),
            status,
            message: message.into(),
            retry_after,
        }
    }

    /// [`ProviderError::InvalidResponse`]: `provider`'s answer did not have the documented shape.
    pub fn invalid_response(provider: impl Into<String>, reason: impl Into<String>) -> Self {
        ProviderError::InvalidResponse {
            provider: provider.into(),
            reason: reason.into(),
        }
    }

    /// [`ProviderError::JobFailed`]: `provider` accepted job `job_id`, then said it failed.
    pub fn job_failed(provider: impl Into<String>, job_id: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError::JobFailed {
            provider: provider.into(),
            job_id: job_id.into(),
            message: message.into(),
        }
    }

    /// [`ProviderError::InvalidRequest`]: the request to `provider` cannot be built.
    pub fn invalid_request(provider: impl Into<String>, reason: impl Into<String>) -> Self {
        ProviderError::InvalidRequest {
            provider: provider.into(),
            reason: reason.into(),
        }
    }

    /// [`ProviderError::Timeout`]: waited `after` for `what` (a job, a model to load) past the deadline.
    pub fn timeout(provider: impl Into<String>, what: impl Into<String>, after: Duration) -> Self {
        ProviderError::Timeout {
            provider: provider.into(),
            what: what.into(),
            after,
        }
    }

    /// [`ProviderError::UnsupportedTask`]: `provider` was asked for a task it does not serve.
    pub fn unsupported_task(provider: impl Into<String>, task: &crate::Task) -> Self {
        ProviderError::UnsupportedTask {
            provider: provider.into(),
            task: task.to_string(),
        }
    }

    /// The provider this error is about.
    pub fn provider(&self) -> &str {
        match self {
            ProviderError::Http { provider, .. }
            | ProviderError::Network { provider, .. }
            | ProviderError::InvalidResponse { provider, .. }
            | ProviderError::JobFailed { provider, .. }
            | ProviderError::Timeout { provider, .. }
            | ProviderError::RequestTimeout { provider, .. }
            | ProviderError::UnsupportedTask { provider, .. }
            | ProviderError::InvalidRequest { provider, .. } => provider,
        }
    }

    /// The HTTP status, when the error is an HTTP answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProviderError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A 404: the provider does not serve this model; no other provider should be tried.
    pub fn is_model_not_supported(&self) -> bool {
        self.status() == Some(404)
    }

    /// A 400, 401 or 402: this provider cannot do it for this user; the next provider may.
    pub fn is_fallback(&self) -> bool {
        matches!(self.status(), Some(400..=402))
    }

    /// A transient failure worth trying again on the same provider (408, 429, 500, 502, 503, 504, connection
    /// errors and HTTP timeouts). A polling deadline that expired is final.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Http { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
            ProviderError::Network { .. } | ProviderError::RequestTimeout { .. } => true,
            _ => false,
        }
    }

    /// A short machine-readable name of the error's kind (`http`, `network`, `invalid_response`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Http { .. } => "http",
            ProviderError::Network { .. } => "network",
            ProviderError::InvalidResponse { .. } => "invalid_response",
            ProviderError::JobFailed { .. } => "job_failed",
            ProviderError::Timeout { .. } | ProviderError::RequestTimeout { .. } => "timeout",
            ProviderError::UnsupportedTask { .. } => "unsupported_task",
            ProviderError::InvalidRequest { .. } => "invalid_request",
        }
    }

    /// The error with `f` applied to every text it carries (provider name included), for scrubbing.
    pub fn map_texts(mut self, mut f: impl FnMut(&mut String)) -> Self {
        match &mut self {
            ProviderError::Http { provider, message, .. }
            | ProviderError::Network { provider, message }
            | ProviderError::JobFailed { provider, message, .. } => {
                f(provider);
                f(message);
            }
            ProviderError::InvalidResponse { provider, reason }
            | ProviderError::InvalidRequest { provider, reason } => {
                f(provider);
                f(reason);
            }
            ProviderError::RequestTimeout { provider, what } | ProviderError::Timeout { provider, what, .. } => {
                f(provider);
                f(what);
            }
            ProviderError::UnsupportedTask { provider, task } => {
                f(provider);
                f(task);
            }
        }
        if let ProviderError::JobFailed { job_id, .. } = &mut self {
            f(job_id);
        }
        self
    }

    /// The message without the provider name and status prefix (for events that carry those apart).
    pub fn message(&self) -> String {
        match self {
            ProviderError::Http { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> ProviderError {
        ProviderError::http("fal-ai", status, "m", None)
    }

    #[test]
    fn statuses_decide_fallback_stop_and_retry() {
        for s in [400, 401, 402] {
            assert!(http(s).is_fallback() && !http(s).is_model_not_supported() && !http(s).is_retryable());
        }
        assert!(http(404).is_model_not_supported() && !http(404).is_fallback());
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(http(s).is_retryable(), "{s}");
        }
        assert!(!http(422).is_retryable() && !http(422).is_fallback());
        assert_eq!(http(402).to_string(), "fal-ai answered HTTP 402: m");
        assert_eq!(http(402).kind(), "http");
        assert_eq!(http(402).provider(), "fal-ai");
    }

    #[test]
    fn constructors_fill_every_field() {
        assert_eq!(
            ProviderError::http("fal-ai", 429, "slow down", Some(Duration::from_secs(2))),
            ProviderError::Http {
                provider: "fal-ai".into(),
                status: 429,
                message: "slow down".into(),
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(
            ProviderError::invalid_response("together", "no `id`"),
            ProviderError::InvalidResponse {
                provider: "together".into(),
                reason: "no `id`".into()
            }
        );
        let failed = ProviderError::job_failed("novita", "t1", "NSFW");
        assert_eq!(failed.to_string(), "novita reported that job t1 failed: NSFW");
        assert_eq!(failed.kind(), "job_failed");
        assert_eq!(
            ProviderError::invalid_request("p", "bad URL").to_string(),
            "cannot call p: bad URL"
        );
        let timeout = ProviderError::timeout("p", "polling", Duration::from_secs(2));
        assert_eq!(timeout.to_string(), "timed out after 2s while polling (p)");
        assert!(!timeout.is_retryable());
        assert_eq!(
            ProviderError::unsupported_task("nscale", &crate::Task::TextToVideo).to_string(),
            "nscale does not serve text-to-video"
        );
    }
}
