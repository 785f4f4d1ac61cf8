//! Sending a request and turning a failed answer into a [`ProviderError`] whose meaning depends on what
//! the request was sent to (its [`Target`]).

use std::time::Duration;

use crate::{ProviderContext, ProviderError, StreamError};

use super::error_text::{error_message, retry_after};

/// The most bytes of a failed answer's body that are read for its error text.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// What a request is sent to. It decides, where the request is sent, what an HTTP 404 means; every other
/// status keeps its meaning ([`ProviderError::Http`]: 400/401/402 fall back, 408/429/5xx are retried).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target<'a> {
    /// A model's route (a submit, a synchronous call): a 404 means the provider does not serve the model.
    /// It stays [`ProviderError::Http`] with status 404, which [`ProviderError::is_model_not_supported`].
    Model,
    /// The own URL (status, result) of the job with this id: a 404 means the job is gone, a
    /// [`ProviderError::JobFailed`] (never "model not supported": the model was accepted).
    Job(&'a str),
    /// A media URL from a provider's answer: a 404 means the answer named a media that is not there, a
    /// [`ProviderError::InvalidResponse`] (never a statement about the model).
    Media,
}

impl Target<'_> {
    /// The error a failed answer (`status`, the provider's `message`) means for this target.
    fn error(self, provider: &str, status: u16, message: String, retry_after: Option<Duration>) -> ProviderError {
        match (self, status) {
            (Target::Job(job_id), 404) => {
                ProviderError::job_failed(provider, job_id, format!("the job is gone (HTTP 404: {message})"))
            }
            (Target::Media, 404) => {
                ProviderError::invalid_response(provider, format!("the media URL answered HTTP 404: {message}"))
            }
            _ => ProviderError::http(provider, status, message, retry_after),
        }
    }
}

/// Describes a reqwest error with its causes, never with the URL (which may carry signed query strings).
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "the request timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the body could not be read".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A reqwest error as [`ProviderError::RequestTimeout`] (an HTTP timeout) or [`ProviderError::Network`].
pub(crate) fn network(provider: &str, error: &reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        return ProviderError::RequestTimeout {
            provider: provider.to_owned(),
            what: if error.is_body() || error.is_decode() {
                "the answer stopped arriving (stall timeout)".to_owned()
            } else if error.is_connect() {
                "the connection could not be opened (connect timeout)".to_owned()
            } else {
                "no answer within the request timeout".to_owned()
            },
        };
    }
    ProviderError::Network {
        provider: provider.to_owned(),
        message: describe(error),
    }
}

/// A broken body as the byte stream's error.
pub(crate) fn stream_error(provider: &str, error: &reqwest::Error) -> StreamError {
    match network(provider, error) {
        ProviderError::RequestTimeout { what, .. } => StreamError::timeout(what),
        other => StreamError::network(other.message()),
    }
}

/// Sends a request built with [`ProviderContext::request`] to a model's route ([`Target::Model`]): a
/// non-success status becomes [`ProviderError::Http`] with the provider's own message, and a 404 means
/// the provider does not serve the model.
pub async fn send(ctx: &ProviderContext, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ProviderError> {
    send_to(ctx, Target::Model, request).await
}

/// Sends a request to `target`; a non-success status becomes the error it means there (see [`Target`]).
pub async fn send_to(
    ctx: &ProviderContext,
    target: Target<'_>,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    let response = send_unchecked(ctx, request).await?;
    check_status(ctx.provider(), target, response).await
}

/// Sends a request without looking at the status (for providers with status codes of their own, such as
/// hf-inference's 503 "model is loading"); only a failure to get an answer is an error.
pub async fn send_unchecked(
    ctx: &ProviderContext,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    request.send().await.map_err(|e| network(ctx.provider(), &e))
}

/// Reads a failed answer's body (at most 64 KiB) and turns it into the error it means for `target`; also
/// returns the body, for providers that read more from it.
pub async fn http_error(provider: &str, target: Target<'_>, response: reqwest::Response) -> (ProviderError, Vec<u8>) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = super::json::read_limited(provider, response, MAX_ERROR_BODY_BYTES, true)
        .await
        .unwrap_or_default();
    let error = target.error(provider, status, error_message(&headers, &body), retry_after(&headers));
    (error, body)
}

/// Turns a non-success answer into the error it means for `target`; passes a success through.
pub async fn check_status(
    provider: &str,
    target: Target<'_>,
    response: reqwest::Response,
) -> Result<reqwest::Response, ProviderError> {
    if response.status().is_success() {
        return Ok(response);
    }
    Err(http_error(provider, target, response).await.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_404_means_what_its_target_says() {
        let model = Target::Model.error("fal-ai", 404, "404: Not Found".into(), None);
        assert!(model.is_model_not_supported(), "{model:?}");
        assert_eq!(model.message(), "404: Not Found");

        let job = Target::Job("j1").error("fal-ai", 404, "Request not found".into(), None);
        assert!(!job.is_model_not_supported());
        assert_eq!(
            job,
            ProviderError::job_failed("fal-ai", "j1", "the job is gone (HTTP 404: Request not found)")
        );

        let media = Target::Media.error("replicate", 404, "NoSuchKey".into(), None);
        assert!(!media.is_model_not_supported() && !media.is_retryable());
        assert_eq!(
            media,
            ProviderError::invalid_response("replicate", "the media URL answered HTTP 404: NoSuchKey")
        );
    }

    #[test]
    fn other_statuses_keep_their_meaning_on_every_target() {
        for target in [Target::Model, Target::Job("j1"), Target::Media] {
            let busy = target.error("p", 503, "busy".into(), Some(Duration::from_secs(1)));
            assert!(busy.is_retryable(), "{target:?}: {busy:?}");
            assert!(matches!(
                busy,
                ProviderError::Http {
                    retry_after: Some(_),
                    ..
                }
            ));
            assert!(target.error("p", 402, "pay".into(), None).is_fallback(), "{target:?}");
            assert_eq!(target.error("p", 422, "bad".into(), None).status(), Some(422));
        }
    }
}
