//! [`MemorySink`]: keeps media in memory (tests, previews, piping elsewhere).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;

use crate::intake::Intake;
use crate::{
    ByteStream, DEFAULT_MAX_BYTES, MediaFormat, MediaLocation, MediaRecord, MediaSink, SinkError, StoredMedia, millis,
};

/// One media held by a [`MemorySink`].
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryMedia {
    /// Position in [`MemorySink::items`]; also in [`MediaLocation::Memory`].
    pub id: usize,
    /// Format decided from the bytes.
    pub format: MediaFormat,
    /// The media bytes.
    pub bytes: Bytes,
    /// The record, with `timings.store_ms` filled in.
    pub record: MediaRecord,
}

/// Keeps every stored media in memory, with the same checks as
/// [`FileSink`](crate::FileSink): signature sniffing and size limit.
///
/// Clones share the same storage. An entry is added only once its whole
/// stream succeeded; ids are 0, 1, 2... in completion order.
#[derive(Debug, Clone)]
pub struct MemorySink {
    items: Arc<Mutex<Vec<MemoryMedia>>>,
    max_bytes: u64,
}

impl Default for MemorySink {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySink {
    /// An empty sink with a [`DEFAULT_MAX_BYTES`] limit.
    pub fn new() -> Self {
        Self {
            items: Arc::default(),
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// Largest media accepted, in bytes.
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// A copy of every stored media, in id order.
    pub fn items(&self) -> Vec<MemoryMedia> {
        self.lock().clone()
    }

    /// How many media are stored.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<MemoryMedia>> {
        // A panic while holding the lock cannot leave the Vec inconsistent
        // (a single push), so a poisoned lock is still usable.
        self.items.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl MediaSink for MemorySink {
    async fn store(&self, mut media: ByteStream, mut record: MediaRecord) -> Result<StoredMedia, SinkError> {
        let started = Instant::now();
        let mut intake = Intake::new(self.max_bytes);
        let mut buf = BytesMut::new();
        while let Some(chunk) = media.next().await {
            let chunk = chunk.map_err(SinkError::Source)?;
            intake.accept(&chunk)?;
            buf.extend_from_slice(&chunk);
        }
        let format = intake.finish()?;
        record.timings.store_ms = millis(started.elapsed());
        let bytes = buf.freeze();
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);

        let id = {
            let mut items = self.lock();
            let id = items.len();
            items.push(MemoryMedia {
                id,
                format,
                bytes,
                record: record.clone(),
            });
            id
        };
        Ok(StoredMedia {
            location: MediaLocation::Memory { id },
            format,
            bytes: size,
            sidecar: None,
            record,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn chunks(parts: Vec<&'static [u8]>) -> ByteStream {
        stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p)))).boxed()
    }

    const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

    #[tokio::test]
    async fn stores_in_order_and_shares_between_clones() {
        let sink = MemorySink::new();
        let clone = sink.clone();
        assert!(sink.is_empty());
        let record = MediaRecord {
            prompt: "first".into(),
            ..MediaRecord::default()
        };
        let a = clone
            .store(chunks(vec![&GIF[..10], &GIF[10..]]), record)
            .await
            .expect("stored");
        let b = sink
            .store(chunks(vec![GIF]), MediaRecord::default())
            .await
            .expect("stored");
        assert_eq!(a.location, MediaLocation::Memory { id: 0 });
        assert_eq!(b.location, MediaLocation::Memory { id: 1 });
        assert_eq!(a.location.to_string(), "memory://0");
        assert_eq!(a.format.extension, "gif");
        assert_eq!(a.bytes, GIF.len() as u64);
        assert!(a.sidecar.is_none());
        assert_eq!(sink.len(), 2);
        let items = sink.items();
        assert_eq!(items[0].id, 0);
        assert_eq!(items[0].bytes.as_ref(), GIF);
        assert_eq!(items[0].record.prompt, "first");
        assert_eq!(items[0].record, a.record);
        assert_eq!(items[1].id, 1);
    }

    #[tokio::test]
    async fn failures_store_nothing() {
        let sink = MemorySink::new().with_max_bytes(20);
        let err = sink
            .store(chunks(vec![GIF]), MediaRecord::default())
            .await
            .expect_err("too large");
        assert!(matches!(err, SinkError::TooLarge { limit: 20 }));
        let err = sink
            .store(chunks(vec![]), MediaRecord::default())
            .await
            .expect_err("empty");
        assert!(matches!(err, SinkError::Empty));
        let err = sink
            .store(chunks(vec![b"{\"error\":1}"]), MediaRecord::default())
            .await
            .expect_err("json is not media");
        assert!(matches!(err, SinkError::UnrecognizedMedia { .. }));
        let failing = stream::iter(vec![
            Ok(Bytes::from_static(&GIF[..8])),
            Err::<Bytes, crate::StreamError>(crate::StreamError::network("boom")),
        ])
        .boxed();
        let err = sink.store(failing, MediaRecord::default()).await.expect_err("source");
        assert!(matches!(err, SinkError::Source(_)));
        assert!(sink.is_empty());
        assert_eq!(sink.len(), 0);
    }
}
