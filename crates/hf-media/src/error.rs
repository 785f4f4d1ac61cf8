use std::fmt;

use hf_media_mapping::MappingError;
use hf_media_prompt::PromptError;
use hf_media_provider::{ProviderError, Secrets};
use hf_media_sink::SinkError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One provider's failed try, as listed in [`Error::AllProvidersFailed`] and [`Error::Timeout`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderAttempt {
    /// The provider's Hub name.
    pub provider: String,
    /// The HTTP status, when the provider answered one.
    pub status: Option<u16>,
    /// The error's kind (`http`, `network`, `timeout`, `invalid_response`, `job_failed`, …, `held` for a
    /// provider the caller's [`ProviderGate`](crate::ProviderGate) held back; `other` when read back from
    /// a kind this version does not know).
    pub kind: &'static str,
    /// The provider's own message.
    pub message: String,
}

/// The kinds a [`ProviderError`] has, as read back from JSON.
const PROVIDER_ERROR_KINDS: &[&str] = &[
    "http",
    "network",
    "invalid_response",
    "job_failed",
    "timeout",
    "unsupported_task",
    "invalid_request",
    "held",
];

impl<'de> Deserialize<'de> for ProviderAttempt {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            provider: String,
            status: Option<u16>,
            kind: String,
            message: String,
        }
        let wire = Wire::deserialize(deserializer)?;
        Ok(ProviderAttempt {
            provider: wire.provider,
            status: wire.status,
            kind: PROVIDER_ERROR_KINDS
                .iter()
                .find(|known| **known == wire.kind)
                .copied()
                .unwrap_or("other"),
            message: wire.message,
        })
    }
}

impl ProviderAttempt {
    pub(crate) fn from_error(error: &ProviderError) -> Self {
        ProviderAttempt {
            provider: error.provider().to_owned(),
            status: error.status(),
            kind: error.kind(),
            message: error.message(),
        }
    }

    /// A provider the caller's gate held back.
    pub(crate) fn held(provider: &str, held: &crate::Held) -> Self {
        ProviderAttempt {
            provider: provider.to_owned(),
            status: held.status,
            kind: "held",
            message: held.reason.clone(),
        }
    }
}

impl fmt::Display for ProviderAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "{} (HTTP {status}): {}", self.provider, self.message),
            None => write!(f, "{} ({}): {}", self.provider, self.kind, self.message),
        }
    }
}

struct Attempts<'a>(&'a [ProviderAttempt]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, attempt) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{attempt}")?;
        }
        Ok(())
    }
}

/// Everything that can make a generation fail.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The generator is not configured correctly (a bad URL, a missing token).
    #[error("configuration error: {0}")]
    Config(String),
    /// No Hugging Face token was given or found.
    #[error(
        "no Hugging Face token: set HF_TOKEN (create a token with the \"Make calls to Inference Providers\" permission at {})",
        crate::token::TOKEN_SETTINGS_URL
    )]
    MissingToken,
    /// The prompt or the parameters are unusable.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// The request is unusable (bad model spec, bad `n`).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// An input image cannot be used (a missing file, not an image, over the limit, a URL that does not
    /// answer); nothing was sent.
    #[error("cannot use the input image {input}: {reason}")]
    Input {
        /// The input as given (a path or a URL).
        input: String,
        /// What is wrong with it and what to do.
        reason: String,
    },
    /// An input image could not be downloaded for a passing reason (its host answered 5xx or 429, or the
    /// connection broke), even with retries; nothing was sent to a provider.
    #[error("could not fetch the input image {input}: {reason}")]
    InputUnavailable {
        /// The input as given.
        input: String,
        /// What went wrong.
        reason: String,
    },
    /// The Hub could not tell which providers serve the model (including "model not found").
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// A provider named explicitly is not registered.
    #[error("unknown provider `{provider}`: registered providers are {}", known.join(", "))]
    UnknownProvider {
        /// The name given.
        provider: String,
        /// The registered names.
        known: Vec<String>,
    },
    /// No registered provider serves the model for image or video generation.
    #[error("no provider can make media with `{model}`: {reason}")]
    NoProvider {
        /// The Hub model id.
        model: String,
        /// Why each provider was left out.
        reason: String,
    },
    /// A provider answered 404 (or the named provider does not serve the model): no other provider is tried.
    #[error("model `{model}` is not supported by {provider}: {message}")]
    ModelNotSupported {
        /// The Hub model id.
        model: String,
        /// The provider that refused it.
        provider: String,
        /// The HTTP status, when the provider answered one.
        status: Option<u16>,
        /// The provider's message.
        message: String,
    },
    /// Every provider was tried and failed.
    #[error("all providers failed for `{model}`: {}", Attempts(attempts))]
    AllProvidersFailed {
        /// The Hub model id.
        model: String,
        /// Each attempt, in order.
        attempts: Vec<ProviderAttempt>,
    },
    /// The generation took longer than the overall deadline.
    #[error(
        "the generation did not finish within {}s (the overall deadline){}",
        after.as_secs_f32(),
        if attempts.is_empty() { String::new() } else { format!("; tries before it: {}", Attempts(attempts)) }
    )]
    Timeout {
        /// The deadline.
        after: std::time::Duration,
        /// The providers' failed tries before the deadline, in order.
        attempts: Vec<ProviderAttempt>,
    },
    /// The Hub did not answer which providers serve the model within the overall deadline.
    #[error(
        "the Hub did not say which providers serve the model within {}s (the overall deadline)",
        after.as_secs_f32()
    )]
    MappingTimeout {
        /// The deadline.
        after: std::time::Duration,
    },
    /// The media could not be stored.
    #[error("could not store the media: {0}")]
    Sink(#[source] SinkError),
}

