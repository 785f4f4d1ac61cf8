use thiserror::Error;

/// What can go wrong while asking the Hub for a model's provider mapping.
///
/// Errors are `Clone` so that one failed Hub call can be reported to every caller that waited on it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MappingError {
    /// The model id cannot be a Hub model id.
    #[error(
        "`{model}` is not a valid model id: {reason} (expected `org/name`, e.g. `black-forest-labs/FLUX.1-schnell`)"
    )]
    InvalidModelId {
        /// What was given.
        model: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The Hub answered 404: there is no such model.
    #[error(
        "model `{model}` was not found on the Hub: check the id (and its spelling) at https://huggingface.co/models"
    )]
    ModelNotFound {
        /// The model id asked for.
        model: String,
    },
    /// The Hub refused the request (401/403): bad token, or a private or gated model.
    #[error(
        "the Hub refused access to `{model}` (HTTP {status}): {message}; check HF_TOKEN, and that you have access if the model is private or gated"
    )]
    Unauthorized {
        /// The model id asked for.
        model: String,
        /// 401 or 403.
        status: u16,
        /// The Hub's own message.
        message: String,
    },
    /// Any other non-success answer from the Hub.
    #[error("the Hub answered HTTP {status} for `{model}`: {message}")]
    Http {
        /// The model id asked for.
        model: String,
        /// The HTTP status.
        status: u16,
        /// The Hub's own message, or the start of the body.
        message: String,
        /// The `Retry-After` delay, when the answer had one.
        retry_after: Option<std::time::Duration>,
    },
    /// The Hub could not be reached, or the answer could not be read.
    #[error("could not reach the Hub for `{model}`: {message}")]
    Network {
        /// The model id asked for.
        model: String,
        /// What went wrong, without URL credentials.
        message: String,
    },
    /// The answer was not the JSON the Hub documents.
    #[error("the Hub's answer for `{model}` is malformed: {reason}")]
    InvalidResponse {
        /// The model id asked for.
        model: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The client could not be built (bad URL, TLS set-up).
    #[error("invalid mapping client configuration: {0}")]
    Config(String),
}
