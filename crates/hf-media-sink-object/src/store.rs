//! [`MediaSink`] for [`ObjectSink`]: one put for a small media, a multipart upload for a larger
//! one, then the sidecar. Under a fresh name, never overwriting; or, for a keyed record, at
//! `{prefix}/{key}.{ext}`, replacing what the key held.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt as _;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStoreExt as _, PutMode, PutMultipartOptions, PutOptions, PutPayload};

use hf_media_sink::{
    ByteStream, MediaFormat, MediaIntake, MediaKey, MediaLocation, MediaRecord, MediaSink, SinkError, StoredMedia,
    media_extensions, media_file_stem,
};

use crate::ObjectSink;
use crate::error::{is_taken, refuses_attributes, refuses_create};
use crate::guard::{Guard, StepOutcome, delete_all};

/// How many fresh names are tried when a name is already taken.
const NAME_ATTEMPTS: usize = 8;

/// Bytes received and not sent yet.
#[derive(Debug, Default)]
struct PartBuffer {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl PartBuffer {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    fn len(&self) -> usize {
        self.len
    }

    /// The first `n` bytes (all of them if fewer), without copying.
    fn take(&mut self, n: usize) -> PutPayload {
        let mut part = Vec::new();
        let mut missing = n;
        while missing > 0 {
            let Some(mut chunk) = self.chunks.pop_front() else {
                break;
            };
            if chunk.len() > missing {
                let head = chunk.split_to(missing);
                self.chunks.push_front(chunk);
                part.push(head);
                missing = 0;
            } else {
                missing -= chunk.len();
                part.push(chunk);
            }
        }
        self.len -= n - missing;
        part.into_iter().collect()
    }

    fn take_all(&mut self) -> PutPayload {
        self.take(self.len)
    }
}

/// How a conditional put went.
enum Put {
    /// Stored.
    Done,
    /// The name was taken (by another writer): nothing was written.
    Taken,
}

/// What a successful store published.
struct Published {
    format: MediaFormat,
    bytes: u64,
    media: Path,
    sidecar: Option<Path>,
}

fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn content_type(mime: &'static str) -> Attributes {
    [(Attribute::ContentType, mime)].into_iter().collect()
}

/// How a put treats an object already at its key.
#[derive(Clone, Copy)]
enum Mode<'a> {
    /// Never overwrites where the store can refuse to (`PutMode::Create`); where it cannot, the
    /// unique name alone keeps objects apart.
    Create,
    /// Never overwrites: `PutMode::Create`, or where the store cannot, a `HEAD` first (a fresh
    /// key's objects; racy there, but a fresh key is not shared).
    CreateChecked,
    /// Overwrites (`PutMode::Overwrite`, a keyed store); once it wrote, undoing the store deletes
    /// these objects too.
    Replace(&'a [Path]),
}

/// The objects of a keyed store.
struct AtKey {
    /// `{prefix}/{key}.{ext}`.
    media: Path,
    /// `{prefix}/{key}.json`.
    sidecar: Path,
    /// `{prefix}/{key}.{other}` for every other media extension: removed once the media is
    /// published, so that a key never holds two media. None for a fresh key.
    others: Vec<Path>,
    /// What undoing the store deletes too once the media may have replaced the key's previous one:
    /// the other formats, and the sidecar when sidecars are written. None for a fresh key.
    cleared: Vec<Path>,
    /// Whether the key is fresh: its objects are created, never replaced.
    fresh: bool,
}

impl AtKey {
    /// How a put at this key treats what is there: a fresh key's objects are created (checked where
    /// the store cannot refuse), another key's replaced, undoing the store clearing `also` too.
    fn mode<'a>(&self, also: &'a [Path]) -> Mode<'a> {
        if self.fresh {
            Mode::CreateChecked
        } else {
            Mode::Replace(also)
        }
    }
}

impl ObjectSink {
    /// A fresh stem for `record`: `{unix_secs}_{slug}_{random}`.
    fn stem(record: &MediaRecord) -> String {
        let unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        media_file_stem(&record.prompt, unix_secs)
    }

    fn key(&self, stem: &str, extension: &str) -> Path {
        self.prefix.clone().join(format!("{stem}.{extension}"))
    }

