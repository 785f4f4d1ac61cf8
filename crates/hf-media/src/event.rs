//! What a generation reports, and its wire form: every event serializes to the JSON object that
//! `hf-media generate --json` prints, one per line (the `"event"` field names the kind).

use std::time::Duration;

use hf_media_provider::{JobTicket, ProviderStatus, RetryStage};
use hf_media_sink::{InputRecord, MediaKind, MediaLocation};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::millis;
use crate::{Error, ProviderAttempt};

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
    pub sidecar: Option<MediaLocation>,
    /// The seed the media was made with: the provider's word, else the seed sent to it.
    pub seed: Option<u64>,
    /// Where the bytes were downloaded from (never a `data:` URL).
    pub source_url: Option<String>,
    /// The provider's own answer minus media bytes.
    pub provider_response: Option<Value>,
    /// The input images it was made from (path or URL, SHA-256, size, type; never their bytes).
    pub inputs: Vec<InputRecord>,
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
    /// A passing failure is tried again after `delay`: a provider's call, a status request, a model still
    /// loading, a media download, the sink, or the Hub's mapping call.
    Retry {
        /// Which generation, or `None` for the request's Hub call.
        task: Option<usize>,
        /// The provider tried again, or `None` for the Hub.
        provider: Option<String>,
        /// What is tried again.
        stage: RetryStage,
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
    /// `provider` accepted generation `task`'s job: it exists (and is paid for). Keep the ticket to
    /// [resume](crate::RunOptions::resume) the job in a later run instead of submitting another.
    Accepted {
        /// Which generation.
        task: usize,
        /// The provider.
        provider: String,
        /// The job, with what it takes to reach it again.
        job: JobTicket,
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

/// The error object inside an `error` event: what a program reading the events (or an HTTP client of a
/// server) needs to react, without the library's error type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// [`Error::kind`]: `model_not_found`, `model_not_supported`, `all_providers_failed`, `timeout`, …
    pub kind: String,
    /// The whole message.
    pub message: String,
    /// The provider that refused the model (`model_not_supported`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Its HTTP status (`model_not_supported`); serialized as `null` when the provider answered none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Option<u16>>,
    /// Each provider's failed try, in order (`all_providers_failed`, `timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<ProviderAttempt>>,
}

impl From<&Error> for ErrorInfo {
    fn from(error: &Error) -> Self {
        let mut info = ErrorInfo {
            kind: error.kind().to_owned(),
            message: error.to_string(),
            provider: None,
            status: None,
            attempts: None,
        };
        match error {
            Error::AllProvidersFailed { attempts, .. } | Error::Timeout { attempts, .. } => {
                info.attempts = Some(attempts.clone());
            }
            Error::ModelNotSupported { provider, status, .. } => {
                info.provider = Some(provider.clone());
                info.status = Some(*status);
            }
            _ => {}
        }
        info
    }
}

impl Serialize for GeneratedMedia {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        write_media(&mut map, self)?;
        map.end()
    }
}

fn write_media<M: SerializeMap>(map: &mut M, media: &GeneratedMedia) -> Result<(), M::Error> {
    map.serialize_entry("task", &media.task)?;
    map.serialize_entry("provider", &media.provider)?;
    map.serialize_entry("provider_id", &media.provider_id)?;
    map.serialize_entry("model", &media.model)?;
    map.serialize_entry("kind", &media.kind)?;
    map.serialize_entry("mime", &media.mime)?;
    map.serialize_entry("path", &media.location.to_string())?;
    map.serialize_entry("bytes", &media.bytes)?;
    map.serialize_entry("sidecar", &media.sidecar.as_ref().map(ToString::to_string))?;
    map.serialize_entry("seed", &media.seed)?;
    map.serialize_entry("source_url", &media.source_url)?;
    map.serialize_entry("provider_response", &media.provider_response)?;
    if !media.inputs.is_empty() {
        map.serialize_entry("inputs", &media.inputs)?;
    }
    map.serialize_entry("elapsed_ms", &millis(media.elapsed))
}

