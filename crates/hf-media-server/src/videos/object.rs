//! The Video object of a stored job, and the files a job leaves in the output folder.

use std::time::{SystemTime, UNIX_EPOCH};

use hf_media::{GenerateRequest, GenerationEvent};
use hf_media_batch::state::{ItemRow, ItemState};
use serde_json::{Value, json};

use crate::ServerError;
use crate::fields::VIDEO_FPS;
use crate::progress::{ACCEPTED, COMPLETED, progress_of};
use crate::store::MediaStore;

/// Unix milliseconds now.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// OpenAI's status of a job.
pub(crate) fn status(row: &ItemRow) -> &'static str {
    match row.state {
        ItemState::Pending if row.attempts == 0 && row.jobs.is_empty() => "queued",
        ItemState::Pending | ItemState::Running => "in_progress",
        ItemState::Done => "completed",
        ItemState::Failed => "failed",
    }
}

/// The progress an event of a running job moves it to, if any.
pub(crate) fn progress_after(event: &GenerationEvent) -> Option<u8> {
    match event {
        GenerationEvent::Attempt { .. } => Some(1),
        GenerationEvent::Accepted { .. } => Some(ACCEPTED),
        GenerationEvent::ProviderStatus { status, .. } => Some(progress_of(&status.state)),
        GenerationEvent::Media(_) => Some(COMPLETED),
        _ => None,
    }
}

/// The Video object of `row`. `live` is this process's progress for a job it runs; `seconds`, the length
/// as asked (else worked out from the frames asked for).
pub(crate) fn video_object(row: &ItemRow, live: Option<u8>, seconds: Option<&str>) -> Value {
    let request: Option<GenerateRequest> = serde_json::from_value(row.spec.clone()).ok();
    let status = status(row);
    let progress = match status {
        "completed" => COMPLETED,
        "queued" => 0,
        "failed" => live.unwrap_or(0),
        _ => live.unwrap_or(if row.jobs.is_empty() { 1 } else { ACCEPTED }),
    };
    let params = request.as_ref().map(|r| &r.params);
    let size = params
        .and_then(|p| p.size())
        .map(|(w, h)| format!("{w}x{h}"))
        .or_else(|| params.and_then(|p| p.aspect_ratio.as_ref()).map(|r| r.to_string()));
    let seconds = seconds.map(str::to_owned).or_else(|| {
        params.and_then(|p| p.num_frames).map(|frames| {
            (f64::from(frames.saturating_sub(1)) / f64::from(VIDEO_FPS))
                .round()
                .to_string()
        })
    });
    let error = row.error.as_ref().map(|error| {
        json!({
            "code": error.get("code").and_then(Value::as_str).unwrap_or("generation_failed"),
            "message": error.get("message").and_then(Value::as_str).unwrap_or("the video could not be made"),
        })
    });
    let media = row.media.get(&0);
    json!({
        "id": row.id,
        "object": "video",
        "status": status,
        "progress": progress,
        "created_at": row.line / 1000,
        "completed_at": row.finished_at.filter(|_| status == "completed" || status == "failed").map(|ms| ms / 1000),
        "expires_at": Value::Null,
        "model": request.as_ref().map_or("", |r| r.model.as_str()),
        "prompt": request.as_ref().and_then(|r| r.prompt.clone()),
        "seconds": seconds.unwrap_or_else(|| "4".into()),
        "size": size.unwrap_or_else(|| "auto".into()),
        "error": error,
        "provider": row.provider.clone().or_else(|| media.and_then(|m| m.get("provider")).and_then(Value::as_str).map(str::to_owned)),
        "seed": media.and_then(|m| m.get("seed")).cloned(),
    })
}

/// The stored files of video `id`: `{id}-0.{ext}` and its sidecar.
async fn files(store: &MediaStore, id: &str) -> Result<Vec<String>, ServerError> {
    let prefix = format!("{id}-");
    Ok(store
        .list(1, Some(&prefix))
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect())
}

/// The name of the video file of `id`, when it is stored.
pub(crate) async fn media_file(store: &MediaStore, id: &str) -> Result<Option<String>, ServerError> {
    Ok(files(store, id).await?.into_iter().find(|name| {
        name.rsplit_once('.')
            .is_some_and(|(_, ext)| hf_media::sink::media_extensions().any(|known| known.eq_ignore_ascii_case(ext)))
    }))
}

/// Removes every file of video `id`.
pub(crate) async fn remove_files(store: &MediaStore, id: &str) {
    let names = match files(store, id).await {
        Ok(names) => names,
        Err(error) => {
            tracing::warn!(video = id, %error, "a deleted video's files could not be listed");
            return;
        }
    };
    for name in names {
        if let Err(error) = store.remove(&name).await {
            tracing::warn!(video = id, %error, "a deleted video's file could not be removed");
        }
    }
}