impl Error {
    /// A short machine-readable name: `model_not_found`, `model_not_supported`, `all_providers_failed`,
    /// `no_provider`, `unknown_provider`, `invalid_request`, `invalid_input`, `mapping`, `timeout`, `sink`, `config`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) | Error::MissingToken => "config",
            Error::Prompt(_) | Error::InvalidRequest(_) => "invalid_request",
            Error::Input { .. } => "invalid_input",
            Error::InputUnavailable { .. } => "input_unavailable",
            Error::Mapping(MappingError::ModelNotFound { .. }) => "model_not_found",
            Error::Mapping(MappingError::InvalidModelId { .. }) => "invalid_request",
            Error::Mapping(MappingError::Unauthorized { .. }) => "unauthorized",
            Error::Mapping(MappingError::Network { .. }) => "network",
            Error::Mapping(MappingError::InvalidResponse { .. }) => "invalid_response",
            Error::Mapping(_) => "mapping",
            Error::UnknownProvider { .. } => "unknown_provider",
            Error::NoProvider { .. } => "no_provider",
            Error::ModelNotSupported { .. } => "model_not_supported",
            Error::AllProvidersFailed { .. } => "all_providers_failed",
            Error::Timeout { .. } | Error::MappingTimeout { .. } => "timeout",
            Error::Sink(_) => "sink",
        }
    }

    /// The HTTP status a server should answer for this error: 400 for a bad request, 404 for a model that
    /// does not exist or is not supported, 403 when the Hub refuses the model, 504 for a deadline, 502 when
    /// the Hub or every provider failed (or the providers' common status when they all answered 401, 402,
    /// 403 or 429), 500 for the server's own configuration or storage.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Prompt(_)
            | Error::InvalidRequest(_)
            | Error::Input { .. }
            | Error::UnknownProvider { .. }
            | Error::NoProvider { .. } => 400,
            Error::Mapping(MappingError::InvalidModelId { .. }) => 400,
            Error::Mapping(MappingError::ModelNotFound { .. }) | Error::ModelNotSupported { .. } => 404,
            Error::Mapping(MappingError::Unauthorized { .. }) => 403,
            Error::Mapping(MappingError::Config(_)) => 500,
            Error::InputUnavailable { .. } => 502,
            Error::Mapping(_) => 502,
            Error::AllProvidersFailed { attempts, .. } => {
                let first = attempts.first().and_then(|a| a.status);
                match first {
                    Some(status @ (401 | 402 | 403 | 429)) if attempts.iter().all(|a| a.status == first) => status,
                    _ => 502,
                }
            }
            Error::Timeout { .. } | Error::MappingTimeout { .. } => 504,
            Error::Config(_) | Error::MissingToken | Error::Sink(_) => 500,
        }
    }

    /// The error with every configured secret scrubbed from the texts it carries (those that came from
    /// the Hub or a provider).
    pub fn scrubbed(self, secrets: &Secrets) -> Error {
        if secrets.is_empty() {
            return self;
        }
        let clean = |text: &mut String| secrets.scrub_string(text);
        let mut error = self;
        match &mut error {
            Error::Config(text) | Error::InvalidRequest(text) => clean(text),
            Error::NoProvider { reason, .. } | Error::Input { reason, .. } | Error::InputUnavailable { reason, .. } => {
                clean(reason)
            }
            Error::ModelNotSupported { message, .. } => clean(message),
            Error::AllProvidersFailed { attempts, .. } | Error::Timeout { attempts, .. } => {
                attempts.iter_mut().for_each(|a| clean(&mut a.message));
            }
            Error::Mapping(
                MappingError::Unauthorized { message, .. }
                | MappingError::Http { message, .. }
                | MappingError::Network { message, .. },
            ) => clean(message),
            Error::Mapping(MappingError::InvalidResponse { reason, .. }) => clean(reason),
            _ => {}
        }
        error
    }

    /// Whether the request itself is wrong (as opposed to a failure while running it).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Config(_)
                | Error::MissingToken
                | Error::Prompt(_)
                | Error::InvalidRequest(_)
                | Error::Input { .. }
                | Error::UnknownProvider { .. }
        ) || matches!(self, Error::Mapping(MappingError::InvalidModelId { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_providers_failed_names_each_provider_and_status() {
        let err = Error::AllProvidersFailed {
            model: "m/x".into(),
            attempts: vec![
                ProviderAttempt {
                    provider: "fal-ai".into(),
                    status: Some(402),
                    kind: "http",
                    message: "You have exceeded your monthly included credits".into(),
                },
                ProviderAttempt {
                    provider: "replicate".into(),
                    status: None,
                    kind: "timeout",
                    message: "slow".into(),
                },
            ],
        };
        assert_eq!(
            err.to_string(),
            "all providers failed for `m/x`: fal-ai (HTTP 402): You have exceeded your monthly included credits; \
             replicate (timeout): slow"
        );
        assert_eq!(err.kind(), "all_providers_failed");
    }

    #[test]
    fn kinds_follow_the_cli_contract() {
        assert_eq!(
            Error::Mapping(MappingError::ModelNotFound { model: "a/b".into() }).kind(),
            "model_not_found"
        );
        let not_supported = Error::ModelNotSupported {
            model: "a/b".into(),
            provider: "fal-ai".into(),
            status: Some(404),
            message: "nope".into(),
        };
        assert_eq!(not_supported.kind(), "model_not_supported");
        assert!(Error::InvalidRequest("x".into()).is_usage());
        assert!(!not_supported.is_usage());
    }

    fn failed(statuses: &[Option<u16>]) -> Error {
        Error::AllProvidersFailed {
            model: "m/x".into(),
            attempts: statuses
                .iter()
                .map(|status| ProviderAttempt {
                    provider: "p".into(),
                    status: *status,
                    kind: "http",
                    message: "m".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn http_statuses_a_server_answers() {
        assert_eq!(Error::InvalidRequest("x".into()).http_status(), 400);
        assert_eq!(
            Error::Mapping(MappingError::ModelNotFound { model: "a/b".into() }).http_status(),
            404
        );
        assert_eq!(
            failed(&[Some(402), Some(402)]).http_status(),
            402,
            "every provider wants credits"
        );
        assert_eq!(failed(&[Some(402), Some(500)]).http_status(), 502);
        assert_eq!(failed(&[None]).http_status(), 502);
        let timeout = Error::Timeout {
            after: std::time::Duration::from_secs(1),
            attempts: Vec::new(),
        };
        assert_eq!(timeout.http_status(), 504);
        assert!(
            !timeout.to_string().contains("--timeout"),
            "no CLI wording in the library"
        );
    }

    #[test]
    fn attempts_read_back_from_json_keep_known_kinds() {
        let attempt: ProviderAttempt =
            serde_json::from_str(r#"{"provider": "fal-ai", "status": 402, "kind": "http", "message": "m"}"#).unwrap();
        assert_eq!(attempt.kind, "http");
        let odd: ProviderAttempt =
            serde_json::from_str(r#"{"provider": "p", "status": null, "kind": "weird", "message": "m"}"#).unwrap();
        assert_eq!(odd.kind, "other");
    }
}
