//! The error type of every [`MediaSink`](crate::MediaSink).

use std::path::PathBuf;

use crate::StreamError;

/// Why a [`MediaSink`](crate::MediaSink) could not store a media.
///
/// Whatever the variant, the sink left nothing behind: no partial file, no
/// half-written sidecar, no in-memory entry, no visible object.
///
/// [`is_retryable`](SinkError::is_retryable) tells whether storing the same
/// media again may succeed. The `hf-media` facade retries a retryable sink
/// error (downloading the media again from its URL when it can, since the
/// stream was consumed); since nothing was left behind, the next try starts
/// from scratch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The byte stream itself failed (network error while downloading, ...).
    /// The original error is kept as the [`source`](std::error::Error::source).
    #[error("the media stream failed: {0}")]
    Source(#[source] StreamError),

    /// The stream ended without yielding a single byte.
    #[error("the media stream was empty; the provider returned no bytes, try the request again")]
    Empty,

    /// The first bytes match no known image or video signature.
    #[error(
        "the bytes are not a known image or video format (first bytes: {head}); \
         the provider probably answered with an error page or an unsupported output format"
    )]
    UnrecognizedMedia {
        /// Hexadecimal dump of (up to) the first 16 bytes received.
        head: String,
    },

    /// The stream went over the sink's size limit; reading stopped there.
    #[error(
        "the media is larger than the {limit}-byte limit; \
         raise it with `with_max_bytes` if such sizes are expected"
    )]
    TooLarge {
        /// The limit in force, in bytes.
        limit: u64,
    },

    /// A storage backend failed: an object store or a remote service answered
    /// with throttling or a 5xx, the connection to it broke, a request was
    /// refused... `retryable` tells whether trying again may succeed (see
    /// [`SinkError::is_retryable`]). Build it with [`SinkError::backend`].
    ///
    /// The message must not carry credentials or signed URLs.
    #[error("the storage backend failed: {message}")]
    Backend {
        /// What went wrong, as the backend said it.
        message: String,
        /// Whether storing the media again may succeed (throttling, a 5xx, a
        /// broken connection), as opposed to a lasting refusal (no such bucket,
        /// access denied).
        retryable: bool,
    },

    /// A file-system operation failed. Not retryable: a full disk or a
    /// missing permission does not fix itself.
    #[error("could not write media to {path}: {source}; check that the folder exists, is writable and has free space")]
    Io {
        /// The file or folder the sink was working on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A [`MediaKey`](crate::MediaKey) was refused: [`MediaKey::new`](crate::MediaKey::new), or
    /// deserializing one, met a string that is no valid key. Not retryable.
    #[error(
        "invalid media key {}: {reason}; a key is 1 to 8 `/`-separated segments of ASCII letters, digits, \
         `.`, `_` and `-`, each 1 to 128 characters long and not starting with `.`, at most 512 characters \
         in all, without extension (e.g. `shard-0001/item-000042`)",
        crate::key::shown(key)
    )]
    InvalidKey {
        /// The string refused, as given.
        key: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// A [fresh](crate::MediaKey::fresh) key already held a media or a sidecar: the caller promised
    /// a new name and the sink found one taken. What was there is left untouched and nothing of this
    /// store remains. Not retryable with the same key: make another fresh key (with new random
    /// bits), or use a plain key to replace what is there.
    #[error(
        "the fresh media key {} is already taken ({taken}); nothing was replaced: store under a new key, \
         or under a key that is not fresh to replace it",
        crate::key::shown(key)
    )]
    KeyTaken {
        /// The key.
        key: String,
        /// What holds the name: a path, an object URI or an entry.
        taken: String,
    },
}

impl SinkError {
    /// A [`SinkError::Backend`]: `message` says what failed, `retryable`
    /// whether trying again may succeed.
    pub fn backend(message: impl Into<String>, retryable: bool) -> Self {
        Self::Backend {
            message: message.into(),
            retryable,
        }
    }

    /// Whether storing the same media again may succeed: `true` for a
    /// [`SinkError::Backend`] marked retryable and for a [`SinkError::Source`]
    /// whose stream error [is retryable](StreamError::is_retryable) (a broken
    /// connection, a stall); `false` for everything else, [`SinkError::Io`]
    /// and [`SinkError::InvalidKey`] included.
    ///
    /// The `hf-media` facade retries a retryable sink error, downloading the
    /// media again when it can. Whatever the variant, the failed store left
    /// nothing behind.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Backend { retryable, .. } => *retryable,
            Self::Source(source) => source.is_retryable(),
            Self::Empty
            | Self::UnrecognizedMedia { .. }
            | Self::TooLarge { .. }
            | Self::Io { .. }
            | Self::InvalidKey { .. }
            | Self::KeyTaken { .. } => false,
        }
    }

    /// Builds a [`SinkError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Hex dump (space separated) of up to the first 16 bytes of `bytes`.
pub(crate) fn hex_head(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn hex_head_is_limited_to_16_bytes() {
        assert_eq!(hex_head(b""), "");
        assert_eq!(hex_head(b"<ht"), "3c 68 74");
        let long = [0xabu8; 40];
        assert_eq!(hex_head(&long).split(' ').count(), 16);
    }

    #[test]
    fn source_is_kept() {
        let inner = StreamError::network("connection reset");
        let err = SinkError::Source(inner);
        assert!(err.to_string().contains("connection reset"));
        assert_eq!(
            err.source().map(ToString::to_string).as_deref(),
            Some("connection reset")
        );
    }

    #[test]
    fn retryable_errors() {
        assert!(SinkError::backend("503 Slow Down", true).is_retryable());
        assert!(!SinkError::backend("403 AccessDenied", false).is_retryable());
        assert!(SinkError::Source(StreamError::network("reset")).is_retryable());
        assert!(SinkError::Source(StreamError::timeout("stalled")).is_retryable());
        assert!(!SinkError::Source(StreamError::other("bad source")).is_retryable());
        assert!(!SinkError::io("/x", std::io::Error::other("disk full")).is_retryable());
        assert!(!SinkError::Empty.is_retryable());
        assert!(!SinkError::TooLarge { limit: 1 }.is_retryable());
        assert!(!SinkError::UnrecognizedMedia { head: String::new() }.is_retryable());
        assert!(!crate::MediaKey::new("../x").expect_err("invalid").is_retryable());
        let taken = SinkError::KeyTaken {
            key: "k".into(),
            taken: "/out/k.png".into(),
        };
        assert!(!taken.is_retryable());
        let message = taken.to_string();
        assert!(message.contains("\"k\"") && message.contains("/out/k.png"), "{message}");
        assert!(message.contains("new key"), "{message}");
    }

    #[test]
    fn backend_error_keeps_its_message() {
        let err = SinkError::backend("s3: 503 SlowDown", true);
        assert_eq!(err.to_string(), "the storage backend failed: s3: 503 SlowDown");
        match err {
            SinkError::Backend { message, retryable } => {
                assert_eq!(message, "s3: 503 SlowDown");
                assert!(retryable);
            }
            other => panic!("expected Backend, got {other:?}"),
        }
    }

    #[test]
    fn messages_are_actionable() {
        let err = SinkError::TooLarge { limit: 10 };
        assert!(err.to_string().contains("10-byte limit"));
        assert!(err.to_string().contains("with_max_bytes"));
        let err = SinkError::io("/x/y", std::io::Error::other("disk full"));
        assert!(err.to_string().contains("/x/y"));
        assert!(err.to_string().contains("disk full"));
    }
}