impl Serialize for GenerationEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("event", self.name())?;
        match self {
            GenerationEvent::Attempt {
                task,
                provider,
                provider_id,
            } => {
                map.serialize_entry("task", task)?;
                map.serialize_entry("provider", provider)?;
                map.serialize_entry("provider_id", provider_id)?;
            }
            GenerationEvent::Retry {
                task,
                provider,
                stage,
                attempt,
                delay,
                status,
                message,
            } => {
                map.serialize_entry("task", task)?;
                map.serialize_entry("provider", provider)?;
                map.serialize_entry("stage", stage)?;
                map.serialize_entry("attempt", attempt)?;
                map.serialize_entry("delay_ms", &millis(*delay))?;
                map.serialize_entry("status", status)?;
                map.serialize_entry("message", message)?;
            }
            GenerationEvent::Fallback {
                task,
                provider,
                status,
                message,
            } => {
                map.serialize_entry("task", task)?;
                map.serialize_entry("provider", provider)?;
                map.serialize_entry("status", status)?;
                map.serialize_entry("message", message)?;
            }
            GenerationEvent::Warning { task, message } => {
                map.serialize_entry("task", task)?;
                map.serialize_entry("message", message)?;
            }
            GenerationEvent::Accepted { task, provider, job } => {
                map.serialize_entry("task", task)?;
                map.serialize_entry("provider", provider)?;
                map.serialize_entry("job", job)?;
            }
            GenerationEvent::ProviderStatus { task, provider, status } => {
                map.serialize_entry("task", task)?;
                map.serialize_entry("provider", provider)?;
                map.serialize_entry("state", &status.state)?;
                map.serialize_entry("queue_position", &status.queue_position)?;
                map.serialize_entry("job_id", &status.job_id)?;
            }
            GenerationEvent::Progress { elapsed, done, total } => {
                map.serialize_entry("elapsed_ms", &millis(*elapsed))?;
                map.serialize_entry("done", done)?;
                map.serialize_entry("total", total)?;
            }
            GenerationEvent::Media(media) => write_media(&mut map, media)?,
            GenerationEvent::Error { task, error } => {
                let info = ErrorInfo::from(error);
                map.serialize_entry("task", task)?;
                map.serialize_entry("kind", &info.kind)?;
                map.serialize_entry("message", &info.message)?;
                if let Some(provider) = &info.provider {
                    map.serialize_entry("provider", provider)?;
                }
                if let Some(status) = &info.status {
                    map.serialize_entry("status", status)?;
                }
                if let Some(attempts) = &info.attempts {
                    map.serialize_entry("attempts", attempts)?;
                }
            }
            GenerationEvent::Done {
                succeeded,
                failed,
                elapsed,
            } => {
                map.serialize_entry("succeeded", succeeded)?;
                map.serialize_entry("failed", failed)?;
                map.serialize_entry("elapsed_ms", &millis(*elapsed))?;
            }
        }
        map.end()
    }
}

impl GenerationEvent {
    /// The event's wire name: `attempt`, `retry`, `fallback`, `warning`, `accepted`, `provider_status`, `progress`,
    /// `media`, `error` or `done` (the `"event"` field of its JSON form).
    pub fn name(&self) -> &'static str {
        match self {
            GenerationEvent::Attempt { .. } => "attempt",
            GenerationEvent::Retry { .. } => "retry",
            GenerationEvent::Fallback { .. } => "fallback",
            GenerationEvent::Warning { .. } => "warning",
            GenerationEvent::Accepted { .. } => "accepted",
            GenerationEvent::ProviderStatus { .. } => "provider_status",
            GenerationEvent::Progress { .. } => "progress",
            GenerationEvent::Media(_) => "media",
            GenerationEvent::Error { .. } => "error",
            GenerationEvent::Done { .. } => "done",
        }
    }
}
