#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod error;
mod file;
mod folder_sync;
mod format;
mod intake;
mod key;
mod memory;
mod naming;
mod stream;

#[cfg(feature = "testing")]
pub mod conformance;

pub use error::SinkError;
pub use file::{DEFAULT_DIR, DEFAULT_MAX_BYTES, FileSink};
pub use format::{MediaFormat, MediaKind, media_extensions, sniff};
pub use intake::MediaIntake;
pub use key::{MAX_KEY_LEN, MAX_KEY_SEGMENT_LEN, MAX_KEY_SEGMENTS, MediaKey};
pub use memory::{MemoryMedia, MemorySink};
pub use naming::{MAX_SLUG_LEN, media_file_stem, prompt_slug};
pub use stream::{ByteStream, StreamError, StreamErrorKind};

/// What is known about a media, written as the JSON sidecar next to a file.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct MediaRecord {
    /// The prompt the media was generated from.
    pub prompt: String,
    /// Hugging Face model id, e.g. `black-forest-labs/FLUX.1-schnell`.
    pub model: String,
    /// Inference provider name, e.g. `fal-ai`.
    pub provider: String,
    /// The provider's own id for the model.
    pub provider_id: String,
    /// The task, e.g. `"text-to-image"`.
    pub task: String,
    /// Which of the `n` generations of one request this is (0-based).
    pub task_index: usize,
    /// The generation parameters that were sent.
    pub parameters: serde_json::Value,
    /// Seed used, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub seed: Option<u64>,
    /// URL the bytes were downloaded from, when the provider answered with one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_url: Option<String>,
    /// The provider's own answer minus media bytes (seed, timings, nsfw flags,
    /// request id...).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provider_response: Option<serde_json::Value>,
    /// The input images it was made from (image-to-image, image-to-video), never their bytes.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub inputs: Vec<InputRecord>,
    /// When the generation was requested, in milliseconds since the Unix epoch.
    pub created_at_unix_ms: u64,
    /// How long things took.
    pub timings: MediaTimings,
    /// Where the sink stores the media, chosen by the caller; `None` (the default): the sink names
    /// it (`{unix_secs}_{prompt slug}_{random}` for [`FileSink`], fresh and never overwriting).
    ///
    /// When set, the sink stores the media at `{key}.{ext}`, the extension from the sniffed bytes,
    /// and its sidecar at `{key}.json`, creating the sub-folders the key names, and *replaces*
    /// atomically a media already stored at that key (a re-run of the same item): readers see the
    /// old media or the new one, never a partial one, and storing an item twice leaves one media,
    /// the second. A media of another format at that key (`{key}.png` when the new bytes are a
    /// JPEG) is removed once the new one is published, so that a key never holds two media.
    ///
    /// A store failing or cancelled before the media is published leaves the key as it was; one
    /// failing after (the sidecar cannot be written...) removes what the key held, the previous
    /// media having been replaced already: store again. Stores at one key must not run at the
    /// same time (a batch stores each item once at a time); two such stores are not ordered.
    ///
    /// A [fresh](MediaKey::fresh) key (one the caller knows is new) is created instead: nothing is
    /// replaced or looked for, and a taken name fails the store with [`SinkError::KeyTaken`].
    ///
    /// Not written in sidecars (nor read from them): a record read back from a sidecar has `None`.
    /// [`MemorySink`] keeps one entry per key (see its docs).
    #[serde(skip)]
    pub key: Option<MediaKey>,
}

/// An input image, as a record names it: where it came from, its hash, size and type.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct InputRecord {
    /// Its path, its `http(s)` URL, or `data: URL` / `bytes` for inline images.
    pub source: String,
    /// The SHA-256 of its bytes, in hexadecimal.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its MIME type.
    pub mime: String,
}

/// Durations, in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct MediaTimings {
    /// Time the provider took to generate the media.
    pub generation_ms: u64,
    /// Filled by the sink: time spent receiving and storing the bytes, from the call of
    /// [`MediaSink::store`] until the sink holds them all ([`FileSink`]: received and, for a large
    /// media, written, before the final sync and rename; an object sink: uploaded).
    pub store_ms: u64,
}

/// Where a stored media (or its sidecar) ended up.
///
/// Non-exhaustive: sinks outside this crate may need other kinds of places, so match with a `_` arm.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaLocation {
    /// A file on disk (final path, after the atomic rename).
    File(PathBuf),
    /// An entry of a [`MemorySink`], to fetch with [`MemorySink::get`] or [`MemorySink::take`].
    Memory {
        /// Id of the entry: unique within its sink, never reused.
        id: usize,
    },
    /// Left at the provider's URL, not downloaded (no sink produces this; the caller chose not to download).
    Url(String),
    /// An object in remote storage, by URI: `s3://bucket/key`, `gs://bucket/object`,
    /// `az://container/blob`... Produced by object-store sinks outside this crate.
    Object(String),
}

