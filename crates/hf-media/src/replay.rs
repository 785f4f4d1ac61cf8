//! A byte stream that can only be read once (a provider's raw answer body), made readable again: what
//! was read is kept (up to a bound) as it streams into the sink, so that a store that fails for a passing
//! reason can be tried again with the same bytes (what was read, then the rest of the stream) instead of
//! asking the provider for the media a second time.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::StreamExt;
use hf_media_provider::ByteStream;

/// The most bytes kept for a replay; a longer stream is read once only.
pub(crate) const REPLAY_LIMIT: usize = 32 * 1024 * 1024;

/// A read-once stream whose reads are kept for a replay.
pub(crate) struct Replayable {
    inner: Arc<Shared>,
}

struct Shared {
    source: tokio::sync::Mutex<Option<ByteStream>>,
    seen: Mutex<Seen>,
    limit: usize,
}

#[derive(Default)]
struct Seen {
    chunks: Vec<Bytes>,
    len: usize,
    /// More than the limit was read: what was read is gone.
    overflowed: bool,
    /// The source failed: what follows may be missing.
    broken: bool,
}

impl Shared {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Replayable {
    /// Keeps up to [`REPLAY_LIMIT`] bytes of `source` as it is read.
    pub(crate) fn new(source: ByteStream) -> Self {
        Replayable::with_limit(source, REPLAY_LIMIT)
    }

    fn with_limit(source: ByteStream, limit: usize) -> Self {
        Replayable {
            inner: Arc::new(Shared {
                source: tokio::sync::Mutex::new(Some(source)),
                seen: Mutex::new(Seen::default()),
                limit,
            }),
        }
    }

    /// Whether [`Replayable::open`] gives the whole media again: nothing read was dropped and the source
    /// did not fail.
    pub(crate) fn replayable(&self) -> bool {
        let seen = self.inner.seen();
        !seen.overflowed && !seen.broken
    }

    /// The media from its start: what was already read, then the rest of the source. `None` when it can
    /// no longer be read whole.
    pub(crate) fn open(&self) -> Option<ByteStream> {
        let prefix = {
            let seen = self.inner.seen();
            if seen.overflowed || seen.broken {
                return None;
            }
            seen.chunks.clone()
        };
        let rest = futures::stream::unfold(self.inner.clone(), |shared| async move {
            let next = {
                let mut source = shared.source.lock().await;
                let stream = source.as_mut()?;
                let next = stream.next().await;
                if next.is_none() {
                    *source = None;
                }
                next
            }?;
            {
                let mut seen = shared.seen();
                match &next {
                    Ok(chunk) if !seen.overflowed => {
                        if seen.len + chunk.len() > shared.limit {
                            seen.overflowed = true;
                            seen.chunks = Vec::new();
                        } else {
                            seen.len += chunk.len();
                            seen.chunks.push(chunk.clone());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => seen.broken = true,
                }
            }
            Some((next, shared))
        });
        Some(futures::stream::iter(prefix.into_iter().map(Ok)).chain(rest).boxed())
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use hf_media_provider::StreamError;

    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        let parts: Vec<Result<Bytes, StreamError>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        futures::stream::iter(parts).boxed()
    }

    async fn read(stream: ByteStream) -> Result<Vec<u8>, StreamError> {
        let parts: Vec<Bytes> = stream.try_collect().await?;
        Ok(parts.concat())
    }

    #[tokio::test]
    async fn a_store_that_stopped_half_way_is_replayed_whole() {
        let body = Replayable::new(chunks(&[b"ab", b"cd", b"ef"]));
        let mut first = body.open().unwrap();
        assert_eq!(first.next().await.unwrap().unwrap(), Bytes::from_static(b"ab"));
        drop(first); // the sink failed after one chunk
        assert!(body.replayable());
        assert_eq!(read(body.open().unwrap()).await.unwrap(), b"abcdef");
        assert_eq!(read(body.open().unwrap()).await.unwrap(), b"abcdef", "and again");
    }

    #[tokio::test]
    async fn a_long_or_broken_stream_is_read_once_only() {
        let long = Replayable::with_limit(chunks(&[b"abc", b"def"]), 4);
        assert_eq!(read(long.open().unwrap()).await.unwrap(), b"abcdef");
        assert!(!long.replayable() && long.open().is_none());

        let broken: ByteStream =
            futures::stream::iter(vec![Ok(Bytes::from_static(b"ab")), Err(StreamError::network("reset"))]).boxed();
        let broken = Replayable::new(broken);
        assert!(read(broken.open().unwrap()).await.is_err());
        assert!(
            !broken.replayable(),
            "a replay could be missing the bytes after the break"
        );
    }
}
