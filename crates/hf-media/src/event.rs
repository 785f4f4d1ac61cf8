use std::path::PathBuf;
use std::time::Duration;

use hf_media_provider::ProviderStatus;
use hf_media_sink::{MediaKind, MediaLocation};
use serde_json::Value;

use crate::Error;

/// A media that was made and stored.
#[derive(Debug, Clone)]
pub struct GeneratedMedia {
    /// Which of the `n` generations (0-based).
    pub task: usize,
    /// The provider that made it.
    pub provider: String,
    /// The model's id on that provider.
    pub provider_id: String,
    /// The Hub model id.
    pub model: String,
    /// Image or video (decided from the bytes; from the task when the media was not downloaded).
    pub kind: MediaKind,
    /// The MIME type, decided from the bytes (the provider's claim, if any, when not downloaded).
    pub mime: String,
    /// Where the sink put it, or [`MediaLocation::Url`] when the media was not downloaded.
    pub location: MediaLocation,
    /// Its size (0 when not downloaded).
    pub bytes: u64,
    /// The JSON record next to it, when the sink wrote one.
    pub sidecar: Option<PathBuf>,
    /// The seed, when known.
    pub seed: Option<u64>,
    /// Where the bytes were downloaded from (never a `data:` URL).
    pub source_url: Option<String>,
    /// The provider's own answer minus media bytes.
    pub provider_response: Option<Value>,
    /// Time from the first attempt to the stored media.
    pub elapsed: Duration,
}

/// What happens during a generation, in the order it happens.
#[derive(Debug)]
#[non_exhaustive]
pub enum GenerationEvent {
    /// Generation `task` is asking `provider`.
    Attempt {
        /// Which generation.
        task: usize,
        /// The provider asked.
        provider: String,
        /// The model's id on that provider.
        provider_id: String,
    },
    /// `provider` failed transiently for generation `task`; it is tried again after `delay`.
    Retry {
        /// Which generation.
        task: usize,
        /// The provider tried again.
        provider: String,
        /// The try that failed (1 for the first).
        attempt: u32,
        /// The wait before the next try.
        delay: Duration,
        /// Its HTTP status, when it answered one.
        status: Option<u16>,
        /// What it said.
        message: String,
    },
    /// `provider` failed for generation `task`; the next provider, if any, is tried.
    Fallback {
        /// Which generation.
        task: usize,
        /// The provider that failed.
        provider: String,
        /// Its HTTP status, when it answered one.
        status: Option<u16>,
        /// What it said.
        message: String,
    },
    /// Something was skipped or looks wrong, but the generation goes on.
    Warning {
        /// Which generation, or `None` for the whole request.
        task: Option<usize>,
        /// What happened.
        message: String,
    },
    /// A provider's own report on a pending job (queued, position, in progress).
    ProviderStatus {
        /// Which generation.
        task: usize,
        /// The provider.
        provider: String,
        /// What it said.
        status: ProviderStatus,
    },
    /// A tick while waiting.
    Progress {
        /// Time since the request started.
        elapsed: Duration,
        /// Generations finished (succeeded or failed).
        done: usize,
        /// Generations in all.
        total: usize,
    },
    /// A media is ready.
    Media(Box<GeneratedMedia>),
    /// Generation `task` failed (or, with `task: None`, the whole request failed before any started).
    Error {
        /// Which generation.
        task: Option<usize>,
        /// Why.
        error: Error,
    },
    /// Everything is finished; always the last event.
    Done {
        /// Generations that made a media.
        succeeded: usize,
        /// Generations that failed.
        failed: usize,
        /// Time since the request started.
        elapsed: Duration,
    },
}
