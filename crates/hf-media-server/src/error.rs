//! The server's one error type, and its answer: OpenAI's `{"error": {"message", "type", "param", "code"}}`
//! with the status the failure maps to, `Retry-After` where waiting helps, and `x-should-retry: false`
//! where a retry cannot help (so an SDK does not pay for the same generation twice).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hf_media_batch::BatchError;
use serde_json::{Value, json};

/// Everything that can go wrong in the server: at start-up (configuration, binding, the state store) and
/// in answering a request. Every variant answers with its own status ([`ServerError::status`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is unusable.
    #[error("server configuration: {0}")]
    Config(String),
    /// The server could not listen, or a connection failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The video job store failed.
    #[error("the video job store: {0}")]
    State(#[from] BatchError),
    /// The request is malformed or a field is wrong (`param` names it).
    #[error("{message}")]
    BadRequest {
        /// What is wrong and what to send instead.
        message: String,
        /// The field at fault.
        param: Option<String>,
    },
    /// No or a wrong API key.
    #[error("{0}")]
    Unauthorized(String),
    /// The request may not have what it asks for (an expired or unsigned media link).
    #[error("{0}")]
    Forbidden(String),
    /// The route, the model, the video or the media does not exist.
    #[error("{message}")]
    NotFound {
        /// What was not found.
        message: String,
        /// The field at fault, if a field named it.
        param: Option<String>,
    },
    /// The body is larger than the server takes.
    #[error("the request body is larger than this server takes ({limit} bytes): send smaller images")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// This client sent too many requests.
    #[error("too many requests from this client: at most {per_minute} a minute; retry after {}s", retry_after.as_secs().max(1))]
    RateLimited {
        /// The limit.
        per_minute: u32,
        /// When to try again.
        retry_after: Duration,
    },
    /// Every generation slot is taken.
    #[error("the server is busy: {in_flight} generations are in flight (at most {max}); retry after {}s", retry_after.as_secs().max(1))]
    Busy {
        /// In flight now.
        in_flight: usize,
        /// The most.
        max: usize,
        /// When to try again.
        retry_after: Duration,
    },
    /// The server is shutting down.
    #[error("the server is shutting down; retry on another replica or after it restarts")]
    ShuttingDown,
    /// A generation failed (its own error says which provider answered what).
    #[error(transparent)]
    Generation(#[from] hf_media::Error),
    /// Something inside the server failed (a stored media could not be read).
    #[error("{0}")]
    Internal(String),
}

impl ServerError {
    /// A 400 for `param`.
    pub fn bad_request(message: impl Into<String>, param: impl Into<Option<&'static str>>) -> Self {
        ServerError::BadRequest {
            message: message.into(),
            param: param.into().map(str::to_owned),
        }
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ServerError::NotFound {
            message: message.into(),
            param: None,
        }
    }

    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        let code = match self {
            ServerError::Config(_) | ServerError::Io { .. } | ServerError::State(_) | ServerError::Internal(_) => 500,
            ServerError::BadRequest { .. } => 400,
            ServerError::Unauthorized(_) => 401,
            ServerError::Forbidden(_) => 403,
            ServerError::NotFound { .. } => 404,
            ServerError::TooLarge { .. } => 413,
            ServerError::RateLimited { .. } | ServerError::Busy { .. } => 429,
            ServerError::ShuttingDown => 503,
            // No provider serves the model for the task: the request is well-formed but cannot be served.
            ServerError::Generation(hf_media::Error::NoProvider { .. }) => 422,
            ServerError::Generation(error) => error.http_status(),
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// OpenAI's error `type`.
    fn error_type(&self) -> &'static str {
        match self {
            ServerError::Unauthorized(_) => "authentication_error",
            ServerError::Forbidden(_) => "permission_error",
            _ if self.status() == StatusCode::NOT_FOUND => "not_found_error",
            ServerError::RateLimited { .. } | ServerError::Busy { .. } => "rate_limit_error",
            _ if self.status().is_client_error() => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// A short stable code: the library's error kind for generation failures.
    pub fn code(&self) -> &'static str {
        match self {
            ServerError::Config(_) => "config",
            ServerError::Io { .. } => "io",
            ServerError::State(_) => "state",
            ServerError::BadRequest { .. } => "invalid_request",
            ServerError::Unauthorized(_) => "invalid_api_key",
            ServerError::Forbidden(_) => "forbidden",
            ServerError::NotFound { .. } => "not_found",
            ServerError::TooLarge { .. } => "body_too_large",
            ServerError::RateLimited { .. } => "rate_limited",
            ServerError::Busy { .. } => "server_busy",
            ServerError::ShuttingDown => "shutting_down",
            ServerError::Generation(error) => error.kind(),
            ServerError::Internal(_) => "internal",
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            ServerError::BadRequest { param, .. } | ServerError::NotFound { param, .. } => param.as_deref(),
            ServerError::Generation(
                hf_media::Error::Mapping(hf_media::MappingError::ModelNotFound { .. })
                | hf_media::Error::ModelNotSupported { .. }
                | hf_media::Error::NoProvider { .. },
            ) => Some("model"),
            ServerError::Generation(hf_media::Error::Prompt(_)) => Some("prompt"),
            _ => None,
        }
    }

    /// When the client may try again, if waiting helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ServerError::RateLimited { retry_after, .. } | ServerError::Busy { retry_after, .. } => Some(*retry_after),
            ServerError::ShuttingDown => Some(Duration::from_secs(1)),
            ServerError::Generation(error) if error.http_status() == 429 => Some(Duration::from_secs(5)),
            _ => None,
        }
    }

    /// Whether a client's automatic retry can help. A failed generation was paid for or ran to its
    /// deadline: sending it again repeats the cost, so only waits (429, 503) invite a retry.
    pub fn should_retry(&self) -> bool {
        self.retry_after().is_some()
    }

    /// The error object (`{"message", "type", "param", "code"}`), as streaming answers send it too.
    pub fn body(&self) -> Value {
        let mut error = json!({
            "message": self.to_string(),
            "type": self.error_type(),
            "param": self.param(),
            "code": self.code(),
        });
        if let ServerError::Generation(generation) = self {
            let info = hf_media::ErrorInfo::from(generation);
            if let Some(attempts) = info.attempts {
                error["attempts"] = serde_json::to_value(attempts).unwrap_or(Value::Null);
            }
            if let Some(provider) = info.provider {
                error["provider"] = Value::String(provider);
            }
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        if let Some(after) = self.retry_after() {
            let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        let retry = if self.should_retry() { "true" } else { "false" };
        headers.insert("x-should-retry", HeaderValue::from_static(retry));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_contract() {
        let no_provider = ServerError::Generation(hf_media::Error::NoProvider {
            model: "a/b".into(),
            reason: "none".into(),
        });
        assert_eq!(no_provider.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(no_provider.body()["error"]["param"], "model");
        let timeout = ServerError::Generation(hf_media::Error::Timeout {
            after: Duration::from_secs(1),
            attempts: Vec::new(),
        });
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(!timeout.should_retry(), "a deadline is not retried: it would pay again");
        let busy = ServerError::Busy {
            in_flight: 3,
            max: 3,
            retry_after: Duration::from_secs(1),
        };
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(busy.should_retry());
        let body = ServerError::bad_request("n must be 1 to 10", "n").body();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "n");
        assert_eq!(body["error"]["code"], "invalid_request");
    }

    #[test]
    fn answers_carry_retry_headers() {
        let response = ServerError::Busy {
            in_flight: 1,
            max: 1,
            retry_after: Duration::from_millis(200),
        }
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(response.headers()["x-should-retry"], "true");
        let response = ServerError::Unauthorized("bad key".into()).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["x-should-retry"], "false");
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