impl MediaLocation {
    /// The path, for a [`MediaLocation::File`]; `None` for every other location.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Memory { .. } | Self::Url(_) | Self::Object(_) => None,
        }
    }
}

impl fmt::Display for MediaLocation {
    /// The path (`out/a.png`), `memory://{id}`, or the URL or URI as given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Memory { id } => write!(f, "memory://{id}"),
            Self::Url(url) => f.write_str(url),
            Self::Object(uri) => f.write_str(uri),
        }
    }
}

/// The result of a successful [`MediaSink::store`].
#[derive(Debug, Clone)]
pub struct StoredMedia {
    /// Where the media is.
    pub location: MediaLocation,
    /// Format decided from the bytes.
    pub format: MediaFormat,
    /// Size in bytes.
    pub bytes: u64,
    /// Where the JSON sidecar (the [`MediaRecord`] as written) is, when the sink wrote one:
    /// [`FileSink`] gives a [`MediaLocation::File`] next to the media, an object-store sink a
    /// [`MediaLocation::Object`].
    pub sidecar: Option<MediaLocation>,
    /// The record given to the sink, with `timings.store_ms` filled in (the same value as in the
    /// sidecar, when there is one).
    pub record: MediaRecord,
}

/// Where media goes. Object-safe: used as [`DynMediaSink`].
///
/// Sinks outside this crate (an object store, a database...) implement it too: [`MediaIntake`]
/// gives them the same checks as [`FileSink`] and [`MemorySink`] (signature sniffing, size limit,
/// byte count), and the `conformance` module (feature `testing`) the same test suite.
#[async_trait::async_trait]
pub trait MediaSink: Send + Sync + fmt::Debug {
    /// Consumes the stream and stores the media.
    ///
    /// Must never leave a partial result visible: on error, or when this future is dropped mid-way
    /// (cancellation), nothing remains. Must fill `record.timings.store_ms` with the time from the
    /// call of `store` until the sink holds every byte (see [`MediaTimings::store_ms`]), in the
    /// returned [`StoredMedia::record`] and in the sidecar alike.
    ///
    /// When `record.key` is set, the media is stored at that key, replacing what the key held (see
    /// [`MediaRecord::key`]), or, for a [fresh](MediaKey::fresh) key, only if nothing is there
    /// ([`SinkError::KeyTaken`] otherwise); the returned record keeps the key.
    ///
    /// Errors: [`SinkError::Source`] when the stream breaks; [`SinkError::Empty`],
    /// [`SinkError::UnrecognizedMedia`] and [`SinkError::TooLarge`] from [`MediaIntake`];
    /// [`SinkError::Io`] or [`SinkError::Backend`] when the storage fails; [`SinkError::KeyTaken`]
    /// for a fresh key that is not new. The caller may store the
    /// media again when [`SinkError::is_retryable`] says so.
    ///
    /// # Sinks with an asynchronous abort
    ///
    /// A remote sink (an S3 multipart upload, an object store's put) cannot clean up in `Drop`,
    /// which cannot await. It keeps the "a dropped future leaves nothing visible" promise this way:
    ///
    /// - **Nothing is visible until one final atomic step**: complete-multipart-upload, the put of
    ///   the whole object, or a rename. The parts of an unfinished multipart upload are never listed
    ///   as objects, so they stay invisible even if the abort below never runs (a lifecycle rule
    ///   expiring incomplete uploads reclaims their space).
    /// - **On error**, it aborts the upload, awaited, before returning the error.
    /// - **On drop**, a guard armed while the upload is open spawns the abort onto the runtime from
    ///   its `Drop` (`tokio::spawn` of `abort_multipart`).
    /// - **The sidecar is written only after the media is published**, so that it holds the
    ///   measured `store_ms`. Should writing it fail (or the future be dropped meanwhile), the media
    ///   is deleted again, the same two ways.
    ///
    /// A sketch, `Bucket` standing for the object-store client:
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use std::time::Instant;
    ///
    /// use futures::StreamExt as _;
    /// use hf_media_sink::{ByteStream, MediaIntake, MediaLocation, MediaRecord, MediaSink, SinkError, StoredMedia};
    /// # #[derive(Debug)]
    /// # struct Bucket;
    /// # #[allow(unused_variables)]
    /// # impl Bucket {
    /// #     async fn create_multipart(&self, key: &str) -> Result<String, SinkError> { todo!() }
    /// #     async fn upload_part(&self, upload: &str, n: u32, part: bytes::Bytes) -> Result<(), SinkError> { todo!() }
    /// #     async fn complete_multipart(&self, upload: &str) -> Result<(), SinkError> { todo!() }
    /// #     async fn abort_multipart(&self, upload: &str) -> Result<(), SinkError> { todo!() }
    /// #     async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), SinkError> { todo!() }
    /// #     async fn delete(&self, key: &str) -> Result<(), SinkError> { todo!() }
    /// # }
    ///
    /// /// What is left to undo if the store does not reach its end.
    /// enum Undo {
    ///     Abort { upload: String },
    ///     Delete { key: String },
    /// }
    ///
    /// impl Undo {
    ///     async fn run(self, bucket: &Bucket) {
    ///         let _ = match self {
    ///             Undo::Abort { upload } => bucket.abort_multipart(&upload).await,
    ///             Undo::Delete { key } => bucket.delete(&key).await,
    ///         };
    ///     }
    /// }
    ///
    /// struct Guard {
    ///     bucket: Arc<Bucket>,
    ///     undo: Option<Undo>,
    /// }
    ///
    /// impl Guard {
    ///     /// The error path: undoes now, awaited.
    ///     async fn undo_now(mut self) {
    ///         if let Some(undo) = self.undo.take() {
    ///             undo.run(&self.bucket).await;
    ///         }
    ///     }
    /// }
    ///
    /// impl Drop for Guard {
    ///     /// The future was dropped mid-way: Drop cannot await, so the undo is spawned.
    ///     fn drop(&mut self) {
    ///         if let (Some(undo), Ok(runtime)) = (self.undo.take(), tokio::runtime::Handle::try_current()) {
    ///             let bucket = Arc::clone(&self.bucket);
    ///             runtime.spawn(async move { undo.run(&bucket).await });
    ///         }
    ///     }
    /// }
    ///
    /// #[derive(Debug)]
    /// struct ObjectSink {
    ///     bucket: Arc<Bucket>,
    ///     max_bytes: u64,
    /// }
    ///
    /// #[async_trait::async_trait]
    /// impl MediaSink for ObjectSink {
    ///     async fn store(&self, mut media: ByteStream, mut record: MediaRecord) -> Result<StoredMedia, SinkError> {
    ///         let started = Instant::now();
    ///         // A real sink names the key after the prompt and the format (holding the first bytes
    ///         // back until `MediaIntake::format` knows it) and sends parts of at least 5 MiB.
    ///         let key = format!("media/{}", record.created_at_unix_ms);
    ///         let upload = self.bucket.create_multipart(&key).await?;
    ///         let undo = Some(Undo::Abort { upload: upload.clone() });
    ///         let mut guard = Guard { bucket: Arc::clone(&self.bucket), undo };
    ///         let mut intake = MediaIntake::new(self.max_bytes);
    ///         let uploaded = async {
    ///             let mut part = 1;
    ///             while let Some(chunk) = media.next().await {
    ///                 let chunk = chunk.map_err(SinkError::Source)?;
    ///                 intake.accept(&chunk)?;
    ///                 self.bucket.upload_part(&upload, part, chunk).await?;
    ///                 part += 1;
    ///             }
    ///             let format = intake.finish()?;
    ///             self.bucket.complete_multipart(&upload).await?; // the one atomic step
    ///             Ok(format)
    ///         };
    ///         let format = match uploaded.await {
    ///             Ok(format) => format,
    ///             Err(e) => {
    ///                 guard.undo_now().await; // aborted before returning
    ///                 return Err(e);
    ///             }
    ///         };
    ///         // Published: from now on, undoing means deleting the object.
    ///         guard.undo = Some(Undo::Delete { key: key.clone() });
    ///         record.timings.store_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    ///         let sidecar = format!("{key}.json");
    ///         let written = match serde_json::to_vec_pretty(&record) {
    ///             Ok(json) => self.bucket.put(&sidecar, json).await,
    ///             Err(e) => Err(SinkError::backend(e.to_string(), false)),
    ///         };
    ///         if let Err(e) = written {
    ///             guard.undo_now().await;
    ///             return Err(e);
    ///         }
    ///         guard.undo = None; // complete: nothing to undo
    ///         Ok(StoredMedia {
    ///             location: MediaLocation::Object(format!("s3://my-bucket/{key}")),
    ///             format,
    ///             bytes: intake.total(),
    ///             sidecar: Some(MediaLocation::Object(format!("s3://my-bucket/{sidecar}"))),
    ///             record,
    ///         })
    ///     }
    /// }
    /// ```
    async fn store(&self, media: ByteStream, record: MediaRecord) -> Result<StoredMedia, SinkError>;
}

