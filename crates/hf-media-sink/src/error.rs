//! The error type of every [`MediaSink`](crate::MediaSink).

use std::path::PathBuf;

use crate::StreamError;

/// Why a [`MediaSink`](crate::MediaSink) could not store a media.
///
/// Whatever the variant, the sink left nothing behind: no partial file, no
/// half-written sidecar, no in-memory entry.
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

    /// A file-system operation failed.
    #[error("could not write media to {path}: {source}; check that the folder exists, is writable and has free space")]
    Io {
        /// The file or folder the sink was working on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl SinkError {
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
    fn messages_are_actionable() {
        let err = SinkError::TooLarge { limit: 10 };
        assert!(err.to_string().contains("10-byte limit"));
        assert!(err.to_string().contains("with_max_bytes"));
        let err = SinkError::io("/x/y", std::io::Error::other("disk full"));
        assert!(err.to_string().contains("/x/y"));
        assert!(err.to_string().contains("disk full"));
    }
}
