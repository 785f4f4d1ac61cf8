//! The record of a made media and the result the caller gets, built in one place: for a stored media
//! (the sink's record and sidecar) and for a media left at its URL (`download_media(false)`).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hf_media_sink::{InputRecord, MediaKey, MediaKind, MediaLocation, MediaRecord, MediaTimings, StoredMedia};
use serde_json::Value;

use crate::GeneratedMedia;
use crate::config::millis;
use crate::input::input_record;
use crate::plan::{Candidate, Plan};

/// What is known of a media once its provider made it, before it is stored.
pub(crate) struct Made<'a> {
    pub plan: &'a Plan,
    pub candidate: &'a Candidate,
    pub task: usize,
    /// When the generation started (its first attempt).
    pub started: Instant,
    /// How long the provider took.
    pub generation_ms: u64,
    /// The seed: the provider's word, else the one sent.
    pub seed: Option<u64>,
    /// The MIME type the provider claimed.
    pub mime: Option<String>,
    /// The provider's answer minus media bytes, secrets scrubbed.
    pub provider_response: Option<Value>,
    /// How many of the input images (from the first) the provider sent, when it left some out.
    pub images_used: usize,
    /// Where the caller wants the sink to store it.
    pub key: Option<MediaKey>,
}

impl Made<'_> {
    fn provider(&self) -> &str {
        &self.candidate.mapping.provider
    }

    /// The inputs the media was made from, as the record names them.
    fn inputs(&self) -> Vec<InputRecord> {
        self.plan
            .images_for(self.candidate)
            .iter()
            .take(self.images_used)
            .map(input_record)
            .collect()
    }

    /// The record a sink stores next to the media (its `store_ms` is the sink's to fill).
    pub(crate) fn record(&self, source_url: Option<&str>) -> MediaRecord {
        MediaRecord {
            prompt: self.plan.prompt.clone(),
            model: self.plan.model.clone(),
            provider: self.provider().to_owned(),
            provider_id: self.candidate.mapping.provider_id.clone(),
            task: self.candidate.mapping.task.to_string(),
            task_index: self.task,
            parameters: serde_json::to_value(self.plan.params_for(self.task)).unwrap_or_default(),
            seed: self.seed,
            source_url: source_url.map(str::to_owned),
            provider_response: self.provider_response.clone(),
            inputs: self.inputs(),
            created_at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(millis)
                .unwrap_or_default(),
            timings: MediaTimings {
                generation_ms: self.generation_ms,
                store_ms: 0,
            },
            key: self.key.clone(),
        }
    }

    /// The result for a media the sink stored.
    pub(crate) fn stored(&self, stored: StoredMedia, source_url: Option<String>) -> GeneratedMedia {
        GeneratedMedia {
            task: self.task,
            provider: self.provider().to_owned(),
            provider_id: self.candidate.mapping.provider_id.clone(),
            model: self.plan.model.clone(),
            kind: stored.format.kind,
            mime: stored.format.mime.to_owned(),
            location: stored.location,
            bytes: stored.bytes,
            sidecar: stored.sidecar,
            seed: self.seed,
            source_url,
            provider_response: self.provider_response.clone(),
            inputs: self.inputs(),
            elapsed: self.started.elapsed(),
        }
    }

    /// The result for a media left at the provider's URL: its kind from the task, its type from the
    /// provider's claim.
    pub(crate) fn left_at(&self, url: &str) -> GeneratedMedia {
        GeneratedMedia {
            task: self.task,
            provider: self.provider().to_owned(),
            provider_id: self.candidate.mapping.provider_id.clone(),
            model: self.plan.model.clone(),
            kind: if self.candidate.mapping.task.makes_video() {
                MediaKind::Video
            } else {
                MediaKind::Image
            },
            mime: self
                .mime
                .clone()
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
            location: MediaLocation::Url(url.to_owned()),
            bytes: 0,
            sidecar: None,
            seed: self.seed,
            source_url: Some(url.to_owned()),
            provider_response: self.provider_response.clone(),
            inputs: self.inputs(),
            elapsed: self.started.elapsed(),
        }
    }
}
