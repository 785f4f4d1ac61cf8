//! [`MediaIntake`]: the bookkeeping every sink does while a stream is consumed: byte count, size
//! limit, and early signature check.

use crate::error::hex_head;
use crate::format::{SNIFF_LEN, sniff};
use crate::{MediaFormat, SinkError};

/// Watches the chunks of one media as they arrive: counts the bytes, enforces a size limit, and
/// decides the format from the first bytes (never from a `Content-Type`).
///
/// [`FileSink`](crate::FileSink) and [`MemorySink`](crate::MemorySink) use it; a sink outside this
/// crate (an object store, a database...) uses it the same way, to refuse what they refuse with the
/// same errors: feed every chunk to [`accept`](Self::accept) *before* writing it anywhere, and call
/// [`finish`](Self::finish) when the stream ends, before publishing anything.
///
/// - [`accept`](Self::accept) fails with [`SinkError::TooLarge`] as soon as the limit is passed
///   (stop reading there), and with [`SinkError::UnrecognizedMedia`] as soon as 64 bytes have
///   arrived that are not a known image or video (an HTML error page, JSON...).
/// - [`finish`](Self::finish) gives the [`MediaFormat`], or [`SinkError::Empty`] when no byte came,
///   or [`SinkError::UnrecognizedMedia`] for a short stream of unknown bytes.
/// - [`format`](Self::format) tells the format as soon as it is known (after 64 bytes), e.g. to
///   name an object `….png` or set its `Content-Type` before uploading it.
///
/// # Example
///
/// How an object-store sink consumes its [`ByteStream`](crate::ByteStream):
///
/// ```
/// use bytes::Bytes;
/// use futures::StreamExt as _;
/// use hf_media_sink::{ByteStream, MediaIntake, SinkError};
///
/// # async fn upload_part(_part: &Bytes) -> Result<(), SinkError> { Ok(()) }
/// async fn upload(mut media: ByteStream, max_bytes: u64) -> Result<(), SinkError> {
///     let mut intake = MediaIntake::new(max_bytes);
///     while let Some(chunk) = media.next().await {
///         let chunk = chunk.map_err(SinkError::Source)?;
///         intake.accept(&chunk)?; // too large or not a media: stop before sending it
///         upload_part(&chunk).await?;
///     }
///     let format = intake.finish()?; // empty or unknown: abort the upload, publish nothing
///     println!("{} bytes of {format}, to be stored as .{}", intake.total(), format.extension);
///     // ... complete the upload (the one atomic step), then write the sidecar ...
///     Ok(())
/// }
///
/// # futures::executor::block_on(async {
/// let png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR";
/// let media: ByteStream = futures::stream::iter([Ok(Bytes::from_static(&png[..5])), Ok(Bytes::from_static(&png[5..]))]).boxed();
/// upload(media, 1024).await?;
///
/// let html: ByteStream = futures::stream::iter([Ok(Bytes::from_static(b"<html>502 Bad Gateway</html>"))]).boxed();
/// assert!(matches!(upload(html, 1024).await, Err(SinkError::UnrecognizedMedia { .. })));
///
/// let mut intake = MediaIntake::new(8);
/// intake.accept(&png[..8])?;
/// assert!(matches!(intake.accept(b"x"), Err(SinkError::TooLarge { limit: 8 })));
/// # Ok::<(), SinkError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct MediaIntake {
    head: Vec<u8>,
    total: u64,
    limit: u64,
    format: Option<MediaFormat>,
}

impl MediaIntake {
    /// An intake for one media of at most `limit` bytes (inclusive).
    pub fn new(limit: u64) -> Self {
        Self {
            head: Vec::with_capacity(SNIFF_LEN),
            total: 0,
            limit,
            format: None,
        }
    }