    /// `{prefix}/{key}.{extension}`, one path segment per key segment.
    fn key_path(&self, key: &MediaKey, extension: &str) -> Path {
        let folder = key.folders().fold(self.prefix.clone(), Path::join);
        folder.join(format!("{}.{extension}", key.name()))
    }

    /// The objects of a store at `key` of a `.{extension}` media.
    fn at_key(&self, key: &MediaKey, extension: &str) -> AtKey {
        let sidecar = self.key_path(key, "json");
        let fresh = key.is_fresh();
        let others: Vec<Path> = media_extensions()
            .filter(|other| !fresh && *other != extension)
            .map(|other| self.key_path(key, other))
            .collect();
        let mut cleared = others.clone();
        if self.sidecar && !fresh {
            cleared.push(sidecar.clone());
        }
        AtKey {
            media: self.key_path(key, extension),
            sidecar,
            others,
            cleared,
            fresh,
        }
    }

    /// The error of a fresh `key` whose object `taken` is already there.
    fn key_taken(&self, key: Option<&MediaKey>, taken: &Path) -> SinkError {
        SinkError::KeyTaken {
            key: key.map(ToString::to_string).unwrap_or_default(),
            taken: self.uri_of(taken),
        }
    }

    /// Puts `payload` at `key` as `mode` says, falling back to no `Content-Type` for stores that
    /// take none.
    async fn put_object(
        &self,
        guard: &mut Guard,
        key: &Path,
        payload: PutPayload,
        mime: &'static str,
        doing: &str,
        mode: Mode<'_>,
    ) -> Result<Put, SinkError> {
        let replacing = match mode {
            Mode::Replace(also) => Some(also),
            Mode::Create | Mode::CreateChecked => None,
        };
        loop {
            let create = replacing.is_none() && self.create_supported();
            if !create && matches!(mode, Mode::CreateChecked) && self.exists(key, doing).await? {
                return Ok(Put::Taken);
            }
            let with_type = self.attributes_supported();
            let opts = PutOptions {
                mode: if create { PutMode::Create } else { PutMode::Overwrite },
                attributes: if with_type {
                    content_type(mime)
                } else {
                    Attributes::new()
                },
                ..PutOptions::default()
            };
            let store = Arc::clone(&self.store);
            let (at, body) = (key.clone(), payload.clone());
            let also = replacing.map(<[Path]>::to_vec).unwrap_or_default();
            let result = guard
                .step_replacing(key, also, async move {
                    StepOutcome::put(store.put_opts(&at, body, opts).await)
                })
                .await;
            match result {
                Ok(()) => return Ok(Put::Done),
                Err(e) if create && is_taken(&e) => return Ok(Put::Taken),
                Err(e) if with_type && refuses_attributes(&e) => {
                    self.capabilities.attributes.store(false, Ordering::Relaxed);
                }
                Err(e) if create && refuses_create(&e) => {
                    self.capabilities.create.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(self.error(doing, key, &e)),
            }
        }
    }

    /// Whether an object is at `key` (a `HEAD`).
    async fn exists(&self, key: &Path, doing: &str) -> Result<bool, SinkError> {
        match self.store.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(doing, key, &e)),
        }
    }

    /// Writes `record` as the sidecar at `key`, as `mode` says.
    async fn put_sidecar(
        &self,
        guard: &mut Guard,
        key: &Path,
        record: &MediaRecord,
        mode: Mode<'_>,
    ) -> Result<Put, SinkError> {
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| SinkError::backend(format!("could not serialize the media record: {e}"), false))?;
        self.put_object(guard, key, json.into(), "application/json", "writing the sidecar", mode)
            .await
    }

    /// The end of a keyed store, once its media is published: removes the key's media of other
    /// formats, then writes the sidecar over the key's (a fresh key: creates it, and has no other
    /// format). Returns the sidecar's path, if written.
    async fn finish_at_key(
        &self,
        guard: &mut Guard,
        at: &AtKey,
        record: &MediaRecord,
    ) -> Result<Option<Path>, SinkError> {
        if !at.others.is_empty() {
            delete_all(self.store.as_ref(), at.others.clone())
                .await
                .map_err(|e| self.error("removing the other formats of", &at.media, &e))?;
        }
        if !self.sidecar {
            return Ok(None);
        }
        match self.put_sidecar(guard, &at.sidecar, record, at.mode(&[])).await? {
            Put::Done => Ok(Some(at.sidecar.clone())),
            Put::Taken => Err(self.key_taken(record.key.as_ref(), &at.sidecar)),
        }
    }

    /// Opens a multipart upload at `key`; the guard holds it afterwards.
    async fn open_upload(&self, guard: &mut Guard, key: &Path, mime: &'static str) -> Result<(), SinkError> {
        loop {
            let with_type = self.attributes_supported();
            let opts = PutMultipartOptions {
                attributes: if with_type {
                    content_type(mime)
                } else {
                    Attributes::new()
                },
                ..PutMultipartOptions::default()
            };
            let store = Arc::clone(&self.store);
            let at = key.clone();
            let result = guard
                .step(key, async move {
                    StepOutcome::opened(store.put_multipart_opts(&at, opts).await)
                })
                .await;
            match result {
                Ok(()) => return Ok(()),
                Err(e) if with_type && refuses_attributes(&e) => {
                    self.capabilities.attributes.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(self.error("starting the upload of", key, &e)),
            }
        }
    }

    /// A media that fit in one part: one conditional put, under a fresh name while names are taken,
    /// then the sidecar.
    async fn store_whole(
        &self,
        guard: &mut Guard,
        payload: PutPayload,
        format: MediaFormat,
        record: &mut MediaRecord,
        started: Instant,
    ) -> Result<(Path, Option<Path>), SinkError> {
        if let Some(key) = &record.key {
            let at = self.at_key(key, format.extension);
            if let Put::Taken = self
                .put_object(guard, &at.media, payload, format.mime, "storing", at.mode(&at.cleared))
                .await?
            {
                return Err(self.key_taken(Some(key), &at.media));
            }
            record.timings.store_ms = millis(started);
            let sidecar = self.finish_at_key(guard, &at, record).await?;
            return Ok((at.media, sidecar));
        }
        for _ in 0..NAME_ATTEMPTS {
            let stem = Self::stem(record);
            let key = self.key(&stem, format.extension);
            if let Put::Taken = self
                .put_object(guard, &key, payload.clone(), format.mime, "storing", Mode::Create)
                .await?
            {
                continue;
            }
            record.timings.store_ms = millis(started);
            if !self.sidecar {
                return Ok((key, None));
            }
            let sidecar = self.key(&stem, "json");
            match self.put_sidecar(guard, &sidecar, record, Mode::Create).await? {
                Put::Done => return Ok((key, Some(sidecar))),
                // Delete the media just stored, and take another name.
                Put::Taken => guard.undo_now().await,
            }
        }
        Err(SinkError::backend(
            format!(
                "{NAME_ATTEMPTS} object names in a row were already taken under {}; storing again may succeed",
                self.uri()
            ),
            true,
        ))
    }

    /// A media larger than one part: a multipart upload of `part_size` parts (the last one
    /// shorter), then the sidecar. `buffer` holds the first bytes, more than one part.
    async fn store_multipart(
        &self,
        guard: &mut Guard,
        mut media: ByteStream,
        mut intake: MediaIntake,
        mut buffer: PartBuffer,
        record: &mut MediaRecord,
        started: Instant,
    ) -> Result<Published, SinkError> {
        // More than MIN_PART_SIZE (64) bytes were accepted, so the intake knows the format.
        let format = intake.format().map_or_else(|| intake.finish(), Ok)?;
        // A keyed media goes to its key (the completion overwrites what is there); another one to
        // a fresh name.
        let at_key = record.key.as_ref().map(|key| self.at_key(key, format.extension));
        let stem = Self::stem(record);
        let key = match &at_key {
            Some(at) => at.media.clone(),
            None => self.key(&stem, format.extension),
        };
        // A completion writes its key whatever is there: a fresh key's names are checked first.
        if let Some(at) = at_key.as_ref().filter(|at| at.fresh) {
            let names = std::iter::once(&at.media).chain(self.sidecar.then_some(&at.sidecar));
            for name in names {
                if self.exists(name, "checking the fresh key").await? {
                    return Err(self.key_taken(record.key.as_ref(), name));
                }
            }
        }
        self.open_upload(guard, &key, format.mime).await?;
        let part_error = |e: object_store::Error| self.error("uploading a part of", &key, &e);
        loop {
            while buffer.len() > self.part_size {
                guard
                    .put_part(buffer.take(self.part_size), self.upload_concurrency)
                    .await
                    .map_err(part_error)?;
            }
            match media.next().await {
                None => break,
                Some(chunk) => {
                    let chunk = chunk.map_err(SinkError::Source)?;
                    intake.accept(&chunk)?;
                    if !chunk.is_empty() {
                        buffer.push(chunk);
                    }
                }
            }
        }
        drop(media);
        intake.finish()?;
        if buffer.len() > 0 {
            guard
                .put_part(buffer.take_all(), self.upload_concurrency)
                .await
                .map_err(part_error)?;
        }
        let cleared = at_key.as_ref().map(|at| at.cleared.clone()).unwrap_or_default();
        guard
            .complete(&key, cleared)
            .await
            .map_err(|e| self.error("completing the upload of", &key, &e))?;
        record.timings.store_ms = millis(started);
        let sidecar = if let Some(at) = &at_key {
            self.finish_at_key(guard, at, record).await?
        } else if self.sidecar {
            let sidecar = self.key(&stem, "json");
            match self.put_sidecar(guard, &sidecar, record, Mode::Create).await? {
                Put::Done => Some(sidecar),
                Put::Taken => {
                    return Err(SinkError::backend(
                        format!(
                            "the sidecar name {} was already taken, so the media was deleted again; storing again \
                             picks another name",
                            self.uri_of(&sidecar)
                        ),
                        true,
                    ));
                }
            }
        } else {
            None
        };
        Ok(Published {
            format,
            bytes: intake.total(),
            media: key,
            sidecar,
        })
    }
}

