//! [`MemorySink`]: keeps media in memory (tests, previews, piping elsewhere).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;

use crate::{
    ByteStream, DEFAULT_MAX_BYTES, MediaFormat, MediaIntake, MediaKey, MediaLocation, MediaRecord, MediaSink,
    SinkError, StoredMedia, millis,
};

/// One media held by a [`MemorySink`].
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryMedia {
    /// Id of the media in its sink, as in [`MediaLocation::Memory`]: unique, never reused.
    pub id: usize,
    /// Format decided from the bytes.
    pub format: MediaFormat,
    /// The media bytes.
    pub bytes: Bytes,
    /// The record, with `timings.store_ms` filled in.
    pub record: MediaRecord,
}

/// What the clones of a [`MemorySink`] share.
#[derive(Debug, Default)]
struct Entries {
    /// The media held, by id.
    media: BTreeMap<usize, MemoryMedia>,
    /// The id the next stored media gets.
    next_id: usize,
    /// The id of the media held under each key.
    keys: HashMap<MediaKey, usize>,
}

/// Keeps stored media in memory, with the same checks as
/// [`FileSink`](crate::FileSink): signature sniffing and size limit.
///
/// Clones share the same storage. An entry is added only once its whole
/// stream succeeded; ids are 0, 1, 2... in completion order, and are never
/// reused, also after a [`take`](Self::take).
///
/// **Keys**: a media whose record has a [`MediaRecord::key`] *replaces* the
/// entry held under that key, as a file sink replaces the file: the previous
/// entry is dropped (its id then gives `None`), the new one gets a fresh id,
/// and [`get_by_key`](Self::get_by_key) finds it. The key is kept in the
/// entry's record. A store that fails leaves the previous entry. A [fresh](MediaKey::fresh) key
/// already held fails with [`SinkError::KeyTaken`].
///
/// A long-running process hands each media out with [`take`](Self::take)
/// (which forgets it), so that the sink does not grow without bound:
///
/// ```
/// use bytes::Bytes;
/// use futures::StreamExt as _;
/// use hf_media_sink::{MediaLocation, MediaRecord, MediaSink, MemorySink};
///
/// # futures::executor::block_on(async {
/// let sink = MemorySink::new();
/// let png = Bytes::from_static(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR");
/// let stored = sink
///     .store(futures::stream::iter([Ok(png.clone())]).boxed(), MediaRecord::default())
///     .await?;
/// let MediaLocation::Memory { id } = stored.location else { unreachable!() };
/// let media = sink.take(id).expect("just stored");
/// assert_eq!(media.bytes, png);
/// assert!(sink.is_empty() && sink.take(id).is_none());
/// # Ok::<(), hf_media_sink::SinkError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct MemorySink {
    entries: Arc<Mutex<Entries>>,
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
            entries: Arc::default(),
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// Largest media accepted, in bytes.
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// A copy of every media still held (not [taken](Self::take)), in id order. Cheap: the bytes are
    /// shared, not copied.
    pub fn items(&self) -> Vec<MemoryMedia> {
        self.lock().media.values().cloned().collect()
    }

    /// A copy of the media with this `id`, if it is still held. Cheap: the bytes are shared.
    pub fn get(&self, id: usize) -> Option<MemoryMedia> {
        self.lock().media.get(&id).cloned()
    }

    /// A copy of the media held under `key` (the last stored at that key), if there is one.
    pub fn get_by_key(&self, key: &MediaKey) -> Option<MemoryMedia> {
        let entries = self.lock();
        entries.keys.get(key).and_then(|id| entries.media.get(id)).cloned()
    }

    /// Removes the media with this `id` and returns it; `None` if there is none (never stored, or
    /// already taken or replaced). Its id is not given to another media.
    pub fn take(&self, id: usize) -> Option<MemoryMedia> {
        let mut entries = self.lock();
        let media = entries.media.remove(&id)?;
        if let Some(key) = &media.record.key {
            if entries.keys.get(key) == Some(&id) {
                entries.keys.remove(key);
            }
        }
        Some(media)
    }

    /// How many media are held (stored and not taken).
    pub fn len(&self) -> usize {
        self.lock().media.len()
    }

    /// Whether no media is held.
    pub fn is_empty(&self) -> bool {
        self.lock().media.is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // No code panics while holding the lock half-way through an update
        // (an insert, a remove), so a poisoned lock is still consistent.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl MediaSink for MemorySink {
    async fn store(&self, mut media: ByteStream, mut record: MediaRecord) -> Result<StoredMedia, SinkError> {
        let started = Instant::now();
        let mut intake = MediaIntake::new(self.max_bytes);
        let mut buf = BytesMut::new();
        while let Some(chunk) = media.next().await {
            let chunk = chunk.map_err(SinkError::Source)?;
            intake.accept(&chunk)?;
            buf.extend_from_slice(&chunk);
        }
        let format = intake.finish()?;
        let bytes = buf.freeze();
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);

        let id = {
            let mut entries = self.lock();
            // Checked before an id is given: a refused store uses none.
            if let Some(key) = record.key.as_ref().filter(|key| key.is_fresh()) {
                if let Some(held) = entries.keys.get(key) {
                    return Err(SinkError::KeyTaken {
                        key: key.as_str().to_owned(),
                        taken: MediaLocation::Memory { id: *held }.to_string(),
                    });
                }
            }
            let id = entries.next_id;
            entries.next_id = id.saturating_add(1);
            // Published when inserted, which the lock makes one step with the measure.
            record.timings.store_ms = millis(started.elapsed());
            if let Some(previous) = record.key.as_ref().and_then(|key| entries.keys.insert(key.clone(), id)) {
                entries.media.remove(&previous);
            }
            entries.media.insert(
                id,
                MemoryMedia {
                    id,
                    format,
                    bytes,
                    record: record.clone(),
                },
            );
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
    async fn a_taken_fresh_key_is_refused_without_using_an_id() {
        let sink = MemorySink::new();
        let fresh = || MediaRecord {
            key: Some(MediaKey::new("k").expect("valid").fresh()),
            ..MediaRecord::default()
        };
        let first = sink.store(chunks(vec![GIF]), fresh()).await.expect("stored");
        assert_eq!(first.location, MediaLocation::Memory { id: 0 });
        let err = sink.store(chunks(vec![GIF]), fresh()).await.expect_err("taken");
        assert!(
            matches!(&err, SinkError::KeyTaken { key, taken } if key == "k" && taken == "memory://0"),
            "{err:?}"
        );
        let next = sink
            .store(chunks(vec![GIF]), MediaRecord::default())
            .await
            .expect("stored");
        assert_eq!(next.location, MediaLocation::Memory { id: 1 }, "no id was used up");
        assert_eq!(sink.len(), 2);
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

    #[tokio::test]
    async fn take_and_get_forget_without_reusing_ids() {
        let sink = MemorySink::new();
        for _ in 0..3 {
            sink.store(chunks(vec![GIF]), MediaRecord::default())
                .await
                .expect("stored");
        }
        assert_eq!(sink.get(1).map(|m| m.id), Some(1));
        assert_eq!(sink.len(), 3, "get does not remove");

        let taken = sink.take(1).expect("held");
        assert_eq!(taken.id, 1);
        assert_eq!(taken.bytes.as_ref(), GIF);
        assert_eq!(sink.len(), 2);
        assert!(sink.get(1).is_none());
        assert!(sink.take(1).is_none(), "taken once only");
        assert!(sink.take(99).is_none());
        assert_eq!(sink.items().iter().map(|m| m.id).collect::<Vec<_>>(), [0, 2]);

        // A new media gets a fresh id, not the one that was taken.
        let stored = sink
            .clone()
            .store(chunks(vec![GIF]), MediaRecord::default())
            .await
            .expect("stored");
        assert_eq!(stored.location, MediaLocation::Memory { id: 3 });
        assert_eq!(sink.items().iter().map(|m| m.id).collect::<Vec<_>>(), [0, 2, 3]);

        for id in [0, 2, 3] {
            assert_eq!(sink.take(id).map(|m| m.id), Some(id));
        }
        assert!(sink.is_empty());
        assert!(sink.items().is_empty());
        let stored = sink
            .store(chunks(vec![GIF]), MediaRecord::default())
            .await
            .expect("stored");
        assert_eq!(stored.location, MediaLocation::Memory { id: 4 });
    }

    #[tokio::test]
    async fn a_keyed_store_replaces_the_entry_of_its_key() {
        let sink = MemorySink::new();
        let key = MediaKey::new("shard-0/item-1").expect("valid");
        let keyed = |prompt: &str| MediaRecord {
            prompt: prompt.into(),
            key: Some(key.clone()),
            ..MediaRecord::default()
        };
        let first = sink.store(chunks(vec![GIF]), keyed("first")).await.expect("stored");
        let other = sink
            .store(chunks(vec![GIF]), MediaRecord::default())
            .await
            .expect("stored");
        let second = sink.store(chunks(vec![GIF]), keyed("second")).await.expect("stored");
        assert_eq!(first.location, MediaLocation::Memory { id: 0 });
        assert_eq!(other.location, MediaLocation::Memory { id: 1 });
        assert_eq!(second.location, MediaLocation::Memory { id: 2 }, "a fresh id");
        assert_eq!(sink.len(), 2, "the first was replaced");
        assert!(sink.get(0).is_none());
        let held = sink.get_by_key(&key).expect("held under its key");
        assert_eq!((held.id, held.record.prompt.as_str()), (2, "second"));
        assert_eq!(held.record.key.as_ref(), Some(&key));

        // A failed store at the key leaves the entry.
        let failing = stream::iter(vec![
            Ok(Bytes::from_static(&GIF[..8])),
            Err::<Bytes, crate::StreamError>(crate::StreamError::network("boom")),
        ])
        .boxed();
        sink.store(failing, keyed("failed")).await.expect_err("source");
        assert_eq!(sink.get_by_key(&key).map(|m| m.id), Some(2));

        // Taken: the key is free again, and the next store at it adds an entry.
        assert_eq!(sink.take(2).map(|m| m.id), Some(2));
        assert!(sink.get_by_key(&key).is_none());
        let third = sink.store(chunks(vec![GIF]), keyed("third")).await.expect("stored");
        assert_eq!(third.location, MediaLocation::Memory { id: 3 });
        assert_eq!(sink.len(), 2);
        assert_eq!(sink.get_by_key(&key).map(|m| m.id), Some(3));
    }

    #[tokio::test]
    async fn store_ms_is_measured() {
        let sink = MemorySink::new();
        let slow = stream::iter([&GIF[..10], &GIF[10..20], &GIF[20..]])
            .enumerate()
            .then(|(i, part)| async move {
                if i > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(15)).await;
                }
                Ok(Bytes::from_static(part))
            })
            .boxed();
        let stored = sink.store(slow, MediaRecord::default()).await.expect("stored");
        let store_ms = stored.record.timings.store_ms;
        assert!(store_ms >= 30, "two 15 ms waits, store_ms = {store_ms}");
        assert_eq!(sink.get(0).map(|m| m.record.timings.store_ms), Some(store_ms));
    }
}