/// A shared, type-erased sink.
pub type DynMediaSink = Arc<dyn MediaSink>;

#[async_trait::async_trait]
impl<T: MediaSink + ?Sized> MediaSink for Arc<T> {
    async fn store(&self, media: ByteStream, record: MediaRecord) -> Result<StoredMedia, SinkError> {
        (**self).store(media, record).await
    }
}

#[async_trait::async_trait]
impl<T: MediaSink + ?Sized> MediaSink for Box<T> {
    async fn store(&self, media: ByteStream, record: MediaRecord) -> Result<StoredMedia, SinkError> {
        (**self).store(media, record).await
    }
}

/// Milliseconds in `d`, saturating.
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn _obj_safe(_: &dyn MediaSink) {}
    fn _dyn_is_sink(sink: DynMediaSink) -> impl MediaSink {
        sink
    }

    #[test]
    fn location_display() {
        assert_eq!(MediaLocation::Memory { id: 3 }.to_string(), "memory://3");
        assert_eq!(MediaLocation::File(PathBuf::from("out/a.png")).to_string(), "out/a.png");
        assert_eq!(
            MediaLocation::Url("https://cdn.example/a.png".into()).to_string(),
            "https://cdn.example/a.png"
        );
        for uri in ["s3://bucket/media/a.png", "gs://bucket/a.mp4", "az://container/a.webp"] {
            assert_eq!(MediaLocation::Object(uri.into()).to_string(), uri);
        }
    }

    #[test]
    fn only_a_file_has_a_path() {
        let file = MediaLocation::File(PathBuf::from("out/a.png"));
        assert_eq!(file.as_path(), Some(Path::new("out/a.png")));
        assert_eq!(MediaLocation::Memory { id: 0 }.as_path(), None);
        assert_eq!(MediaLocation::Url("https://x/a.png".into()).as_path(), None);
        assert_eq!(MediaLocation::Object("s3://b/a.png".into()).as_path(), None);
    }

    #[test]
    fn record_json_round_trip_and_skips_nones() {
        let record = MediaRecord {
            prompt: "a cat".into(),
            model: "m".into(),
            provider: "p".into(),
            provider_id: "pid".into(),
            task: "text-to-image".into(),
            task_index: 2,
            parameters: serde_json::json!({"width": 512}),
            seed: None,
            source_url: None,
            provider_response: None,
            inputs: Vec::new(),
            created_at_unix_ms: 5,
            timings: MediaTimings {
                generation_ms: 7,
                store_ms: 1,
            },
            key: None,
        };
        let json = serde_json::to_value(&record).expect("serialize");
        assert!(json.get("seed").is_none());
        assert!(json.get("source_url").is_none());
        assert!(json.get("provider_response").is_none());
        assert_eq!(json["timings"]["generation_ms"], 7);
        let back: MediaRecord = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, record);

        let with = MediaRecord {
            seed: Some(42),
            source_url: Some("https://x/y.png".into()),
            ..record
        };
        let json = serde_json::to_value(&with).expect("serialize");
        assert_eq!(json["seed"], 42);
        let back: MediaRecord = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, with);
    }

    #[test]
    fn the_key_is_not_written_in_sidecars() {
        let key = MediaKey::new("shard-0001/item-000042").expect("valid");
        let record = MediaRecord {
            prompt: "a cat".into(),
            key: Some(key),
            ..MediaRecord::default()
        };
        let json = serde_json::to_value(&record).expect("serialize");
        assert!(json.get("key").is_none(), "{json}");
        assert!(!json.to_string().contains("item-000042"), "{json}");
        let back: MediaRecord = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back.key, None);
        assert_eq!(back, MediaRecord { key: None, ..record });
        // Nor read from one.
        let with_key = serde_json::json!({
            "prompt": "p", "model": "m", "provider": "p", "provider_id": "i", "task": "t",
            "task_index": 0, "parameters": null, "created_at_unix_ms": 0,
            "timings": { "generation_ms": 0, "store_ms": 0 }, "key": "../../etc/passwd"
        });
        let back: MediaRecord = serde_json::from_value(with_key).expect("an unknown field is ignored");
        assert_eq!(back.key, None);
    }
}