#[async_trait::async_trait]
impl MediaSink for ObjectSink {
    async fn store(&self, mut media: ByteStream, mut record: MediaRecord) -> Result<StoredMedia, SinkError> {
        let started = Instant::now();
        let mut intake = MediaIntake::new(self.max_bytes);
        // Hold back up to one part: a media no larger is stored with one put, and a larger one's key
        // (its extension) needs the format before the upload starts.
        let mut buffer = PartBuffer::default();
        let mut larger = false;
        while let Some(chunk) = media.next().await {
            let chunk = chunk.map_err(SinkError::Source)?;
            if chunk.is_empty() {
                continue;
            }
            intake.accept(&chunk)?;
            buffer.push(chunk);
            if buffer.len() > self.part_size {
                larger = true;
                break;
            }
        }

        // From here on, whatever is opened or published is undone on error (awaited) or when this
        // future is dropped (spawned from the guard's Drop).
        let mut guard = Guard::new(Arc::clone(&self.store));
        let published = if larger {
            self.store_multipart(&mut guard, media, intake, buffer, &mut record, started)
                .await
        } else {
            drop(media);
            match intake.finish() {
                Ok(format) => self
                    .store_whole(&mut guard, buffer.take_all(), format, &mut record, started)
                    .await
                    .map(|(media, sidecar)| Published {
                        format,
                        bytes: intake.total(),
                        media,
                        sidecar,
                    }),
                Err(e) => Err(e),
            }
        };
        match published {
            Ok(published) => {
                guard.disarm();
                Ok(StoredMedia {
                    location: MediaLocation::Object(self.uri_of(&published.media)),
                    format: published.format,
                    bytes: published.bytes,
                    sidecar: published.sidecar.map(|key| MediaLocation::Object(self.uri_of(&key))),
                    record,
                })
            }
            Err(e) => {
                guard.undo_now().await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(payload: &PutPayload) -> Vec<u8> {
        payload.iter().flat_map(|b| b.iter().copied()).collect()
    }

    #[test]
    fn part_buffer_splits_exactly_without_losing_bytes() {
        let mut buffer = PartBuffer::default();
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for chunk in data.chunks(37) {
            buffer.push(Bytes::copy_from_slice(chunk));
        }
        assert_eq!(buffer.len(), 1000);
        let mut back = Vec::new();
        while buffer.len() > 300 {
            let part = buffer.take(300);
            assert_eq!(part.content_length(), 300);
            back.extend(bytes_of(&part));
        }
        assert_eq!(buffer.len(), 100);
        let last = buffer.take_all();
        assert_eq!(last.content_length(), 100);
        back.extend(bytes_of(&last));
        assert_eq!(buffer.len(), 0);
        assert_eq!(back, data);
        assert_eq!(buffer.take_all().content_length(), 0);
    }
}
