//! The byte stream that providers produce and sinks consume, and its one error type.

use bytes::Bytes;
use futures::stream::BoxStream;

/// An owned stream of media bytes: what a provider's answer or a download yields and what a
/// [`MediaSink`](crate::MediaSink) consumes. Providers and sinks share this one type, so an error that
/// breaks the stream reaches the caller typed, without boxing and downcasting.
pub type ByteStream = BoxStream<'static, Result<Bytes, StreamError>>;

/// What kind of failure broke a [`ByteStream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamErrorKind {
    /// The connection broke or could not be read.
    Network,
    /// The bytes stopped arriving within the stall timeout.
    Timeout,
    /// Anything else (a source that is not a network stream).
    Other,
}

/// Why a [`ByteStream`] broke. Its text never carries credentials or signed URLs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StreamError {
    kind: StreamErrorKind,
    message: String,
}

impl StreamError {
    /// A stream error of `kind`.
    pub fn new(kind: StreamErrorKind, message: impl Into<String>) -> Self {
        StreamError {
            kind,
            message: message.into(),
        }
    }

    /// The connection broke.
    pub fn network(message: impl Into<String>) -> Self {
        StreamError::new(StreamErrorKind::Network, message)
    }

    /// The bytes stopped arriving.
    pub fn timeout(message: impl Into<String>) -> Self {
        StreamError::new(StreamErrorKind::Timeout, message)
    }

    /// Any other failure of the source.
    pub fn other(message: impl Into<String>) -> Self {
        StreamError::new(StreamErrorKind::Other, message)
    }

    /// The kind of failure.
    pub fn kind(&self) -> StreamErrorKind {
        self.kind
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether reading the media again may succeed (a broken connection or a stall).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, StreamErrorKind::Network | StreamErrorKind::Timeout)
    }
}
