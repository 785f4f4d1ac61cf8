#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

mod error;
mod file;
mod format;
mod intake;
mod memory;
mod naming;
mod stream;

#[cfg(feature = "testing")]
pub mod conformance;

pub use error::SinkError;
pub use file::{DEFAULT_DIR, DEFAULT_MAX_BYTES, FileSink};
pub use format::{MediaFormat, MediaKind, sniff};
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
    /// When the generation was requested, in milliseconds since the Unix epoch.
    pub created_at_unix_ms: u64,
    /// How long things took.
    pub timings: MediaTimings,
}

/// Durations, in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct MediaTimings {
    /// Time the provider took to generate the media.
    pub generation_ms: u64,
    /// Filled by the sink: time spent receiving and writing the bytes.
    pub store_ms: u64,
}

/// Where a stored media ended up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaLocation {
    /// A file on disk (final path, after the atomic rename).
    File(PathBuf),
    /// An entry of a [`MemorySink`].
    Memory {
        /// Index of the entry in [`MemorySink::items`].
        id: usize,
    },
    /// Left at the provider's URL, not downloaded (no sink produces this; the caller chose not to download).
    Url(String),
}

impl fmt::Display for MediaLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Memory { id } => write!(f, "memory://{id}"),
            Self::Url(url) => f.write_str(url),
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
    /// Path of the JSON sidecar, when the sink wrote one.
    pub sidecar: Option<PathBuf>,
    /// The record given to the sink, with `timings.store_ms` filled in.
    pub record: MediaRecord,
}

/// Where media goes. Object-safe: used as [`DynMediaSink`].
#[async_trait::async_trait]
pub trait MediaSink: Send + Sync + fmt::Debug {
    /// Consumes the stream and stores the media.
    ///
    /// Must never leave a partial result visible: on error, or when this
    /// future is dropped mid-way (cancellation), nothing remains.
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
            created_at_unix_ms: 5,
            timings: MediaTimings {
                generation_ms: 7,
                store_ms: 1,
            },
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
}
