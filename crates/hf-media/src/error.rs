use std::fmt;

use hf_media_mapping::MappingError;
use hf_media_prompt::PromptError;
use hf_media_provider::ProviderError;
use hf_media_sink::SinkError;
use thiserror::Error;

/// One provider's failed attempt, as listed in [`Error::AllProvidersFailed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAttempt {
    /// The provider's Hub name.
    pub provider: String,
    /// The HTTP status, when the provider answered one.
    pub status: Option<u16>,
    /// The error's kind (`http`, `network`, `timeout`, `invalid_response`, `job_failed`, …).
    pub kind: &'static str,
    /// The provider's own message.
    pub message: String,
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
        "the generation did not finish within {}s (the overall deadline; raise it with --timeout){}",
        after.as_secs_f32(),
        if attempts.is_empty() { String::new() } else { format!("; tries before it: {}", Attempts(attempts)) }
    )]
    Timeout {
        /// The deadline.
        after: std::time::Duration,
        /// The providers' failed tries before the deadline, in order.
        attempts: Vec<ProviderAttempt>,
    },
    /// The media could not be stored.
    #[error("could not store the media: {0}")]
    Sink(#[source] SinkError),
}

impl Error {
    /// A short machine-readable name: `model_not_found`, `model_not_supported`, `all_providers_failed`,
    /// `no_provider`, `unknown_provider`, `invalid_request`, `mapping`, `timeout`, `sink`, `config`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) | Error::MissingToken => "config",
            Error::Prompt(_) | Error::InvalidRequest(_) => "invalid_request",
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
            Error::Timeout { .. } => "timeout",
            Error::Sink(_) => "sink",
        }
    }

    /// Whether the request itself is wrong (as opposed to a failure while running it).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Config(_)
                | Error::MissingToken
                | Error::Prompt(_)
                | Error::InvalidRequest(_)
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
}