    /// Accounts for `chunk`. Fails with [`SinkError::TooLarge`] as soon as the limit is exceeded, or
    /// with [`SinkError::UnrecognizedMedia`] as soon as enough bytes arrived to tell that they are
    /// not a known media. After an error, the media must be abandoned.
    pub fn accept(&mut self, chunk: &[u8]) -> Result<(), SinkError> {
        let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        self.total = self.total.saturating_add(len);
        if self.total > self.limit {
            return Err(SinkError::TooLarge { limit: self.limit });
        }
        if self.head.len() < SNIFF_LEN {
            let take = (SNIFF_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            if self.head.len() == SNIFF_LEN {
                self.format = Some(self.sniff()?);
            }
        }
        Ok(())
    }

    /// Bytes accepted so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The size limit, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The format, once enough bytes arrived to decide it (64); `None` before. A shorter media's
    /// format is decided by [`finish`](Self::finish).
    pub fn format(&self) -> Option<MediaFormat> {
        self.format
    }

    /// The stream ended: decides the format. Fails with [`SinkError::Empty`] when no byte was
    /// accepted, and with [`SinkError::UnrecognizedMedia`] when the bytes are no known media.
    pub fn finish(&self) -> Result<MediaFormat, SinkError> {
        if self.total == 0 {
            return Err(SinkError::Empty);
        }
        match self.format {
            Some(format) => Ok(format),
            None => self.sniff(),
        }
    }

    fn sniff(&self) -> Result<MediaFormat, SinkError> {
        sniff(&self.head).ok_or_else(|| SinkError::UnrecognizedMedia {
            head: hex_head(&self.head),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_empty() {
        let intake = MediaIntake::new(10);
        assert!(matches!(intake.finish(), Err(SinkError::Empty)));
        let mut intake = MediaIntake::new(10);
        intake.accept(b"").expect("empty chunk");
        assert!(matches!(intake.finish(), Err(SinkError::Empty)));
    }

    #[test]
    fn limit_is_inclusive() {
        let mut intake = MediaIntake::new(8);
        intake.accept(b"\x89PNG").expect("4");
        intake.accept(b"\r\n\x1a\n").expect("8 == limit");
        assert!(matches!(intake.accept(b"x"), Err(SinkError::TooLarge { limit: 8 })));
    }

    #[test]
    fn garbage_is_rejected_early() {
        let mut intake = MediaIntake::new(u64::MAX);
        let html = vec![b'<'; SNIFF_LEN - 1];
        intake.accept(&html).expect("not enough to decide yet");
        match intake.accept(b"<<<<") {
            Err(SinkError::UnrecognizedMedia { head }) => assert!(head.starts_with("3c 3c")),
            other => panic!("expected UnrecognizedMedia, got {other:?}"),
        }
    }

    #[test]
    fn head_spanning_chunks_is_sniffed() {
        let mut intake = MediaIntake::new(u64::MAX);
        for byte in b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR" {
            intake.accept(&[*byte]).expect("byte");
        }
        let format = intake.finish().expect("png");
        assert_eq!(format.extension, "png");
        assert_eq!(intake.total(), 16);
    }

    #[test]
    fn format_is_known_once_enough_bytes_arrived() {
        let mut intake = MediaIntake::new(1000);
        assert_eq!(intake.limit(), 1000);
        intake.accept(b"\x89PNG\r\n\x1a\n").expect("head");
        assert_eq!(intake.format(), None, "8 bytes are not enough to decide");
        intake.accept(&[0u8; SNIFF_LEN]).expect("rest");
        assert_eq!(intake.format().map(|f| f.extension), Some("png"));
        assert_eq!(intake.total(), 8 + SNIFF_LEN as u64);
        assert_eq!(intake.finish().expect("png"), intake.format().expect("known"));
    }

    #[test]
    fn short_unknown_stream_is_refused_at_finish() {
        let mut intake = MediaIntake::new(1000);
        intake.accept(b"{\"error\":1}").expect("too short to decide");
        assert!(matches!(intake.finish(), Err(SinkError::UnrecognizedMedia { .. })));
    }
}
